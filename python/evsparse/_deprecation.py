"""Old names kept for one release after a rename: they work, and say what replaced them."""

from __future__ import annotations

import contextlib
import warnings

LINEAR_RNN_MESSAGE = ("SparseLinearRNN (and its PackedLinearRNN) is deprecated and will be removed in a later release: "
                      "evsparse's sparse linear RNN family is now evsparse.nn.S5Stack, the published model (S5 blocks, "
                      "BatchNorm folded, one plan per model); see docs/guide/s5.md, 'Coming from SparseLinearRNN'")


def moved(old: str, new: str, stacklevel: int = 3) -> None:
    warnings.warn(f"{old} is deprecated and will be removed in the next release; use {new}", DeprecationWarning,
                  stacklevel=stacklevel)


def alias_classmethod(new_name: str, old_qualname: str, new_qualname: str) -> classmethod:
    """A classmethod that warns and calls ``cls.<new_name>``."""

    def old(cls, *args, **kwargs):
        moved(old_qualname, new_qualname)
        return getattr(cls, new_name)(*args, **kwargs)

    old.__doc__ = f"Deprecated alias of :meth:`{new_qualname}`."
    return classmethod(old)


def linear_rnn_deprecated(stacklevel: int = 3) -> None:
    warnings.warn(LINEAR_RNN_MESSAGE, DeprecationWarning, stacklevel=stacklevel)


@contextlib.contextmanager
def measuring_deprecated():
    """For the benchmark harness, which still measures the deprecated layers beside their successors."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="SparseLinearRNN .* is deprecated", category=DeprecationWarning)
        yield
