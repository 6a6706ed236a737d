"""Triton kernels for the gather-by-active-neuron products (GPU; also run by Triton's interpreter on
CPU tensors under ``TRITON_INTERPRET=1``, which is how the CPU-only test suite checks them).

No host synchronisation anywhere: the active inputs are compacted on the device into per-row index
lists with a device counter, so the host sizes the product grids without knowing how many inputs are
active. Programs stride over the work the counter holds (active blocks, or active columns cut into
pieces) and the grids are capped (launch.py), so at low activity few programs find nothing to do.
Partial sums meet in fp32 ``atomic_add`` (split-K), or, in the two-pass alternative, in a partial
buffer summed by a second kernel. The default compaction reserves slots atomically, so its order, the
summation order and the last bits of a result vary from run to run. The deterministic set (chosen by
``torch.use_deterministic_algorithms``, see launch.py) compacts in order with one program per row and
sums partial buffers in a fixed order: :func:`compact_ordered_kernel`, :func:`dense_gather_kernel`
without ATOMIC, :func:`sparse_gather_partial_kernel` and :func:`reduce_splits_kernel`.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _append_active_at(v, hs, ok, idx_ptr, base):
    """Writes the positions ``hs`` of v's nonzero (and NaN) entries, in order, to idx[base ...] and
    returns base + how many. The one place the compaction's layout is decided."""
    flags = ((v != 0) & ok).to(tl.int32)
    tl.store(idx_ptr + base + tl.cumsum(flags, axis=0) - 1, hs, mask=flags != 0)
    return base + tl.sum(flags, axis=0)


@triton.jit
def _append_active(v, hs, ok, idx_ptr, count_ptr):
    """Appends the positions ``hs`` of v's nonzero (and NaN) entries to the list idx / count[0], from
    any number of programs at once: each reserves its slot range atomically (relaxed: only atomicity
    is needed; readers come after a kernel boundary or a CTA barrier), so blocks land in any order."""
    n = tl.sum(((v != 0) & ok).to(tl.int32), axis=0)
    _append_active_at(v, hs, ok, idx_ptr, tl.atomic_add(count_ptr, n, sem="relaxed"))


@triton.jit
def compact_ordered_kernel(x_ptr, idx_ptr, count_ptr, n_in, BLOCK: tl.constexpr):
    """The deterministic :func:`compact_active_kernel`: one program per row walks it block by block,
    so idx[b, :count[b]] lists the active positions in increasing order (the same list every run,
    and weight rows read in address order). No atomics; count needs no zeroing. Grid: (B,)."""
    b = tl.program_id(0)
    n = 0
    k0 = 0
    while k0 < n_in:
        offs = k0 + tl.arange(0, BLOCK)
        inside = offs < n_in
        x = tl.load(x_ptr + b * n_in + offs, mask=inside, other=0.0)
        n = _append_active_at(x, offs, inside, idx_ptr + b * n_in, n)
        k0 += BLOCK
    tl.store(count_ptr + b, n)


@triton.jit
def compact_active_kernel(x_ptr, idx_ptr, count_ptr, n_in, BLOCK: tl.constexpr):
    """idx[b, :count[b]] = positions of the nonzero (and NaN) entries of row b of x; count must start at 0.
    Grid: (cdiv(n_in, BLOCK), B). Order within a row is not sorted across blocks."""
    pid = tl.program_id(0)
    b = tl.program_id(1)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    inside = offs < n_in
    x = tl.load(x_ptr + b * n_in + offs, mask=inside, other=0.0)
    _append_active(x, offs, inside, idx_ptr + b * n_in, count_ptr + b)


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
def _split_sum(x_ptr, idx_ptr, w_ptr, b, n_in, n_out, s, splits, count, ns, n_ok, BLOCK_K: tl.constexpr):
    """Split s's share of a row's product for outputs ``ns``: active blocks s, s + splits, ..., in fp32."""
    acc = tl.zeros(ns.shape, dtype=tl.float32)
    k0 = s * BLOCK_K
    while k0 < count:
        acc += _active_block_product(x_ptr, idx_ptr, w_ptr, b, n_in, n_out, k0, count, ns, n_ok, BLOCK_K)
        k0 += splits * BLOCK_K
    return acc


