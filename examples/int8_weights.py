"""int8 weights: quantise a pruned product and a 2-layer EGRU, and compare with float32 (error, bytes,
time).

    python examples/int8_weights.py --in-features 2048 --out-features 6144 --hidden 256

The weights are quantised symmetrically with one float32 scale per input column; the kernels fold the
scale into each active input, so the product reads one byte per weight instead of four.
"""

import argparse

import torch

import evsparse
from evsparse.nn import EGRU
from evsparse.timing import time_interleaved


def weight_bytes(pw):
    n = pw.values.numel() * pw.values.element_size()
    for t in (pw.col_ptr, pw.row_idx, pw.scale):
        n += 0 if t is None else t.numel() * t.element_size()
    return n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--in-features", type=int, default=2048)
    ap.add_argument("--out-features", type=int, default=6144)
    ap.add_argument("--activity", type=float, default=0.1)
    ap.add_argument("--density", type=float, default=0.15)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--reps", type=int, default=9, help="interleaved timing rounds")
    args = ap.parse_args(argv)
    torch.manual_seed(0)

    # One pruned product.
    w = torch.randn(args.out_features, args.in_features)
    mask = torch.rand_like(w) < args.density
    x = torch.randn(args.in_features) * (torch.rand(args.in_features) < args.activity)
    p32 = evsparse.pack(w, mask)
    # The same layout as float32, to compare like with like (layout="auto" would pick the dense-gather for
    # int8 from 10% density up, where its 1-byte rows beat the sparse-gather: docs, "Choosing a layout").
    p8 = evsparse.pack(w, mask, layout=p32.layout, weight_dtype=torch.int8)
    with torch.inference_mode():
        y32, y8 = evsparse.sparse_linear(x, p32), evsparse.sparse_linear(x, p8)
    # side by side: interleaved blocks of calls, medians (the library's timing helper)
    t = time_interleaved({name: (lambda a, pw=pw: evsparse.sparse_linear(a, pw), [x])
                          for name, pw in (("float32", p32), ("int8", p8))}, args.reps)
    t32, t8 = t["float32"], t["int8"]
    err = (y8 - y32).abs()
    print(p8)
    print(f"product: int8 vs float32 max |error| {float(err.max()):.3e}, relative (L2) "
          f"{float(err.norm() / y32.norm()):.2e}; weights {weight_bytes(p32) / 1e6:.2f} MB -> "
          f"{weight_bytes(p8) / 1e6:.2f} MB; warm {t32 * 1e6:.1f} us -> {t8 * 1e6:.1f} us")

    # A 2-layer EGRU, float32 and int8 weights, over one sequence.
    egru = EGRU(args.hidden, args.hidden, num_layers=2)
    xs = torch.randn(args.steps, 1, args.hidden)
    m32 = egru.sparsify()
    m8 = egru.sparsify(weight_dtype=torch.int8)
    with torch.inference_mode():
        (o32, (c32, _)), (o8, (c8, _)) = m32(xs), m8(xs)
    agree = float(((o32 != 0) == (o8 != 0)).float().mean())
    print(f"EGRU H={args.hidden}: cell state max |int8 - float32| {float((c8 - c32).abs().max()):.3e}; "
          f"events agree on {agree:.1%} of outputs; activity {m32.activity()} vs {m8.activity()}")


if __name__ == "__main__":
    main()
