"""Host-side launchers of the Triton product kernels: same arguments and results as the CPU ops
(``torch.ops.evsparse.gather_linear`` / ``sparse_gather_linear``), on whatever device the tensors are
(CUDA, or CPU under ``TRITON_INTERPRET=1``). Accumulation is fp32; the result has ``x``'s dtype.

The ``*_into`` functions are the building blocks of the fused recurrent ops (recurrent.py): they add
into a caller's fp32 buffer and can take active-input lists compacted earlier (the EGRU's gate kernel
emits them for the next step).

Determinism: under ``torch.use_deterministic_algorithms(True)`` the products compact their active
inputs in order (one program per row) and reduce split-K partials in a fixed order instead of with
atomics: dense-gather two-pass, sparse-gather into per-split partial rows. Results are then
bitwise reproducible run to run, at some cost in speed (evsparse-gpu-bench times it). Asking for
``reduction="atomic"`` in that mode raises, as PyTorch's own nondeterministic ops do."""

from __future__ import annotations

import functools
import os
import warnings
from typing import NamedTuple, Optional

import torch
import triton

from .._contract import check_csc_meta
from . import kernels, tuning
from .tuning import TunedKernel, product_configs

INTERPRET = tuning.INTERPRET
COMPACT_BLOCK = 256
# Split-K reduction of the dense-gather: "atomic" (fp32 atomics into the output) or "two_pass" (a
# partial buffer and a reduction kernel). Atomics are the default until a GPU measurement
# (evsparse-gpu-bench times both) says otherwise; EVSPARSE_GPU_REDUCTION overrides.
REDUCTION = os.environ.get("EVSPARSE_GPU_REDUCTION", "atomic")
TWO_PASS_PROGRAMS = 512  # about (splits x output tiles x rows) per launch: enough to fill a large GPU
# The atomic products' grids are sized without the device-side count of active inputs, so at low
# activity most of a worst-case grid would be programs that load the count and return. They are capped
# at this many programs per SM (more than fit at once, so the GPU stays full at any activity;
# EVSPARSE_GPU_PROGRAMS_PER_SM overrides, evsparse-gpu-bench times the uncapped grid beside it); the
# interpreter gets a small fixed number, so that the tests walk the strided loops.
PROGRAMS_PER_SM = int(os.environ.get("EVSPARSE_GPU_PROGRAMS_PER_SM", "16"))
INTERPRET_PROGRAMS = 8
SPARSE_SPLITS = 128  # deterministic sparse-gather: partial rows (programs walking columns) per launch
# Row counts reach CUDA's limits when a sequence op does all T steps' input products as one [T*B, in]
# launch: grid axes 1 and 2 (where the kernels put the rows) hold at most 65535 programs, and the
# kernels address rows with int32 offsets (row * width). The row-wise launchers split their rows into
# chunks within both (row_chunks), so a sequence of any length runs.
MAX_GRID_ROWS = 65535
MAX_ROW_OFFSET = 2**31 - 1
_SPLIT_BLOCK_K, _SPLIT_BLOCK_N = 16, 128  # the tile the two-pass split count is sized for

_KEY = ("n_in", "n_out", "act_bucket")
_FIXED_PRODUCT = triton.Config({"BLOCK_K": 16, "BLOCK_N": 128}, num_warps=4)
# Few active inputs want small BLOCK_K (no wasted index slots) and enough output tiles to fill the
# GPU; many want larger BLOCK_K to amortise the index loads and atomics.
# Tiles over 64 fp32 weights per thread are left out: ptxas gives them 200-250 registers on sm_80/90
# (scripts/triton_compile_check.py --ptxas; benchmarks/results/triton-compile-2026-11-23d).
_PRODUCT_CONFIGS = [c for c in (product_configs((8, 16, 32, 64), (64, 128, 256), (4,))
                                + product_configs((16, 32), (128, 256), (2, 8)))
                    if c.kwargs["BLOCK_K"] * c.kwargs["BLOCK_N"] <= 64 * 32 * c.num_warps]
