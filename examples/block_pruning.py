"""Block pruning: prune a product and a 2-layer EGRU in whole 16x1 blocks, the structure the sparse
layout multiplies one vector operation per block, and compare with unstructured pruning at the same
sparsity (equality with the dense masked reference, time side by side).

    python examples/block_pruning.py --in-features 2048 --out-features 6144 --hidden 256

A 16x1 block is 16 consecutive output rows of one input column (W[16 b : 16 b + 16, j] of a [out, in]
weight). ``evsparse.prune.global_magnitude(model, sparsity, block=16)`` ranks blocks by their L2 norm;
``pack(..., layout="sparse")`` stores them as usual, and the op layer recognises the blocked columns when
it first validates the structure.
"""

import argparse

import torch

import evsparse
from evsparse import prune
from evsparse.nn import EGRU
from evsparse.timing import time_interleaved


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--in-features", type=int, default=2048)
    ap.add_argument("--out-features", type=int, default=6144)
    ap.add_argument("--activity", type=float, default=0.1)
    ap.add_argument("--sparsity", type=float, default=0.85)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--reps", type=int, default=9, help="interleaved timing rounds")
    args = ap.parse_args(argv)
    torch.manual_seed(0)

    # One product, pruned both ways by magnitude to the same sparsity.
    lin = torch.nn.Linear(args.in_features, args.out_features, bias=False)
    holder = torch.nn.Module()
    holder.weight = lin.weight
    pick = lambda mod, m, p_name, p: p_name == "weight"  # noqa: E731
    masks = {b: prune.global_magnitude(holder, args.sparsity, include=pick, block=b)["weight"] for b in (1, 16)}
    w = lin.weight.detach()
    packed = {b: evsparse.pack(w, masks[b], layout="sparse") for b in (1, 16)}
    xs = [torch.randn(args.in_features) * (torch.rand(args.in_features) < args.activity) for _ in range(8)]
    with torch.inference_mode():
        for b in (1, 16):
            ref = torch.nn.functional.linear(xs[0], w * masks[b])
            err = (evsparse.sparse_linear(xs[0], packed[b]) - ref).abs().max().item()
            print(f"{'block 16x1' if b == 16 else 'unstructured'}: density {packed[b].nnz / w.numel():.3f}, "
                  f"max |evsparse - F.linear(masked)| {err:.2e}")
        t = time_interleaved({name: (lambda x, pw=pw: evsparse.sparse_linear(x, pw), xs)
                              for name, pw in (("unstructured", packed[1]), ("block", packed[16]))}, args.reps)
        t_dense = time_interleaved({"F.linear": (lambda x: torch.nn.functional.linear(x, w), xs)}, args.reps)["F.linear"]
    print(f"product {args.out_features}x{args.in_features}, {args.activity:.0%} active, {args.sparsity:.0%} pruned "
          f"(theoretical {1 / (args.activity * (1 - args.sparsity)):.0f}x over dense): unstructured "
          f"{t['unstructured'] * 1e6:.1f} us, block {t['block'] * 1e6:.1f} us "
          f"({t['unstructured'] / t['block']:.2f}x); F.linear {t_dense * 1e6:.1f} us")

    # A 2-layer EGRU, block-pruned, streamed on the kernels.
    H = args.hidden
    m = EGRU(H, H, num_layers=2).eval()
    with torch.no_grad():
        for k in range(2):
            getattr(m, f"thr_l{k}").fill_(0.5)
    bmasks = prune.global_magnitude(m, args.sparsity, block=16)
    prune.apply_masks(m, bmasks)
    s = m.sparsify(bmasks, layout="sparse")
    seq = torch.randn(args.steps, 1, H) * (torch.rand(args.steps, 1, H) < args.activity)
    with torch.no_grad():
        ref, _ = m(seq)
        stream = s.stream(batch_size=1)
        out = torch.stack([stream.step(seq[t]).clone() for t in range(args.steps)])
    print(f"EGRU 2x{H}, {args.sparsity:.0%} pruned in 16x1 blocks: stream == training module "
          f"(max diff {(out - ref).abs().max().item():.2e}; {args.steps} steps)")


if __name__ == "__main__":
    main()
