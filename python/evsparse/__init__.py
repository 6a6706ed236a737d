"""evsparse: activity- and weight-sparse kernels for event-based RNNs at batch size 1.

Loading the package registers the ``torch.ops.evsparse`` operators (C++), their fake kernels and
autograd formulas.
"""

from __future__ import annotations

import torch

from . import _C  # noqa: F401  (loads libevsparse_ops, which registers torch.ops.evsparse.*)
from . import _fakes  # noqa: F401  (fake kernels for torch.compile / torch.export)
from . import nn
from . import macs, prune
from .functional import sparse_linear
from .layout import AUTO_SPARSE_MAX_DENSITY, pack
from .packed import PackedWeight

__version__ = "0.1.0"
__all__ = ["PackedWeight", "pack", "sparse_linear", "nn", "prune", "macs", "build_info", "set_isa", "library_path",
           "AUTO_SPARSE_MAX_DENSITY"]

torch.serialization.add_safe_globals([PackedWeight])

if torch.cuda.is_available():  # Triton kernels on the CUDA key; absent Triton, CUDA tensors get a clear error
    from . import gpu

    gpu.register()


def build_info() -> dict:
    """How the extension was built and what this CPU runs: compiler, flags, the instruction sets compiled
    in / supported here / in use, CPU features detected at run time, torch versions and thread count."""
    info = dict(_C.build_info())
    info["torch_runtime_version"] = torch.__version__
    info["num_threads"] = torch.get_num_threads()
    info["cuda_kernels"] = "triton" if "evsparse.gpu.cuda_ops" in __import__("sys").modules else None
    return info


def set_isa(name: str) -> None:
    """Selects the kernels' instruction set: 'scalar', 'avx2', 'avx512' or 'neon' (must be supported
    here). The default is the best this CPU supports; the EVSPARSE_ISA environment variable sets it
    at import."""
    _C.set_isa(name)


def library_path() -> str:
    """Path of ``libevsparse_ops``, the operators' shared library (libtorch only, no Python): a C++
    program loads it (``dlopen``, or links it) to run ``evsparse::`` ops, e.g. in an AOTInductor
    package or a model saved from Python."""
    from pathlib import Path

    found = sorted(Path(_C.__file__).parent.glob("libevsparse_ops.*"))  # beside _C in any install mode
    if not found:
        raise RuntimeError("evsparse: libevsparse_ops is missing next to the package; reinstall evsparse")
    return str(found[0])
