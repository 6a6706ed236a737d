"""Host-side launchers of the Triton kernels: same arguments and results as the CPU ops
(``torch.ops.evsparse.gather_linear`` / ``sparse_gather_linear``), on whatever device the tensors are
(CUDA, or CPU under ``TRITON_INTERPRET=1``). Accumulation is fp32; the result has ``x``'s dtype."""

from __future__ import annotations

import os
from typing import Optional

import torch
import triton

from . import kernels

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
COMPACT_BLOCK = 256
# Fixed tiles: a GPU session is to replace these by autotuning keyed on (in, out, activity bucket);
# never autotune under the interpreter.
BLOCK_K, BLOCK_N, SPARSE_BLOCK = 16, 128, 128
# Split-K reduction of the dense-gather: "atomic" (fp32 atomics into the output) or "two_pass" (a
# partial buffer and a reduction kernel). Atomics are the default until a GPU measurement
# (evsparse-gpu-bench times both) says otherwise; EVSPARSE_GPU_REDUCTION overrides.
REDUCTION = os.environ.get("EVSPARSE_GPU_REDUCTION", "atomic")
TWO_PASS_PROGRAMS = 512  # about (splits x output tiles) per row: enough programs to fill a large GPU


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


def compact_active(x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(idx [B, in] int32, count [B] int32) of the nonzero inputs of each row, on the device."""
    B, n_in = x2.shape
    idx = torch.empty((B, n_in), dtype=torch.int32, device=x2.device)
    count = torch.zeros(B, dtype=torch.int32, device=x2.device)
    kernels.compact_active_kernel[(triton.cdiv(n_in, COMPACT_BLOCK), B)](x2, idx, count, n_in, BLOCK=COMPACT_BLOCK)
    return idx, count


def _init_output(B: int, n_out: int, bias: Optional[torch.Tensor], device) -> torch.Tensor:
    if bias is None:
        return torch.zeros((B, n_out), dtype=torch.float32, device=device)
    return bias.to(torch.float32).expand(B, n_out).clone()  # never the caller's memory: atomics add into it


def _finish(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    y = y if x.dim() == 2 else y[0]
    return y if y.dtype == x.dtype else y.to(x.dtype)


def _input_major_product(op: str, kernel, compact: bool, x: torch.Tensor, weight_t: torch.Tensor,
                         bias: Optional[torch.Tensor]) -> torch.Tensor:
    """A product on ``weight_t`` [in, out] with a grid over (input blocks x output tiles x rows); the
    kernel gets the compacted active indices first when ``compact``."""
    x2 = _check(op, x, weight_t.shape[0], weight_t, bias)
    B, n_in = x2.shape
    n_out = weight_t.shape[1]
    y = _init_output(B, n_out, bias, x.device)
    if B and n_in and n_out:
        grid = (triton.cdiv(n_in, BLOCK_K), triton.cdiv(n_out, BLOCK_N), B)
        inputs = (x2, *compact_active(x2)) if compact else (x2,)
        kernel[grid](*inputs, weight_t, y, n_in, n_out, BLOCK_K=BLOCK_K, BLOCK_N=BLOCK_N)
    return _finish(y, x)


def gather_linear(x: torch.Tensor, weight_t: torch.Tensor, bias: Optional[torch.Tensor] = None,
                  reduction: Optional[str] = None) -> torch.Tensor:
    """``x @ weight_t + bias`` reading only the rows of ``weight_t`` [in, out] whose input is nonzero.
    ``reduction``: "atomic" or "two_pass" (default :data:`REDUCTION`)."""
    reduction = reduction or REDUCTION
    if reduction == "atomic":
        return _input_major_product("gather_linear", kernels.dense_gather_kernel, True, x, weight_t, bias)
    if reduction != "two_pass":
        raise ValueError(f"evsparse.gather_linear: reduction must be 'atomic' or 'two_pass', got {reduction!r}")
    x2 = _check("gather_linear", x, weight_t.shape[0], weight_t, bias)
    B, n_in = x2.shape
    n_out = weight_t.shape[1]
    y = _init_output(B, n_out, bias, x.device)
    if B and n_in and n_out:
        tiles = triton.cdiv(n_out, BLOCK_N)
        splits = max(1, min(triton.cdiv(n_in, BLOCK_K), TWO_PASS_PROGRAMS // tiles))
        idx, count = compact_active(x2)
        part = torch.empty((splits, B, n_out), dtype=torch.float32, device=x.device)
        kernels.dense_gather_partial_kernel[(splits, tiles, B)](x2, idx, count, weight_t, part, n_in, n_out, splits,
                                                                BLOCK_K=BLOCK_K, BLOCK_N=BLOCK_N)
        kernels.reduce_splits_kernel[(triton.cdiv(n_out, BLOCK_N), B)](part, y, n_out, splits, BLOCK=BLOCK_N)
    return _finish(y, x)


def sparse_gather_linear(x: torch.Tensor, col_ptr: torch.Tensor, row_idx: torch.Tensor, values: torch.Tensor,
                         out_features: int, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The CSC product: only the nonzeros of the active inputs' columns are read."""
    x2 = _check("sparse_gather_linear", x, col_ptr.shape[0] - 1, col_ptr, row_idx, values, bias)
    B, n_in = x2.shape
    y = _init_output(B, out_features, bias, x.device)
    if B and n_in and out_features and row_idx.numel():
        idx, count = compact_active(x2)
        kernels.sparse_gather_kernel[(n_in, B)](x2, idx, count, col_ptr, row_idx, values, y, n_in, out_features,
                                                BLOCK=SPARSE_BLOCK)
    return _finish(y, x)


def masked_splitk_linear(x: torch.Tensor, weight_t: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The TEAL-style comparison kernel (masked loads, no compaction). Benchmarks only."""
    return _input_major_product("masked_splitk_linear", kernels.masked_splitk_kernel, False, x, weight_t, bias)
