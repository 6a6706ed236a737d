"""A/B: a 2-layer EGRU streaming step (PackedEGRU.stream) with float32 against int8 weights, warm (hot
loop, interleaved blocks) and cold (every cache evicted before each step, as evsparse.bench.cold does),
at ~10% activity (thresholds calibrated per layer) and weight densities 1.0 and 0.15.

    python benchmarks/ab/int8_egru_step.py [--hidden 256 1024] [--calls 40] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import evsparse
from evsparse.bench.cold import evict_bytes, time_cold
from evsparse.bench.common import calibrate_egru_thresholds_, cpu_name, magnitude_prune_, time_interleaved
from evsparse.nn import EGRU


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--densities", type=float, nargs="+", default=[1.0, 0.15])
    ap.add_argument("--calls", type=int, default=40)
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    evict = torch.zeros(evict_bytes(), dtype=torch.uint8)
    rows = []
    print(f"{cpu_name()}, {torch.get_num_threads()} threads, kernels {evsparse.build_info()['isa_active']}")
    for H in args.hidden:
        for density in args.densities:
            torch.manual_seed(0)
            egru = EGRU(H, H, num_layers=2).eval()
            masks = magnitude_prune_(egru, density)
            xs = torch.randn(64, 1, H) * (torch.rand(64, 1, H) < 0.1)
            with torch.no_grad():
                calibrate_egru_thresholds_(egru, xs, 0.1)
            streams = {}
            for name, dt in (("float32", None), ("int8", torch.int8)):
                m = egru.sparsify(masks, weight_dtype=dt)
                s = m.stream()
                streams[name] = (lambda x, s=s: s.step(x), [xs[t, 0] for t in range(xs.shape[0])])
            with torch.inference_mode():
                warm = time_interleaved(streams, args.reps)
            cold = time_cold(streams, args.calls, evict)
            row = {"hidden": H, "density": density, "activity": egru.activity(),
                   "warm_us": {k: v * 1e6 for k, v in warm.items()}, "cold_us": {k: v * 1e6 for k, v in cold.items()},
                   "int8_over_fp32_warm": warm["float32"] / warm["int8"],
                   "int8_over_fp32_cold": cold["float32"] / cold["int8"]}
            rows.append(row)
            print(f"H={H} density {density:.0%} activity {[round(a, 3) for a in row['activity']]}: warm "
                  f"{row['warm_us']['float32']:.1f} / {row['warm_us']['int8']:.1f} us ({row['int8_over_fp32_warm']:.2f}x), "
                  f"cold {row['cold_us']['float32']:.1f} / {row['cold_us']['int8']:.1f} us "
                  f"({row['int8_over_fp32_cold']:.2f}x)", flush=True)
    if args.out:
        args.out.write_text(json.dumps({"cpu": cpu_name(), "threads": torch.get_num_threads(), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
