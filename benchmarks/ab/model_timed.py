"""layout="timed" with and without its whole-model stage, judged on fresh streams: for each model, the
modules of ``auto``, of the per-layer timed choice alone (``.layout_choices``) and of the full timed
choice (per layer, then whole models: ``.model_choice``), chosen hot and paced (one step per 8 ms), then
all timed stepping new streams side by side, hot (interleaved) and paced (median, p99). Models: 2-layer
EGRU H=256 and H=1024 with 15% weights at ~10% activity (calibrated thresholds), and the S5 denoiser at
k = 1 (257 bins, 3 blocks, d_model 192) with 90% of its weights pruned (ERK), ReLU inputs.

    python benchmarks/ab/model_timed.py [--samples N] [--rounds N]
"""
import argparse
import time

import torch

import evsparse
from evsparse import prune
from evsparse.bench.common import calibrate_egru_thresholds_, cpu_name
from evsparse.nn import EGRU, S5Stack
from evsparse.timing import time_interleaved, time_paced

ap = argparse.ArgumentParser()
ap.add_argument("--samples", type=int, default=150)
ap.add_argument("--rounds", type=int, default=11)
args = ap.parse_args()
print(f"# {cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}, kernels {evsparse.get_isa()}; "
      f"hot: medians of {args.rounds} interleaved rounds; paced: {args.samples} steps per module, one per 8 ms; us")


def egru_case(H):
    torch.manual_seed(0)
    egru = EGRU(H, H, num_layers=2).eval()
    with torch.no_grad():
        for name, prm in egru.named_parameters():
            if name.startswith("weight"):
                prm.mul_(torch.rand(prm.shape) < 0.15)
    seq = torch.randn(64, 1, H) * (torch.rand(64, 1, H) < 0.1)
    calibrate_egru_thresholds_(egru, seq, 0.1)
    return f"EGRU 2x{H} 15% weights", (lambda **kw: egru.sparsify(**kw)), seq


def s5_case():
    torch.manual_seed(0)
    m = S5Stack(257, num_layers=3, output_size=257, relufied=True, d_model=192, state_size=256, blocks=16).eval()
    masks = prune.erk_magnitude(m, 0.9)
    seq = torch.randn(64, 1, 257).relu()
    return "S5 k=1 90% pruned", (lambda **kw: m.sparsify(masks, **kw)), seq


for name, build, seq in (egru_case(256), egru_case(1024), s5_case()):
    modules = {"auto": build()}
    for how, pace in (("hot", None), ("paced", 8)):
        t0 = time.perf_counter()
        timed = build(layout="timed", example_input=seq, pace_ms=pace)
        took = time.perf_counter() - t0
        per_layer = [l for c in timed.layout_choices for l in c.layouts]
        flat = [l for g in timed.model_choice.layouts for l in g]
        modules[f"per-layer {how}"] = build(layout=per_layer if isinstance(timed.layouts[0], str) else
                                            [c.layouts for c in timed.layout_choices])
        modules[f"timed {how}"] = timed
        print(f"{name}: timed {how} in {took:.1f} s; per-layer {per_layer}; whole model {flat}")
    frames = list(seq.unbind(0))
    methods = {k: (m.stream(batch_size=1).step, frames) for k, m in modules.items()}
    hot = time_interleaved(methods, args.rounds)
    paced = time_paced(methods, 8e-3, args.samples)
    for k in modules:
        print(f"  {k:16s} hot {hot[k] * 1e6:7.1f} ({hot[k] / hot['auto']:.2f}x auto) | paced {paced[k][0] * 1e6:7.1f} "
              f"p99 {paced[k][1] * 1e6:7.0f} ({paced[k][0] / paced['auto'][0]:.2f}x auto)")