@triton.jit
def dense_gather_kernel(x_ptr, idx_ptr, count_ptr, w_ptr, out_ptr, n_in, n_out, act_bucket,
                        ATOMIC: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr):
    """Split-K over the active inputs: program (s, tile, b) sums the active blocks s, s + S, ...
    (S = the grid's first extent) of row b for one output tile in registers, reading W_t [in, out]
    (input-major: an active input's row is one contiguous read). Then, with ATOMIC, it adds the tile
    to y [B, out] with one fp32 atomic (a program with no block adds nothing); else (the two-pass
    alternative) it stores it as partial s of part [S, B, out] for :func:`reduce_splits_kernel`.
    The grid is sized on the host without knowing the device-side count: S up to cdiv(n_in, BLOCK_K)
    (one block per program, when the GPU has room for that many programs), fewer when the grid would
    otherwise be mostly programs that find nothing to do. Grid: (S, cdiv(n_out, BLOCK_N), B).
    ``act_bucket`` is unused here: it is part of the autotuning key (tuning.py)."""
    s = tl.program_id(0)
    pid_n = tl.program_id(1)
    b = tl.program_id(2)
    splits = tl.num_programs(0)
    count = tl.load(count_ptr + b)
    ns = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = ns < n_out
    if ATOMIC:
        if s * BLOCK_K < count:  # most programs at low activity: return before touching the weights
            acc = _split_sum(x_ptr, idx_ptr, w_ptr, b, n_in, n_out, s, splits, count, ns, n_ok, BLOCK_K)
            tl.atomic_add(out_ptr + b * n_out + ns, acc, mask=n_ok, sem="relaxed")  # a sum: no ordering needed
    else:
        acc = _split_sum(x_ptr, idx_ptr, w_ptr, b, n_in, n_out, s, splits, count, ns, n_ok, BLOCK_K)
        tl.store(out_ptr + (s * tl.num_programs(2) + b).to(tl.int64) * n_out + ns, acc, mask=n_ok)


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
def _implicit_zero_terms(xv, row_ptr, k0, k1, os, o_ok):
    """For a non-finite input xv: what its pruned (not stored) zeros add to outputs ``os``, i.e.
    xv * 0 = NaN where column rows[k0:k1] stores no entry for o, else 0 (the stored entries add
    xv * value themselves). Matches F.linear on the dense matrix, as the CPU kernel does. A lower
    bound per output lane by binary search over the sorted rows: rare inputs, so simple."""
    lo = tl.zeros(os.shape, dtype=tl.int64) + k0
    hi = tl.zeros(os.shape, dtype=tl.int64) + k1
    span = k1 - k0
    while span > 0:  # ceil(log2(k1 - k0 + 1)) halvings bring every lane to lo == hi
        open_ = lo < hi
        mid = (lo + hi) // 2
        r = tl.load(row_ptr + mid, mask=open_, other=0).to(tl.int64)
        right = open_ & (r < os)
        lo = tl.where(right, mid + 1, lo)
        hi = tl.where(open_ & ~right, mid, hi)
        span = span // 2
    found = tl.load(row_ptr + lo, mask=o_ok & (lo < k1), other=-1).to(tl.int64) == os
    return tl.where(found, 0.0, xv * 0.0)


@triton.jit
def _add(ptr, vals, mask, ATOMIC: tl.constexpr):
    """*ptr += vals: an fp32 atomic (relaxed: a sum needs no ordering), or a plain load and store for
    a caller whose lanes never collide and who orders its adds with barriers."""
    if ATOMIC:
        tl.atomic_add(ptr, vals, mask=mask, sem="relaxed")
    else:
        tl.store(ptr, tl.load(ptr, mask=mask, other=0.0) + vals, mask=mask)


