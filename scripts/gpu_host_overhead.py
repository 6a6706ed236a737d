"""Host time of the GPU ops' Python layer per call (checks, allocations, grids, launch wrappers), with
every Triton launch stubbed out, so it runs on any machine (CPU tensors). What it leaves out, Triton's
own launcher and the kernels, comes on top on a GPU; evsparse-gpu-bench times the whole.

    python scripts/gpu_host_overhead.py [--hidden 1024] [--calls 2000]
"""

import argparse
import os
import time

os.environ.setdefault("TRITON_INTERPRET", "1")  # no GPU needed: the kernels never run

import torch  # noqa: E402
from triton.runtime.jit import KernelInterface  # noqa: E402

import evsparse  # noqa: E402
from evsparse.gpu import cuda_ops, launch  # noqa: E402


def per_call_us(fn, calls: int) -> float:
    for _ in range(50):
        fn()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--calls", type=int, default=2000)
    args = ap.parse_args()
    KernelInterface.__getitem__ = lambda self, grid: (lambda *a, **k: None)  # every kernel[grid](...) launch
    torch.manual_seed(0)
    H = args.hidden
    x, c, y = torch.randn(1, H), torch.zeros(1, H), torch.zeros(1, H)
    for layout in ("dense", "sparse"):
        step_args = evsparse.nn.EGRU(H, H).eval().sparsify(layout=layout)._args(0)
        pw = evsparse.pack(torch.randn(3 * H, H), layout=layout)
        if layout == "dense":
            product = lambda: launch.gather_linear(x, pw.values)  # noqa: E731
        else:
            product = lambda: launch.sparse_gather_linear(x, pw.col_ptr, pw.row_idx, pw.values, 3 * H)  # noqa: E731
        step_us = per_call_us(lambda: cuda_ops.egru_step(x, c, y, *step_args), args.calls)
        product_us = per_call_us(product, args.calls)
        print(f"{layout:6s} H={H}: egru_step {step_us:.1f} us, product {H}x{3 * H} {product_us:.1f} us (host, launches stubbed)")


if __name__ == "__main__":
    main()
