"""Modules built on the evsparse kernels."""

from .egru import EGRU, PackedEGRU
from .linear import SparseLinear
from .linear_rnn import PackedLinearRNN, SparseLinearRNN
from .s5 import S5, PackedS5Stack, S5Block, S5Stack
from ._recurrent import Stream

__all__ = ["EGRU", "PackedEGRU", "SparseLinear", "SparseLinearRNN", "PackedLinearRNN", "S5", "S5Block", "S5Stack",
           "PackedS5Stack", "Stream"]


def __getattr__(name: str):
    if name == "SparseEGRU":  # deprecated alias of PackedEGRU (see egru.py)
        from . import egru

        return egru.__getattr__(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