@triton.jit
def _scatter_column(x_ptr, idx_ptr, col_ptr, row_ptr, val_ptr, out_ptr, b, a, piece, pieces, n_in, n_out, nnz,
                    ATOMIC: tl.constexpr, BLOCK: tl.constexpr):
    """out[0, n_out) += x[b, j] * piece ``piece`` of ``pieces`` (equal shares of its nonzeros) of
    column j of the CSC weight, j the a-th active input of row b. Accesses are masked to [0, nnz) and
    [0, n_out): a corrupted structure can give a wrong result but cannot touch memory outside the
    tensors. Without ATOMIC a CTA barrier ends each pass, so the next column's adds (from other
    threads) come after this one's."""
    j = tl.load(idx_ptr + b * n_in + a)
    xv = tl.load(x_ptr + b * n_in + j).to(tl.float32)
    k0 = tl.maximum(tl.load(col_ptr + j), 0)
    k1 = tl.minimum(tl.load(col_ptr + j + 1), nnz)
    if (piece == 0) & (xv * 0.0 != 0.0):  # NaN or Inf: the implicit zeros contribute NaN too (once)
        o = 0
        while o < n_out:
            os = o + tl.arange(0, BLOCK)
            o_ok = os < n_out
            _add(out_ptr + os, _implicit_zero_terms(xv, row_ptr, k0, k1, os, o_ok), o_ok, ATOMIC)
            o += BLOCK
        if not ATOMIC:
            tl.debug_barrier()
    span = tl.maximum(k1 - k0, 0)
    k = k0 + span * piece // pieces
    k_end = k0 + span * (piece + 1) // pieces
    while k < k_end:  # (a while loop: the interpreter cannot range() over loaded bounds)
        ks = k + tl.arange(0, BLOCK)
        ok = ks < k_end
        r = tl.load(row_ptr + ks, mask=ok, other=0).to(tl.int32)
        v = tl.load(val_ptr + ks, mask=ok, other=0.0).to(tl.float32)
        _add(out_ptr + r, xv * v, ok & (r >= 0) & (r < n_out), ATOMIC)
        k += BLOCK
    if not ATOMIC:
        tl.debug_barrier()


@triton.jit
def sparse_gather_kernel(x_ptr, idx_ptr, count_ptr, col_ptr, row_ptr, val_ptr, y_ptr, n_in, n_out, nnz, mean_nnz,
                         act_bucket, BLOCK: tl.constexpr):
    """Pruned weights (CSC), scattered with fp32 atomics. The work items of row b are (active column,
    piece) pairs: each active column is cut into pieces = cdiv(mean_nnz, BLOCK) equal shares (about one
    BLOCK each for a column of average length), so a long column is spread over many programs instead
    of one program walking it block after dependent block. The P programs of a row stride over its
    count * pieces items (P fixed by the host without knowing count: programs with no item return at
    once, and there are at most P of them). The structure is validated on the host once per pair of
    index tensors, not per call (that would need a host sync); the kernel masks its accesses.
    Grid: (P, B)."""
    p = tl.program_id(0)
    b = tl.program_id(1)
    pieces = tl.maximum(tl.cdiv(mean_nnz, BLOCK), 1)
    items = tl.load(count_ptr + b) * pieces
    w = p
    while w < items:
        _scatter_column(x_ptr, idx_ptr, col_ptr, row_ptr, val_ptr, y_ptr + b * n_out, b, w // pieces, w % pieces,
                        pieces, n_in, n_out, nnz, ATOMIC=True, BLOCK=BLOCK)
        w += tl.num_programs(0)


@triton.jit
def sparse_gather_partial_kernel(x_ptr, idx_ptr, count_ptr, col_ptr, row_ptr, val_ptr, part_ptr, n_in, n_out,
                                 nnz, splits, act_bucket, BLOCK: tl.constexpr):
    """The deterministic :func:`sparse_gather_kernel`: split s scatters the active columns s,
    s + splits, ... in that order into its own partial row part[s, b] with plain loads and stores.
    A column's row indices are distinct (the structure check ensures it), so one block's lanes never
    collide, and a CTA barrier after each column orders its adds before the next column's. part
    [splits, B, out] starts at zero; :func:`reduce_splits_kernel` sums it in a fixed order.
    Grid: (splits, B)."""
    s = tl.program_id(0)
    b = tl.program_id(1)
    n_rows = tl.num_programs(1)
    count = tl.load(count_ptr + b)
    out = part_ptr + (s * n_rows + b).to(tl.int64) * n_out
    a = s
    while a < count:
        _scatter_column(x_ptr, idx_ptr, col_ptr, row_ptr, val_ptr, out, b, a, 0, 1, n_in, n_out, nnz,
                        ATOMIC=False, BLOCK=BLOCK)
        a += splits


