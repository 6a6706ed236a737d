"""Input-major packed weights: the storage the gather-by-active-neuron kernels read."""

from __future__ import annotations

from typing import Optional

import torch

from ._validation import INT16_MAX_OUT, IndexVersions, check_csc, check_finite, check_shape

__all__ = ["PackedWeight", "pack", "LAYOUTS", "AUTO_SPARSE_MAX_DENSITY"]

LAYOUTS = ("dense", "sparse", "auto", "timed")
_VALUE_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)

# "auto" picks the sparse layout at or below this weight density (measured crossover with
# evsparse-bench, see README "Choosing a layout"). The sparse kernel reads an index
# and a value per nonzero and scatters them; the dense-gather kernel streams whole rows with SIMD
# FMAs. See README ("Choosing a layout") for the measurement behind the number.
AUTO_SPARSE_MAX_DENSITY = 0.2


def _fail(msg: str) -> None:
    raise ValueError(f"evsparse.PackedWeight: {msg}")


class PackedWeight:
    """A weight matrix ``W`` of shape ``[out, in]`` stored input-major.

    Layouts
      * ``"dense"``: ``values`` is ``W.T`` (``[in, out]``, contiguous); the kernel reads the rows of
        the inputs that are nonzero.
      * ``"sparse"``: CSC of ``W``: ``col_ptr`` (int64, ``in + 1``), ``row_idx`` (int16 when
        ``out <= 32767``, else int32; sorted within each column) and ``values`` (``[nnz]``); the kernel
        reads only the nonzeros of the active inputs' columns.

    ``values`` is a leaf tensor: ``pw.requires_grad_()`` makes the packed weight trainable through
    :func:`evsparse.sparse_linear`. The structure is validated here (and by ``torch.load``), and again
    before the next product whenever ``col_ptr`` or ``row_idx`` is replaced or edited in place; values
    must be finite. The kernels range-check every index they read as well, so no data, however
    corrupted, makes them read or write out of bounds.
    """

    def __init__(
        self,
        layout: str,
        shape: tuple[int, int],
        values: torch.Tensor,
        col_ptr: Optional[torch.Tensor] = None,
        row_idx: Optional[torch.Tensor] = None,
    ):
        self.layout = layout
        self._shape = check_shape(shape, "evsparse.PackedWeight")
        self.values = values
        self.col_ptr = col_ptr
        self.row_idx = row_idx
        self._checked = IndexVersions()
        self._validate()

    @classmethod
    def _trusted(cls, layout, shape, values, col_ptr=None, row_idx=None) -> "PackedWeight":
        """Builds without validation, from parts that come from an already validated pack (their
        current versions count as checked)."""
        pw = cls.__new__(cls)
        pw.layout, pw._shape, pw.values, pw.col_ptr, pw.row_idx = layout, tuple(shape), values, col_ptr, row_idx
        pw._checked = IndexVersions()
        if not torch.compiler.is_compiling():  # traced code never checks (sparse_linear skips it)
            pw._checked.record((col_ptr, row_idx))
        return pw

    # ---- validation (at construction and load, and when the indices change) --------------------
    def _validate(self) -> None:
        who = "evsparse.PackedWeight"
        if self.layout not in ("dense", "sparse"):
            _fail(f"layout must be 'dense' or 'sparse', got {self.layout!r}")
        out, inp = self._shape
        v = self.values
        if not isinstance(v, torch.Tensor):
            _fail(f"values must be a tensor, got {type(v).__name__}")
        if v.dtype not in _VALUE_DTYPES:
            _fail(f"values dtype must be one of {_VALUE_DTYPES}, got {v.dtype}")
        if v.layout != torch.strided or not v.is_contiguous():
            _fail("values must be a contiguous strided tensor")
        if self.layout == "dense":
            if self.col_ptr is not None or self.row_idx is not None:
                _fail("the dense layout takes no col_ptr/row_idx")
            if tuple(v.shape) != (inp, out):
                _fail(f"dense values must have shape [in, out] = [{inp}, {out}], got {list(v.shape)}")
        else:
            if self.col_ptr is None or self.row_idx is None:
                _fail("the sparse layout needs col_ptr and row_idx")
            if v.dim() != 1:
                _fail(f"sparse values must be 1-D [nnz], got shape {list(v.shape)}")
            check_csc(self.col_ptr, self.row_idx, out, inp, v.numel(), v.device, who)
        check_finite(v, who)
        self._checked.record((self.col_ptr, self.row_idx))

    def _ensure_checked(self) -> None:
        """Re-validates when an index tensor was replaced or edited in place since the last check."""
        if not self._checked.current((self.col_ptr, self.row_idx)):
            self._validate()

    # ---- properties ---------------------------------------------------------------------------
    @property
    def shape(self) -> torch.Size:
        return torch.Size(self._shape)

    @property
    def out_features(self) -> int:
        return self._shape[0]

    @property
    def in_features(self) -> int:
        return self._shape[1]

    @property
    def dtype(self) -> torch.dtype:
        return self.values.dtype

    @property
    def device(self) -> torch.device:
        return self.values.device

    @property
    def index_dtype(self) -> Optional[torch.dtype]:
        return None if self.row_idx is None else self.row_idx.dtype

    @property
    def nnz(self) -> int:
        """Number of nonzero weights (explicitly stored zeros, e.g. after training, not counted)."""
        return int(torch.count_nonzero(self.values.detach()))

    @property
    def density(self) -> float:
        total = self._shape[0] * self._shape[1]
        return self.nnz / total if total else 0.0

    @property
    def requires_grad(self) -> bool:
        return self.values.requires_grad

    def requires_grad_(self, requires_grad: bool = True) -> "PackedWeight":
        self.values.requires_grad_(requires_grad)
        return self

    # ---- conversions --------------------------------------------------------------------------
    def to_dense(self) -> torch.Tensor:
        """The ``[out, in]`` weight (differentiable with respect to ``values``)."""
        out, inp = self._shape
        if self.layout == "dense":
            return self.values.t().contiguous()
        counts = (self.col_ptr[1:] - self.col_ptr[:-1]).to(self.values.device)
        cols = torch.repeat_interleave(torch.arange(inp, device=self.values.device), counts)
        dense = self.values.new_zeros((out, inp))
        return dense.index_put((self.row_idx.to(torch.int64), cols), self.values)

    def to(self, device=None, dtype: Optional[torch.dtype] = None) -> "PackedWeight":
        """A copy on ``device`` and/or with values of ``dtype`` (indices keep their dtype)."""
        if dtype is not None and dtype not in _VALUE_DTYPES:
            _fail(f"dtype must be one of {_VALUE_DTYPES}, got {dtype}")
        values = self.values.to(device=device, dtype=dtype)
        move = (lambda t: None if t is None else t.to(device=device)) if device is not None else (lambda t: t)
        return PackedWeight._trusted(self.layout, self._shape, values, move(self.col_ptr), move(self.row_idx))

    def __repr__(self) -> str:
        extra = f", index_dtype={self.index_dtype}" if self.layout == "sparse" else ""
        counts = "" if self.device.type == "meta" else f"nnz={self.nnz}, density={self.density:.4f}, "
        return (f"PackedWeight(layout={self.layout!r}, shape={tuple(self._shape)}, {counts}dtype={self.dtype}, "
                f"device={self.device}{extra})")

    # Pickle as plain tensors and a tuple so torch.load(weights_only=True) can rebuild it (the class
    # is registered as a safe global in evsparse/__init__.py).
    def __getstate__(self):
        return {
            "layout": self.layout,
            "shape": tuple(self._shape),
            "values": self.values,
            "col_ptr": self.col_ptr,
            "row_idx": self.row_idx,
        }

    def __setstate__(self, state):
        if not isinstance(state, dict):
            _fail(f"cannot load a PackedWeight from {type(state).__name__}")
        self.layout = state.get("layout")
        self._shape = check_shape(state.get("shape"), "evsparse.PackedWeight")
        self.values = state.get("values")
        self.col_ptr = state.get("col_ptr")
        self.row_idx = state.get("row_idx")
        self._checked = IndexVersions()
        self._validate()


