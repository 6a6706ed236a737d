"""Buffers of the packed modules: optional ones (a dense packed weight has no index arrays), and the
guard that re-validates packed data whenever it may have changed."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .._contract import IndexVersions
from ..packed import PackedWeight


def register_optional_buffer(module: nn.Module, name: str, t: Optional[torch.Tensor]) -> None:
    """``t`` as a buffer, or a plain ``None`` attribute when there is none. A ``None`` buffer would be
    equivalent (it is left out of ``state_dict``, ``named_buffers`` and ``.to()`` alike), but
    ``torch.export`` 2.13 (non-strict) numbers the root module's buffers counting the ``None`` ones
    and fails with an IndexError when a tensor buffer follows them."""
    if t is None:
        setattr(module, name, None)
    else:
        module.register_buffer(name, t)


class BufferDict(dict):
    """A module's ``_buffers`` that counts its replacements (``generation``). Every way a buffer is
    swapped goes through it: ``setattr``, ``load_state_dict(assign=True)``, ``.to()`` (``_apply``) and
    ``torch.func.functional_call``, which writes ``module._buffers[name]`` directly. The module's
    ``_parameters`` is one too, counting into the same ``generation`` (``counts_into``), so that one
    attribute read tells whether anything the ops were given was replaced."""

    generation = 0
    _counts_into = None  # (class default: dicts pickled before it existed)

    def __init__(self, data=(), counts_into: "BufferDict | None" = None):
        super().__init__(data)
        self._counts_into = counts_into

    def _bump(self) -> None:
        (self._counts_into if self._counts_into is not None else self).generation += 1

    def __setitem__(self, key, value):
        self._bump()
        super().__setitem__(key, value)

    def __delitem__(self, key):
        self._bump()
        super().__delitem__(key)

    def pop(self, *args):
        self._bump()
        return super().pop(*args)

    def update(self, *args, **kwargs):
        self._bump()
        super().update(*args, **kwargs)


class PackedModule(nn.Module):
    """Base of the modules that hold packed weights as buffers (``SparseLinear`` and the recurrent
    kernel twins). Their packed data is validated (structure, ranges, finite values) when it is loaded
    (``load_state_dict`` raises ValueError for corrupted data) and, before the next call, whenever a
    buffer was replaced or an index tensor edited in place. Subclasses list their packed weights in
    ``_packed_weights()``, call ``_ensure_packed_valid()`` before running the ops, and drop what they
    cached from the buffers in ``_packed_changed()``."""

    def __init__(self) -> None:
        super().__init__()
        self._buffers = BufferDict(self._buffers)
        self._parameters = BufferDict(self._parameters, counts_into=self._buffers)  # SparseLinear's values
        self._packed_seen = IndexVersions()
        self._packed_watch_versions = False
        self._packed_generation = -1
        self.register_load_state_dict_post_hook(_validate_after_load)

    def _packed_weights(self) -> list[tuple[str, str, tuple[int, int], torch.Tensor, Optional[torch.Tensor],
                                            Optional[torch.Tensor], Optional[torch.Tensor]]]:
        """(name, layout, (out, in), values, col_ptr, row_idx, scale) of every packed weight, from the
        buffers (scale: int8 values only)."""
        raise NotImplementedError

    def _index_tensors(self, parts) -> tuple:
        return tuple(t for _, _, _, _, cp, ri, _ in parts for t in (cp, ri) if t is not None)

    def _validate_packed(self) -> None:
        parts = self._packed_weights()
        for name, layout, shape, values, col_ptr, row_idx, scale in parts:
            try:
                PackedWeight(layout, shape, values, col_ptr, row_idx, scale)
            except ValueError as e:
                raise ValueError(f"{type(self).__name__}: packed weight {name} is invalid: {e}") from None
        self._packed_seen.record(self._index_tensors(parts))
        # On the CPU the ops validate edited structures themselves (C++, a lookup per call); elsewhere
        # (the Triton kernels) this module re-checks the index tensors' versions before each call.
        self._packed_watch_versions = any(p[3].device.type != "cpu" for p in parts)
        self._packed_generation = self._buffers.generation
        self._packed_changed()

    def _packed_changed(self) -> None:
        """Called after every (re-)validation: drop whatever was cached from the old buffers."""

    def _ensure_packed_valid(self) -> None:
        """Re-validates (ValueError if the data is corrupted) when a buffer was replaced since the last
        validation (and, off the CPU, when an index tensor was edited in place); two attribute reads
        otherwise."""
        if self._packed_generation != self._buffers.generation or (
                self._packed_watch_versions and not self._packed_seen.unchanged()):
            self._validate_packed()

    def __setstate__(self, state):  # unpickled modules (torch.load of a whole module) are validated too
        super().__setstate__(state)
        if not isinstance(self._buffers, BufferDict):
            self._buffers = BufferDict(self._buffers)
        if not isinstance(self._parameters, BufferDict):
            self._parameters = BufferDict(self._parameters, counts_into=self._buffers)
        self._packed_generation = -1


def _validate_after_load(module: PackedModule, incompatible_keys) -> None:
    module._validate_packed()