DENSE_GATHER = TunedKernel(kernels.dense_gather_kernel, _FIXED_PRODUCT, _PRODUCT_CONFIGS, _KEY, restore=("out_ptr",))
DENSE_GATHER_PARTIAL = TunedKernel(kernels.dense_gather_kernel, _FIXED_PRODUCT, _PRODUCT_CONFIGS, _KEY)
MASKED_SPLITK = TunedKernel(kernels.masked_splitk_kernel, _FIXED_PRODUCT, _PRODUCT_CONFIGS, _KEY, restore=("y_ptr",))
_SPARSE_FIXED = triton.Config({"BLOCK": 128}, num_warps=4)
_SPARSE_CONFIGS = [triton.Config({"BLOCK": b}, num_warps=w) for b in (32, 64, 128, 256) for w in (1, 2, 4)]
SPARSE_GATHER = TunedKernel(kernels.sparse_gather_kernel, _SPARSE_FIXED, _SPARSE_CONFIGS, _KEY, restore=("y_ptr",))
SPARSE_GATHER_PARTIAL = TunedKernel(kernels.sparse_gather_partial_kernel, _SPARSE_FIXED, _SPARSE_CONFIGS, _KEY,
                                    restore=("part_ptr",))
TUNED_KERNELS = {"dense_gather": DENSE_GATHER, "dense_gather_partial": DENSE_GATHER_PARTIAL,
                 "sparse_gather": SPARSE_GATHER, "sparse_gather_partial": SPARSE_GATHER_PARTIAL,
                 "masked_splitk": MASKED_SPLITK}


def max_programs(device: torch.device) -> int:
    """The cap on an atomic product's programs (see :data:`PROGRAMS_PER_SM`)."""
    if device.type != "cuda":
        return INTERPRET_PROGRAMS
    return PROGRAMS_PER_SM * _sm_count(device.index if device.index is not None else torch.cuda.current_device())


