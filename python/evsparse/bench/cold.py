"""The "cold-cache products" section of ``evsparse-bench``: each product warm (a hot loop, the weights
in cache, as every other section) and cold (every cache level evicted before each call), with the bytes
a call must read and the effective bandwidth in both modes.

Cold stands in for an edge CPU whose 1-4 MB of cache cannot hold a layer, and for a stream whose other
work evicts the weights between steps. Before each cold call a buffer of twice the last-level cache (at
least 64 MB) is written by torch's threads, which evicts this core's caches and the others'. Only the
call is timed. The methods take turns call by call, so drift hits them alike.

Per point the packed-weight dtypes are compared, each in the layout ``"auto"`` picks for it: float32,
float16 and int8 (one byte per weight, one float32 scale per input column, folded into the active
input's value: no work per weight). Bytes per call count what the kernel must read: the active inputs'
rows (dense-gather) or their columns' values and row indices (sparse-gather) plus the scales, not the
cache lines around them.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F

import evsparse

from ..layout import auto_layout
from .common import markdown_section, section_parser, sparse_inputs, time_interleaved, write_section_report

# (in x out, activity, weight density): the headline point, a smaller layer, and an unpruned one
DEFAULT_POINTS = ["2048x6144@0.1@0.15", "1024x3072@0.1@0.15", "2048x6144@0.1@1.0", "256x768@0.1@0.15"]
DEFAULT_CALLS = 25
WEIGHT_DTYPES = (torch.float32, torch.float16, torch.int8)
POOL = 8
MIN_EVICT_BYTES = 64 * 2**20


def parse_point(text: str) -> tuple[int, int, float, float]:
    """``"2048x6144@0.1@0.15"`` -> (in, out, activity, density)."""
    size, activity, density = text.split("@")
    n_in, n_out = (int(v) for v in size.lower().split("x"))
    return n_in, n_out, float(activity), float(density)


def last_level_cache_bytes() -> int:
    """The largest cache of CPU 0 (sysfs on Linux; 32 MB where unknown)."""
    best = 0
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    for index in base.glob("index*"):
        try:
            text = (index / "size").read_text().strip().upper()
        except OSError:
            continue
        mult = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        best = max(best, int(text.rstrip("KMG")) * mult)
    return best or 32 * 2**20


def evict_bytes() -> int:
    """Size of the eviction buffer: twice the last-level cache, at least :data:`MIN_EVICT_BYTES`."""
    return max(MIN_EVICT_BYTES, 2 * last_level_cache_bytes())


def time_cold(methods: dict[str, tuple[Callable, list]], calls: int, evict: torch.Tensor) -> dict[str, float]:
    """Median seconds of one call of each method with every cache evicted before it (methods in
    turn, inputs rotating)."""
    times: dict[str, list[float]] = {n: [] for n in methods}
    with torch.inference_mode():
        for fn, pool in methods.values():  # first-call costs (allocation, validation) are not the point
            fn(pool[0])
        for i in range(calls):
            for name, (fn, pool) in methods.items():
                evict.add_(1)  # read and write all of it: every level, every core, loses the weights
                arg = pool[i % len(pool)]
                t0 = time.perf_counter_ns()
                fn(arg)
                times[name].append((time.perf_counter_ns() - t0) * 1e-9)
    return {n: statistics.median(v) for n, v in times.items()}


def bytes_read(pw: evsparse.PackedWeight, xs: list[torch.Tensor]) -> float:
    """Mean bytes the product must read per call over the inputs ``xs`` (weights, indices, scales)."""
    esize = pw.values.element_size()
    per = []
    if pw.layout == "dense":
        for x in xs:
            active = int((x != 0).sum())
            per.append(active * (pw.out_features * esize + (4 if pw.scale is not None else 0)))
    else:
        counts = (pw.col_ptr[1:] - pw.col_ptr[:-1]).double()
        isize = pw.row_idx.element_size()
        for x in xs:
            nz = x != 0
            per.append(float(counts[nz].sum()) * (esize + isize) + int(nz.sum()) * (16 + (4 if pw.scale is not None else 0)))
    return statistics.mean(per)


def cold_section(points: list[str], calls: int = DEFAULT_CALLS, reps: int = 9,
                 log: Optional[Callable[[str], None]] = None) -> list[dict]:
    """One row per (point, method): warm and cold median microseconds, bytes per call, GB/s in both
    modes, and each evsparse dtype's speedups over F.linear and over float32 evsparse."""
    evict = torch.zeros(evict_bytes(), dtype=torch.uint8)
    rows = []
    for text in points:
        n_in, n_out, activity, density = parse_point(text)
        g = torch.Generator().manual_seed(0)
        w = torch.randn(n_out, n_in, generator=g)
        mask = torch.rand(n_out, n_in, generator=g) < density if density < 1.0 else None
        xs = sparse_inputs(n_in, activity, g, POOL)
        wd = w if mask is None else w * mask
        layouts = {dt: auto_layout(wd, dt) for dt in WEIGHT_DTYPES}  # what pack(..., weight_dtype=dt) picks
        packed = {dt: evsparse.pack(w, mask, layouts[dt], weight_dtype=dt) for dt in WEIGHT_DTYPES}
        wt = wd.t().contiguous()
        methods = {f"evsparse {str(dt).replace('torch.', '')}": (lambda x, pw=pw: evsparse.sparse_linear(x, pw), xs)
                   for dt, pw in packed.items()}
        # The fixed cost of a call in each mode: the same call with nothing active reads no weights,
        # so what it costs cold is the code, tables and interpreter state the eviction took away.
        zeros = [torch.zeros(n_in) for _ in range(POOL)]
        methods["evsparse, x = 0"] = (lambda x, pw=packed[torch.float32]: evsparse.sparse_linear(x, pw), zeros)
        methods["F.linear"] = (lambda x: F.linear(x, wd), xs)
        methods["x @ W^T"] = (lambda x: x @ wt, xs)
        layout_of = {f"evsparse {str(dt).replace('torch.', '')}": layouts[dt] for dt in WEIGHT_DTYPES}
        layout_of["evsparse, x = 0"] = layouts[torch.float32]
        nbytes = {f"evsparse {str(dt).replace('torch.', '')}": bytes_read(pw, xs) for dt, pw in packed.items()}
        nbytes["F.linear"] = nbytes["x @ W^T"] = float(n_out * n_in * 4)
        nbytes["evsparse, x = 0"] = 0.0
        with torch.inference_mode():
            warm = time_interleaved(methods, reps)
        cold = time_cold(methods, calls, evict)
        for name in methods:
            rows.append({
                "point": text, "in": n_in, "out": n_out, "activity": activity, "density": density,
                "layout": layout_of.get(name, "dense (BLAS)"), "method": name,
                "bytes": nbytes[name], "warm_us": warm[name] * 1e6, "cold_us": cold[name] * 1e6,
                "warm_GBps": nbytes[name] / warm[name] / 1e9, "cold_GBps": nbytes[name] / cold[name] / 1e9,
                # the time above the floor (the x = 0 call): what reading this call's data costs
                "cold_above_floor_us": (cold[name] - cold["evsparse, x = 0"]) * 1e6,
                "warm_vs_F.linear": warm["F.linear"] / warm[name], "cold_vs_F.linear": cold["F.linear"] / cold[name],
                "warm_vs_fp32": warm["evsparse float32"] / warm[name],
                "cold_vs_fp32": cold["evsparse float32"] / cold[name],
            })
        if log:
            floor = cold["evsparse, x = 0"]
            above = [cold[f"evsparse {dt}"] - floor for dt in ("float32", "int8")]
            # (above the floor only where both clear it: on a tiny layer the floor's noise is larger)
            extra = (f" ({above[0] / above[1]:.2f}x above the {floor * 1e6:.0f} us floor)"
                     if min(above) > 0.1 * floor else f" (within the {floor * 1e6:.0f} us floor's noise)")
            log(f"cold-cache {text}: int8 {cold['evsparse float32'] / cold['evsparse int8']:.2f}x over float32 cold"
                f"{extra}, {warm['evsparse float32'] / warm['evsparse int8']:.2f}x warm")
    return rows


