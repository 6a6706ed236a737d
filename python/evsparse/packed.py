"""Input-major packed weights: the storage the gather-by-active-neuron kernels read (how a layout is
chosen and a weight packed lives in :mod:`evsparse.layout`)."""

from __future__ import annotations

from typing import Optional

import torch

from ._contract import INT16_MAX_OUT, IndexVersions, check_csc, check_finite, check_shape

__all__ = ["PackedWeight"]

VALUE_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)



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
        if v.dtype not in VALUE_DTYPES:
            _fail(f"values dtype must be one of {VALUE_DTYPES}, got {v.dtype}")
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

    @classmethod
    def from_masked(cls, w: torch.Tensor, layout: str) -> "PackedWeight":
        """Packs an already checked and masked ``[out, in]`` weight (what :func:`evsparse.pack` does
        after checking and masking) in the ``"dense"`` or ``"sparse"`` layout."""
        if layout not in ("dense", "sparse"):
            _fail(f"layout must be 'dense' or 'sparse', got {layout!r}")
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
        if dtype is not None and dtype not in VALUE_DTYPES:
            _fail(f"dtype must be one of {VALUE_DTYPES}, got {dtype}")
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