@functools.lru_cache(maxsize=None)
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def cdiv(a: int, b: int) -> int:
    """ceil(a / b) for the grids. Not ``triton.cdiv``: that is a jit function, whose host-side call costs
    several microseconds, and a batch-1 step computes a handful of grids."""
    return -(-a // b)


def row_chunks(rows: int, width: int) -> list[tuple[int, int]]:
    """[r0, r1) ranges covering ``rows`` rows of ``width`` elements (the widest tensor a launch indexes by
    row): at most :data:`MAX_GRID_ROWS` rows each, and few enough that row * width fits in int32."""
    step = max(1, min(MAX_GRID_ROWS, MAX_ROW_OFFSET // max(width, 1)))
    return [(r, min(r + step, rows)) for r in range(0, rows, step)]


def _rows(t: torch.Tensor, r0: int, r1: int) -> torch.Tensor:
    """Rows [r0, r1) of ``t``: ``t`` itself when that is all of it (a slice costs ~2 us of host time,
    which a batch-1 step loop pays per call)."""
    return t if r0 == 0 and r1 == t.shape[0] else t[r0:r1]


def use_deterministic(flag: Optional[bool] = None) -> bool:
    """``flag``, or PyTorch's global setting (``torch.use_deterministic_algorithms``) when None."""
    return torch.are_deterministic_algorithms_enabled() if flag is None else flag


def _alert_not_deterministic(what: str) -> None:
    """PyTorch's behaviour for a nondeterministic op in deterministic mode: raise, or warn in warn-only mode."""
    msg = (f"{what} does not have a deterministic implementation, but you set "
           "'torch.use_deterministic_algorithms(True)'")
    if torch.is_deterministic_algorithms_warn_only_enabled():
        warnings.warn(msg, stacklevel=3)
    else:
        raise RuntimeError(msg)


class Active(NamedTuple):
    """Compacted nonzero inputs: ``idx [B, in]`` int32, of which row b's first ``count[b]`` are valid."""
    idx: torch.Tensor
    count: torch.Tensor

    def rows(self, r0: int, r1: int) -> "Active":
        """The lists of rows [r0, r1) (see :func:`_rows`)."""
        return Active(_rows(self.idx, r0, r1), _rows(self.count, r0, r1))


def _check(op: str, x: torch.Tensor, n_in: int, *others) -> torch.Tensor:
    if x.dim() not in (1, 2):
        raise ValueError(f"evsparse.{op}: x must be 1-D [in] or 2-D [B, in], got shape {tuple(x.shape)}")
    if x.shape[-1] != n_in:
        raise ValueError(f"evsparse.{op}: x has {x.shape[-1]} features but the weight expects in_features={n_in}")
    for t in (x, *others):
        if t is not None and t.device != x.device:
            raise ValueError(f"evsparse.{op}: all tensors must be on x's device {x.device}, got {t.device}")
        if t is not None and not t.is_contiguous():
            raise ValueError(f"evsparse.{op}: arguments must be contiguous")
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"evsparse.{op}: the Triton kernels take float32/float16/bfloat16 x, got {x.dtype}")
    return x if x.dim() == 2 else x.unsqueeze(0)


def check_dense_weight(op: str, name: str, weight_t: torch.Tensor, n_in: int, n_out: Optional[int] = None) -> None:
    if weight_t.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"evsparse.{op}: {name} must be float32, float16 or bfloat16, got {weight_t.dtype}")
    if weight_t.dim() != 2 or weight_t.shape[0] != n_in or (n_out is not None and weight_t.shape[1] != n_out):
        want = f"[{n_in}, {'out' if n_out is None else n_out}]"
        raise ValueError(f"evsparse.{op}: {name} (dense layout, input-major) must have shape {want}, "
                         f"got {list(weight_t.shape)}")


def check_csc(op: str, col_ptr: torch.Tensor, row_idx: torch.Tensor, values: torch.Tensor, n_out: int) -> None:
    """The CPU op's checks: metadata on every call (:func:`evsparse._contract.check_csc_meta`, as for
    PackedWeight and the fake kernels); the structure (col_ptr from 0 to nnz, monotone;
    row indices in [0, n_out), strictly increasing per column) once per pair of index tensors (see
    :func:`_check_csc_structure_once`). The kernels also mask what they touch, so even an unchecked
    structure cannot reach outside the tensors."""
    if n_out < 0:
        raise ValueError(f"evsparse.{op}: out_features must be >= 0, got {n_out}")
    if not isinstance(col_ptr, torch.Tensor) or col_ptr.dim() != 1 or col_ptr.dtype != torch.int64 or col_ptr.numel() < 1:
        raise ValueError(f"evsparse.{op}: col_ptr must be a 1-D int64 tensor of in_features + 1 entries, "
                         f"got {getattr(col_ptr, 'dtype', None)} {list(getattr(col_ptr, 'shape', []))}")
    check_csc_meta(col_ptr, row_idx, n_out, col_ptr.numel() - 1, values.numel(), values.device, f"evsparse.{op}")
    if values.dim() != 1:
        raise ValueError(f"evsparse.{op}: values must be 1-D with one entry per row index ({row_idx.numel()}), "
                         f"got {list(values.shape)}")
    if values.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"evsparse.{op}: values must be float32, float16 or bfloat16, got {values.dtype}")
    _check_csc_structure_once(op, col_ptr, row_idx, n_out)


def _version(t: torch.Tensor) -> Optional[int]:
    return None if t.is_inference() else t._version


