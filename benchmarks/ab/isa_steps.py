"""Whole-model steps with the AVX-512 kernels against the AVX2 ones, interleaved in one process
(``evsparse.set_isa`` switched between the timing blocks): the S5 plans of the report's S5 section
(dense, 90% ERK, int8, 16x1 blocks) and 2-layer EGRU streams at H=64 and 256, nothing active and
10% active. A ratio above 1 means AVX-512 is faster.

    python benchmarks/ab/isa_steps.py [--rounds N] [--k K]
"""
import argparse

import torch

import evsparse
from evsparse.bench.common import KnobSwitch, calibrate_egru_thresholds_, cpu_name
from evsparse.bench.s5 import build_s5_methods
from evsparse.nn import EGRU
from evsparse.timing import time_interleaved

ap = argparse.ArgumentParser()
ap.add_argument("--rounds", type=int, default=15)
ap.add_argument("--k", type=float, default=1.0)
args = ap.parse_args()
if "avx512" not in evsparse.build_info()["isa_supported"]:
    raise SystemExit("this CPU has no AVX-512")
isa_switch = KnobSwitch(evsparse.set_isa)
base = {}
s5, _ = build_s5_methods(args.k)
for name, m in s5.items():
    if name.startswith("plan"):
        base[f"S5 k={args.k:g} {name}"] = m
torch.manual_seed(0)
for H in (64, 256):
    egru = EGRU(H, H, num_layers=2).eval()
    xs = torch.randn(64, 1, H) * (torch.rand(64, 1, H) < 0.1)
    calibrate_egru_thresholds_(egru, xs, 0.1)
    m = egru.sparsify()
    s = m.stream(batch_size=1)
    base[f"EGRU 2x{H} stream, 10% active"] = (s.step, list(xs))
    z = EGRU(H, H, num_layers=2).eval().sparsify(layout="sparse").stream(batch_size=1)
    base[f"EGRU 2x{H} stream, nothing active"] = (z.step, [torch.zeros(1, H)])
methods = {}
for name, (fn, pool) in base.items():
    for isa in ("avx2", "avx512"):
        methods[f"{name} @{isa}"] = (isa_switch.wrap(isa, fn), pool)
print(f"# {cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}; medians of {args.rounds} "
      "interleaved rounds, us")
with torch.inference_mode():
    r = time_interleaved(methods, args.rounds)
for name in base:
    a, b = r[f"{name} @avx2"], r[f"{name} @avx512"]
    print(f"{name:44s} avx2 {a * 1e6:7.2f}  avx512 {b * 1e6:7.2f}  avx512 faster by {a / b:.2f}x")
