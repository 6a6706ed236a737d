"""The float32 sparse layout on AVX-512 with and without the bitmask-gather (issue #25), against the
dense layout, interleaved in one process: ``sparse_linear`` at batch 1, 10% active inputs, 2 threads.
The sparse layout's AVX2 run is the scatter (CSC); its AVX-512 run takes the bitmask at or above
``kBitmaskMinDensity`` (csrc/ops/checks.h). Needs an AVX-512 CPU.

    python benchmarks/ab/bitmask_layout.py [--rounds N]
"""
import argparse

import torch

import evsparse
from evsparse.timing import time_interleaved

ap = argparse.ArgumentParser()
ap.add_argument("--rounds", type=int, default=11)
args = ap.parse_args()
torch.manual_seed(0)
cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
print(f"# {cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}; medians over {args.rounds} rounds, us")
current = [None]
with torch.inference_mode():
    for inp, out in [(256, 768), (1024, 3072), (2048, 6144)]:
        for dens in (0.1, 0.125, 0.15, 0.2, 0.3, 0.5):
            w = torch.randn(out, inp)
            mask = torch.rand(out, inp) < dens
            packed = {"sparse": evsparse.pack(w, mask, layout="sparse"), "dense": evsparse.pack(w, mask, layout="dense")}
            xs = [torch.randn(1, inp) * (torch.rand(1, inp) < 0.1) for _ in range(16)]

            def method(isa, layout):
                def call(x):
                    if current[0] != isa:
                        evsparse.set_isa(isa)
                        current[0] = isa
                    evsparse.sparse_linear(x, packed[layout])
                return call, xs

            names = {"sparse, avx2 (scatter)": ("avx2", "sparse"), "sparse, avx512": ("avx512", "sparse"),
                     "dense, avx2": ("avx2", "dense"), "dense, avx512": ("avx512", "dense")}
            med = {n: t * 1e6 for n, t in time_interleaved({n: method(*v) for n, v in names.items()}, args.rounds).items()}
            best_dense = min(med["dense, avx2"], med["dense, avx512"])
            print(f"{inp}x{out} dens {dens:5.3f}: " + "  ".join(f"{n} {t:6.1f}" for n, t in med.items())
                  + f"  | avx512 sparse vs scatter {med['sparse, avx2 (scatter)'] / med['sparse, avx512']:.2f}x,"
                  f" vs best dense {best_dense / med['sparse, avx512']:.2f}x")
evsparse.set_isa("avx512")
