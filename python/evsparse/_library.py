"""Finds and loads the operator library (``libevsparse_ops_torch<major>.<minor>.so``) built for the
running torch.

The ops are written on libtorch's C++ API, which has no stable ABI across torch minor versions, so a
wheel carries one library per supported minor version and a source build carries one for the torch it
was built against (docs/install.md says why not the LibTorch Stable ABI, with the measurements).
"""

from __future__ import annotations

from pathlib import Path

import torch

_DIR = Path(__file__).resolve().parent


def torch_minor() -> str:
    """The running torch's ``major.minor``, as the library names spell it."""
    return ".".join(torch.__version__.split("+")[0].split(".")[:2])


def available() -> list[str]:
    """The torch minor versions this install has an operator library for."""
    found = (p.name[len("libevsparse_ops_torch"):-len(".so")] for p in _DIR.glob("libevsparse_ops_torch*.so"))
    return sorted(found, key=lambda v: tuple(int(n) for n in v.split(".")))


def path() -> Path:
    candidate = _DIR / f"libevsparse_ops_torch{torch_minor()}.so"
    if candidate.is_file():
        return candidate
    have = ", ".join(available()) or "none"
    raise ImportError(
        f"evsparse: no operator library for torch {torch.__version__} (this install has them for torch {have}). "
        "Install a torch version this evsparse supports, or build evsparse from source against your torch: "
        "pip install --no-build-isolation --no-binary evsparse evsparse")


def load() -> None:
    torch.ops.load_library(str(path()))
