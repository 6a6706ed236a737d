"""``evsparse-bench``: measured speedup against theoretical MAC reduction at batch 1.

Every method of one sweep point is timed *interleaved* (one call of each method per round, inputs
rotating through a pool of different activity patterns), so machine noise hits them alike and the
ratios are side by side. Reported per point: the theoretical MAC speedup (dense MACs / MACs on
nonzero inputs x nonzero weights), evsparse's measured speedup over dense ``F.linear``, their ratio
("realisation"), the speedup over the faster dense form (``F.linear`` or ``x @ W^T`` on a
pre-transposed weight), the speedup over each baseline and evsparse's effective bandwidth (bytes it must
read / time). Writes Markdown, JSON and a PNG plot.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
import json
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F

import evsparse

from . import block as block_section
from . import cold as cold_section
from . import layout as layout_section, linear_rnn as linear_rnn_section, paced as paced_section, s5 as s5_section
from . import egru_train as egru_train_section, stack as stack_section
from .common import cpu_name, copy_bandwidth, csr_baseline, magnitude_prune_, sparse_inputs, time_interleaved

DEFAULT_SIZES = ["256x768", "1024x3072", "2048x6144"]  # in x out: an EGRU layer's [H, 3H]
DEFAULT_ACTIVITY = [1.0, 0.5, 0.2, 0.1, 0.05, 0.02]
DEFAULT_DENSITY = [1.0, 0.5, 0.15, 0.05]
POOL = 8  # distinct inputs per point: an RNN's active set changes every step


def parse_size(s: str) -> tuple[int, int]:
    a, b = s.lower().split("x")
    return int(a), int(b)


@functools.lru_cache(maxsize=1)
def sweep_weight(n_out: int, n_in: int, density: float, dtype: torch.dtype, seed: int) -> torch.Tensor:
    """The weight of a sweep point: it depends on the size, density and seed only, and the sweeps visit
    every activity of one (size, density) in a row, so it is made once for them (an 8192x24576 weight
    takes seconds to draw). Shared: do not modify it in place."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n_out, n_in, generator=g)
    if density < 1.0:
        w = w * (torch.rand(n_out, n_in, generator=g) < density)
    return w.to(dtype)


@dataclass
class Case:
    """One sweep point: weight W [out, in] with the given density, inputs with the given activity."""

    n_in: int
    n_out: int
    activity: float
    density: float
    dtype: torch.dtype = torch.float32
    seed: int = 0
    w: torch.Tensor = field(init=False)
    xs: list = field(init=False)

    def __post_init__(self):
        self.w = sweep_weight(self.n_out, self.n_in, self.density, self.dtype, self.seed)
        g = torch.Generator().manual_seed(self.seed + 1)  # the inputs' own stream: w is cached
        self.xs = sparse_inputs(self.n_in, self.activity, g, POOL)

    def mean_macs(self) -> float:
        """MACs on nonzero inputs x nonzero weights, averaged over the input pool."""
        col_nnz = (self.w != 0).sum(0).double()
        return float(statistics.mean(float(col_nnz[x != 0].sum()) for x in self.xs))


