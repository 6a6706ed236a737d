"""The float32 sparse layout on AVX-512 with and without the bitmask-gather (issue #25), against the
dense layout, interleaved in one process: ``sparse_linear`` at batch 1, 10% active inputs, 2 threads.
The sparse layout runs as the scatter (CSC) on AVX2 and on AVX-512 (``set_bitmask_min_density(2)``),
and as the bitmask on AVX-512 (``set_bitmask_min_density(0)``), whatever the default threshold
(csrc/ops/checks.h), so the crossover this CPU has can be read off. Needs an AVX-512 CPU.

    python benchmarks/ab/bitmask_layout.py [--rounds N]
"""
import argparse

import torch

import evsparse
from evsparse.bench.common import KnobSwitch
from evsparse.timing import time_interleaved

ap = argparse.ArgumentParser()
ap.add_argument("--rounds", type=int, default=11)
args = ap.parse_args()
torch.manual_seed(0)
cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
print(f"# {cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}; medians over {args.rounds} rounds, us")
knobs = KnobSwitch(lambda k: (evsparse.set_isa(k[0]), evsparse.set_bitmask_min_density(k[1])))
default_threshold = evsparse.get_bitmask_min_density()
print(f"# default bitmask threshold here: {default_threshold}")
with torch.inference_mode():
    for inp, out in [(256, 768), (1024, 3072), (2048, 6144)]:
        for dens in (0.1, 0.125, 0.15, 0.2, 0.3, 0.5):
            w = torch.randn(out, inp)
            mask = torch.rand(out, inp) < dens
            packed = {"sparse": evsparse.pack(w, mask, layout="sparse"), "dense": evsparse.pack(w, mask, layout="dense")}
            xs = [torch.randn(1, inp) * (torch.rand(1, inp) < 0.1) for _ in range(16)]

            def method(isa, layout, threshold):
                return knobs.wrap((isa, threshold), lambda x: evsparse.sparse_linear(x, packed[layout])), xs

            names = {"scatter avx2": ("avx2", "sparse", 2.0), "scatter avx512": ("avx512", "sparse", 2.0),
                     "bitmask avx512": ("avx512", "sparse", 0.0), "dense avx2": ("avx2", "dense", 2.0),
                     "dense avx512": ("avx512", "dense", 2.0)}
            med = {n: t * 1e6 for n, t in time_interleaved({n: method(*v) for n, v in names.items()}, args.rounds).items()}
            best_dense = min(med["dense avx2"], med["dense avx512"])
            print(f"{inp}x{out} dens {dens:5.3f}: " + "  ".join(f"{n} {t:6.1f}" for n, t in med.items())
                  + f"  | bitmask vs avx512 scatter {med['scatter avx512'] / med['bitmask avx512']:.2f}x,"
                  f" vs avx2 scatter {med['scatter avx2'] / med['bitmask avx512']:.2f}x,"
                  f" vs best dense {best_dense / med['bitmask avx512']:.2f}x", flush=True)
evsparse.set_isa("avx512")
evsparse.set_bitmask_min_density(default_threshold)
