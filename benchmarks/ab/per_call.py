"""Per-call cost of the ops, for an A/B between two builds of evsparse (docs/install.md's table).

Prints one JSON object {case: median microseconds per call}. Run it alternately under each build,
several rounds, and compare medians of the paired ratios, e.g.:

    for r in 1 2 3 4 5; do
      PYTHONPATH=/path/to/build_a python benchmarks/ab/per_call.py >> a.jsonl
      PYTHONPATH=/path/to/build_b python benchmarks/ab/per_call.py >> b.jsonl
    done
"""

import json
import time

import torch

import evsparse
from evsparse.nn import EGRU, SparseLinearRNN

torch.manual_seed(0)
res = {}


def bench(name, fn, n=300, reps=7):
    for _ in range(20):
        fn()
    meds = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        meds.append((time.perf_counter() - t0) / n)
    meds.sort()
    res[name] = round(meds[len(meds) // 2] * 1e6, 3)


with torch.no_grad():
    for out, inp, act, dens, n in [(768, 256, 0.0, 0.15, 5000), (768, 256, 0.1, 0.15, 3000),
                                   (3072, 1024, 0.1, 0.15, 500), (6144, 2048, 0.1, 0.15, 200)]:
        w = torch.randn(out, inp)
        pw = evsparse.pack(w, torch.rand(out, inp) < dens, "sparse")
        x = torch.randn(inp) * (torch.rand(inp) < act)
        bench(f"sparse_linear {out}x{inp} act {act} dens {dens}", lambda: evsparse.sparse_linear(x, pw), n)
    pd = evsparse.pack(torch.randn(3072, 1024), None, "dense")
    x = torch.randn(1024) * (torch.rand(1024) < 0.1)
    bench("sparse_linear dense 3072x1024 act 0.1", lambda: evsparse.sparse_linear(x, pd), 1000)
    for H in (64, 256):
        m = EGRU(H, H, 2).eval()
        for k in range(2):
            getattr(m, f"thr_l{k}").fill_(0.5)
        masks = {f"weight_{a}_l{k}": torch.rand(3 * H, H) < 0.15 for k in range(2) for a in ("ih", "hh")}
        s = m.sparsify(masks, layout="sparse")
        for act in (0.0, 0.1):
            x = torch.randn(1, H) * (torch.rand(1, H) < act)
            st = (torch.zeros(2, 1, H), (torch.rand(2, 1, H) < act).float())
            bench(f"PackedEGRU.step 2x{H} act {act}", lambda: s.step(x, st), 3000)
    lr = SparseLinearRNN(64, 64, 64, num_layers=3).sparsify()
    x = torch.randn(1, 64).relu()
    h = None
    bench("PackedLinearRNN.step 3x64", lambda: lr.step(x, h), 3000)
print(json.dumps(res))
