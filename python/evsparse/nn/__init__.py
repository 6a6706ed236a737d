"""Modules built on the evsparse kernels."""

from .egru import EGRU, SparseEGRU
from .linear import SparseLinear
from .linear_rnn import PackedLinearRNN, SparseLinearRNN

__all__ = ["EGRU", "SparseEGRU", "SparseLinear", "SparseLinearRNN", "PackedLinearRNN"]
