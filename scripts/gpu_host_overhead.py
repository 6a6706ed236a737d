"""Host time of the GPU ops' Python layer per call (checks, allocations, grids, launch wrappers), with
every Triton launch stubbed out, so it runs on any machine (CPU tensors). What it leaves out, Triton's
own launcher and the kernels, comes on top on a GPU; evsparse-gpu-bench times the whole.

    python scripts/gpu_host_overhead.py [--hidden 1024] [--rounds 15]
"""

import argparse
import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # no GPU needed: the kernels never run

import torch  # noqa: E402
from triton.runtime.jit import KernelInterface  # noqa: E402

import evsparse  # noqa: E402
from evsparse.timing import time_interleaved  # noqa: E402
from evsparse.gpu import cuda_ops  # noqa: E402
from evsparse.gpu import sparse_linear as launch  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds (median)")
    args = ap.parse_args()
    KernelInterface.__getitem__ = lambda self, grid: (lambda *a, **k: None)  # every kernel[grid](...) launch
    torch.manual_seed(0)
    H = args.hidden
    x, c, y = torch.randn(1, H), torch.zeros(1, H), torch.zeros(1, H)
    methods = {}
    for layout in ("dense", "sparse"):
        step_args = evsparse.nn.EGRU(H, H).eval().sparsify(layout=layout)._args(0)
        pw = evsparse.pack(torch.randn(3 * H, H), layout=layout)
        methods[f"{layout} egru_step"] = (lambda _, a=step_args: cuda_ops.egru_step(x, c, y, *a), [None])
        if layout == "dense":
            methods[f"{layout} product"] = (lambda _, p=pw: launch.gather_linear(x, p.values), [None])
        else:
            methods[f"{layout} product"] = (
                lambda _, p=pw: launch.sparse_gather_linear(x, p.col_ptr, p.row_idx, p.values, 3 * H), [None])
    t = time_interleaved(methods, args.rounds)
    for layout in ("dense", "sparse"):
        print(f"{layout:6s} H={H}: egru_step {t[layout + ' egru_step'] * 1e6:.1f} us, product {H}x{3 * H} "
              f"{t[layout + ' product'] * 1e6:.1f} us (host, launches stubbed; median of {args.rounds} "
              "interleaved rounds)")


if __name__ == "__main__":
    main()