def _check_csc_structure_once(op: str, col_ptr: torch.Tensor, row_idx: torch.Tensor, n_out: int) -> None:
    """Reads the index arrays (one host sync) the first time a (col_ptr, row_idx) pair is used with
    ``n_out`` outputs, then remembers it on row_idx, keyed by both tensors' version counters so that
    an in-place change is checked again. Steady-state calls never sync; inside a CUDA-graph capture
    (where a sync is illegal) nothing is read: the warm-up calls before it were checked. Inference
    tensors (made under ``torch.inference_mode``) have no version counter: an in-place change to
    them inside inference mode is not checked again (the kernels' masked accesses still keep a bad
    structure inside the tensors)."""
    stamp = (id(col_ptr), _version(col_ptr), _version(row_idx), n_out)
    if getattr(row_idx, "_evsparse_csc_checked", None) == stamp:
        return
    if col_ptr.is_cuda and torch.cuda.is_current_stream_capturing():
        return
    nnz = row_idx.numel()
    cp = col_ptr.long()
    first, last = (int(v) for v in cp[[0, -1]].tolist())
    if first != 0 or last != nnz:
        raise ValueError(f"evsparse.{op}: col_ptr must start at 0 and end at nnz={nnz}, got {first} .. {last}")
    if cp.numel() > 1 and bool((cp[1:] < cp[:-1]).any()):
        bad = int((cp[1:] < cp[:-1]).nonzero()[0])
        raise ValueError(f"evsparse.{op}: col_ptr is not monotone at column {bad}")
    if nnz:
        lo, hi = (int(v) for v in torch.stack([row_idx.min().long(), row_idx.max().long()]).tolist())
        if lo < 0 or hi >= n_out:
            raise ValueError(f"evsparse.{op}: row_idx has entries out of range [0, {n_out}) (min {lo}, max {hi})")
    if nnz > 1:
        # Strictly increasing within each column: the deterministic kernel's plain stores rely on
        # distinct rows, and the NaN/Inf path binary-searches them. Comparison k pairs entries k, k + 1;
        # those that straddle a column boundary do not count.
        r = row_idx.long()
        bad = r[1:] <= r[:-1]
        starts = cp[1:-1]
        bad[starts[(starts > 0) & (starts < nnz)] - 1] = False
        if bool(bad.any()):
            k = int(bad.nonzero()[0]) + 1
            col = int(torch.searchsorted(cp, torch.tensor([k], device=cp.device), right=True)[0]) - 1
            raise ValueError(f"evsparse.{op}: row_idx must be strictly increasing within each column; "
                             f"column {col} is not (entry {k})")
    row_idx._evsparse_csc_checked = stamp


_HALF = (torch.float16, torch.bfloat16)


