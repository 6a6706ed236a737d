"""pytest-benchmark: sparse_linear and its baselines at batch 1, float32.

    pytest benchmarks/ --benchmark-group-by=param:size,param:activity,param:density

Each group holds evsparse (auto, dense-gather, sparse-gather) and the baselines for one sweep point,
so they read side by side. ``evsparse-bench`` times the same cases interleaved and adds the
theoretical MAC speedup next to each measured one. The full sweep (3 sizes x 6 activities x
4 densities x 8 methods) takes a while; narrow it with -k, e.g. -k "2048x6144 and 0.1".
"""

import functools

import pytest

from evsparse.bench import DEFAULT_ACTIVITY, DEFAULT_DENSITY, DEFAULT_SIZES, Case, build_methods, parse_size

METHODS = ["evsparse", "evs_dense_gather", "evs_sparse_gather", "dense_F.linear", "dense_x@W^T", "torch_csr_mv",
           "scipy_csr", "naive_gather"]


@functools.lru_cache(maxsize=4)
def _methods(size, activity, density):
    n_in, n_out = parse_size(size)
    return build_methods(Case(n_in, n_out, activity, density))[0]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("density", DEFAULT_DENSITY)
@pytest.mark.parametrize("activity", DEFAULT_ACTIVITY)
@pytest.mark.parametrize("size", DEFAULT_SIZES)
def test_linear_batch1(bench_rotating, size, activity, density, method):
    fn, inputs = _methods(size, activity, density)[method]
    bench_rotating(fn, inputs, 1.0 / (activity * density))


@pytest.mark.parametrize("size, activity, density", [("256x768", 0.0, 1.0)])
def test_call_overhead_tiny(benchmark, size, activity, density):
    """Fixed cost of one call: a 256x768 weight with nothing active."""
    import torch

    import evsparse

    pw = evsparse.pack(torch.randn(768, 256), layout="dense")
    x = torch.zeros(256)
    benchmark(lambda: evsparse.sparse_linear(x, pw))
