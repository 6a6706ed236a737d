"""Issue #24's width-192 linear-RNN step (3 complex layers, 90% pruned weights) in every weight form,
interleaved in one process: unstructured in the sparse and the dense layout, 16x1 blocks, the dense
model, int8 values, and what ``layout="timed"`` picks. Then the parts: one input product (20% of the
inputs active) and one output product (the dense complex state, every input active), per form, against
the call floor (nothing active) and ``F.linear``. The output product multiplies a dense state, so at
this size the dense layout's vector loads beat the sparse layout's per-nonzero scatter.

    python benchmarks/ab/lrnn_layouts.py [--rounds N] [--width W]
"""
import argparse
import warnings

import torch
import torch.nn.functional as F

import evsparse
from evsparse.bench.common import cpu_name, random_block_mask
from evsparse.nn import SparseLinearRNN
from evsparse.timing import time_interleaved

warnings.simplefilter("ignore", DeprecationWarning)  # (SparseLinearRNN: the family issue #24 names)
ap = argparse.ArgumentParser()
ap.add_argument("--rounds", type=int, default=15)
ap.add_argument("--width", type=int, default=192)
ap.add_argument("--density", type=float, default=0.1)
args = ap.parse_args()
W, dens = args.width, args.density
torch.manual_seed(0)
g = torch.Generator().manual_seed(0)
print(f"# {cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}, kernels {evsparse.get_isa()}; "
      f"3 complex layers, width {W}, weight density {dens:g}, inputs 20% active; medians of {args.rounds} "
      "interleaved rounds, us")
xs = [torch.randn(1, W, generator=g).relu() * (torch.rand(1, W, generator=g) < 0.2) for _ in range(16)]
with torch.inference_mode():
    rnn = SparseLinearRNN(W, W, W, num_layers=3, complex=True).eval()
    names = [f"weight_{n}_l{k}" for k in range(3) for n in ("in", "out")]
    unstructured = {n: torch.rand(*getattr(rnn, n).shape, generator=g) < dens for n in names}
    blocks = {n: random_block_mask(*getattr(rnn, n).shape, dens, g) for n in names}
    forms = {
        "unstructured, sparse layout (auto)": (unstructured, "auto", None),
        "unstructured, dense layout": (unstructured, "dense", None),
        "unstructured, timed": (unstructured, "timed", None),
        "16x1 blocks, sparse layout (auto)": (blocks, "auto", None),
        "unstructured int8, dense layout": (unstructured, "dense", torch.int8),
        "16x1 blocks int8, sparse layout": (blocks, "sparse", torch.int8),
        "dense model (no pruning)": (None, "dense", None),
    }
    methods, chosen = {}, {}
    for name, (masks, layout, wd) in forms.items():
        p = rnn.sparsify(masks, layout=layout, weight_dtype=wd, example_input=torch.stack(xs) if layout == "timed" else None)
        chosen[name] = p.layouts
        s = p.stream(batch_size=1)
        methods[name] = (s.step, xs)
    r = time_interleaved(methods, args.rounds)
    print("\n## stream.step per form (layouts: (input, output) weight per layer)")
    for name, t in r.items():
        print(f"{name:46s} {t * 1e6:7.2f}   {chosen[name][0]}")
    print("\n## one layer's products (sparse_linear), us")
    h = [torch.randn(1, 2 * W, generator=g) for _ in range(16)]  # the complex state as (re, im)
    w_in, w_out = torch.randn(2 * W, W, generator=g), torch.randn(W, 2 * W, generator=g)
    m_in, m_out = unstructured["weight_in_l0"], unstructured["weight_out_l0"]
    b_in, b_out = blocks["weight_in_l0"], blocks["weight_out_l0"]
    parts = {"floor (nothing active)": (lambda x, p=evsparse.pack(w_in, m_in, "sparse"): evsparse.sparse_linear(x, p),
                                        [torch.zeros(1, W)])}
    for label, (mi, mo, lay, wd) in {"unstructured sparse": (m_in, m_out, "sparse", None),
                                     "unstructured dense layout": (m_in, m_out, "dense", None),
                                     "blocks sparse": (b_in, b_out, "sparse", None),
                                     "dense fp32": (None, None, "dense", None),
                                     "dense int8": (None, None, "dense", torch.int8)}.items():
        pi, po = evsparse.pack(w_in, mi, lay, weight_dtype=wd), evsparse.pack(w_out, mo, lay, weight_dtype=wd)
        parts[f"input product, {label}"] = (lambda x, p=pi: evsparse.sparse_linear(x, p), xs)
        parts[f"output product, {label}"] = (lambda x, p=po: evsparse.sparse_linear(x, p), h)
    parts["output product, F.linear dense"] = (lambda x: F.linear(x, w_out), h)
    for name, t in time_interleaved(parts, args.rounds).items():
        print(f"{name:46s} {t * 1e6:7.2f}")
    kb = w_out.numel() * 4 / 1e3
    print(f"\n(the output product's dense weight is {kb:.0f} KB per layer, {3 * kb * 2:.0f} KB both products x 3 layers)")
