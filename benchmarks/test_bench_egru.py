"""pytest-benchmark: one EGRU layer step at batch 1, 10% activity, dense and 85%-pruned weights.

    pytest benchmarks/test_bench_egru.py --benchmark-group-by=param:hidden,param:density

Each group: the fused evsparse op, the PackedEGRU module step, torch.nn.GRUCell and the EvNN-style
dense step (the training forward in eval mode). ``evsparse-bench`` times the same cases interleaved.
"""

import functools

import pytest

from evsparse.bench import DEFAULT_EGRU_HIDDEN, build_egru_methods

METHODS = ["evsparse egru_step (op)", "evsparse PackedEGRU.step", "torch.nn.GRUCell (dense)", "EvNN-style dense step"]


@functools.lru_cache(maxsize=2)
def _methods(hidden, density):
    return build_egru_methods(hidden, 0.1, density)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("density", [1.0, 0.15])
@pytest.mark.parametrize("hidden", DEFAULT_EGRU_HIDDEN)
def test_egru_step_batch1(bench_rotating, hidden, density, method):
    methods, theoretical = _methods(hidden, density)
    fn, inputs = methods[method]
    bench_rotating(fn, inputs, theoretical)