def build_methods(case: Case, include_baselines: bool = True) -> dict[str, tuple[Callable, list]]:
    """name -> (fn, inputs). Each fn takes one input of its list (inputs prepared ahead, untimed)."""
    w = case.w
    pw_auto = evsparse.pack(w)
    pw_dense = evsparse.pack(w, layout="dense")
    pw_sparse = evsparse.pack(w, layout="sparse")
    wf = w.float()
    wt_dense = wf.t().contiguous()
    methods: dict[str, tuple[Callable, list]] = {
        "evsparse": (lambda x: evsparse.sparse_linear(x, pw_auto), case.xs),
        "evs_dense_gather": (lambda x: evsparse.sparse_linear(x, pw_dense), case.xs),
        "evs_sparse_gather": (lambda x: evsparse.sparse_linear(x, pw_sparse), case.xs),
        "dense_F.linear": (lambda x: F.linear(x, wf), case.xs),
        # The same dense product on a pre-transposed [in, out] weight (the dense-gather's layout): a
        # different BLAS path, faster than F.linear's GEMV at batch 1 on some machines (MKL on AMD).
        "dense_x@W^T": (lambda x: x @ wt_dense, case.xs),
    }
    if include_baselines:
        import scipy.sparse

        csr = csr_baseline(wf)
        sp = scipy.sparse.csr_matrix(wf.numpy())
        wt = wf.t().contiguous()
        methods["torch_csr_mv"] = (lambda x: torch.mv(csr, x), case.xs)
        methods["scipy_csr"] = (lambda x: sp @ x, [x.numpy() for x in case.xs])

        def naive_gather(x):
            idx = x.nonzero().squeeze(1)
            return x[idx] @ wt[idx]

        methods["naive_gather"] = (naive_gather, case.xs)
    return methods, pw_auto


def bytes_needed(case: Case, pw) -> float:
    """Bytes evsparse must read for one call: the active rows (dense layout) or the active columns'
    indices and values (sparse layout), averaged over the input pool."""
    esize = case.w.element_size()
    if pw.layout == "dense":
        return statistics.mean(float((x != 0).sum()) for x in case.xs) * case.n_out * esize
    isize = pw.row_idx.element_size()
    return case.mean_macs() * (esize + isize)


def overhead_section(reps: int = 15) -> dict:
    """Fixed cost of one call: a 256x768 weight with nothing active, and a tiny 8x8 product."""
    pw = evsparse.pack(torch.randn(768, 256), layout="dense")
    x0 = torch.zeros(256)
    tiny_w = torch.randn(8, 8)
    tiny_pw = evsparse.pack(tiny_w, layout="dense")
    tiny_x = torch.randn(8)
    methods = {
        "sparse_linear(nothing active, 256x768)": (lambda x: evsparse.sparse_linear(x, pw), [x0]),
        "raw op (nothing active, 256x768)": (lambda x: torch.ops.evsparse.gather_linear(x, pw.values, None), [x0]),
        "sparse_linear(8x8, all active)": (lambda x: evsparse.sparse_linear(x, tiny_pw), [tiny_x]),
        "F.linear(8x8)": (lambda x: F.linear(x, tiny_w), [tiny_x]),
    }
    return {k: v * 1e6 for k, v in time_interleaved(methods, reps).items()}


def run_sweep(sizes, activities, densities, reps, dtype, progress=True, include_baselines=True) -> list[dict]:
    points = [(s, a, d) for s in sizes for d in densities for a in activities]
    bar = None
    if progress:
        try:
            from tqdm import tqdm

            bar = tqdm(total=len(points), desc="evsparse-bench", unit="point")
        except ImportError:  # pragma: no cover - tqdm is in the bench extra
            bar = None
    rows = []
    for size in sizes:
        n_in, n_out = parse_size(size)
        for d in densities:
            for a in activities:
                case = Case(n_in, n_out, a, d, dtype=dtype)
                methods, pw = build_methods(case, include_baselines)
                t = time_interleaved(methods, reps)
                theo = case.n_in * case.n_out / max(case.mean_macs(), 1.0)
                ev = t["evsparse"]
                row = {
                    "size": size,
                    "in": n_in,
                    "out": n_out,
                    "activity": a,
                    "density": d,
                    "layout": pw.layout,
                    "theoretical_speedup": theo,
                    "times_us": {k: v * 1e6 for k, v in t.items()},
                    "speedup_vs_dense": t["dense_F.linear"] / ev,
                    "speedup_vs_best_dense": min(t["dense_F.linear"], t["dense_x@W^T"]) / ev,
                    "realisation": (t["dense_F.linear"] / ev) / theo,
                    "speedup_vs": {k: v / ev for k, v in t.items() if k != "evsparse"},
                    "effective_GBps": bytes_needed(case, pw) / ev / 1e9,
                    "reps": reps,
                }
                rows.append(row)
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()
    return rows


