"""Buffers that a layout may leave out (a dense packed weight has no index arrays)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn


def register_optional_buffer(module: nn.Module, name: str, t: Optional[torch.Tensor]) -> None:
    """``t`` as a buffer, or a plain ``None`` attribute when there is none. A ``None`` buffer would be
    equivalent (it is left out of ``state_dict``, ``named_buffers`` and ``.to()`` alike), but
    ``torch.export`` 2.13 (non-strict) numbers the root module's buffers counting the ``None`` ones
    and fails with an IndexError when a tensor buffer follows them."""
    if t is None:
        setattr(module, name, None)
    else:
        module.register_buffer(name, t)