def pack(weight: torch.Tensor, mask: Optional[torch.Tensor] = None, layout: str = "auto",
         example_input: Optional[torch.Tensor] = None) -> PackedWeight:
    """Packs ``weight`` (``[out, in]``, as in ``nn.Linear``) for the gather kernels.

    ``mask`` (same shape, bool or 0/1) zeroes pruned weights: the result equals ``weight * mask``.
    ``layout``: ``"dense"``, ``"sparse"``, ``"auto"`` (sparse when the density of ``weight * mask``
    is at most :data:`AUTO_SPARSE_MAX_DENSITY`) or ``"timed"``: both layouts are packed and
    ``sparse_linear(example_input, ...)`` is timed with each on this machine; the faster is kept
    (see :mod:`evsparse.layout_timing`). ``example_input`` is needed by, and only allowed with,
    ``"timed"``: an input like those the weight will see (``[in]`` or ``[B, in]``, at its usual
    activity). Non-finite weights are rejected. The packed values are a detached copy; call
    ``.requires_grad_()`` on the result to train them.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"evsparse.pack: layout must be one of {LAYOUTS}, got {layout!r}")
    if (layout == "timed") != (example_input is not None):
        raise ValueError("evsparse.pack: layout='timed' needs example_input (an input to time both layouts on), "
                         "and example_input is used only with layout='timed'")
    w = masked_weight(weight, mask, "evsparse.pack")
    if layout == "timed":
        from .functional import sparse_linear
        from .layout_timing import choose_layouts

        (pw,), _ = choose_layouts([w], lambda p: sparse_linear(example_input, p))
        return pw
    return _pack_masked(w, _auto_layout(w) if layout == "auto" else layout)


def _auto_layout(w: torch.Tensor) -> str:
    """``layout="auto"``'s choice for a masked weight: sparse at or below the density threshold."""
    total = w.numel()
    density = int(torch.count_nonzero(w)) / total if total else 1.0
    return "sparse" if density <= AUTO_SPARSE_MAX_DENSITY else "dense"


