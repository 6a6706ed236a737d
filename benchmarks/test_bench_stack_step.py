"""pytest-benchmark: one step at batch 1 of an L-layer EGRU / sparse linear RNN (dense weights, ~10%
activity): the module's step (one plan op), its in-place stream, the step with nothing active (the floor),
the per-layer-list stack op, one op per layer from Python, and the dense PyTorch step.

    pytest benchmarks/test_bench_stack_step.py --benchmark-group-by=param:family,param:width,param:layers

``evsparse-bench`` times the same cases interleaved ("Whole-model step"); each case's extra_info has
the theoretical MAC speedup of the whole step (evsparse.macs, activities measured on the stream).
"""

import functools

import pytest

from evsparse.bench.stack import DEFAULT_LAYERS, DEFAULT_WIDTHS, METHODS, build_stack_methods


@functools.lru_cache(maxsize=1)
def _methods(family, width, layers):
    return build_stack_methods(family, width, layers)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("layers", DEFAULT_LAYERS)
@pytest.mark.parametrize("width", DEFAULT_WIDTHS)
@pytest.mark.parametrize("family", ["EGRU", "linear RNN"])
def test_whole_model_step_batch1(bench_rotating, family, width, layers, method):
    methods, info = _methods(family, width, layers)
    fn, pool = methods[method]
    bench_rotating(fn, pool, info["theoretical_speedup"])