def crossover_section(sizes, activities, densities, reps: int) -> list[dict]:
    """dense-gather vs sparse-gather time over weight density, float32 and int8 weights (all four
    interleaved): where "auto" should switch for each."""
    out = []
    for size, activity, d in ((s, a, d) for s in sizes for a in activities for d in densities):
        n_in, n_out = parse_size(size)
        case = Case(n_in, n_out, activity, d, seed=1)
        methods, _ = build_methods(case, include_baselines=False)
        methods = {k: methods[k] for k in ("evs_dense_gather", "evs_sparse_gather")}
        for layout in ("dense", "sparse"):
            pw8 = evsparse.pack(case.w, layout=layout, weight_dtype=torch.int8)
            methods[f"int8_{layout}"] = (lambda x, pw8=pw8: evsparse.sparse_linear(x, pw8), case.xs)
        t = time_interleaved(methods, reps)
        out.append({"size": size, "density": d, "activity": activity,
                    "dense_gather_us": t["evs_dense_gather"] * 1e6, "sparse_gather_us": t["evs_sparse_gather"] * 1e6,
                    "sparse_over_dense": t["evs_dense_gather"] / t["evs_sparse_gather"],
                    "int8_dense_gather_us": t["int8_dense"] * 1e6, "int8_sparse_gather_us": t["int8_sparse"] * 1e6,
                    "int8_sparse_over_dense": t["int8_dense"] / t["int8_sparse"]})
    return out


# ------------------------------------------------------------------------------------------------
# EGRU per-step latency.

DEFAULT_EGRU_HIDDEN = [256, 1024, 2048]


def build_egru_methods(hidden: int, activity: float, density: float, seed: int = 0):
    """One-layer EGRU step at batch 1 (input size = hidden, as in a stack), inputs and previous events
    with the given activity; weights dense or magnitude-pruned to `density`. Returns
    (methods, theoretical speedup)."""
    from ..nn import EGRU

    torch.manual_seed(seed)
    egru = EGRU(hidden, hidden).eval()
    sparse = egru.sparsify(magnitude_prune_(egru, density))
    cell = torch.nn.GRUCell(hidden, hidden).eval()
    g = torch.Generator().manual_seed(seed)

    def events():
        v = torch.randn(1, hidden, generator=g)
        return v * (torch.rand(1, hidden, generator=g) < activity)

    pool = [(events(), (torch.randn(1, 1, hidden, generator=g) * 0.5, events().unsqueeze(0))) for _ in range(POOL)]
    args = sparse._args(0)
    methods = {
        "evsparse egru_step (op)": (lambda a: torch.ops.evsparse.egru_step(a[0], a[1][0][0], a[1][1][0], *args), pool),
        "evsparse PackedEGRU.step": (lambda a: sparse.step(a[0], a[1]), pool),
        "torch.nn.GRUCell (dense)": (lambda a: cell(a[0], a[1][1][0]), pool),
        "EvNN-style dense step": (lambda a: egru.step(a[0], a[1]), pool),
    }
    return methods, 1.0 / (activity * density)


def egru_section(hidden_sizes, activity: float, densities, reps: int) -> list[dict]:
    rows = []
    for hidden in hidden_sizes:
        for d in densities:
            methods, theo = build_egru_methods(hidden, activity, d)
            t = time_interleaved(methods, reps)
            ev = t["evsparse egru_step (op)"]
            rows.append({"hidden": hidden, "activity": activity, "density": d, "theoretical_speedup": theo,
                         "times_us": {k: v * 1e6 for k, v in t.items()},
                         "speedup_vs_grucell": t["torch.nn.GRUCell (dense)"] / ev,
                         "speedup_vs_evnn_dense": t["EvNN-style dense step"] / ev,
                         "module_speedup_vs_grucell": t["torch.nn.GRUCell (dense)"] / t["evsparse PackedEGRU.step"]})
    return rows


