"""Interleaved and paced timing: the measurements ``layout="timed"`` makes, and the benchmark harness
reuses."""

from __future__ import annotations

import statistics
import time
from typing import Callable, Optional

import torch

__all__ = ["time_interleaved", "time_paced"]


# Untimed calls that open every block: the CPU ops' threading policy (csrc/cpu/threading_policy.h)
# uses the workers from the 33rd back-to-back threadable call on, so a block that started cold would
# time a mid-size product on one thread, which no loop of it does (2048x6144 at 10% x 15%: ~90 us a
# call for the first 32 calls after a pause, then ~48). At most BLOCK_WARMUP_SECONDS of them.
BLOCK_WARMUP_CALLS = 33
BLOCK_WARMUP_SECONDS = 0.02


def time_interleaved(methods: dict[str, tuple[Callable, list]], rounds: int, block_seconds: float = 2e-3,
                     sync: Optional[Callable[[], None]] = None) -> dict:
    """Median seconds per call of each method, timed in interleaved blocks.

    Each round runs every method for one block of calls (about ``block_seconds``, inputs rotating),
    so a method is timed in its steady state (its weights warm in cache as in a step loop, its
    threads in use: each block opens with up to :data:`BLOCK_WARMUP_CALLS` untimed calls) while the
    rounds alternate methods so that machine noise is shared between them. ``sync`` (e.g.
    ``torch.cuda.synchronize``) is called before and after every block, so asynchronous work is in
    the block's time.
    """
    sync = sync or (lambda: None)
    names = list(methods)
    calls = {}
    for name in names:  # warm-up and block calibration
        fn, inputs = methods[name]
        for x in inputs:
            fn(x)
        sync()
        t0 = time.perf_counter()
        for x in inputs:
            fn(x)
        sync()
        per_call = (time.perf_counter() - t0) / len(inputs)
        calls[name] = max(1, min(10_000, round(block_seconds / max(per_call, 1e-9))))
    samples = {n: [] for n in names}
    with torch.inference_mode():
        for r in range(rounds):
            for name in names:
                fn, inputs = methods[name]
                n, k = calls[name], len(inputs)
                warm_until = time.perf_counter() + BLOCK_WARMUP_SECONDS
                for i in range(BLOCK_WARMUP_CALLS):
                    fn(inputs[(r + i) % k])
                    if time.perf_counter() > warm_until:
                        break
                sync()
                t0 = time.perf_counter_ns()
                for i in range(n):
                    fn(inputs[(r + i) % k])
                sync()
                samples[name].append((time.perf_counter_ns() - t0) / n)
    return {n: statistics.median(v) * 1e-9 for n, v in samples.items()}


def time_paced(methods: dict[str, tuple[Callable, list]], interval_s: float, samples: int) -> dict:
    """Per method, the latency of ``samples`` calls made one per tick of ``interval_s`` (methods take
    turns tick by tick, inputs rotating): ``{name: (median_s, p99_s)}``."""
    names = list(methods)
    latencies: dict[str, list[float]] = {n: [] for n in names}
    with torch.inference_mode():
        for fn, pool in methods.values():  # warm-up (first-call costs are not a stream's)
            for a in pool[:4]:
                fn(a)
        tick = time.perf_counter()
        for i in range(samples * len(names)):
            name = names[i % len(names)]
            fn, pool = methods[name]
            arg = pool[(i // len(names)) % len(pool)]
            tick += interval_s
            delay = tick - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            t0 = time.perf_counter_ns()
            fn(arg)
            latencies[name].append((time.perf_counter_ns() - t0) * 1e-9)
    out = {}
    for name, v in latencies.items():
        v.sort()
        out[name] = (statistics.median(v), v[min(len(v) - 1, int(round(0.99 * (len(v) - 1))))])
    return out
