"""Which layout wins for a small weight, hot and paced: ``sparse_linear`` on 256x768 (an EGRU H=256
layer's gate matrix, 786 KB dense) and 1024x3072 at 5-15% density, 10% and 100% of the inputs active,
the sparse against the dense layout; and 2-layer EGRU H=256 streams with 15% weights packed each way.
Hot: interleaved loop; paced: one call per 8 ms, methods taking turns (median and p99). ``auto`` picks
the layout by density alone; this measures what the size adds.

    python benchmarks/ab/small_layouts_paced.py [--samples N] [--rounds N]
"""
import argparse

import torch

import evsparse
from evsparse.bench.common import calibrate_egru_thresholds_, cpu_name, sparse_inputs
from evsparse.nn import EGRU
from evsparse.timing import time_interleaved, time_paced

ap = argparse.ArgumentParser()
ap.add_argument("--samples", type=int, default=150)
ap.add_argument("--rounds", type=int, default=11)
ap.add_argument("--sizes", nargs="+", default=["256x768", "1024x3072"])
args = ap.parse_args()
g = torch.Generator().manual_seed(0)
methods = {}
for size in args.sizes:
    inp, out = (int(v) for v in size.split("x"))
    w = torch.randn(out, inp, generator=g)
    for dens in (0.05, 0.1, 0.15):
        mask = torch.rand(out, inp, generator=g) < dens
        for act in (0.1, 1.0):
            xs = [x.unsqueeze(0) for x in sparse_inputs(inp, act, g, 16)]
            for layout in ("sparse", "dense"):
                pw = evsparse.pack(w, mask, layout)
                methods[f"{size} dens {dens:g} act {act:g} {layout}"] = (lambda x, p=pw: evsparse.sparse_linear(x, p), xs)
torch.manual_seed(0)
egru = EGRU(256, 256, num_layers=2).eval()
with torch.no_grad():
    for name, prm in egru.named_parameters():
        if name.startswith("weight"):
            prm.mul_(torch.rand(prm.shape) < 0.15)
seq = torch.randn(64, 1, 256) * (torch.rand(64, 1, 256) < 0.1)
calibrate_egru_thresholds_(egru, seq, 0.1)
for layout in ("sparse", "dense"):
    s = egru.sparsify(layout=layout).stream(batch_size=1)
    methods[f"EGRU 2x256 stream, 15% weights, {layout}"] = (s.step, list(seq))
print(f"# {cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}, kernels {evsparse.get_isa()}; "
      f"hot: medians of {args.rounds} interleaved rounds; paced: {args.samples} calls per method, one per 8 ms; us")
with torch.inference_mode():
    hot = time_interleaved(methods, args.rounds)
paced = time_paced(methods, 8e-3, args.samples)
names = list(methods)
for i in range(0, len(names), 2):
    a, b = names[i], names[i + 1]  # sparse, dense
    base = a.rsplit(" ", 1)[0] if not a.startswith("EGRU") else a.rsplit(",", 1)[0]
    print(f"{base:36s} hot sparse {hot[a] * 1e6:6.1f} dense {hot[b] * 1e6:6.1f} ({hot[a] / hot[b]:.2f}x for dense) | "
          f"paced sparse {paced[a][0] * 1e6:6.1f} ({paced[a][1] * 1e6:6.0f}) dense {paced[b][0] * 1e6:6.1f} "
          f"({paced[b][1] * 1e6:6.0f}) ({paced[a][0] / paced[b][0]:.2f}x for dense)")
