"""The ops' contract on the Python side, stated once: the per-layer argument layout of the fused
recurrent ops, and what a valid packed weight (CSC structure) is and when it is checked. The C++ side
states the same in ``csrc/ops/checks.h``; tests/test_contract.py
compares the two.

The CPU kernels range-check every row index they read (corrupted data is refused there, never read
or written out of bounds), but a structure can be wrong yet in range: unsorted rows, a column pointer
that was zeroed. These checks are O(in + nnz), so they run when packed data enters the library
(``PackedWeight(...)``, ``torch.load``, ``load_state_dict``) and again whenever an index tensor is
replaced or edited in place (its ``_version`` moves), not on every call.
"""

from __future__ import annotations

import operator

import torch

__all__ = ["EGRU_LAYER_ARGS", "LINEAR_RNN_LAYER_ARGS", "layer_buffer", "check_shape", "check_csc", "check_csc_meta",
           "check_finite", "IndexVersions"]

INT16_MAX_OUT = 32767

# The weight arguments of one layer of the fused recurrent ops, in their schema order (after the
# input and the state): egru_step / egru_sequence take them as arguments, egru_stack_step as one
# Tensor?[] list holding them for every layer in turn (likewise linear_rnn_*; the residual flag is
# a separate argument). A packed weight is three of them: values, col_ptr, row_idx (None, None for
# the dense layout).
EGRU_LAYER_ARGS = ("w_ih", "w_ih_col_ptr", "w_ih_row_idx", "w_hh", "w_hh_col_ptr", "w_hh_row_idx", "b_ih", "b_hh",
                   "thr")
LINEAR_RNN_LAYER_ARGS = ("w_in", "w_in_col_ptr", "w_in_row_idx", "b_in", "a_re", "a_im", "w_out", "w_out_col_ptr",
                         "w_out_row_idx", "b_out")
_WEIGHTS = ("w_ih", "w_hh", "w_in", "w_out")


def layer_buffer(arg: str, k: int) -> str:
    """The inference module's buffer holding argument ``arg`` of layer ``k``: ``w_ih`` ->
    ``w_ih_l{k}_values``, ``w_ih_col_ptr`` -> ``w_ih_l{k}_col_ptr``, ``b_ih`` -> ``b_ih_l{k}``."""
    if arg in _WEIGHTS:
        return f"{arg}_l{k}_values"
    for part in ("_col_ptr", "_row_idx"):
        if arg.endswith(part):
            return f"{arg[:-len(part)]}_l{k}{part}"
    return f"{arg}_l{k}"


def _fail(who: str, msg: str) -> None:
    raise ValueError(f"{who}: {msg}")


def check_shape(shape, who: str) -> tuple[int, int]:
    """``(out_features, in_features)`` as two non-negative Python ints; floats and bools are refused
    (a float shape would otherwise be truncated)."""
    if not isinstance(shape, (tuple, list, torch.Size)) or len(shape) != 2:
        _fail(who, f"shape must be (out_features, in_features), got {shape!r}")
    dims = []
    for s in shape:
        if isinstance(s, bool):
            _fail(who, f"shape must hold integers, got {shape!r}")
        try:
            dims.append(operator.index(s))
        except TypeError:
            _fail(who, f"shape must hold integers, got {shape!r}")
    if any(d < 0 for d in dims):
        _fail(who, f"shape must be non-negative, got {tuple(dims)}")
    return dims[0], dims[1]


def _readable(t: torch.Tensor) -> bool:
    # Meta tensors (shape-only tracing) have no data to check.
    return t.device.type != "meta"


def check_finite(values: torch.Tensor, who: str) -> None:
    """Stored weights must be finite: the kernels skip inactive inputs, so a NaN/Inf weight would not
    propagate as it does in ``F.linear`` on the dense matrix."""
    if _readable(values) and values.numel() and not bool(torch.isfinite(values.detach()).all()):
        _fail(who, "values contain NaN or Inf (non-finite weights would not propagate as in F.linear)")