@triton.jit
def masked_splitk_kernel(x_ptr, w_ptr, y_ptr, n_in, n_out, act_bucket, BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr):
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
    tl.atomic_add(y_ptr + b * n_out + ns, tl.sum(w * xv[:, None], axis=0), mask=n_ok, sem="relaxed")


@triton.jit
def _egru_gate(gi_ptr, gh_ptr, c_ptr, thr_ptr, hs, ok, H):
    """The EGRU update of units ``hs`` from one row's gi, gh [3H] (fp32, bias included) and c [H]
    (the CPU's egru_impl.h; nn/egru.py documents the formula). Returns (c_new, y)."""
    gi_z = tl.load(gi_ptr + hs, mask=ok, other=0.0)
    gi_r = tl.load(gi_ptr + H + hs, mask=ok, other=0.0)
    gi_g = tl.load(gi_ptr + 2 * H + hs, mask=ok, other=0.0)
    gh_z = tl.load(gh_ptr + hs, mask=ok, other=0.0)
    gh_r = tl.load(gh_ptr + H + hs, mask=ok, other=0.0)
    gh_g = tl.load(gh_ptr + 2 * H + hs, mask=ok, other=0.0)
    c_prev = tl.load(c_ptr + hs, mask=ok, other=0.0)
    thr = tl.minimum(tl.maximum(tl.load(thr_ptr + hs, mask=ok, other=0.0), 0.0), 1.0)
    z = tl.sigmoid(gi_z + gh_z)
    r = tl.sigmoid(gi_r + gh_r)
    g = 2.0 * tl.sigmoid(2.0 * (gi_g + r * gh_g)) - 1.0  # tanh, as the CPU kernel writes it
    c_tilde = z * c_prev + (1.0 - z) * g
    o = (c_tilde - thr > 0).to(tl.float32)
    return c_tilde - o * thr, o * c_tilde  # y: NaN stays NaN (0 * NaN), as in the reference


@triton.jit
def egru_gate_kernel(gi_ptr, gh_ptr, c_ptr, thr_ptr, c_out_ptr, y_out_ptr, idx_ptr, count_ptr, H,
                     COMPACT: tl.constexpr, BLOCK: tl.constexpr):
    """The EGRU update after the two products, fused: gi, gh [B, 3H], c [B, H] -> c_out, y_out [B, H].
    With COMPACT it also appends the positions of y_out's nonzero (and NaN) entries to idx[b] and
    count[b] (count must start at 0): the next step's recurrent product needs no compaction pass.
    Grid: (cdiv(H, BLOCK), B)."""
    pid = tl.program_id(0)
    b = tl.program_id(1)
    hs = pid * BLOCK + tl.arange(0, BLOCK)
    ok = hs < H
    c_new, y = _egru_gate(gi_ptr + b * 3 * H, gh_ptr + b * 3 * H, c_ptr + b * H, thr_ptr, hs, ok, H)
    tl.store(c_out_ptr + b * H + hs, c_new, mask=ok)
    tl.store(y_out_ptr + b * H + hs, y, mask=ok)
    if COMPACT:
        _append_active(y, hs, ok, idx_ptr + b * H, count_ptr + b)


