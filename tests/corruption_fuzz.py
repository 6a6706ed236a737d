"""Crash-fuzz of corrupted packed weights, run in a subprocess by test_memory_safety.py (a segfault
then fails that test instead of killing pytest). Standalone soak: ``python corruption_fuzz.py --cases
20000 --seed 1`` (EVSPARSE_ISA picks the kernels).

Every case packs a random weight, corrupts its structure in one of several ways and calls the ops on
it directly (no Python validation in between). The contract checked: the op raises ValueError exactly
when the structure is invalid (the ops validate each structure they have not seen unchanged before),
and otherwise returns what a safe scatter-add over the structure gives. Anything else (a crash,
another exception, a wrong answer, a missing or a spurious ValueError) fails the run. The kernels'
own range checks (for data that changes without a version bump) are exercised by the C++ self-test
and by test_memory_safety.test_mmap_file_changed_after_loading.
"""

from __future__ import annotations

import argparse
import random
import sys

import torch

import evsparse

ops = torch.ops.evsparse


def corrupt(cp: torch.Tensor, ri: torch.Tensor, out: int, rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
    cp, ri = cp.clone(), ri.clone()
    nnz, info = ri.numel(), torch.iinfo(ri.dtype)
    kind = rng.randrange(9)
    if kind == 0 and nnz:  # one index anywhere in the dtype's range
        ri[rng.randrange(nnz)] = rng.randint(info.min, info.max)
    elif kind == 1 and nnz:  # just past the end / just below zero
        ri[rng.randrange(nnz)] = rng.choice([out, out + 1, -1])
    elif kind == 2 and nnz > 1:  # unsorted: swap two entries (in range)
        a, b = rng.randrange(nnz), rng.randrange(nnz)
        ri[a], ri[b] = ri[b].clone(), ri[a].clone()
    elif kind == 3:  # col_ptr entry moved anywhere
        cp[rng.randrange(cp.numel())] = rng.randint(-3, nnz + 3)
    elif kind == 4:
        cp.zero_()
    elif kind == 5 and nnz:  # the first index of a column outside, the last inside (the reported crash)
        ri[0] = rng.choice([info.max, info.min, out + 7])
    elif kind == 6:  # huge pointers
        cp[rng.randrange(cp.numel())] = rng.choice([2**62, -(2**62)])
    elif kind == 7 and nnz:  # every index the same out-of-range value
        ri.fill_(min(info.max, out + rng.randint(0, 100)))
    else:  # several random indices
        for _ in range(rng.randint(1, 4)):
            if nnz:
                ri[rng.randrange(nnz)] = rng.randint(-out, 2 * out)
    return cp, ri


def valid(cp: torch.Tensor, ri: torch.Tensor, out: int) -> bool:
    """The ops' full structure check: col_ptr from 0 to nnz, never decreasing; every row index in
    [0, out) and strictly increasing within its column."""
    nnz = ri.numel()
    if int(cp[0]) != 0 or int(cp[-1]) != nnz or bool((cp[1:] < cp[:-1]).any()):
        return False
    for j in range(cp.numel() - 1):
        rows = ri[int(cp[j]):int(cp[j + 1])].long()
        if rows.numel() and (int(rows.min()) < 0 or int(rows.max()) >= out or bool((rows[1:] <= rows[:-1]).any())):
            return False
    return True


def expected(x: torch.Tensor, cp: torch.Tensor, ri: torch.Tensor, v: torch.Tensor, out: int, bias):
    """What the op must return for this (possibly corrupted) structure, or None where it must raise."""
    if not valid(cp, ri, out):
        return None
    x2 = x.reshape(-1, x.shape[-1]).double()
    y = torch.zeros(x2.shape[0], out, dtype=torch.float64)
    if bias is not None:
        y += bias.double()
    for b in range(x2.shape[0]):
        for j in torch.nonzero(x2[b]).flatten().tolist():
            k0, k1 = int(cp[j]), int(cp[j + 1])
            y[b].index_add_(0, ri[k0:k1].long(), x2[b, j] * v[k0:k1].double())
    return y.reshape(*x.shape[:-1], out)


def s5_plan_case(W: torch.Tensor, cp: torch.Tensor, ri: torch.Tensor, is_valid: bool, rng: random.Random) -> str:
    """Packs an S5 stack whose encoder weight is ``W`` (sparse layout), writes ``cp``/``ri`` over the
    encoder's structure in the plan's arena and steps it; returns what went wrong, or ''."""
    from evsparse.nn import S5Stack

    out, inp = W.shape
    m = S5Stack(inp, out, 2, num_layers=1, output_size=rng.choice([None, 3])).eval()
    with torch.no_grad():
        m.encoder_weight.copy_(W)
    packed = m.sparsify(layout="sparse")
    enc = evsparse.plan.layer_views(packed.plan_arena, packed.plan_meta)[0].weights[0]
    if enc.row_idx is None or enc.row_idx.numel() != ri.numel():
        return "skipped"
    enc.col_ptr.copy_(cp.to(enc.col_ptr.dtype))  # views of the arena: the arena changes in place
    enc.row_idx.copy_(ri.to(enc.row_idx.dtype))
    x = torch.rand(rng.choice([1, 2]), inp)
    try:
        y, h = ops.s5_plan_step(x, torch.zeros(1, x.shape[0], 2), packed.plan_arena, packed.plan_meta,
                                packed.out_features)
    except ValueError:
        return "ValueError for a valid structure" if is_valid else ""
    if not is_valid:
        return "no error for corrupted data"
    return "" if bool(torch.isfinite(y).all()) else "non-finite result"


def run(cases: int, seed: int) -> int:
    rng = random.Random(seed)
    torch.manual_seed(seed)
    raised = matched = plan_cases = 0
    for case in range(cases):
        out, inp = rng.randint(1, 90), rng.randint(1, 40)
        if rng.random() < 0.4:  # whole 16x1 blocks (block-pruned): the block-gather serves the valid ones
            keep = torch.rand(-(-out // 16), inp) < rng.random()
            W = torch.randn(out, inp) * keep.repeat_interleave(16, 0)[:out]
        else:
            W = torch.randn(out, inp) * (torch.rand(out, inp) < rng.random())
        pw = evsparse.pack(W, layout="sparse")
        if rng.random() < 0.3 and out <= 32767:
            pw = evsparse.PackedWeight("sparse", (out, inp), pw.values, pw.col_ptr, pw.row_idx.to(torch.int32))
        cp, ri = corrupt(pw.col_ptr, pw.row_idx, out, rng)
        B = rng.choice([1, 1, 3, 40])  # 40 rows: the batch-parallel path; 1: the column-group split
        x = torch.randn(B, inp) * (torch.rand(B, inp) < rng.random())
        if B == 1 and rng.random() < 0.5:
            x = x[0]
        bias = torch.randn(out) if rng.random() < 0.5 else None
        torch.set_num_threads(rng.choice([1, 2]))
        want = expected(x, cp, ri, pw.values, out, bias)
        # The same corruption written into the arena of an S5 plan whose encoder is W: the whole-model
        # plan op must refuse exactly the invalid structures, as the bare op does.
        if pw.row_idx.dtype == torch.int16 and rng.random() < 0.5:
            status = s5_plan_case(W, cp, ri, want is not None, rng)
            plan_cases += status == ""
            if status and status != "skipped":
                print(f"case {case}: S5 plan: {status}", file=sys.stderr)
                return 1
        try:
            got = ops.sparse_gather_linear(x, cp, ri, pw.values, out, bias)
        except ValueError:
            if want is not None:
                print(f"case {case}: ValueError for a valid structure", file=sys.stderr)
                return 1
            raised += 1
            continue
        if want is None:
            print(f"case {case}: no error for corrupted data (cp={cp.tolist()[:20]}, ri={ri.tolist()[:20]})", file=sys.stderr)
            return 1
        if not torch.allclose(got.double(), want, rtol=1e-4, atol=1e-4):
            print(f"case {case}: wrong result", file=sys.stderr)
            return 1
        matched += 1
        # The same corrupted weight as the input weight of the fused recurrent ops: they must not crash
        # (ValueError or a result; the reference above covers the product itself).
        if out % 3 == 0:
            H = out // 3
            args = [pw.values, cp, ri, torch.randn(H, out), None, None, torch.zeros(out), torch.zeros(out),
                    torch.rand(H)]
            xs = torch.randn(2, inp)
            for call in (lambda: ops.egru_step(xs, torch.zeros(2, H), torch.randn(2, H), *args),
                         lambda: ops.egru_stack_step(xs, torch.zeros(1, 2, H), torch.randn(1, 2, H), args)):
                try:
                    call()
                except ValueError:
                    pass
        # And as the input weight of the linear RNN ops (state width = out, a real diagonal).
        lrnn = [pw.values, cp, ri, torch.zeros(out), torch.rand(out), None, torch.randn(out, 5), None, None,
                torch.zeros(5)]
        xs = torch.randn(2, inp)
        for call in (lambda: ops.linear_rnn_step(xs, torch.zeros(2, out), *lrnn, False),
                     lambda: ops.linear_rnn_stack_step(xs, torch.zeros(1, 2, out), lrnn, [False])):
            try:
                call()
            except ValueError:
                pass
    print(f"{cases} cases: {raised} refused with ValueError, {matched} accepted and equal to the reference; "
          f"{plan_cases} also checked inside an S5 plan")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    return run(args.cases, args.seed)


if __name__ == "__main__":
    sys.exit(main())
