"""pytest-benchmark: block-pruned (16x1) against unstructured sparse weights at equal density, batch 1,
float32, with the dense baselines (the same cases as benchmarks/ab/block_pruned.py, which times them
interleaved).

    pytest benchmarks/test_bench_block.py --benchmark-group-by=param:size,param:point
"""

import functools

import pytest
import torch

import evsparse
from evsparse.bench.common import random_block_mask

SIZES = ["256x768", "1024x3072", "2048x6144"]
POINTS = ["0.1:0.15", "1.0:0.15", "0.1:0.05"]  # activity:density
METHODS = ["block", "unstructured", "dense_layout", "F.linear", "x@W^T"]


@functools.lru_cache(maxsize=2)
def _case(size, point):
    inp, out = map(int, size.split("x"))
    act, dens = map(float, point.split(":"))
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(out, inp, generator=gen)
    m_block = random_block_mask(out, inp, dens, gen)
    m_unstr = torch.rand(out, inp, generator=gen) < dens
    pb = evsparse.pack(w, m_block, layout="sparse")
    pu = evsparse.pack(w, m_unstr, layout="sparse")
    pd = evsparse.pack(w, m_block, layout="dense")
    wt = w.t().contiguous()
    xs = [torch.randn(1, inp, generator=gen) * (torch.rand(1, inp, generator=gen) < act) for _ in range(16)]
    fns = {"block": lambda x: evsparse.sparse_linear(x, pb), "unstructured": lambda x: evsparse.sparse_linear(x, pu),
           "dense_layout": lambda x: evsparse.sparse_linear(x, pd),
           "F.linear": lambda x: torch.nn.functional.linear(x, w), "x@W^T": lambda x: x @ wt}
    return fns, xs, 1.0 / (act * dens)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("size", SIZES)
def test_block_pruned_batch1(bench_rotating, size, point, method):
    fns, xs, theoretical = _case(size, point)
    bench_rotating(fns[method], xs, theoretical)