# ------------------------------------------------------------------------------------------------
# Targets of the CPU-kernel issue, checked on the measured rows.


def check_targets(rows: list[dict], copy_gbps: float, egru_rows: Optional[list] = None) -> list[dict]:
    res = []
    for r in egru_rows or []:
        if r["hidden"] == 1024 and r["activity"] == 0.1 and r["density"] in (1.0, 0.15):
            need = 5 if r["density"] == 1.0 else 20
            res.append({"target": f"EGRU step H=1024, 10% activity, {'dense' if r['density'] == 1.0 else '85% pruned'}"
                                  f": >= {need}x vs GRUCell",
                        "measured": f"{r['speedup_vs_grucell']:.1f}x (op), {r['module_speedup_vs_grucell']:.1f}x (module)",
                        "met": r["speedup_vs_grucell"] >= need})

    def find(size, a, d):
        return next((r for r in rows if r["size"] == size and r["activity"] == a and r["density"] == d), None)

    act_only = [r for r in rows if r["density"] == 1.0 and r["size"] in ("2048x6144", "1024x3072")
                and 0.05 <= r["activity"] <= 0.5]
    if act_only:
        worst = min(act_only, key=lambda r: r["realisation"])
        res.append({"target": "activity only, 1024x3072 & 2048x6144, 5-50%: realisation >= 0.8",
                    "measured": f"min {worst['realisation']:.2f} ({worst['size']}, {worst['activity']:.0%})",
                    "met": worst["realisation"] >= 0.8})
    p = find("2048x6144", 0.1, 0.15)
    if p is not None:
        s = p["speedup_vs"]
        res.append({"target": "10% x 15% at 2048x6144: >= 25x vs F.linear",
                    "measured": f"{p['speedup_vs_dense']:.1f}x", "met": p["speedup_vs_dense"] >= 25})
        for k in ("torch_csr_mv", "scipy_csr"):
            if k in s:
                res.append({"target": f"10% x 15% at 2048x6144: >= 10x vs {k}", "measured": f"{s[k]:.1f}x",
                            "met": s[k] >= 10})
    slowest = min(rows, key=lambda r: r["speedup_vs_dense"])
    res.append({"target": "every point at least as fast as dense F.linear",
                "measured": f"min {slowest['speedup_vs_dense']:.2f}x ({slowest['size']}, act {slowest['activity']:.0%}, "
                            f"dens {slowest['density']:.0%})",
                "met": slowest["speedup_vs_dense"] >= 1.0})
    big = [r for r in rows if r["size"] == "2048x6144" and r["density"] == 1.0 and r["activity"] >= 0.5]
    if big:
        b = max(big, key=lambda r: r["effective_GBps"])
        res.append({"target": "large dense-gather bandwidth >= 70% of copy bandwidth",
                    "measured": f"{b['effective_GBps']:.1f} GB/s vs copy {copy_gbps:.1f} GB/s "
                                f"({b['effective_GBps'] / copy_gbps:.0%}, act {b['activity']:.0%})",
                    "met": b["effective_GBps"] >= 0.7 * copy_gbps})
    return res


# ------------------------------------------------------------------------------------------------
# Output.


