"""Paced streaming (pytest-benchmark): one call per interval (8 ms, EVSPARSE_PACED_INTERVAL_MS), the
setup sleeping between rounds so that each timed call finds the machine as a real stream does (worker
threads asleep, caches cooled), next to the same calls in a hot loop. The report command's section
"Paced streaming" (evsparse.bench.paced) has the medians and p99 side by side.

    pytest benchmarks/test_bench_paced.py --benchmark-group-by=param:case
"""

import functools
import itertools
import os
import time

import pytest
import torch

from evsparse.bench.paced import cases

INTERVAL = float(os.environ.get("EVSPARSE_PACED_INTERVAL_MS", "8")) * 1e-3
CASES = dict(cases())
IDS = {"sparse_linear 1024x3072, 10% x 15%": "sparse_linear-1024x3072", "EGRU step, 2 layers, H=256, 10%": "egru-2x256"}


@functools.lru_cache(maxsize=None)
def _methods(case):
    methods, _, _ = CASES[case]()
    return methods


def _points():
    for case, build in CASES.items():
        for method in _methods(case):
            yield pytest.param(case, method, id=f"{IDS[case]}-{method}")


@pytest.mark.parametrize("mode", ["paced", "hot"])
@pytest.mark.parametrize("case, method", list(_points()))
def test_streaming_call(benchmark, case, method, mode):
    fn, pool = _methods(case)[method]
    inputs = itertools.cycle(pool)
    with torch.inference_mode():
        if mode == "hot":
            benchmark(lambda: fn(next(inputs)))
            return

        def setup():  # the pace: not timed
            time.sleep(INTERVAL)
            return (next(inputs),), {}

        benchmark.pedantic(fn, setup=setup, rounds=100, warmup_rounds=2)
