"""Modules built on the evsparse kernels."""

from .egru import EGRU, SparseEGRU
from .linear import SparseLinear

__all__ = ["EGRU", "SparseEGRU", "SparseLinear"]
