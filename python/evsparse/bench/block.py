"""The "block-pruned weights" section of ``evsparse-bench``: weights pruned in whole 16x1 blocks (16
output rows of one input column kept or dropped together, ``evsparse.prune``'s ``block=16``), which the
sparse layout multiplies one vector operation per block, against an unstructured weight of the same
density, the dense layout and the dense BLAS forms; warm (interleaved hot loop, inputs rotating) and
cold (every cache evicted before each call, as the cold-cache section), with the bytes each call reads.
The block-pruned weight is a different model from the unstructured one: its quality is a training
question (docs/guide/pruning-macs.md).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

import evsparse

from .cold import bytes_read, evict_bytes, parse_point, time_cold
from .common import markdown_section, random_block_mask, section_parser, sparse_inputs, time_interleaved, write_section_report

DEFAULT_POINTS = ["2048x6144@0.1@0.15", "1024x3072@0.1@0.15", "1024x3072@1.0@0.15", "256x768@0.1@0.15"]
DEFAULT_CALLS = 15
POOL = 8


def block_section(points: list[str], calls: int = DEFAULT_CALLS, reps: int = 9,
                  log: Optional[Callable[[str], None]] = None) -> list[dict]:
    """One row per (point, method): warm and cold median microseconds, bytes per call, and the speedups
    of each method over the unstructured sparse weight and over ``x @ W^T`` in both modes."""
    evict = torch.zeros(evict_bytes(), dtype=torch.uint8)
    rows = []
    for text in points:
        n_in, n_out, activity, density = parse_point(text)
        g = torch.Generator().manual_seed(0)
        w = torch.randn(n_out, n_in, generator=g)
        m_block = random_block_mask(n_out, n_in, density, g)
        m_unstr = torch.rand(n_out, n_in, generator=g) < density
        xs = sparse_inputs(n_in, activity, g, POOL)
        packed = {"block-pruned, sparse": evsparse.pack(w, m_block, layout="sparse"),
                  "unstructured, sparse": evsparse.pack(w, m_unstr, layout="sparse"),
                  "block-pruned, dense layout": evsparse.pack(w, m_block, layout="dense")}
        wd = w * m_block
        wt = wd.t().contiguous()
        methods = {name: (lambda x, pw=pw: evsparse.sparse_linear(x, pw), xs) for name, pw in packed.items()}
        methods["F.linear"] = (lambda x: F.linear(x, wd), xs)
        methods["x @ W^T"] = (lambda x: x @ wt, xs)
        nbytes = {name: bytes_read(pw, xs) for name, pw in packed.items()}
        nbytes["F.linear"] = nbytes["x @ W^T"] = float(n_out * n_in * 4)
        with torch.inference_mode():
            warm = time_interleaved(methods, reps)
        cold = time_cold(methods, calls, evict)
        base = "unstructured, sparse"
        for name in methods:
            rows.append({
                "point": text, "in": n_in, "out": n_out, "activity": activity, "density": density, "method": name,
                "theoretical": 1.0 / (activity * density), "bytes": nbytes[name],
                "warm_us": warm[name] * 1e6, "cold_us": cold[name] * 1e6,
                "warm_vs_unstructured": warm[base] / warm[name], "cold_vs_unstructured": cold[base] / cold[name],
                "warm_vs_xWt": warm["x @ W^T"] / warm[name], "cold_vs_xWt": cold["x @ W^T"] / cold[name],
            })
        if log:
            b = "block-pruned, sparse"
            log(f"block-pruned {text}: {warm[base] / warm[b]:.2f}x warm and {cold[base] / cold[b]:.2f}x cold over "
                f"unstructured; {warm['x @ W^T'] / warm[b]:.1f}x over x @ W^T warm")
    return rows


def to_markdown_lines(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    lines = markdown_section(
        "Block-pruned weights (16x1 blocks)",
        "The same density pruned in whole 16x1 blocks (`prune.global_magnitude(..., block=16)`: the sparse "
        "layout's block path) and unstructured, warm (interleaved hot loop, inputs rotating) and cold (every "
        "cache evicted before each call, as above). Bytes: what the call reads (values and row indices of the "
        "active columns, as stored; the block path reads one block start per 16 values instead of the row "
        "indices). Theoretical: 1 / (activity x density) over dense.",
        ["point (in x out @ activity @ density)", "method", "theoretical", "KB stored, active columns", "warm us",
         "cold us", "warm vs unstructured", "cold vs unstructured", "warm vs x @ W^T", "cold vs x @ W^T"])
    for r in rows:
        lines.append("| " + " | ".join([
            r["point"], r["method"], f"{r['theoretical']:.1f}x", f"{r['bytes'] / 1e3:.0f}", f"{r['warm_us']:.1f}",
            f"{r['cold_us']:.1f}", f"{r['warm_vs_unstructured']:.2f}x", f"{r['cold_vs_unstructured']:.2f}x",
            f"{r['warm_vs_xWt']:.1f}x", f"{r['cold_vs_xWt']:.1f}x"]) + " |")
    return lines


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m evsparse.bench.block``: this section alone."""
    ap = section_parser("evsparse.bench.block", __doc__, "bench-block")
    ap.add_argument("--points", nargs="+", default=DEFAULT_POINTS, help="in x out @ activity @ density")
    ap.add_argument("--calls", type=int, default=DEFAULT_CALLS, help="cold calls per method")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = block_section(args.points, args.calls, args.reps, log=lambda s: print(s, flush=True))
    write_section_report(args, "Block-pruned weights", "block", rows, to_markdown_lines(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
