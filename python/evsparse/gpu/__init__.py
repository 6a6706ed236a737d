"""Triton GPU kernels for the evsparse ops, registered on the CUDA dispatch key.

``import evsparse`` calls :func:`register` when CUDA is available and Triton imports; then
``evsparse.sparse_linear``, ``torch.ops.evsparse.*`` and ``EGRU.sparsify()`` run on CUDA tensors with
no code change. Without Triton or without a GPU nothing here is imported (Triton is the optional
extra ``evsparse[gpu]``).
"""

from __future__ import annotations

_registered = False


def available() -> bool:
    """Whether Triton can be imported."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def register() -> bool:
    """Registers the CUDA implementations of every ``torch.ops.evsparse`` op (once). Returns whether
    they are registered."""
    global _registered
    if not _registered and available():
        from . import cuda_ops

        cuda_ops.register()
        _registered = True
    return _registered
