"""Block-pruned against unstructured sparse weights at equal density (16x1 blocks: what
``evsparse.prune``'s ``block=16`` leaves; the sparse layout multiplies them one vector operation per
block), interleaved in one process: ``sparse_linear`` at batch 1 with the block path on and off
(``set_block_min_fraction(2)``: the scatter on the same blocked structure, the same bits; on AVX-512 at
>= 17.5% density float32 the bitmask instead), the unstructured
weight, the dense layout, ``F.linear`` and ``x @ W^T``. Theoretical = 1 / (activity x density).

    python benchmarks/ab/block_pruned.py [--rounds N] [--sizes 1024x3072 ...]
"""
import argparse

import torch

import evsparse
from evsparse.bench.common import KnobSwitch, cpu_name, random_block_mask
from evsparse.timing import time_interleaved

ap = argparse.ArgumentParser()
ap.add_argument("--rounds", type=int, default=9)
ap.add_argument("--sizes", nargs="+", default=["256x768", "1024x3072", "2048x6144"])
ap.add_argument("--points", nargs="+", default=["0.1:0.15", "1.0:0.15", "0.1:0.05", "0.1:0.3"],
                help="activity:density pairs")
args = ap.parse_args()
torch.manual_seed(0)
print(f"# {cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}, kernels {evsparse.get_isa()}; "
      f"medians over {args.rounds} rounds of interleaved blocks, us")
default_fraction = evsparse.get_block_min_fraction()
fraction_switch = KnobSwitch(evsparse.set_block_min_fraction)
with torch.inference_mode():
    for size in args.sizes:
        inp, out = map(int, size.split("x"))
        w = torch.randn(out, inp)
        wt = w.t().contiguous()
        for point in args.points:
            act, dens = map(float, point.split(":"))
            m_block = random_block_mask(out, inp, dens)
            m_unstr = torch.rand(out, inp) < dens
            packed = {"block": evsparse.pack(w, m_block, layout="sparse"),
                      "unstructured": evsparse.pack(w, m_unstr, layout="sparse"),
                      "dense layout": evsparse.pack(w, m_block, layout="dense")}
            xs = [torch.randn(1, inp) * (torch.rand(1, inp) < act) for _ in range(16)]

            def method(name, fraction):
                return fraction_switch.wrap(fraction, lambda x: evsparse.sparse_linear(x, packed[name])), xs

            methods = {"block path": method("block", default_fraction),
                       "path off, same blocks": method("block", 2.0),
                       "unstructured sparse": method("unstructured", default_fraction),
                       "dense layout": method("dense layout", default_fraction),
                       "F.linear": (lambda x: torch.nn.functional.linear(x, w), xs),
                       "x @ W^T": (lambda x: x @ wt, xs)}
            med = {n: t * 1e6 for n, t in time_interleaved(methods, args.rounds).items()}
            best_dense = min(med["F.linear"], med["x @ W^T"])
            b = med["block path"]
            print(f"{size} act {act:.2f} dens {dens:.2f} (theoretical {1 / (act * dens):.1f}x): "
                  + "  ".join(f"{n} {t:.1f}" for n, t in med.items())
                  + f" | block vs path off {med['path off, same blocks'] / b:.2f}x, vs unstructured"
                  f" {med['unstructured sparse'] / b:.2f}x, vs dense layout {med['dense layout'] / b:.2f}x,"
                  f" vs F.linear {med['F.linear'] / b:.1f}x, vs best dense {best_dense / b:.1f}x", flush=True)
evsparse.set_block_min_fraction(default_fraction)
