"""A paced stream whose products are big enough to thread (issue #24: "never let a step wait on a
worker that the OS descheduled"): 2-layer EGRU streams at H=1024 and 2048 with dense-layout weights and
10% activity (four threadable products per step), one step per 8 ms, on 1 and 2 threads, beside the
hot loop. With a sleeping pool a mid-step wake-up waits for the host to reschedule the other vCPU.

    python benchmarks/ab/paced_threading.py [--samples N]
"""
import argparse

import torch

from evsparse.bench.common import calibrate_egru_thresholds_, cpu_name
from evsparse.nn import EGRU
from evsparse.timing import time_interleaved, time_paced

ap = argparse.ArgumentParser()
ap.add_argument("--samples", type=int, default=150)
ap.add_argument("--hidden", type=int, nargs="+", default=[1024, 2048])
args = ap.parse_args()
print(f"# {cpu_name()}, torch {torch.__version__}; 2-layer EGRU stream, dense layout, 10% active; hot: "
      f"interleaved medians; paced: {args.samples} steps, one per 8 ms, median (p99); us")
for threads in (2, 1):
    torch.set_num_threads(threads)
    methods = {}
    for H in args.hidden:
        torch.manual_seed(0)
        egru = EGRU(H, H, num_layers=2).eval()
        seq = torch.randn(64, 1, H) * (torch.rand(64, 1, H) < 0.1)
        calibrate_egru_thresholds_(egru, seq, 0.1)
        methods[f"H={H}"] = (egru.sparsify(layout="dense").stream(batch_size=1).step, list(seq))
    with torch.inference_mode():
        hot = time_interleaved(methods, 7)
    paced = time_paced(methods, 8e-3, args.samples)
    for name in methods:
        print(f"{threads} threads {name:7s} hot {hot[name] * 1e6:7.1f}  paced {paced[name][0] * 1e6:7.1f} "
              f"({paced[name][1] * 1e6:7.0f})")
