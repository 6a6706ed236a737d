"""Issue #25's cold-cache int8 target (int8 >= 1.5x over float32 at 10% x 15% on 2048x6144) in every
layout and dtype, not only the one ``auto`` picks: float32/float16/int8 weights in the sparse and the
dense layout, unstructured and in 16x1 blocks, with every cache evicted before each call
(``evsparse.bench.cold.time_cold``), and the floor (nothing active). Prints cold us, us above the floor,
KB read per call and the ratio to float32 sparse.

    python benchmarks/ab/cold_layouts.py [--calls N] [--repeats R]
"""
import argparse

import torch

import evsparse
from evsparse.bench.cold import bytes_read, evict_bytes, time_cold
from evsparse.bench.common import cpu_name, random_block_mask, sparse_inputs

ap = argparse.ArgumentParser()
ap.add_argument("--calls", type=int, default=60)
ap.add_argument("--repeats", type=int, default=3)
ap.add_argument("--size", default="2048x6144")
args = ap.parse_args()
inp, out = (int(v) for v in args.size.split("x"))
g = torch.Generator().manual_seed(0)
w = torch.randn(out, inp, generator=g)
unstructured = torch.rand(out, inp, generator=g) < 0.15
blocks = random_block_mask(out, inp, 0.15, g)
xs = sparse_inputs(inp, 0.1, g, 16)
forms = {
    "float32 sparse": (unstructured, "sparse", None), "float32 dense": (unstructured, "dense", None),
    "float16 sparse": (unstructured, "sparse", torch.float16), "int8 sparse": (unstructured, "sparse", torch.int8),
    "int8 dense": (unstructured, "dense", torch.int8),
    "float32 16x1 blocks": (blocks, "sparse", None), "int8 16x1 blocks": (blocks, "sparse", torch.int8),
}
packed = {k: evsparse.pack(w, m, lay, weight_dtype=wd) for k, (m, lay, wd) in forms.items()}
methods = {k: (lambda x, pw=pw: evsparse.sparse_linear(x, pw), xs) for k, pw in packed.items()}
methods["floor (nothing active)"] = (lambda x, pw=packed["float32 sparse"]: evsparse.sparse_linear(x, pw),
                                     [torch.zeros(inp)])
evict = torch.zeros(evict_bytes() // 4)
print(f"# {cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}, kernels {evsparse.get_isa()}; "
      f"{args.size} at 10% activity x 15% density; cold = every cache evicted ({evict.numel() * 4 >> 20} MB written) "
      f"before each call, median of {args.calls} calls; {args.repeats} repeats")
kb = {k: bytes_read(pw, xs) / 1e3 for k, pw in packed.items()}
for rep in range(args.repeats):
    r = time_cold(methods, args.calls, evict)
    floor = r.pop("floor (nothing active)")
    base = r["float32 sparse"]
    print(f"\nrepeat {rep + 1}: floor {floor * 1e6:.0f} us")
    for k, t in r.items():
        print(f"  {k:22s} cold {t * 1e6:6.0f} us  above floor {(t - floor) * 1e6:6.0f}  KB {kb[k]:6.0f}  "
              f"vs float32 sparse {base / t:.2f}x (above floor {(base - floor) / (t - floor):.2f}x)")
