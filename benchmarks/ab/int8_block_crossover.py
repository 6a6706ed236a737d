"""int8 weights pruned in 16x1 blocks: the sparse layout (its block path) against the int8 dense
layout (one byte per weight, the active inputs' rows read whole), with float32 sparse beside, at
batch 1, interleaved in one process. ``AUTO_SPARSE_MAX_DENSITY_BLOCKS_INT8`` is set from it.

    python benchmarks/ab/int8_block_crossover.py [--rounds N]
"""
import argparse

import torch

import evsparse
from evsparse.bench.common import cpu_name, random_block_mask
from evsparse.timing import time_interleaved

ap = argparse.ArgumentParser()
ap.add_argument("--rounds", type=int, default=9)
ap.add_argument("--sizes", nargs="+", default=["256x768", "1024x3072", "2048x6144"])
ap.add_argument("--densities", nargs="+", type=float, default=[0.1, 0.2, 0.3, 0.4, 0.5])
args = ap.parse_args()
torch.manual_seed(0)
print(f"# {cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}, kernels {evsparse.get_isa()}; "
      f"medians over {args.rounds} rounds of interleaved blocks, us")
with torch.inference_mode():
    for size in args.sizes:
        inp, out = map(int, size.split("x"))
        w = torch.randn(out, inp)
        for dens in args.densities:
            mask = random_block_mask(out, inp, dens)
            packed = {"int8 sparse": evsparse.pack(w, mask, "sparse", weight_dtype=torch.int8),
                      "int8 dense": evsparse.pack(w, mask, "dense", weight_dtype=torch.int8),
                      "fp32 sparse": evsparse.pack(w, mask, "sparse")}
            for act in (0.1, 1.0):
                xs = [torch.randn(1, inp) * (torch.rand(1, inp) < act) for _ in range(16)]
                med = time_interleaved({n: (lambda x, pw=pw: evsparse.sparse_linear(x, pw), xs)
                                        for n, pw in packed.items()}, args.rounds)
                print(f"{size} dens {dens:.1f} act {act:.1f}: "
                      + "  ".join(f"{n} {t * 1e6:.1f}" for n, t in med.items())
                      + f" | int8 sparse over int8 dense {med['int8 dense'] / med['int8 sparse']:.2f}x", flush=True)