@triton.jit
def egru_sequence_persistent_kernel(gi_ptr, w_ptr, b_hh_ptr, thr_ptr, c_ptr, ys_ptr, gh_ptr, idx_ptr,
                                    T, B, H, BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_H: tl.constexpr):
    """A whole EGRU sequence in one launch, dense recurrent weight (the alternative to a launch pair
    per step; evsparse-gpu-bench measures both). One program per batch row walks the T steps: compact
    y[t-1], gather the active rows of W_hh^T [H, 3H] into gh, run the gate. No grid-wide sync is
    needed because one program owns a row's whole step, at the price of one SM per row: for small and
    medium H, where a step's launches cost more than its bytes.
    gi [T, B, 3H] (input products, bias included); ys [T + 1, B, H] with ys[0] = y0 on entry and
    ys[t + 1] = step t's output; c [B, H] updated in place; gh [B, 3H], idx [B, H] scratch.
    Deterministic: the program compacts its row in order and sums each output tile in a fixed order.
    Grid: (B,)."""
    b = tl.program_id(0)
    H3 = 3 * H
    t = 0
    while t < T:
        y_prev = ys_ptr + (t * B).to(tl.int64) * H  # row b: step t - 1's output (T*B*H may pass int32)
        count = 0
        h0 = 0
        while h0 < H:
            hs = h0 + tl.arange(0, BLOCK_H)
            ok = hs < H
            count = _append_active_at(tl.load(y_prev + b * H + hs, mask=ok, other=0.0), hs, ok, idx_ptr + b * H,
                                      count)
            h0 += BLOCK_H
        tl.debug_barrier()  # the index list, written by all threads, is read by all below
        n0 = 0
        while n0 < H3:
            ns = n0 + tl.arange(0, BLOCK_N)
            n_ok = ns < H3
            acc = tl.load(b_hh_ptr + ns, mask=n_ok, other=0.0)
            acc += _split_sum(y_prev, idx_ptr, w_ptr, b, H, H3, 0, 1, count, ns, n_ok, BLOCK_K)
            tl.store(gh_ptr + b * H3 + ns, acc, mask=n_ok)
            n0 += BLOCK_N
        tl.debug_barrier()
        h0 = 0
        while h0 < H:
            hs = h0 + tl.arange(0, BLOCK_H)
            ok = hs < H
            c_new, y = _egru_gate(gi_ptr + (t * B + b).to(tl.int64) * H3, gh_ptr + b * H3, c_ptr + b * H, thr_ptr,
                                  hs, ok, H)
            tl.store(c_ptr + b * H + hs, c_new, mask=ok)
            tl.store(ys_ptr + ((t + 1) * B + b).to(tl.int64) * H + hs, y, mask=ok)
            h0 += BLOCK_H
        tl.debug_barrier()  # step t + 1 reads this output (and rewrites the index list read above)
        t += 1


@triton.jit
def diagonal_scan_kernel(a_re_ptr, a_im_ptr, h0_ptr, u_ptr, h_ptr, T, B, S, W,
                         COMPLEX: tl.constexpr, BLOCK: tl.constexpr):
    """The linear RNN's recurrence over a whole sequence: h[t, b] = a * h[t-1, b] + u[t, b], h[-1] = h0[b].
    The diagonal couples nothing across units, so once u is known for every step (the input product
    has no recurrence) each program owns a block of units and walks the steps itself. Real: rows of
    width W = S. Complex (a = a_re + i a_im): rows [re(S) | im(S)], W = 2S. u, h are [T, B, W] fp32.
    Grid: (cdiv(S, BLOCK), B)."""
    pid = tl.program_id(0)
    b = tl.program_id(1)
    ss = pid * BLOCK + tl.arange(0, BLOCK)
    ok = ss < S
    a_re = tl.load(a_re_ptr + ss, mask=ok, other=0.0)
    h_re = tl.load(h0_ptr + b * W + ss, mask=ok, other=0.0)
    if COMPLEX:
        a_im = tl.load(a_im_ptr + ss, mask=ok, other=0.0)
        h_im = tl.load(h0_ptr + b * W + S + ss, mask=ok, other=0.0)
    t = 0
    while t < T:
        row = (t * B + b).to(tl.int64) * W
        u_re = tl.load(u_ptr + row + ss, mask=ok, other=0.0)
        if COMPLEX:
            u_im = tl.load(u_ptr + row + S + ss, mask=ok, other=0.0)
            new_re = a_re * h_re - a_im * h_im + u_re
            h_im = a_im * h_re + a_re * h_im + u_im
            h_re = new_re
            tl.store(h_ptr + row + S + ss, h_im, mask=ok)
        else:
            h_re = a_re * h_re + u_re
        tl.store(h_ptr + row + ss, h_re, mask=ok)
        t += 1