def check_csc_meta(col_ptr, row_idx, out: int, inp: int, nnz: int, device: torch.device, who: str) -> None:
    """What can be checked of a CSC structure without reading it (also under tracing, on fake or
    meta tensors): tensor types, devices, dtypes, ranks and lengths. Raises ValueError naming the
    tensor."""
    for name, t in (("col_ptr", col_ptr), ("row_idx", row_idx)):
        if not isinstance(t, torch.Tensor):
            _fail(who, f"{name} must be a tensor, got {type(t).__name__}")
        if t.device != device:
            _fail(who, f"{name} is on {t.device} but values are on {device}")
        if t.layout != torch.strided or t.dim() != 1 or not t.is_contiguous():
            _fail(who, f"{name} must be a contiguous 1-D strided tensor, got shape {list(t.shape)}")
    if col_ptr.dtype != torch.int64:
        _fail(who, f"col_ptr must be int64, got {col_ptr.dtype}")
    if row_idx.dtype not in (torch.int16, torch.int32):
        _fail(who, f"row_idx must be int16 or int32, got {row_idx.dtype}")
    if row_idx.dtype == torch.int16 and out > INT16_MAX_OUT:
        _fail(who, f"int16 row_idx cannot address out_features={out} (> {INT16_MAX_OUT}); use int32")
    if out >= 2**31:
        _fail(who, f"out_features must be < 2^31, got {out}")
    if row_idx.numel() != nnz:
        _fail(who, f"values must be 1-D with one entry per row index ({row_idx.numel()}), got {nnz} values")
    if col_ptr.numel() != inp + 1:
        _fail(who, f"col_ptr must have in_features + 1 = {inp + 1} entries, got {col_ptr.numel()}")


def check_csc(col_ptr, row_idx, out: int, inp: int, nnz: int, device: torch.device, who: str) -> None:
    """A CSC structure for ``W [out, inp]`` with ``nnz`` stored values: int64 ``col_ptr`` [inp + 1] from
    0 to nnz, never decreasing; int16 (out <= 32767) or int32 ``row_idx`` [nnz], each in [0, out) and
    strictly increasing within its column. Raises ValueError naming the tensor. (The CPU ops check
    the same in C++: ``csrc/ops/csc_validation.cpp``.)"""
    check_csc_meta(col_ptr, row_idx, out, inp, nnz, device, who)
    if not _readable(col_ptr):
        return
    cp = col_ptr.cpu()
    if int(cp[0]) != 0 or int(cp[-1]) != nnz:
        _fail(who, f"col_ptr must start at 0 and end at nnz={nnz}, got {int(cp[0])}..{int(cp[-1])}")
    counts = cp[1:] - cp[:-1]
    if bool((counts < 0).any()):
        _fail(who, f"col_ptr is not monotone (decreases at column {int(torch.nonzero(counts < 0)[0])})")
    if nnz == 0:
        return
    rows = row_idx.cpu().to(torch.int64)
    if bool((rows < 0).any()) or bool((rows >= out).any()):
        _fail(who, f"row_idx out of range [0, {out}): min {int(rows.min())}, max {int(rows.max())}")
    # Within a column, indices must strictly increase; a new column may start anywhere.
    starts = torch.zeros(nnz, dtype=torch.bool)
    starts[cp[:-1][counts > 0]] = True
    ok = (rows[1:] > rows[:-1]) | starts[1:]
    if not bool(ok.all()):
        pos = int(torch.nonzero(~ok)[0]) + 1
        col = int(torch.searchsorted(cp, torch.tensor([pos]), right=True)[0]) - 1
        _fail(who, f"row_idx is not strictly increasing within column {col} (position {pos})")


class IndexVersions:
    """Which index tensors were last validated, by identity and ``_version``: ``unchanged()`` is True
    while none of them was edited in place. Holds references to the checked tensors, so an identity
    can never be taken over by a new tensor. The CPU ops keep the same record in C++ for every
    structure they are given (``csrc/ops/csc_validation.cpp``); this one serves the other devices.
    Inference tensors keep no version counter and tensors mapped with ``mmap=True`` change without
    one: the kernels' own range checks are what protects memory then."""

    __slots__ = ("_tensors", "_tracked", "_versions")

    def __init__(self) -> None:
        self._tensors: tuple = ()
        self._tracked: tuple = ()
        self._versions: tuple = ()

    def current(self, tensors: tuple) -> bool:
        """True if ``tensors`` are the recorded tensor objects and none was edited since."""
        old = self._tensors
        if len(old) != len(tensors) or any(a is not b for a, b in zip(old, tensors)):
            return False
        return self.unchanged()

    def unchanged(self) -> bool:
        return self._versions == tuple([t._version for t in self._tracked])

    def record(self, tensors: tuple) -> None:
        self._tensors = tuple(tensors)
        self._tracked = tuple(t for t in tensors if t is not None and not t.is_inference())
        self._versions = tuple([t._version for t in self._tracked])
