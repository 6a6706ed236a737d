"""int8 against float32 and float16 weights (pytest-benchmark), warm (a hot loop, weights in cache)
and cold (every cache evicted before each call by the setup, which is not timed), both layouts. The
report command's section "Cold-cache products" (evsparse.bench.cold) has bytes read and GB/s beside
the times.

    pytest benchmarks/test_bench_int8.py --benchmark-group-by=param:size,param:mode
"""

import functools
import itertools

import pytest
import torch

import evsparse
from evsparse.bench.cold import evict_bytes

SIZES = ["256x768", "1024x3072", "2048x6144"]  # in x out
DTYPES = {"float32": torch.float32, "float16": torch.float16, "int8": torch.int8}


@functools.lru_cache(maxsize=None)
def _case(size, density):
    n_in, n_out = (int(v) for v in size.split("x"))
    g = torch.Generator().manual_seed(0)
    w = torch.randn(n_out, n_in, generator=g)
    mask = torch.rand(n_out, n_in, generator=g) < density
    xs = [torch.randn(n_in, generator=g) * (torch.rand(n_in, generator=g) < 0.1) for _ in range(8)]
    return w, mask, xs


@functools.lru_cache(maxsize=1)
def _evict():
    return torch.zeros(evict_bytes(), dtype=torch.uint8)


@pytest.mark.parametrize("mode", ["warm", "cold"])
@pytest.mark.parametrize("layout", ["dense", "sparse"])
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("size", SIZES)
def test_int8_product(benchmark, size, dtype, layout, mode):
    w, mask, xs = _case(size, 0.15)
    pw = evsparse.pack(w, mask, layout, weight_dtype=DTYPES[dtype])
    inputs = itertools.cycle(xs)
    benchmark.extra_info.update(activity=0.1, density=0.15, layout=layout, weight_dtype=dtype)
    if mode == "warm":
        benchmark(lambda: evsparse.sparse_linear(next(inputs), pw))
        return
    evict = _evict()

    def setup():  # not timed: the caches lose the weights (and the code) between calls
        evict.add_(1)
        return (next(inputs), pw), {}

    benchmark.pedantic(evsparse.sparse_linear, setup=setup, rounds=20, warmup_rounds=1)
