"""pytest-benchmark: a two-layer sparse linear RNN step at batch 1, ReLU activity calibrated to 10%,
dense and 85%-pruned weights.

    pytest benchmarks/test_bench_linear_rnn.py --benchmark-group-by=param:width,param:density

Each group: ``PackedLinearRNN.step`` on the fused ``linear_rnn_step`` op and a plain dense PyTorch
step of the same weights. ``evsparse-bench`` times the same cases interleaved.
"""

import functools

import pytest

from evsparse.bench.linear_rnn import DEFAULT_WIDTHS, build_linear_rnn_methods

METHODS = ["evsparse PackedLinearRNN.step", "PyTorch dense step"]


@functools.lru_cache(maxsize=2)
def _methods(width, density):
    return build_linear_rnn_methods(width, 0.1, density)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("density", [1.0, 0.15])
@pytest.mark.parametrize("width", DEFAULT_WIDTHS)
def test_linear_rnn_step_batch1(bench_rotating, width, density, method):
    methods, report = _methods(width, density)
    fn, inputs = methods[method]
    totals = report.totals
    bench_rotating(fn, inputs, totals["dense"] / totals["combined"])