def masked_weight(weight: torch.Tensor, mask: Optional[torch.Tensor], who: str) -> torch.Tensor:
    """``weight * mask`` detached, after checking both (2-D, a value dtype, finite): what gets packed."""
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise ValueError(f"{who}: weight must be a 2-D [out, in] tensor, got {type(weight).__name__} "
                         f"with shape {getattr(weight, 'shape', None)}")
    if weight.dtype not in _VALUE_DTYPES:
        raise ValueError(f"{who}: weight dtype must be one of {_VALUE_DTYPES}, got {weight.dtype}")
    w = weight.detach()
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != tuple(w.shape):
            raise ValueError(f"{who}: mask must be a tensor of shape {list(w.shape)}, "
                             f"got {getattr(mask, 'shape', None)}")
        if mask.device != w.device:
            raise ValueError(f"{who}: mask is on {mask.device} but weight is on {w.device}")
        w = torch.where(mask.to(torch.bool), w, torch.zeros((), dtype=w.dtype, device=w.device))
    if not bool(torch.isfinite(w).all()):
        raise ValueError(f"{who}: weight contains NaN or Inf; the kernels skip inactive inputs, so "
                         "non-finite weights would not propagate as in F.linear")
    return w


def _pack_masked(w: torch.Tensor, layout: str) -> PackedWeight:
    """A checked, masked ``[out, in]`` weight in the "dense" or "sparse" layout."""
    out, inp = w.shape
    wt = w.t().contiguous()  # [in, out]: row j = input j's outgoing weights
    if layout == "dense":
        return PackedWeight._trusted("dense", (out, inp), wt)
    nz = torch.nonzero(wt)  # row-major over [in, out]: sorted by input, then by output = CSC order
    counts = torch.bincount(nz[:, 0], minlength=inp)
    col_ptr = torch.zeros(inp + 1, dtype=torch.int64, device=w.device)
    torch.cumsum(counts, 0, out=col_ptr[1:])
    index_dtype = torch.int16 if out <= INT16_MAX_OUT else torch.int32
    row_idx = nz[:, 1].to(index_dtype).contiguous()
    values = wt[nz[:, 0], nz[:, 1]].contiguous()
    return PackedWeight._trusted("sparse", (out, inp), values, col_ptr, row_idx)
