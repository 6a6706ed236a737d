"""evsparse: activity- and weight-sparse kernels for event-based RNNs at batch size 1.

Loading the package registers the ``torch.ops.evsparse`` operators (C++), their fake kernels and
autograd formulas.
"""

from __future__ import annotations

import json

import torch

from . import _library

_library.load()  # libevsparse_ops_torch<major>.<minor>.so registers torch.ops.evsparse.*

from . import _fakes  # noqa: F401  (fake kernels for torch.compile / torch.export)
from . import nn
from . import macs, prune
from .functional import sparse_linear
from .layout import (AUTO_SPARSE_MAX_DENSITY, AUTO_SPARSE_MAX_DENSITY_BLOCKS, AUTO_SPARSE_MAX_DENSITY_BLOCKS_INT8,
                     AUTO_SPARSE_MAX_DENSITY_INT8, pack)
from .packed import PackedWeight

__version__ = "0.1.0"
__all__ = ["PackedWeight", "pack", "sparse_linear", "nn", "prune", "macs", "build_info", "set_isa", "get_isa",
           "set_bitmask_min_density", "get_bitmask_min_density", "set_block_min_fraction", "get_block_min_fraction",
           "library_path",
           "AUTO_SPARSE_MAX_DENSITY", "AUTO_SPARSE_MAX_DENSITY_INT8", "AUTO_SPARSE_MAX_DENSITY_BLOCKS",
           "AUTO_SPARSE_MAX_DENSITY_BLOCKS_INT8"]

torch.serialization.add_safe_globals([PackedWeight])

if torch.cuda.is_available():  # Triton kernels on the CUDA key; absent Triton, CUDA tensors get a clear error
    from . import gpu

    gpu.register()


def build_info() -> dict:
    """How the extension was built and what this CPU runs: compiler, flags, the instruction sets compiled
    in / supported here / in use, CPU features detected at run time, torch versions and thread count."""
    info = json.loads(torch.ops.evsparse.build_info())
    info["torch_runtime_version"] = torch.__version__
    info["num_threads"] = torch.get_num_threads()
    info["cuda_kernels"] = "triton" if "evsparse.gpu.cuda_ops" in __import__("sys").modules else None
    return info


def set_isa(name: str) -> None:
    """Selects the kernels' instruction set: 'scalar', 'avx2', 'avx512' or 'neon' (must be supported
    here). The default is the best this CPU supports; the EVSPARSE_ISA environment variable sets it
    at import."""
    torch.ops.evsparse.set_isa(name)


def get_isa() -> str:
    """The instruction set the kernels use now (see set_isa)."""
    return torch.ops.evsparse.get_isa()


def set_bitmask_min_density(density: float) -> None:
    """From which weight density the AVX-512 kernels multiply a float32 sparse weight through a bitmask of
    its structure instead of scattering its nonzeros (docs/guide/sparse-linear.md). The default, 17.5%, is
    the crossover measured on an Intel Xeon and an AMD EPYC (Zen 4); the EVSPARSE_BITMASK_MIN_DENSITY
    environment variable sets it at import; 2 turns the bitmask off. Both paths give the same result
    to float rounding; ``benchmarks/ab/bitmask_layout.py`` measures the crossover of a CPU."""
    torch.ops.evsparse.set_bitmask_min_density(float(density))


def get_bitmask_min_density() -> float:
    """The density from which the bitmask path is taken (see set_bitmask_min_density)."""
    return torch.ops.evsparse.get_bitmask_min_density()


def set_block_min_fraction(fraction: float) -> None:
    """A sparse weight whose columns of whole 16x1 blocks (``evsparse.prune``'s ``block=16``) hold at
    least this fraction of its entries is multiplied one vector operation per block (the block path,
    docs/guide/sparse-linear.md); default 0.5. The EVSPARSE_BLOCK_MIN_FRACTION environment variable sets
    it at import; 2 turns the block path off. The block path and the scatter give the same bits."""
    torch.ops.evsparse.set_block_min_fraction(float(fraction))


def get_block_min_fraction() -> float:
    """The blocked fraction from which the block path is taken (see set_block_min_fraction)."""
    return torch.ops.evsparse.get_block_min_fraction()


def library_path() -> str:
    """Path of the operators' shared library for the running torch, ``libevsparse_ops_torch<major>.<minor>.so``
    (libtorch only, no Python): a C++ program loads it (``dlopen``, or links it) to run ``evsparse::``
    ops, e.g. in an AOTInductor package or a model saved from Python."""
    return str(_library.path())