def check_dtypes(op: str, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> None:
    """The CPU ops' dtype contract (op_utils.h accumulation_dtype), less float64 (no Triton kernel):
    x float32 with float32/float16/bfloat16 weights, or float16/bfloat16 x with weights of the same
    dtype; a bias of x's or the weight's dtype. The same call is then accepted or refused alike on
    either device."""
    if not ((x.dtype == weight.dtype and x.dtype in (torch.float32, *_HALF))
            or (x.dtype == torch.float32 and weight.dtype in _HALF)):
        raise ValueError(f"evsparse.{op}: unsupported dtypes x={x.dtype}, weight={weight.dtype}; use x float32 "
                         "with float32/float16/bfloat16 weights, or float16/bfloat16 x with weights of the same "
                         "dtype (float64 runs on the CPU only)")
    if bias is not None and bias.dtype not in (x.dtype, weight.dtype):
        raise ValueError(f"evsparse.{op}: bias dtype {bias.dtype} matches neither x ({x.dtype}) "
                         f"nor the weight ({weight.dtype})")


def check_bias(op: str, bias: Optional[torch.Tensor], n_out: int) -> None:
    if bias is not None and (bias.dim() != 1 or bias.numel() != n_out or not bias.is_floating_point()):
        raise ValueError(f"evsparse.{op}: bias must be a floating 1-D tensor of out_features={n_out} entries, "
                         f"got {bias.dtype} {list(bias.shape)}")


def compact_active(x2: torch.Tensor, ordered: bool = False, into: Optional[Active] = None) -> Active:
    """The nonzero (and NaN) inputs of each row of ``x2`` [B, in], compacted on the device: in
    increasing order with ``ordered`` (one program per row, deterministic), else in whatever order
    the blocks' atomic slot reservations give (a program per block). ``into``: buffers to reuse
    (idx [B, in] int32, count [B] int32)."""
    B, n_in = x2.shape
    zero_count = not ordered or not n_in  # the atomic kernel adds to it; the ordered one writes it
    if into is None:
        into = Active(torch.empty((B, n_in), dtype=torch.int32, device=x2.device),
                      (torch.zeros if zero_count else torch.empty)(B, dtype=torch.int32, device=x2.device))
    elif zero_count:
        into.count.zero_()
    if not n_in:
        return into
    for r0, r1 in row_chunks(B, n_in):
        x_r, (idx_r, count_r) = _rows(x2, r0, r1), into.rows(r0, r1)
        if ordered:  # one program per row writes its count
            kernels.compact_ordered_kernel[(r1 - r0,)](x_r, idx_r, count_r, n_in, BLOCK=COMPACT_BLOCK)
        else:
            kernels.compact_active_kernel[(cdiv(n_in, COMPACT_BLOCK), r1 - r0)](x_r, idx_r, count_r, n_in,
                                                                                      BLOCK=COMPACT_BLOCK)
    return into


def new_output(B: int, n_out: int, bias: Optional[torch.Tensor], device) -> torch.Tensor:
    """The fp32 accumulation buffer, starting at the bias (a copy: the kernels add into it)."""
    if bias is None:
        return torch.zeros((B, n_out), dtype=torch.float32, device=device)
    # copy_ broadcasts and casts: two ops at any batch and dtype (a batch-1 step pays each in host time)
    return torch.empty((B, n_out), dtype=torch.float32, device=device).copy_(bias)


def _finish(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    y = y if x.dim() == 2 else y[0]
    return y if y.dtype == x.dtype else y.to(x.dtype)


def dense_gather_into(y: torch.Tensor, x2: torch.Tensor, weight_t: torch.Tensor, active: Optional[Active] = None,
                      reduction: Optional[str] = None, deterministic: Optional[bool] = None) -> None:
    """``y += x2 @ weight_t`` reading only the active inputs' rows of ``weight_t`` [in, out].
    ``deterministic`` (default: PyTorch's setting) picks the ordered compaction and the two-pass
    reduction; a given ``active`` must then come from an ordered compaction."""
    det = use_deterministic(deterministic)
    if reduction not in (None, "atomic", "two_pass"):
        raise ValueError(f"evsparse.gather_linear: reduction must be 'atomic' or 'two_pass', got {reduction!r}")
    if det and reduction == "atomic":
        _alert_not_deterministic("evsparse.gather_linear with reduction='atomic' (fp32 atomics)")
    reduction = reduction or ("two_pass" if det else REDUCTION)
    B, n_in = x2.shape
    n_out = weight_t.shape[1]
    if not (B and n_in and n_out):
        return
    active = active if active is not None else compact_active(x2, ordered=det)
    bucket = tuning.HINTS.bucket(n_in)
    for r0, r1 in row_chunks(B, max(n_in, n_out)):
        _dense_gather_rows(_rows(y, r0, r1), _rows(x2, r0, r1), weight_t, active.rows(r0, r1), reduction, bucket)
    tuning.HINTS.observe(n_in, active.count)


def _dense_gather_rows(y, x2, weight_t, active: Active, reduction: str, bucket: int) -> None:
    """:func:`dense_gather_into` for rows that fit one launch (:func:`row_chunks`)."""
    B, n_in = x2.shape
    n_out = weight_t.shape[1]
    idx, count = active
    if reduction == "atomic":
        cap = max_programs(x2.device)

        def grid(m):  # one active block per program, unless that is more programs than the cap
            tiles = cdiv(n_out, m["BLOCK_N"])
            return max(1, min(cdiv(n_in, m["BLOCK_K"]), cap // (tiles * B))), tiles, B

        DENSE_GATHER(grid, x2, idx, count, weight_t, y, n_in, n_out, bucket, ATOMIC=True)
        return
    # The split count is fixed by the sizes (not the tile), so every tuned tile fills the same buffer;
    # many rows fill the GPU by themselves and need few splits (and the buffer stays rows x out).
    tiles = cdiv(n_out, _SPLIT_BLOCK_N)
    splits = max(1, min(cdiv(n_in, _SPLIT_BLOCK_K), TWO_PASS_PROGRAMS // (tiles * B)))
    part = torch.empty((splits, B, n_out), dtype=torch.float32, device=x2.device)
    DENSE_GATHER_PARTIAL(lambda m: (splits, cdiv(n_out, m["BLOCK_N"]), B),
                         x2, idx, count, weight_t, part, n_in, n_out, bucket, ATOMIC=False)
    kernels.reduce_splits_kernel[(tiles, B)](part, y, n_out, splits, BLOCK=_SPLIT_BLOCK_N)


def sparse_gather_into(y: torch.Tensor, x2: torch.Tensor, col_ptr: torch.Tensor, row_idx: torch.Tensor,
                       values: torch.Tensor, active: Optional[Active] = None,
                       deterministic: Optional[bool] = None) -> None:
    """``y += x2 @ W.T`` for a CSC ``W`` [out, in]: only the active inputs' nonzeros are read.
    ``deterministic`` (default: PyTorch's setting): ordered compaction and per-split partial rows
    summed in a fixed order instead of atomic scatter-adds."""
    det = use_deterministic(deterministic)
    B, n_in = x2.shape
    n_out = y.shape[1]
    if not (B and n_in and n_out and row_idx.numel()):
        return
    active = active if active is not None else compact_active(x2, ordered=det)
    bucket = tuning.HINTS.bucket(n_in)
    for r0, r1 in row_chunks(B, max(n_in, n_out)):
        _sparse_gather_rows(_rows(y, r0, r1), _rows(x2, r0, r1), col_ptr, row_idx, values, active.rows(r0, r1),
                            det, bucket)
    tuning.HINTS.observe(n_in, active.count)


def _sparse_gather_rows(y, x2, col_ptr, row_idx, values, active: Active, det: bool, bucket: int) -> None:
    """:func:`sparse_gather_into` for rows that fit one launch (:func:`row_chunks`)."""
    B, n_in = x2.shape
    n_out = y.shape[1]
    nnz = row_idx.numel()
    idx, count = active
    if det:
        # SPARSE_SPLITS programs share the launch: one row gets them all, many rows fewer each (down
        # to one, walking its row's columns alone), so the partial buffer stays about rows x out.
        splits = max(1, min(n_in, SPARSE_SPLITS // B))
        part = torch.zeros((splits, B, n_out), dtype=torch.float32, device=x2.device)
        SPARSE_GATHER_PARTIAL(lambda m: (splits, B), x2, idx, count, col_ptr, row_idx, values, part, n_in, n_out,
                              nnz, splits, bucket)
        kernels.reduce_splits_kernel[(cdiv(n_out, _SPLIT_BLOCK_N), B)](part, y, n_out, splits,
                                                                             BLOCK=_SPLIT_BLOCK_N)
        return
    mean_nnz = cdiv(nnz, n_in)
    cap = max(1, max_programs(x2.device) // B)
    # items per row: active columns x pieces (the kernel's cdiv(mean_nnz, BLOCK)), at most n_in x pieces
    SPARSE_GATHER(lambda m: (min(n_in * max(1, cdiv(mean_nnz, m["BLOCK"])), cap), B),
                  x2, idx, count, col_ptr, row_idx, values, y, n_in, n_out, nnz, mean_nnz, bucket)


def product_into(y: torch.Tensor, x2: torch.Tensor, values: torch.Tensor, col_ptr: Optional[torch.Tensor],
                 row_idx: Optional[torch.Tensor], active: Optional[Active] = None,
                 deterministic: Optional[bool] = None) -> None:
    """A packed weight's product in either layout (col_ptr None: dense [in, out]; else CSC)."""
    if col_ptr is None:
        dense_gather_into(y, x2, values, active, deterministic=deterministic)
    else:
        sparse_gather_into(y, x2, col_ptr, row_idx, values, active, deterministic=deterministic)


def gather_linear(x: torch.Tensor, weight_t: torch.Tensor, bias: Optional[torch.Tensor] = None,
                  reduction: Optional[str] = None, deterministic: Optional[bool] = None) -> torch.Tensor:
    """``x @ weight_t + bias`` reading only the rows of ``weight_t`` [in, out] whose input is nonzero.
    ``reduction``: "atomic" or "two_pass" (default :data:`REDUCTION`; "two_pass" when deterministic).
    ``deterministic``: default PyTorch's ``torch.are_deterministic_algorithms_enabled()``."""
    x2 = _check("gather_linear", x, weight_t.shape[0] if weight_t.dim() == 2 else -1, weight_t, bias)
    check_dense_weight("gather_linear", "weight_t", weight_t, x2.shape[1])
    check_bias("gather_linear", bias, weight_t.shape[1])
    check_dtypes("gather_linear", x, weight_t, bias)
    y = new_output(x2.shape[0], weight_t.shape[1], bias, x.device)
    dense_gather_into(y, x2, weight_t, reduction=reduction, deterministic=deterministic)
    return _finish(y, x)


def sparse_gather_linear(x: torch.Tensor, col_ptr: torch.Tensor, row_idx: torch.Tensor, values: torch.Tensor,
                         out_features: int, bias: Optional[torch.Tensor] = None,
                         deterministic: Optional[bool] = None) -> torch.Tensor:
    """The CSC product: only the nonzeros of the active inputs' columns are read.
    ``deterministic``: default PyTorch's ``torch.are_deterministic_algorithms_enabled()``."""
    check_csc("sparse_gather_linear", col_ptr, row_idx, values, out_features)
    x2 = _check("sparse_gather_linear", x, col_ptr.shape[0] - 1, col_ptr, row_idx, values, bias)
    check_bias("sparse_gather_linear", bias, out_features)
    check_dtypes("sparse_gather_linear", x, values, bias)
    y = new_output(x2.shape[0], out_features, bias, x.device)
    sparse_gather_into(y, x2, col_ptr, row_idx, values, deterministic=deterministic)
    return _finish(y, x)


def masked_splitk_linear(x: torch.Tensor, weight_t: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The TEAL-style comparison kernel (masked loads, no compaction). Benchmarks only."""
    x2 = _check("masked_splitk_linear", x, weight_t.shape[0], weight_t, bias)
    check_dense_weight("masked_splitk_linear", "weight_t", weight_t, x2.shape[1])
    B, n_in = x2.shape
    n_out = weight_t.shape[1]
    y = new_output(B, n_out, bias, x.device)
    if B and n_in and n_out:
        for r0, r1 in row_chunks(B, max(n_in, n_out)):
            MASKED_SPLITK(lambda m: (cdiv(n_in, m["BLOCK_K"]), cdiv(n_out, m["BLOCK_N"]), r1 - r0),
                          _rows(x2, r0, r1), weight_t, _rows(y, r0, r1), n_in, n_out, tuning.HINTS.bucket(n_in))
    return _finish(y, x)
