"""pytest-benchmark: the Triton kernels at batch 1 on a CUDA GPU (skipped without one).

    pytest benchmarks/test_bench_gpu.py --benchmark-group-by=param:size,param:activity,param:density
    pytest benchmarks/test_bench_gpu.py -k egru --benchmark-group-by=param:hidden,param:density

Products (the issue's sweep): evsparse (``sparse_linear``, "auto" layout) against cuBLAS ``F.linear``
and ``x @ W^T`` on a pre-transposed weight, the masked split-K kernel and ``torch.sparse`` CSR; the EGRU step against ``torch.nn.GRUCell``, eager
and replayed from a CUDA graph. Each timed call ends with ``torch.cuda.synchronize()``, so a time
includes one synchronisation; ``evsparse-gpu-bench`` times the same cases interleaved, with CUDA
events and a cold L2, and is the report to quote. Each benchmark's ``extra_info`` holds the theoretical
MAC speedup.

``TRITON_INTERPRET=1`` runs the file on CPU tensors instead (a check of the harness, not a
measurement; tests/test_triton.py does so at the sizes that ``EVSPARSE_GPU_BENCH_SIZES`` and
``EVSPARSE_GPU_BENCH_HIDDEN`` give).
"""

import functools
import os

import pytest
import torch

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
if not torch.cuda.is_available() and not INTERPRET:
    pytest.skip("needs a CUDA GPU (or TRITON_INTERPRET=1 for a harness check on CPU tensors)", allow_module_level=True)
pytest.importorskip("triton")

from evsparse.bench import Case, parse_size  # noqa: E402
from evsparse.bench import gpu as gpu_bench  # noqa: E402

DEVICE = torch.device("cpu" if INTERPRET else "cuda")
SIZES = os.environ.get("EVSPARSE_GPU_BENCH_SIZES", " ".join(gpu_bench.DEFAULT_SIZES)).split()
HIDDEN = [int(h) for h in os.environ.get("EVSPARSE_GPU_BENCH_HIDDEN",
                                         " ".join(map(str, gpu_bench.DEFAULT_EGRU_HIDDEN))).split()]
LINEAR_METHODS = ["evsparse", "cuBLAS F.linear", "cuBLAS x @ W^T", "masked split-K", "torch CSR mv"]
EGRU_METHODS = ["evsparse egru_step", "GRUCell step", "evsparse egru_step (CUDA graph)", "GRUCell step (CUDA graph)"]


def _synced(fn):
    if DEVICE.type != "cuda":
        return fn

    def call(x):
        out = fn(x)
        torch.cuda.synchronize()
        return out

    return call


@functools.lru_cache(maxsize=2)  # the weights of one size at both densities (8192x24576: ~4 GB each)
def _weights(size, density):
    n_in, n_out = parse_size(size)
    return gpu_bench.Weights(Case(n_in, n_out, 1.0, density).w, DEVICE)


@functools.lru_cache(maxsize=4)
def _linear_methods(size, activity, density):
    n_in, n_out = parse_size(size)
    case = Case(n_in, n_out, activity, density)
    methods, _ = gpu_bench.build_methods(case, _weights(size, density), DEVICE)
    return methods, n_in * n_out / case.mean_macs()


@functools.lru_cache(maxsize=2)
def _egru_methods(hidden, density):
    return gpu_bench.build_egru_methods(hidden, 0.1, density, 1, DEVICE)


@pytest.mark.parametrize("method", LINEAR_METHODS)
@pytest.mark.parametrize("activity", gpu_bench.DEFAULT_ACTIVITY)
@pytest.mark.parametrize("density", gpu_bench.DEFAULT_DENSITY)
@pytest.mark.parametrize("size", SIZES)
def test_gpu_linear_batch1(bench_rotating, size, density, activity, method):
    methods, theoretical = _linear_methods(size, activity, density)
    fn, inputs = methods[method]
    bench_rotating(_synced(fn), inputs, theoretical)


@pytest.mark.parametrize("method", EGRU_METHODS)
@pytest.mark.parametrize("density", [1.0, 0.15])
@pytest.mark.parametrize("hidden", HIDDEN)
def test_gpu_egru_step_batch1(bench_rotating, hidden, density, method):
    methods, errors = _egru_methods(hidden, density)
    if method not in methods:
        reason = errors.get(method, "CUDA graphs need a GPU")
        pytest.skip(f"{method}: {reason}")
    fn, inputs = methods[method]
    bench_rotating(_synced(fn), inputs, 1.0 / (0.1 * density))
