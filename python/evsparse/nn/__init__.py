"""Modules built on the evsparse kernels."""

from .linear import SparseLinear

__all__ = ["SparseLinear"]