def to_markdown_lines(rows: list[dict], evict_mb: float) -> list[str]:
    if not rows:
        return []
    lines = markdown_section(
        "Cold-cache products: int8, float16 and float32 weights",
        f"Warm: interleaved hot-loop medians (weights in cache). Cold: every cache evicted before each call "
        f"(a {evict_mb:.0f} MB buffer written by torch's threads), the call alone timed, median. Bytes: what "
        "the call must read (weights, row indices, scales of the active inputs; the whole matrix for the "
        "dense BLAS forms). Each evsparse row uses the layout `auto` picks for its dtype; `vs fp32`: "
        "float32 evsparse's time over this row's, in the same mode. The floor (`x = 0`: the call with "
        "nothing active, no weights read) is the fixed cost of a call in each mode; `above floor` is the cold "
        "time minus it.",
        ["point (in x out @ activity @ density)", "method", "layout", "KB read", "warm us", "cold us",
         "cold us above floor", "warm GB/s", "cold GB/s", "warm vs F.linear", "cold vs F.linear", "warm vs fp32",
         "cold vs fp32"])
    for r in rows:
        lines.append("| " + " | ".join([
            r["point"], r["method"], r["layout"], f"{r['bytes'] / 1e3:.0f}", f"{r['warm_us']:.1f}",
            f"{r['cold_us']:.1f}", f"{r['cold_above_floor_us']:.1f}", f"{r['warm_GBps']:.1f}", f"{r['cold_GBps']:.1f}", f"{r['warm_vs_F.linear']:.1f}x",
            f"{r['cold_vs_F.linear']:.1f}x", f"{r['warm_vs_fp32']:.2f}x", f"{r['cold_vs_fp32']:.2f}x"]) + " |")
    return lines


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m evsparse.bench.cold``: this section alone."""
    ap = section_parser("evsparse.bench.cold", __doc__, "bench-cold")
    ap.add_argument("--points", nargs="+", default=DEFAULT_POINTS, help="in x out @ activity @ density")
    ap.add_argument("--calls", type=int, default=DEFAULT_CALLS, help="cold calls per method")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = cold_section(args.points, args.calls, args.reps, log=lambda s: print(s, flush=True))
    write_section_report(args, "Cold-cache products", "cold", rows, to_markdown_lines(rows, evict_bytes() / 2**20))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
