"""Triton kernels for the gather-by-active-neuron products (GPU; also run by Triton's interpreter on
CPU tensors under ``TRITON_INTERPRET=1``, which is how the CPU-only test suite checks them).

No host synchronisation anywhere: the active inputs are compacted on the device into per-row index
lists with a device counter, and the product grids are sized for the worst case (every input active);
programs past the counter return at once. Partial sums meet in fp32 ``atomic_add`` (split-K), or, in
the two-pass alternative, in a partial buffer summed by a second kernel; either way the compaction's
order varies (atomic slot reservation), so the summation order and the last bits of the result vary
from run to run.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def compact_active_kernel(x_ptr, idx_ptr, count_ptr, n_in, BLOCK: tl.constexpr):
    """idx[b, :count[b]] = positions of the nonzero (and NaN) entries of row b of x; count must start at 0.
    Grid: (cdiv(n_in, BLOCK), B). Order within a row is not sorted across blocks."""
    pid = tl.program_id(0)
    b = tl.program_id(1)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    inside = offs < n_in
    x = tl.load(x_ptr + b * n_in + offs, mask=inside, other=0.0)
    active = (x != 0) & inside
    flags = active.to(tl.int32)
    base = tl.atomic_add(count_ptr + b, tl.sum(flags, axis=0))  # reserve a slot range for this block
    pos = base + tl.cumsum(flags, axis=0) - 1
    tl.store(idx_ptr + b * n_in + pos, offs, mask=active)


@triton.jit
def _active_block_product(x_ptr, idx_ptr, w_ptr, b, n_in, n_out, k0, count, ns, n_ok, BLOCK_K: tl.constexpr):
    """sum over the active inputs k0 .. k0 + BLOCK_K (of count) of x[b, j] * W_t[j, ns], in fp32."""
    ks = k0 + tl.arange(0, BLOCK_K)
    k_in = ks < count
    j = tl.load(idx_ptr + b * n_in + ks, mask=k_in, other=0)
    xv = tl.load(x_ptr + b * n_in + j, mask=k_in, other=0.0).to(tl.float32)
    w = tl.load(w_ptr + j.to(tl.int64)[:, None] * n_out + ns[None, :], mask=k_in[:, None] & n_ok[None, :],
                other=0.0).to(tl.float32)
    return tl.sum(w * xv[:, None], axis=0)


@triton.jit
def dense_gather_kernel(x_ptr, idx_ptr, count_ptr, w_ptr, y_ptr, n_in, n_out,
                        BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr):
    """y[b] += sum over a block of active inputs j of x[b, j] * W_t[j, tile]. W_t is [in, out]
    (input-major), so each active input's row is one contiguous read. Grid:
    (cdiv(n_in, BLOCK_K), cdiv(n_out, BLOCK_N), B)."""
    pid_k = tl.program_id(0)
    pid_n = tl.program_id(1)
    b = tl.program_id(2)
    count = tl.load(count_ptr + b)
    k0 = pid_k * BLOCK_K
    if k0 < count:
        ns = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        n_ok = ns < n_out
        part = _active_block_product(x_ptr, idx_ptr, w_ptr, b, n_in, n_out, k0, count, ns, n_ok, BLOCK_K)
        tl.atomic_add(y_ptr + b * n_out + ns, part, mask=n_ok)


@triton.jit
def dense_gather_partial_kernel(x_ptr, idx_ptr, count_ptr, w_ptr, part_ptr, n_in, n_out, splits,
                                BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr):
    """First pass of the two-pass alternative to :func:`dense_gather_kernel`: split s sums the active
    blocks s, s + splits, ... in registers and stores its partial tile, no atomics. part is
    [splits, B, out]. Grid: (splits, cdiv(n_out, BLOCK_N), B)."""
    s = tl.program_id(0)
    pid_n = tl.program_id(1)
    b = tl.program_id(2)
    n_rows = tl.num_programs(2)
    count = tl.load(count_ptr + b)
    ns = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = ns < n_out
    acc = tl.zeros([BLOCK_N], dtype=tl.float32)
    k0 = s * BLOCK_K
    while k0 < count:
        acc += _active_block_product(x_ptr, idx_ptr, w_ptr, b, n_in, n_out, k0, count, ns, n_ok, BLOCK_K)
        k0 += splits * BLOCK_K
    tl.store(part_ptr + (s * n_rows + b).to(tl.int64) * n_out + ns, acc, mask=n_ok)


@triton.jit
def reduce_splits_kernel(part_ptr, y_ptr, n_out, splits, BLOCK: tl.constexpr):
    """Second pass: y[b] += sum over s of part[s, b] (fixed order). Grid: (cdiv(n_out, BLOCK), B)."""
    pid = tl.program_id(0)
    b = tl.program_id(1)
    n_rows = tl.num_programs(1)
    ns = pid * BLOCK + tl.arange(0, BLOCK)
    ok = ns < n_out
    acc = tl.load(y_ptr + b * n_out + ns, mask=ok, other=0.0)
    s = 0
    while s < splits:
        acc += tl.load(part_ptr + (s * n_rows + b).to(tl.int64) * n_out + ns, mask=ok, other=0.0)
        s += 1
    tl.store(y_ptr + b * n_out + ns, acc, mask=ok)


@triton.jit
def sparse_gather_kernel(x_ptr, idx_ptr, count_ptr, col_ptr, row_ptr, val_ptr, y_ptr, n_in, n_out,
                         BLOCK: tl.constexpr):
    """Pruned weights (CSC): one program per active input, which scatters x[b, j] * values over its
    column's nonzeros. Grid: (n_in, B)."""
    a = tl.program_id(0)
    b = tl.program_id(1)
    count = tl.load(count_ptr + b)
    if a < count:
        j = tl.load(idx_ptr + b * n_in + a)
        xv = tl.load(x_ptr + b * n_in + j).to(tl.float32)
        k0 = tl.load(col_ptr + j)
        k1 = tl.load(col_ptr + j + 1)
        k = k0
        while k < k1:  # (a while loop: the interpreter cannot range() over loaded bounds)
            ks = k + tl.arange(0, BLOCK)
            ok = ks < k1
            r = tl.load(row_ptr + ks, mask=ok, other=0).to(tl.int32)
            v = tl.load(val_ptr + ks, mask=ok, other=0.0).to(tl.float32)
            tl.atomic_add(y_ptr + b * n_out + r, xv * v, mask=ok)
            k += BLOCK


@triton.jit
def masked_splitk_kernel(x_ptr, w_ptr, y_ptr, n_in, n_out, BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr):
    """The TEAL / torchao-style baseline: every (input block x output tile) program runs and masks the
    weight loads of zero inputs instead of compacting them. Grid: (cdiv(n_in, BLOCK_K),
    cdiv(n_out, BLOCK_N), B)."""
    pid_k = tl.program_id(0)
    pid_n = tl.program_id(1)
    b = tl.program_id(2)
    ks = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
    xv = tl.load(x_ptr + b * n_in + ks, mask=ks < n_in, other=0.0).to(tl.float32)
    active = xv != 0
    ns = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = ns < n_out
    w = tl.load(w_ptr + ks.to(tl.int64)[:, None] * n_out + ns[None, :], mask=active[:, None] & n_ok[None, :],
                other=0.0).to(tl.float32)
    tl.atomic_add(y_ptr + b * n_out + ns, tl.sum(w * xv[:, None], axis=0), mask=n_ok)
