"""Why a paced step costs several hot steps (docs/benchmarks/results.md, "The streaming floor"): a
2-layer H=256 EGRU stream at 10% activity, one step every 8 ms, with the gap spent in different ways.

    python benchmarks/ab/paced_probe.py
"""
import statistics
import time

import torch

from evsparse.bench.common import calibrate_egru_thresholds_
from evsparse.nn import EGRU

torch.manual_seed(0)
H = 256
egru = EGRU(H, H, num_layers=2).eval()
xs = torch.randn(64, 1, H) * (torch.rand(64, 1, H) < 0.1)
calibrate_egru_thresholds_(egru, xs, 0.1)
m = egru.sparsify()
junk = torch.zeros(16 * 1024 * 1024 // 4)  # 16 MB: written in the gap to evict the caches
zero = torch.zeros(1, H)


def spin(gap, every=None, work=None):
    """Busy-waits for ``gap`` seconds, calling ``work()`` every ``every`` seconds if given."""
    end = nxt = time.perf_counter()
    end += gap
    while time.perf_counter() < end:
        if work is not None and time.perf_counter() >= nxt:
            work()
            nxt += every


def run(gap_fn, n=150):
    """Median and p99 (us) of n stream steps, each followed by ``gap_fn()`` (None: back to back)."""
    with torch.inference_mode():
        s = m.stream(batch_size=1)
        ts = []
        for i in range(n):
            t0 = time.perf_counter_ns()
            s.step(xs[i % 64])
            ts.append(time.perf_counter_ns() - t0)
            if gap_fn is not None:
                gap_fn()
    ts.sort()
    return round(statistics.median(ts) / 1e3, 1), round(ts[int(0.99 * len(ts))] / 1e3, 1)


GAP = 0.008
other = m.stream(batch_size=1)
MODES = {
    "hot": (None, 2000),
    "sleep": (lambda: time.sleep(GAP), 150),
    "spin": (lambda: spin(GAP), 150),
    "pollute": (lambda: (junk.add_(1.0), spin(GAP)), 150),
}
for threads in (2, 1):
    torch.set_num_threads(threads)
    for mode, (gap_fn, n) in MODES.items():
        print(threads, "threads", mode, run(gap_fn, n))
torch.set_num_threads(2)
for every in (0.001, 0.0002):
    print(f"2 threads spin + re-read the arena every {every * 1e3:g} ms",
          run(lambda: spin(GAP, every, lambda: m.plan_arena.sum())))
with torch.inference_mode():
    for every in (0.0005, 0.0001):
        print(f"2 threads spin + the same step on a zero input every {every * 1e3:g} ms",
              run(lambda: spin(GAP, every, lambda: other.step(zero))))
