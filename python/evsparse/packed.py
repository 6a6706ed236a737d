"""Input-major packed weights: the storage the gather-by-active-neuron kernels read (how a layout is
chosen and a weight packed lives in :mod:`evsparse.layout`)."""

from __future__ import annotations

from typing import Optional

import torch

from ._contract import INT16_MAX_OUT, IndexVersions, check_csc, check_finite, check_shape

__all__ = ["PackedWeight"]

VALUE_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
# What packed values may be: the float dtypes, or int8 quantised per input column (with ``scale``).
PACKED_DTYPES = VALUE_DTYPES + (torch.int8,)
INT8_MAX = 127  # symmetric quantisation: q in [-127, 127], W = scale[j] * q



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

    int8 values (``pack(..., weight_dtype=torch.int8)``) are quantised symmetrically per input
    column: ``W[o, j] = scale[j] * q[o, j]`` with ``scale`` float32 ``[in]`` and ``|q| <= 127``. The
    kernels fold ``scale[j]`` into input ``j``'s value, so the products read one byte per weight.

    ``values`` is a leaf tensor: ``pw.requires_grad_()`` makes the packed weight trainable through
    :func:`evsparse.sparse_linear` (for int8 weights, only ``scale`` can take gradients). The structure is validated here (and by ``torch.load``), and again
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
        scale: Optional[torch.Tensor] = None,
    ):
        self.layout = layout
        self._shape = check_shape(shape, "evsparse.PackedWeight")
        self.values = values
        self.col_ptr = col_ptr
        self.row_idx = row_idx
        self.scale = scale
        self._checked = IndexVersions()
        self._validate()

    @classmethod
    def _trusted(cls, layout, shape, values, col_ptr=None, row_idx=None, scale=None) -> "PackedWeight":
        """Builds without validation, from parts that come from an already validated pack (their
        current versions count as checked)."""
        pw = cls.__new__(cls)
        pw.layout, pw._shape, pw.values, pw.col_ptr, pw.row_idx = layout, tuple(shape), values, col_ptr, row_idx
        pw.scale = scale
        pw._checked = IndexVersions()
        # Consulted only off the CPU (the CPU ops validate edited structures themselves) and never in
        # traced code: record nothing per call on the CPU path (SparseLinear builds one per forward).
        if not values.is_cpu and not torch.compiler.is_compiling():
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
        if v.dtype not in PACKED_DTYPES:
            _fail(f"values dtype must be one of {PACKED_DTYPES}, got {v.dtype}")
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
        self._check_values()
        self._checked.record((self.col_ptr, self.row_idx))

    def _check_values(self) -> None:
        """The values' part of the validation (and the scale's, for int8), without the structure's:
        also what :func:`evsparse.plan.validate` runs on a plan's weights, whose structure the C++
        plan check has validated."""
        who, v, inp = "evsparse.PackedWeight", self.values, self._shape[1]
        if v.dtype == torch.int8:
            sc = self.scale
            if not isinstance(sc, torch.Tensor) or sc.dtype != torch.float32 or tuple(sc.shape) != (inp,):
                _fail(f"int8 values need a float32 scale of shape [in] = [{inp}], got "
                      f"{getattr(sc, 'dtype', type(sc).__name__)} {list(getattr(sc, 'shape', []))}")
            if sc.device != v.device or not sc.is_contiguous():
                _fail(f"scale must be contiguous and on the values' device ({v.device}), got {sc.device}")
            check_finite(sc, who)
            if bool((v == -128).any()):
                _fail("int8 values are quantised symmetrically to [-127, 127]; found -128")
        else:
            if self.scale is not None:
                _fail(f"scale is only for int8 values; these are {v.dtype}")
            check_finite(v, who)

    def _ensure_checked(self) -> None:
        """Re-validates when an index tensor was replaced or edited in place since the last check."""
        if not self._checked.current((self.col_ptr, self.row_idx)):
            self._validate()

    @classmethod
    def from_masked(cls, w: torch.Tensor, layout: str, weight_dtype: Optional[torch.dtype] = None) -> "PackedWeight":
        """Packs an already checked and masked ``[out, in]`` weight (what :func:`evsparse.pack` does
        after checking and masking) in the ``"dense"`` or ``"sparse"`` layout, with values of
        ``weight_dtype`` (default: ``w``'s; ``torch.int8`` quantises, see the class docstring)."""
        if layout not in ("dense", "sparse"):
            _fail(f"layout must be 'dense' or 'sparse', got {layout!r}")
        if weight_dtype is not None and weight_dtype not in PACKED_DTYPES:
            _fail(f"weight_dtype must be one of {PACKED_DTYPES}, got {weight_dtype}")
        if weight_dtype == torch.int8:
            return cls.from_masked(w, layout).quantized()
        if weight_dtype is not None:
            w = w.to(weight_dtype)
        out, inp = w.shape
        wt = w.t().contiguous()  # [in, out]: row j = input j's outgoing weights
        if layout == "dense":
            return cls._trusted("dense", (out, inp), wt)
        nz = torch.nonzero(wt)  # row-major over [in, out]: sorted by input, then by output = CSC order
        counts = torch.bincount(nz[:, 0], minlength=inp)
        col_ptr = torch.zeros(inp + 1, dtype=torch.int64, device=w.device)
        torch.cumsum(counts, 0, out=col_ptr[1:])
        index_dtype = torch.int16 if out <= INT16_MAX_OUT else torch.int32
        row_idx = nz[:, 1].to(index_dtype).contiguous()
        values = wt[nz[:, 0], nz[:, 1]].contiguous()
        return cls._trusted("sparse", (out, inp), values, col_ptr, row_idx)

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
        return (self.scale if self.values.dtype == torch.int8 else self.values).requires_grad

    def requires_grad_(self, requires_grad: bool = True) -> "PackedWeight":
        # int8 values are integers (no gradient): their float part, the scale, is what trains.
        (self.scale if self.values.dtype == torch.int8 else self.values).requires_grad_(requires_grad)
        return self

    # ---- conversions --------------------------------------------------------------------------
    def _columns(self) -> torch.Tensor:
        """The input (column) index of every stored value of the sparse layout."""
        counts = (self.col_ptr[1:] - self.col_ptr[:-1]).to(self.values.device)
        return torch.repeat_interleave(torch.arange(self._shape[1], device=self.values.device), counts,
                                       output_size=self.values.numel())

    def _float_values(self) -> torch.Tensor:
        """``values``, dequantised to float32 for int8 (differentiable with respect to ``scale``)."""
        if self.values.dtype != torch.int8:
            return self.values
        col_scale = self.scale[:, None] if self.layout == "dense" else self.scale[self._columns()]
        return self.values.to(torch.float32) * col_scale

    def to_dense(self) -> torch.Tensor:
        """The ``[out, in]`` weight (differentiable with respect to ``values``; int8 weights come back
        dequantised, float32)."""
        out, inp = self._shape
        values = self._float_values()
        if self.layout == "dense":
            return values.t().contiguous()
        dense = values.new_zeros((out, inp))
        return dense.index_put((self.row_idx.to(torch.int64), self._columns()), values)

    def quantized(self) -> "PackedWeight":
        """This weight with int8 values in the same layout and structure: per input column ``j``,
        ``scale[j] = max_o |W[o, j]| / 127`` (1 for an all-zero column) and ``q = round(W / scale)``,
        so every weight is off by at most ``scale[j] / 2``."""
        if self.values.dtype == torch.int8:
            return self
        v = self.values.detach().to(torch.float32)
        inp = self._shape[1]
        cols = None if self.layout == "dense" else self._columns()
        if cols is None:
            amax = v.abs().amax(dim=1) if v.numel() else v.new_zeros(inp)
        else:
            amax = v.new_zeros(inp).scatter_reduce(0, cols, v.abs(), reduce="amax", include_self=True)
        scale = torch.where(amax > 0, amax / INT8_MAX, torch.ones_like(amax)).contiguous()
        per_value = scale[:, None] if cols is None else scale[cols]
        q = torch.round(v / per_value).clamp_(-INT8_MAX, INT8_MAX).to(torch.int8).contiguous()
        return PackedWeight._trusted(self.layout, self._shape, q, self.col_ptr, self.row_idx, scale)

    def to(self, device=None, dtype: Optional[torch.dtype] = None) -> "PackedWeight":
        """A copy on ``device`` and/or with values of ``dtype`` (indices keep their dtype).
        ``dtype=torch.int8`` quantises (:meth:`quantized`); a float ``dtype`` dequantises int8 values."""
        if dtype is not None and dtype not in PACKED_DTYPES:
            _fail(f"dtype must be one of {PACKED_DTYPES}, got {dtype}")
        move = (lambda t: None if t is None else t.to(device=device)) if device is not None else (lambda t: t)
        if dtype == torch.int8:
            q = self.quantized()
            return PackedWeight._trusted(self.layout, self._shape, move(q.values), move(q.col_ptr),
                                         move(q.row_idx), move(q.scale))
        if self.values.dtype == torch.int8 and dtype is not None:
            values = self._float_values().detach().to(device=device, dtype=dtype)
            return PackedWeight._trusted(self.layout, self._shape, values, move(self.col_ptr), move(self.row_idx))
        values = self.values.to(device=device, dtype=dtype)
        return PackedWeight._trusted(self.layout, self._shape, values, move(self.col_ptr), move(self.row_idx),
                                     move(self.scale))

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
            "scale": self.scale,
        }

    def __setstate__(self, state):
        if not isinstance(state, dict):
            _fail(f"cannot load a PackedWeight from {type(state).__name__}")
        self.layout = state.get("layout")
        self._shape = check_shape(state.get("shape"), "evsparse.PackedWeight")
        self.values = state.get("values")
        self.col_ptr = state.get("col_ptr")
        self.row_idx = state.get("row_idx")
        self.scale = state.get("scale")  # absent in files from before int8 weights
        self._checked = IndexVersions()
        self._validate()


_MOVED = {"pack", "masked_weight", "LAYOUTS", "AUTO_SPARSE_MAX_DENSITY", "_auto_layout"}


def __getattr__(name: str):
    # Packing and layout choice moved to evsparse.layout (so that storage does not know how layouts
    # are chosen, and no import cycle is needed); the old names stay importable here for one release.
    if name in _MOVED:
        import warnings

        from . import layout

        warnings.warn(f"evsparse.packed.{name} is deprecated; use evsparse.layout.{name.lstrip('_')} "
                      "(or evsparse.pack)", DeprecationWarning, stacklevel=2)
        return getattr(layout, name.lstrip("_"))
    if name == "_pack_masked":
        return PackedWeight.from_masked
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
