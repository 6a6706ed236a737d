"""pytest-benchmark: a one-layer EGRU's 32-step sequence at batch 1, ~10% activity, sparsified with
layout="auto", layout="timed" (chosen on another stream) and both forced layouts.

    pytest benchmarks/test_bench_layout.py --benchmark-group-by=param:hidden,param:density

``evsparse-bench`` times the same cases interleaved ("Layout chosen by timing"); the timed layouts
chosen are in each case's extra_info.
"""

import functools

import pytest

from evsparse.bench.layout import DEFAULT_HIDDEN, DENSITIES, MODES, STEPS, build_layout_methods


@functools.lru_cache(maxsize=1)
def _methods(hidden, density):
    return build_layout_methods(hidden, density)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("density", DENSITIES)
@pytest.mark.parametrize("hidden", DEFAULT_HIDDEN)
def test_egru_sequence_by_layout(benchmark, hidden, density, mode):
    methods, info = _methods(hidden, density)
    fn, (stream,) = methods[mode]
    benchmark.extra_info.update(steps=STEPS, auto_layouts=info["auto"], timed_layouts=info["timed"],
                                activity=info["activity"])
    benchmark(fn, stream)
