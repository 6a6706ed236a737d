"""Why a 90%-pruned S5 denoiser is not faster than the dense one on these kernels (docs/guide/s5.md,
"Why the pruned model is not faster"): the report's untrained k-width model (257 -> 3 relufied blocks ->
257), the dense plan of the unpruned model against the 90% ERK-pruned model in the automatic layout,
every product in the dense layout, and ``layout="timed"``; hot loop, interleaved, 2 and 1 threads.

    python benchmarks/ab/s5_layouts.py [k ...]
"""
import sys
import time

import torch

from evsparse import macs, prune
from evsparse.bench.common import cpu_name, record_stream, time_interleaved
from evsparse.bench.s5 import s5_stream
from evsparse.nn.s5 import S5Stack, width_scale

print(f"# {cpu_name()}, torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M')}")
for k in [float(a) for a in sys.argv[1:]] or [1.0, 2.0]:
    torch.manual_seed(0)
    model = S5Stack(257, num_layers=3, output_size=257, relufied=True, **width_scale(k))
    xs = s5_stream(256, torch.Generator().manual_seed(0))
    with torch.no_grad():  # BatchNorm statistics of the stream, as the report's section takes them
        model.train()
        for blk in model.blocks:
            blk.norm.momentum = None
        model(xs)
    model.eval()
    masks = prune.erk_magnitude(model, 0.9)
    pruned = S5Stack(257, num_layers=3, output_size=257, relufied=True, **width_scale(k)).eval()
    pruned.load_state_dict(model.state_dict())
    prune.apply_masks(pruned, masks)
    plans = {"dense model, dense layout": model.sparsify(layout="dense"),
             "90% ERK, auto": pruned.sparsify(masks),
             "90% ERK, dense layout": pruned.sparsify(masks, layout="dense"),
             "90% ERK, timed": pruned.sparsify(masks, layout="timed", example_input=xs[:64, 0])}
    dense_macs = macs.count(model, xs[:128]).totals
    eff = macs.count(pruned, xs[:128], masks).totals["combined"]
    print(f"k={k:g} (H={model.d_model}, P={model.state_size}): dense MACs {dense_macs['dense'] / 1e3:.0f}K, "
          f"effective MACs of the pruned model {eff / 1e3:.0f}K; block activity "
          f"{', '.join(f'{a:.0%}' for a in pruned.activity()[1:])}; timed chose {plans['90% ERK, timed'].layouts}")
    pool = record_stream(plans["90% ERK, auto"], xs[:32])
    methods = {n: (lambda a, p=p: p.step(a[0], a[1]), pool) for n, p in plans.items()}
    with torch.inference_mode():
        for threads in (2, 1):
            torch.set_num_threads(threads)
            t = time_interleaved(methods, 11)
            print(f"  {threads} threads, us per frame: " + ", ".join(f"{n} {v * 1e6:.1f}" for n, v in t.items()))
    torch.set_num_threads(2)
