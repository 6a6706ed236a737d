"""The "paced streaming" section of ``evsparse-bench``: per-call latency when calls come at a fixed
rate, as in a real stream (one step every 8 ms for a 16 kHz denoiser with a 128-sample hop), next to
the hot-loop figure every other section reports.

Between two paced calls the calling thread sleeps: the worker threads go back to waiting, and other
work may evict the weights from the caches, so a paced call can cost several times a hot one. Each
tick runs one method (they take turns), so no method warms the machine for another. Reported per
method: the hot median (interleaved blocks, as elsewhere), the paced median and 99th percentile, and
their ratios to the hot median.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import evsparse

from ..timing import time_paced
from .common import markdown_section, section_parser, time_interleaved, write_section_report
from .stack import DENSE, STACK, STREAMED, build_stack_methods

DEFAULT_INTERVAL_MS = 8.0
DEFAULT_SAMPLES = 200


def _linear_case(out_f: int, in_f: int, activity: float, density: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(out_f, in_f, generator=g)
    keep = max(1, round(density * w.numel()))  # the largest-magnitude weights stay
    mask = w.abs() >= w.abs().flatten().kthvalue(w.numel() - keep + 1).values
    dense = w * mask
    pw = evsparse.pack(w, mask)
    wt = dense.t().contiguous()
    pool = [torch.randn(1, in_f, generator=g) * (torch.rand(1, in_f, generator=g) < activity) for _ in range(8)]
    # The same weight pruned to the same density in whole 16x1 blocks (prune's block=16): the sparse
    # layout's block path, whose vector adds read fewer index bytes per call.
    lin = torch.nn.Linear(in_f, out_f, bias=False)
    with torch.no_grad():
        lin.weight.copy_(w)
    bmask = evsparse.prune.global_magnitude(lin, 1.0 - density, include=lambda *_: True, block=16)["weight"]
    pw_block = evsparse.pack(w, bmask)
    methods = {"evsparse": (lambda x: evsparse.sparse_linear(x, pw), pool),
               "evsparse, 16x1 block-pruned": (lambda x: evsparse.sparse_linear(x, pw_block), pool),
               "F.linear": (lambda x: F.linear(x, dense), pool),
               "x @ W^T": (lambda x: x @ wt, pool)}
    return methods, 1.0 / (activity * density), "F.linear"


def _egru_case(width: int, layers: int, activity: float, seed: int):
    methods, info = build_stack_methods("EGRU", width, layers, activity, seed)
    return ({"evsparse (PackedEGRU.step)": methods[STACK], "evsparse (stream, in place)": methods[STREAMED],
             "torch.nn.GRU": methods[DENSE]},
            info["theoretical_speedup"], "torch.nn.GRU")


def cases():
    """The section's cases: (name, builder). Sizes are the issue's: a pruned product on a sparse input,
    and a small 2-layer EGRU step, where fixed costs dominate."""
    return [("sparse_linear 1024x3072, 10% x 15%", lambda: _linear_case(3072, 1024, 0.1, 0.15, 0)),
            ("EGRU step, 2 layers, H=256, 10%", lambda: _egru_case(256, 2, 0.1, 0))]


def paced_section(interval_ms: float = DEFAULT_INTERVAL_MS, samples: int = DEFAULT_SAMPLES, reps: int = 9,
                  selected=None) -> list[dict]:
    rows = []
    for name, build in cases():
        if selected is not None and name not in selected:
            continue
        methods, theoretical, baseline = build()
        hot = time_interleaved(methods, reps)
        paced = time_paced(methods, interval_ms * 1e-3, samples)
        for method in methods:
            med, p99 = paced[method]
            rows.append({"case": name, "method": method, "theoretical": theoretical, "baseline": baseline,
                         "hot_us": hot[method] * 1e6, "paced_median_us": med * 1e6, "paced_p99_us": p99 * 1e6,
                         "interval_ms": interval_ms, "samples": samples, "threads": torch.get_num_threads()})
    return rows


def to_markdown(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    r0 = rows[0]
    intro = (f"One call every {r0['interval_ms']:g} ms, {r0['samples']} calls per method (methods take turns "
             f"tick by tick), {r0['threads']} threads; hot = the interleaved hot-loop median. Batch 1, float32. "
             "The pace lets worker threads sleep and caches cool between calls, as in a real stream.")
    cols = ["case", "method", "theoretical", "hot us", "paced median us", "paced p99 us", "paced / hot",
            "p99 / hot", "paced vs baseline"]
    lines = markdown_section("Paced streaming (latency per call)", intro, cols)
    base = {r["case"]: r for r in rows if r["method"] == r["baseline"]}
    for r in rows:
        b = base.get(r["case"])
        vs = f"{b['paced_median_us'] / r['paced_median_us']:.1f}x" if b else "-"
        lines.append(f"| {r['case']} | {r['method']} | {r['theoretical']:.1f}x | {r['hot_us']:.1f} | "
                     f"{r['paced_median_us']:.1f} | {r['paced_p99_us']:.1f} | "
                     f"{r['paced_median_us'] / r['hot_us']:.1f}x | {r['paced_p99_us'] / r['hot_us']:.1f}x | {vs} |")
    return lines


def main(argv=None) -> int:
    """This section alone (``python -c "from evsparse.bench import paced; paced.main()"``; the full
    report has it too)."""
    ap = section_parser("evsparse.bench.paced", __doc__, "bench-out/paced")
    ap.add_argument("--interval-ms", type=float, default=DEFAULT_INTERVAL_MS)
    ap.add_argument("--samples", type=int, default=DEFAULT_SAMPLES)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = paced_section(args.interval_ms, args.samples, args.reps)
    return write_section_report(args, "evsparse paced streaming, batch 1", "paced", rows, to_markdown(rows))
