"""Activity x weight sparsity in one product: pack a pruned weight, feed a sparse input, compare with
F.linear (result and time).

    python examples/sparse_linear_demo.py --in-features 2048 --out-features 6144 --activity 0.1 --density 0.15
"""

import argparse
import time

import torch
import torch.nn.functional as F

import evsparse


def median_time(fn, reps):
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--in-features", type=int, default=2048)
    ap.add_argument("--out-features", type=int, default=6144)
    ap.add_argument("--activity", type=float, default=0.1, help="fraction of nonzero inputs")
    ap.add_argument("--density", type=float, default=0.15, help="fraction of weights kept")
    ap.add_argument("--reps", type=int, default=50)
    args = ap.parse_args(argv)

    torch.manual_seed(0)
    w = torch.randn(args.out_features, args.in_features)
    mask = torch.rand_like(w) < args.density
    x = torch.randn(args.in_features) * (torch.rand(args.in_features) < args.activity)
    pw = evsparse.pack(w, mask)  # layout chosen by density
    dense_w = w * mask
    with torch.inference_mode():
        y = evsparse.sparse_linear(x, pw)
        ref = F.linear(x, dense_w)
        t_sparse = median_time(lambda: evsparse.sparse_linear(x, pw), args.reps)
        t_dense = median_time(lambda: F.linear(x, dense_w), args.reps)
    print(pw)
    print(f"max |evsparse - F.linear| = {float((y - ref).abs().max()):.2e}")
    print(f"F.linear {t_dense * 1e6:.1f} us, evsparse {t_sparse * 1e6:.1f} us: {t_dense / t_sparse:.1f}x measured, "
          f"{1 / (args.activity * args.density):.1f}x theoretical (1 / (activity x density))")


if __name__ == "__main__":
    main()
