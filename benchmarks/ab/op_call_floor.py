"""What one operator call costs from Python before any work, on this machine (issue #24's "sparse_linear
with nothing active <= 1.0 us"): ``torch.add`` through its generated binding, the same aten kernel
through ``torch.ops`` (the calling convention every custom op has), an evsparse op without tensors,
the raw sparse op and ``evsparse.sparse_linear`` with nothing active, and ``torch.empty`` (one output
allocation). Interleaved medians, us.

    python benchmarks/ab/op_call_floor.py [--rounds N]
"""
import argparse

import torch

import evsparse
from evsparse.bench.common import cpu_name
from evsparse.timing import time_interleaved

ap = argparse.ArgumentParser()
ap.add_argument("--rounds", type=int, default=15)
args = ap.parse_args()
torch.manual_seed(0)
a = torch.zeros(256)
x = torch.zeros(1, 256)
pw = evsparse.pack(torch.randn(768, 256), torch.rand(768, 256) < 0.15, layout="sparse")
raw = torch.ops.evsparse.sparse_gather_linear.default._op
add_op = torch.ops.aten.add.Tensor
isa_op = torch.ops.evsparse.get_isa.default._op
methods = {
    "torch.add(a, a), 256 floats": (lambda _: torch.add(a, a), [None]),
    "torch.ops.aten.add.Tensor(a, a)": (lambda _: add_op(a, a), [None]),
    "torch.ops.aten.add.Tensor._op(a, a)": (lambda _: add_op._op(a, a), [None]),
    "torch.ops.evsparse.get_isa (no tensors)": (lambda _: isa_op(), [None]),
    "raw sparse_gather_linear, nothing active": (lambda _: raw(x, pw.col_ptr, pw.row_idx, pw.values, 768, None), [None]),
    "evsparse.sparse_linear, nothing active": (lambda _: evsparse.sparse_linear(x, pw), [None]),
    "torch.empty(1, 768)": (lambda _: torch.empty(1, 768), [None]),
}
print(f"# {cpu_name()}, torch {torch.__version__}, medians of {args.rounds} interleaved rounds, us per call")
with torch.inference_mode():
    for name, t in time_interleaved(methods, args.rounds).items():
        print(f"{name:44s} {t * 1e6:6.3f}")