def to_markdown(report: dict) -> str:
    m = report["meta"]
    lines = [f"# evsparse benchmark — batch 1, {m['dtype']}",
             "",
             f"{m['date']} · {m['cpu']} · {m['threads']} threads · torch {m['torch']} · kernels: {m['isa']} · "
             f"copy bandwidth {m['copy_GBps']:.1f} GB/s · median over {m['reps']} rounds of interleaved ~2 ms blocks per method",
             "",
             "| size (in x out) | activity | density | layout | theoretical | measured vs dense | realisation | "
             "evsparse us | F.linear us | x @ W^T us | vs best dense | vs torch CSR | vs scipy | vs naive gather | GB/s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        s = r["speedup_vs"]
        opt = lambda k: f"{s[k]:.1f}x" if k in s else "-"  # noqa: E731
        lines.append(
            f"| {r['size']} | {r['activity']:.0%} | {r['density']:.0%} | {r['layout']} | {r['theoretical_speedup']:.1f}x "
            f"| {r['speedup_vs_dense']:.1f}x | {r['realisation']:.2f} | {r['times_us']['evsparse']:.1f} "
            f"| {r['times_us']['dense_F.linear']:.1f} | {r['times_us']['dense_x@W^T']:.1f} "
            f"| {r['speedup_vs_best_dense']:.1f}x | {opt('torch_csr_mv')} | {opt('scipy_csr')} | {opt('naive_gather')} "
            f"| {r['effective_GBps']:.1f} |")
    if report.get("crossover"):
        lines += ["", "## Layout crossover (dense-gather vs sparse-gather)", "",
                  "float32 and int8 weights, the four timed interleaved.", "",
                  "| size | activity | density | dense-gather us | sparse-gather us | sparse faster by | "
                  "int8 dense us | int8 sparse us | int8: sparse faster by |", "|---|---|---|---|---|---|---|---|---|"]
        for c in report["crossover"]:
            int8 = (f"{c['int8_dense_gather_us']:.1f} | {c['int8_sparse_gather_us']:.1f} | "
                    f"{c['int8_sparse_over_dense']:.2f}x" if "int8_dense_gather_us" in c else "- | - | -")
            lines.append(f"| {c['size']} | {c['activity']:.0%} | {c['density']:.0%} | {c['dense_gather_us']:.1f} | "
                         f"{c['sparse_gather_us']:.1f} | {c['sparse_over_dense']:.2f}x | {int8} |")
    if report.get("egru"):
        lines += ["", "## EGRU step, batch 1 (us per step; one layer, input size = hidden)", "",
                  "| hidden | activity | weight density | theoretical | evsparse op | PackedEGRU.step | GRUCell | "
                  "EvNN-style dense | vs GRUCell | vs EvNN dense |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in report["egru"]:
            t = r["times_us"]
            lines.append(f"| {r['hidden']} | {r['activity']:.0%} | {r['density']:.0%} | {r['theoretical_speedup']:.1f}x | "
                         f"{t['evsparse egru_step (op)']:.1f} | {t['evsparse PackedEGRU.step']:.1f} | "
                         f"{t['torch.nn.GRUCell (dense)']:.1f} | {t['EvNN-style dense step']:.1f} | "
                         f"{r['speedup_vs_grucell']:.1f}x | {r['speedup_vs_evnn_dense']:.1f}x |")
    if report.get("linear_rnn"):
        lines += linear_rnn_section.to_markdown(report["linear_rnn"])
    if report.get("s5"):
        lines += s5_section.to_markdown(report["s5"])
    if report.get("egru_train"):
        lines += egru_train_section.to_markdown(report["egru_train"])
    if report.get("timed_layout"):
        lines += layout_section.to_markdown(report["timed_layout"])
    if report.get("stack_step"):
        lines += stack_section.to_markdown(report["stack_step"])
    if report.get("paced"):
        lines += paced_section.to_markdown(report["paced"])
    if report.get("cold"):
        lines += cold_section.to_markdown_lines(report["cold"], report["cold_evict_MB"])
    if report.get("block"):
        lines += block_section.to_markdown_lines(report["block"])
    lines += ["", "## Fixed cost of one call (us)", "", "| call | us |", "|---|---|"]
    for k, v in report["overhead_us"].items():
        lines.append(f"| {k} | {v:.2f} |")
    if report.get("targets"):
        lines += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
        for t in report["targets"]:
            lines.append(f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else '**no**'} |")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(8, 5.5))
    rows = report["rows"]
    markers = "osD^vP*X"
    sizes = list(dict.fromkeys(r["size"] for r in rows))
    densities = sorted(set(r["density"] for r in rows), reverse=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for si, size in enumerate(sizes):  # colour: size; marker: weight density; line: activity sweep
        for di, d in enumerate(densities):
            pts = sorted((r["theoretical_speedup"], r["speedup_vs_dense"]) for r in rows
                         if r["size"] == size and r["density"] == d)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=markers[di % len(markers)],
                        color=colors[si % len(colors)], alpha=0.8,
                        label=f"{size}, density {d:.0%}")
    lim = max(max(r["theoretical_speedup"] for r in rows), max(r["speedup_vs_dense"] for r in rows)) * 1.3
    ax.plot([1, lim], [1, lim], "k--", lw=1, label="measured = theoretical")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("theoretical MAC speedup (1 / (activity x density))")
    ax.set_ylabel("measured speedup over dense F.linear")
    ax.set_title(f"evsparse, batch 1, {report['meta']['dtype']}, {report['meta']['threads']} threads")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def fraction_arg(text: str) -> float:
    """argparse type for --activity/--density: a fraction in (0, 1] (percentages are refused, not guessed)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < v <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction in (0, 1]; write 10%% as 0.1")
    return v


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="evsparse-bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", nargs="+", default=DEFAULT_SIZES, help="in x out, e.g. 2048x6144")
    ap.add_argument("--activity", nargs="+", type=fraction_arg, default=DEFAULT_ACTIVITY,
                    help="fractions of active inputs in (0, 1], e.g. 0.1 for 10%%")
    ap.add_argument("--density", nargs="+", type=fraction_arg, default=DEFAULT_DENSITY,
                    help="weight densities in (0, 1], e.g. 0.15")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32",
                    help="weight dtype of evsparse (x and the baselines stay float32)")
    ap.add_argument("--reps", type=int, default=9, help="interleaved rounds (blocks of ~2 ms per method) per point")
    ap.add_argument("--no-baselines", action="store_true", help="skip torch CSR, scipy and the naive gather")
    ap.add_argument("--no-crossover", action="store_true", help="skip the layout-crossover section")
    ap.add_argument("--egru-hidden", nargs="*", type=int, default=DEFAULT_EGRU_HIDDEN,
                    help="hidden sizes of the EGRU step section (none to skip)")
    ap.add_argument("--lrnn-width", nargs="*", type=int, default=linear_rnn_section.DEFAULT_WIDTHS,
                    help="widths of the sparse linear RNN step section (none to skip)")
    ap.add_argument("--s5-k", nargs="*", type=float, default=s5_section.DEFAULT_K,
                    help="width scales of the S5 denoiser step section (none to skip)")
    ap.add_argument("--timed-hidden", nargs="*", type=int, default=layout_section.DEFAULT_HIDDEN,
                    help="hidden sizes of the section comparing layout=\"timed\" with \"auto\" (none to skip)")
    ap.add_argument("--stack-width", nargs="*", type=int, default=stack_section.DEFAULT_WIDTHS,
                    help="widths of the whole-model step section (stack op vs one op per layer; none to skip)")
    ap.add_argument("--stack-layers", nargs="+", type=int, default=stack_section.DEFAULT_LAYERS,
                    help="layer counts of the whole-model step section")
    ap.add_argument("--paced-interval-ms", type=float, default=paced_section.DEFAULT_INTERVAL_MS,
                    help="interval of the paced streaming section (one call per interval)")
    ap.add_argument("--paced-samples", type=int, default=paced_section.DEFAULT_SAMPLES,
                    help="paced calls per method (0 to skip the paced streaming section)")
    ap.add_argument("--cold-points", nargs="*", default=cold_section.DEFAULT_POINTS,
                    help="in x out @ activity @ density points of the cold-cache section (none to skip)")
    ap.add_argument("--cold-calls", type=int, default=cold_section.DEFAULT_CALLS,
                    help="cold calls per method in the cold-cache section")
    ap.add_argument("--train-cases", nargs="*", type=egru_train_section.parse_case,
                    default=egru_train_section.DEFAULT_CASES[:2],
                    help="EGRU training-step cases IN:H:B:T (default: PTB-small's two layers; none to skip)")
    ap.add_argument("--block-points", nargs="*", default=block_section.DEFAULT_POINTS,
                    help="in x out @ activity @ density points of the block-pruned section (none to skip)")
    ap.add_argument("--out", type=Path, default=Path("bench-out"), help="directory for report.{md,json,png}")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    t_start = time.perf_counter()
    copy_gbps = copy_bandwidth()
    rows = run_sweep(args.sizes, args.activity, args.density, args.reps, dtype, not args.quiet, not args.no_baselines)
    crossover = [] if args.no_crossover else crossover_section(
        args.sizes[-2:], [1.0, 0.1], [0.5, 0.4, 0.3, 0.25, 0.2, 0.15, 0.1], args.reps)
    egru_rows = egru_section(args.egru_hidden, 0.1, [1.0, 0.15], args.reps) if args.egru_hidden else []
    lrnn_rows = (linear_rnn_section.linear_rnn_section(args.lrnn_width, 0.1, [1.0, 0.15], args.reps)
                 if args.lrnn_width else [])
    s5_rows = (s5_section.s5_section(args.s5_k, args.reps, args.paced_interval_ms, args.paced_samples)
               if args.s5_k else [])
    timed_rows = layout_section.timed_layout_section(args.timed_hidden, args.reps) if args.timed_hidden else []
    stack_rows = (stack_section.stack_step_section(args.stack_width, args.stack_layers, args.reps)
                  if args.stack_width else [])
    paced_rows = (paced_section.paced_section(args.paced_interval_ms, args.paced_samples, args.reps)
                  if args.paced_samples > 0 else [])
    train_rows = (egru_train_section.egru_train_section(args.train_cases, rounds=max(3, args.reps // 2))
                  if args.train_cases else [])
    cold_rows = (cold_section.cold_section(args.cold_points, args.cold_calls, args.reps)
                 if args.cold_points else [])
    block_rows = (block_section.block_section(args.block_points, args.cold_calls, args.reps)
                  if args.block_points else [])
    info = evsparse.build_info()
    report = {
        "meta": {"date": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "cpu": cpu_name(), "arch": platform.machine(),
                 "threads": torch.get_num_threads(), "torch": torch.__version__, "isa": info["isa_active"],
                 "dtype": args.dtype, "copy_GBps": copy_gbps, "pool": POOL, "reps": args.reps,
                 "evsparse": evsparse.__version__},
        "rows": rows,
        "crossover": crossover,
        "egru": egru_rows,
        "linear_rnn": lrnn_rows,
        "s5": s5_rows,
        "timed_layout": timed_rows,
        "stack_step": stack_rows,
        "paced": paced_rows,
        "cold": cold_rows,
        "block": block_rows,
        "egru_train": train_rows,
        "cold_evict_MB": cold_section.evict_bytes() / 2**20,
        "overhead_us": overhead_section(),
        "targets": check_targets(rows, copy_gbps, egru_rows) if not args.no_baselines else [],
    }
    report["meta"]["seconds"] = time.perf_counter() - t_start
    args.out.mkdir(parents=True, exist_ok=True)
    md = to_markdown(report)
    (args.out / "report.md").write_text(md)
    (args.out / "report.json").write_text(json.dumps(report, indent=1))
    has_png = plot(report, args.out / "report.png")
    print(md)
    print(f"wrote {args.out / 'report.md'}, {args.out / 'report.json'}" + (f", {args.out / 'report.png'}" if has_png else "")
          + f" in {report['meta']['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
