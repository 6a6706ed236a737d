"""``evsparse-gpu-bench`` (``python -m evsparse.bench.gpu``): the GPU report, batch 1.

For each size, activity and weight density it times, side by side in one run: evsparse (``"auto"``
layout and both forced layouts, through ``evsparse.sparse_linear`` on the CUDA key; the dense-gather
also with its two-pass split-K reduction instead of atomics; both layouts with the program cap lifted
and in their deterministic forms), dense cuBLAS ``F.linear``, the TEAL-style masked split-K kernel (:func:`evsparse.gpu.launch.masked_splitk_linear`)
and ``torch.sparse`` CSR ``mv``; with the theoretical MAC speedup and the fraction of the device's
measured copy bandwidth that evsparse achieves. Then the EGRU step and a T-step sequence at batch 1
against ``torch.nn.GRUCell``, eager and captured in CUDA graphs, and (dense recurrent weight) the
sequence as one persistent kernel. Writes report.{md,json}, with the autotuner's choices.

Timing: blocks of back-to-back calls (~2 ms), each block ended by a device synchronisation, methods
interleaved round by round, median per call. That is the per-step cost a batch-1 step loop sees
(launch overhead included), not an isolated kernel time.

Without a GPU it runs on CPU tensors under ``TRITON_INTERPRET=1`` (the Triton products called directly,
as the CUDA registration calls them; no graphs): a check of the harness at tiny sizes, not a measurement.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import statistics
import time
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F

import evsparse

from . import cli as cpu_bench
from .common import copy_bandwidth, csr_baseline, magnitude_prune_, time_interleaved
from ..gpu import cuda_ops, recurrent, tuning
from ..gpu import sparse_linear as launch

DEFAULT_SIZES = ["1024x3072", "4096x12288", "8192x24576"]
DEFAULT_ACTIVITY = [0.5, 0.1, 0.02]
DEFAULT_DENSITY = [1.0, 0.15]
DEFAULT_EGRU_HIDDEN = [1024, 4096]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved_device(methods: dict, rounds: int, device: torch.device) -> dict:
    """Median seconds per call (``name -> (fn, inputs)``): interleaved blocks of back-to-back calls,
    each ended by a device synchronisation."""
    return time_interleaved(methods, rounds, sync=lambda: _sync(device))


L2_FLUSH_MIN_BYTES = 256 * 2**20  # at least twice the L2 of current data-centre GPUs (H100 50 MB)
COLD_CALLS = 20
DENSE = ("cuBLAS F.linear", "cuBLAS x @ W^T")  # the dense baselines: "best dense" is the faster of the two


def _l2_flush_buffer(device: torch.device) -> torch.Tensor:
    """A buffer whose zeroing evicts the L2 cache: twice its size, at least :data:`L2_FLUSH_MIN_BYTES`
    (1 MB under the interpreter, where there is no L2 to speak of and the check must stay quick)."""
    if device.type != "cuda":
        return torch.empty(2**20, dtype=torch.uint8, device=device)
    l2 = getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 0)
    return torch.empty(max(L2_FLUSH_MIN_BYTES, 2 * l2), dtype=torch.uint8, device=device)


def time_cold_l2(methods: dict, names, calls: int, device: torch.device) -> dict:
    """Median seconds per call of each of ``names`` with the L2 cache flushed before every call.

    The interleaved timing runs a method back to back, so a weight that fits in L2 (1024x3072 fp32 is
    12.6 MB of H100's 50 MB), or the active rows of the pooled inputs, would be read from L2 and
    the bandwidth fractions would not be HBM's. Here each call follows a flush and is timed on the
    GPU between CUDA events, so launch overhead is left out (the flush, ~0.1 ms of writes, lets the
    host queue the call's launches ahead). Under the interpreter: the wall clock (a harness check)."""
    flush = _l2_flush_buffer(device)
    cuda = device.type == "cuda"
    out = {}
    for name in names:
        fn, inputs = methods[name]
        fn(inputs[0])  # compiled and tuned outside the timing
        marks = []
        for i in range(calls):
            flush.zero_()
            start = _mark(cuda)
            fn(inputs[i % len(inputs)])
            marks.append((start, _mark(cuda)))
        _sync(device)
        out[name] = statistics.median(_seconds_between(start, end) for start, end in marks)
    return out


def _mark(cuda: bool):
    """A point in time: a CUDA event recorded on the current stream (read after a sync), or the wall clock."""
    if not cuda:
        return time.perf_counter()
    event = torch.cuda.Event(enable_timing=True)
    event.record()
    return event


def _seconds_between(start, end) -> float:
    return start.elapsed_time(end) / 1e3 if isinstance(start, torch.cuda.Event) else end - start


def _evsparse_call(pw, device: torch.device) -> Callable:
    if device.type == "cuda":
        return lambda x: evsparse.sparse_linear(x, pw)
    # Interpreter check on CPU tensors: the function the CUDA key is given.
    if pw.col_ptr is None:
        return lambda x: launch.gather_linear(x, pw.values)
    return lambda x: launch.sparse_gather_linear(x, pw.col_ptr, pw.row_idx, pw.values, pw.out_features)


class Weights:
    """One sweep weight on the device in every form the methods read: packed ("auto" and both forced
    layouts; "auto" is one of the two, not a third copy), dense, transposed, CSR. Built once per size
    and density; the activities reuse it (packing 8192x24576 on the host takes seconds)."""

    def __init__(self, w: torch.Tensor, device: torch.device):
        self.host = w
        auto = evsparse.pack(w).to(device)
        other = "sparse" if auto.layout == "dense" else "dense"
        self.packed = {"auto": auto, auto.layout: auto, other: evsparse.pack(w, layout=other).to(device)}
        self.w = w.to(device)
        self.wt = self.w.t().contiguous()
        self.csr = csr_baseline(self.w)


def _uncapped(fn: Callable) -> Callable:
    """``fn`` with the atomic products' program cap lifted (launch.PROGRAMS_PER_SM): the grid then has
    a program per active block (dense) or per column piece (sparse) even where few have work, which is
    what the cap is measured against."""
    def call(x):
        saved = launch.PROGRAMS_PER_SM, launch.INTERPRET_PROGRAMS
        launch.PROGRAMS_PER_SM = launch.INTERPRET_PROGRAMS = 1 << 30
        try:
            return fn(x)
        finally:
            launch.PROGRAMS_PER_SM, launch.INTERPRET_PROGRAMS = saved
    return call


def build_methods(case: cpu_bench.Case, weights: Weights, device: torch.device) -> tuple[dict, evsparse.PackedWeight]:
    """name -> (fn, inputs) for one sweep point; ``weights`` holds case.w."""
    packed, w, wt = weights.packed, weights.w, weights.wt
    xs = [x.to(device) for x in case.xs]
    pd, ps = packed["dense"], packed["sparse"]
    methods = {
        "evsparse": (_evsparse_call(packed["auto"], device), xs),
        "evs_dense_gather": (_evsparse_call(pd, device), xs),
        "evs_sparse_gather": (_evsparse_call(ps, device), xs),
        "evs_dense_gather two-pass": (lambda x: launch.gather_linear(x, pd.values, None, "two_pass"), xs),
        "evs_dense_gather uncapped": (_uncapped(lambda x: launch.gather_linear(x, pd.values, None, "atomic")), xs),
        "evs_sparse_gather uncapped": (_uncapped(lambda x: launch.sparse_gather_linear(
            x, ps.col_ptr, ps.row_idx, ps.values, ps.out_features, deterministic=False)), xs),
        # what torch.use_deterministic_algorithms(True) costs: ordered compaction, fixed-order sums
        "evs_dense_gather deterministic": (lambda x: launch.gather_linear(x, pd.values, deterministic=True), xs),
        "evs_sparse_gather deterministic": (lambda x: launch.sparse_gather_linear(
            x, ps.col_ptr, ps.row_idx, ps.values, ps.out_features, deterministic=True), xs),
        "cuBLAS F.linear": (lambda x: F.linear(x, w), xs),
        # the other dense form: a pre-transposed [in, out] weight (another BLAS path at batch 1; on the
        # CPU it beats F.linear on some machines, so both count as the dense baseline)
        "cuBLAS x @ W^T": (lambda x: x @ wt, xs),
        "masked split-K": (lambda x: launch.masked_splitk_linear(x, wt), xs),
        "torch CSR mv": (lambda x: torch.mv(weights.csr, x), xs),
    }
    return methods, packed["auto"]


def max_errors(methods: dict, reference: str = "cuBLAS F.linear") -> dict:
    """Each method's largest deviation from ``reference`` on the first input, relative to the largest
    output magnitude: a fast wrong kernel shows in the report next to its time."""
    fn, inputs = methods[reference]
    ref = fn(inputs[0]).float()
    scale = float(ref.abs().max()) or 1.0
    return {name: float((f(xs[0]).float() - ref).abs().max()) / scale for name, (f, xs) in methods.items()}


def sweep(sizes, activities, densities, reps: int, device: torch.device, copy_gbps: float, log=print) -> list[dict]:
    rows = []
    for size in sizes:
        n_in, n_out = cpu_bench.parse_size(size)
        for d in densities:
            weights = None
            for a in activities:
                case = cpu_bench.Case(n_in, n_out, a, d)
                if weights is None or weights.host is not case.w:  # bench.sweep_weight is cached
                    weights = Weights(case.w, device)
                methods, pw = build_methods(case, weights, device)
                errors = max_errors(methods)
                t = time_interleaved_device(methods, reps, device)
                cold = time_cold_l2(methods, ("evsparse",) + DENSE, COLD_CALLS, device)
                ev = t["evsparse"]
                theo = case.n_in * case.n_out / case.mean_macs()
                ev_bytes, dense_bytes = cpu_bench.bytes_needed(case, pw), case.n_in * case.n_out * 4
                gbps = ev_bytes / ev / 1e9
                rows.append({
                    "size": size, "activity": a, "density": d, "layout": pw.layout, "theoretical_speedup": theo,
                    "times_us": {k: v * 1e6 for k, v in t.items()},
                    "speedup_vs": {k: v / ev for k, v in t.items() if k != "evsparse"},
                    "speedup_vs_best_dense": min(t[k] for k in DENSE) / ev,
                    "effective_GBps": gbps, "copy_fraction": gbps / copy_gbps,
                    "dense_copy_fraction": dense_bytes / t["cuBLAS F.linear"] / 1e9 / copy_gbps,
                    "cold_l2_times_us": {k: v * 1e6 for k, v in cold.items()},
                    "cold_l2_speedup_vs_cublas": cold["cuBLAS F.linear"] / cold["evsparse"],
                    "cold_l2_speedup_vs_best_dense": min(cold[k] for k in DENSE) / cold["evsparse"],
                    "cold_l2_copy_fraction": ev_bytes / cold["evsparse"] / 1e9 / copy_gbps,
                    "cold_l2_dense_copy_fraction": dense_bytes / cold["cuBLAS F.linear"] / 1e9 / copy_gbps,
                    "max_rel_error_vs_cublas": errors,
                })
                worst = max(errors, key=errors.get)
                if errors[worst] > 1e-4:
                    log(f"  WARNING {size} act {a:.0%} dens {d:.0%}: {worst} deviates from cuBLAS by "
                        f"{errors[worst]:.1e} of the output scale")
                log(f"  {size} act {a:.0%} dens {d:.0%}: evsparse {ev * 1e6:.1f} us, "
                    f"cuBLAS {t['cuBLAS F.linear'] * 1e6:.1f} us, theoretical {theo:.1f}x")
    return rows


def _graphed(fn: Callable, example) -> Callable:
    """``fn`` captured in a CUDA graph on static copies of ``example`` (a tuple of tensors); the
    returned callable copies its arguments in and replays."""
    static_in = tuple(t.clone() for t in example)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn(*static_in)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = fn(*static_in)

    def replay(*args):
        for s, a in zip(static_in, args):
            s.copy_(a)
        graph.replay()
        return static_out

    return replay


def build_egru_methods(hidden: int, activity: float, density: float, steps: int, device: torch.device):
    """One EGRU layer (input size = hidden) at batch 1 with ``density`` of its weights kept, inputs and
    events at ``activity``: name -> (fn, inputs) for the step and a ``steps``-long sequence, evsparse
    against ``torch.nn.GRUCell``, eager and (on CUDA) captured in CUDA graphs, plus the persistent
    sequence kernel where the recurrent weight is dense. Returns (methods, graph capture errors)."""
    from ..nn import EGRU

    torch.manual_seed(0)
    egru = EGRU(hidden, hidden).eval()
    sparse = egru.sparsify(magnitude_prune_(egru, density)).to(device)
    cell = torch.nn.GRUCell(hidden, hidden).eval().to(device)
    g = torch.Generator().manual_seed(0)

    def events(*shape):
        v = torch.randn(*shape, generator=g)
        return (v * (torch.rand(*shape, generator=g) < activity)).to(device)

    args = sparse._args(0)
    steps_in = [(events(1, hidden), events(1, hidden), torch.randn(1, hidden, generator=g).to(device) * 0.5)
                for _ in range(cpu_bench.POOL)]
    seqs = [events(steps, 1, hidden) for _ in range(2)]
    c0, y0 = torch.zeros(1, hidden, device=device), torch.zeros(1, hidden, device=device)

    # On CUDA through the dispatcher; under the interpreter the functions the CUDA key is given.
    step_op = torch.ops.evsparse.egru_step if device.type == "cuda" else cuda_ops.egru_step
    seq_op = torch.ops.evsparse.egru_sequence if device.type == "cuda" else cuda_ops.egru_sequence

    def ev_step(x, y, c):
        return step_op(x, c, y, *args)

    def gru_step(x, y, c):
        return cell(x, c)

    def ev_seq(xs):
        return seq_op(xs, c0, y0, *args)

    def gru_seq(xs):
        h = c0
        for t in range(xs.shape[0]):
            h = cell(xs[t], h)
        return h

    methods = {
        "evsparse egru_step": (lambda a: ev_step(*a), steps_in),
        "GRUCell step": (lambda a: gru_step(*a), steps_in),
        f"evsparse egru_sequence T={steps}": (ev_seq, seqs),
        f"GRUCell loop T={steps}": (gru_seq, seqs),
    }
    if args[4] is None:  # dense recurrent weight: the one-launch persistent sequence kernel applies
        methods[f"evsparse egru_sequence T={steps} persistent"] = (
            lambda xs: recurrent.egru_sequence(xs, c0, y0, *args, mode="persistent"), seqs)
    errors = {}
    if device.type == "cuda":
        for name, fn, example in (("evsparse egru_step", ev_step, steps_in[0]),
                                  ("GRUCell step", gru_step, steps_in[0]),
                                  (f"evsparse egru_sequence T={steps}", ev_seq, (seqs[0],)),
                                  (f"GRUCell loop T={steps}", gru_seq, (seqs[0],))):
            try:
                replay = _graphed(fn, example)
                methods[name + " (CUDA graph)"] = ((lambda r: lambda a: r(*a))(replay),
                                                   steps_in if "step" in name else [(s,) for s in seqs])
            except Exception as e:  # reported, not hidden: a capture failure is a finding
                errors[name + " (CUDA graph)"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    return methods, errors


def egru_section(hidden_sizes, activity: float, densities, steps: int, reps: int, device: torch.device,
                 log=print) -> list[dict]:
    """EGRU step and a ``steps``-long sequence at batch 1 vs ``torch.nn.GRUCell``, eager and in CUDA
    graphs (graphs on CUDA only; a capture that fails is reported with its error)."""
    rows = []
    for hidden in hidden_sizes:
        for d in densities:
            methods, errors = build_egru_methods(hidden, activity, d, steps, device)
            t = time_interleaved_device(methods, reps, device)
            rows.append({"hidden": hidden, "activity": activity, "density": d,
                         "theoretical_speedup": 1.0 / (activity * d), "steps": steps,
                         "times_us": {k: v * 1e6 for k, v in t.items()}, "graph_errors": errors})
            log(f"  EGRU H={hidden} dens {d:.0%}: " + ", ".join(f"{k} {v * 1e6:.1f} us" for k, v in t.items()))
    return rows


def tuned_configs() -> dict:
    """What the autotuner chose per (in, out, activity bucket, dtypes) key, per product kernel."""
    return {name: {" ".join(map(str, k)): c for k, c in (k_.chosen() or {}).items()}
            for name, k_ in launch.TUNED_KERNELS.items()}


def to_markdown(report: dict) -> str:
    m = report["meta"]
    out = ["# evsparse GPU benchmark — batch 1, float32\n",
           f"{m['date']} · {m['device']} · torch {m['torch']} · triton {m['triton']} · measured copy bandwidth "
           f"{m['copy_GBps']:.0f} GB/s · median over {m['reps']} rounds of interleaved ~2 ms blocks, synchronised\n"]
    if m["interpreted"]:
        out.append("**Triton interpreter on CPU tensors: a harness check, not a GPU measurement.**\n")
    out.append(f"Split-K reduction: {m['reduction']}; atomic products capped at {m['programs_per_sm']} programs per SM "
               f"(\"uncapped\": a program per active block or column piece); autotuning {'on' if m['autotune'] else 'off'} "
               "(report.json lists the configurations chosen per size and activity bucket).\n")
    others = ["cuBLAS F.linear", "cuBLAS x @ W^T", "masked split-K", "torch CSR mv", "evs_dense_gather",
              "evs_dense_gather two-pass", "evs_dense_gather uncapped", "evs_sparse_gather",
              "evs_sparse_gather uncapped", "evs_dense_gather deterministic", "evs_sparse_gather deterministic"]
    out.append("Warm columns: back-to-back calls (per-step cost with launch overhead; a weight that fits in L2 "
               "is read from it). Cold-L2 columns: the L2 flushed before each call, GPU time between CUDA events "
               "(no launch overhead): the HBM figures. *vs best dense*: the faster of the two cuBLAS forms "
               "(`F.linear`, `x @ W^T` on a pre-transposed weight) / evsparse.\n")
    columns = (["size (in x out)", "activity", "density", "layout", "theoretical", "evsparse us", "vs best dense"]
               + [f"vs {o}" for o in others]
               + ["GB/s", "of copy BW", "cuBLAS of copy BW", "cold-L2 evsparse us", "cold-L2 vs cuBLAS",
                  "cold-L2 vs best dense", "cold-L2 of copy BW", "cold-L2 cuBLAS of copy BW"])
    out.append("| " + " | ".join(columns) + " |")
    out.append("|" + "---|" * len(columns))
    for r in report["rows"]:
        cells = ([r["size"], f"{r['activity']:.0%}", f"{r['density']:.0%}", r["layout"],
                  f"{r['theoretical_speedup']:.1f}x", f"{r['times_us']['evsparse']:.1f}",
                  f"{r['speedup_vs_best_dense']:.2f}x"]
                 + [f"{r['speedup_vs'][o]:.2f}x" for o in others]
                 + [f"{r['effective_GBps']:.0f}", f"{r['copy_fraction']:.0%}", f"{r['dense_copy_fraction']:.0%}",
                    f"{r['cold_l2_times_us']['evsparse']:.1f}", f"{r['cold_l2_speedup_vs_cublas']:.2f}x",
                    f"{r['cold_l2_speedup_vs_best_dense']:.2f}x", f"{r['cold_l2_copy_fraction']:.0%}",
                    f"{r['cold_l2_dense_copy_fraction']:.0%}"])
        out.append("| " + " | ".join(cells) + " |")
    if report["rows"]:
        worst = max(((e, name, r) for r in report["rows"] for name, e in r["max_rel_error_vs_cublas"].items()),
                    key=lambda t: t[0])
        out.append(f"\nEvery method's output was checked against cuBLAS before timing: largest deviation "
                   f"{worst[0]:.1e} of the output scale ({worst[1]}, {worst[2]['size']}, activity "
                   f"{worst[2]['activity']:.0%}, density {worst[2]['density']:.0%}).")
    if report["egru"]:
        out.append("\n## EGRU at batch 1 (us per step / per sequence)\n")
        names = list(report["egru"][0]["times_us"])
        out.append("| hidden | activity | density | theoretical | " + " | ".join(names) + " |")
        out.append("|" + "---|" * (4 + len(names)))
        for r in report["egru"]:
            out.append(f"| {r['hidden']} | {r['activity']:.0%} | {r['density']:.0%} | {r['theoretical_speedup']:.0f}x | "
                       + " | ".join(f"{r['times_us'][n]:.1f}" if n in r["times_us"] else "n/a" for n in names) + " |")
        for r in report["egru"]:
            for k, v in r["graph_errors"].items():
                out.append(f"\n- H={r['hidden']}, density {r['density']:.0%}: {k} could not be captured: `{v}`")
    return "\n".join(out) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="evsparse-gpu-bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", nargs="+", default=DEFAULT_SIZES, help="in x out, e.g. 4096x12288")
    ap.add_argument("--activity", nargs="+", type=cpu_bench.fraction_arg, default=DEFAULT_ACTIVITY)
    ap.add_argument("--density", nargs="+", type=cpu_bench.fraction_arg, default=DEFAULT_DENSITY)
    ap.add_argument("--egru-hidden", nargs="*", type=int, default=DEFAULT_EGRU_HIDDEN)
    ap.add_argument("--steps", type=int, default=64, help="sequence length of the EGRU sequence rows")
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--out", type=Path, default=Path("bench-gpu-out"))
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)

    interpreted = launch.INTERPRET
    if torch.cuda.is_available() and not interpreted:
        device = torch.device("cuda")
        name = torch.cuda.get_device_name(device)
    elif interpreted:
        device, name = torch.device("cpu"), "CPU (TRITON_INTERPRET=1)"
    else:
        ap.error("needs a CUDA GPU (or TRITON_INTERPRET=1 for a harness check on CPU tensors)")
    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    import triton

    t0 = time.perf_counter()
    copy_gbps = copy_bandwidth(mb=64 if interpreted else 1024, device=device, sync=lambda: _sync(device))
    rows = sweep(args.sizes, args.activity, args.density, args.reps, device, copy_gbps, log)
    egru = (egru_section(args.egru_hidden, 0.1, [1.0, 0.15], args.steps, args.reps, device, log)
            if args.egru_hidden else [])
    report = {"meta": {"date": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "device": name,
                       "torch": torch.__version__, "triton": triton.__version__, "copy_GBps": copy_gbps,
                       "reps": args.reps, "interpreted": interpreted, "evsparse": evsparse.__version__,
                       "programs_per_sm": launch.PROGRAMS_PER_SM,
                       "seconds": time.perf_counter() - t0, "reduction": launch.REDUCTION,
                       "autotune": tuning.AUTOTUNE, "tuned_configs": tuned_configs()},
              "rows": rows, "egru": egru}
    args.out.mkdir(parents=True, exist_ok=True)
    md = to_markdown(report)
    (args.out / "report.md").write_text(md)
    (args.out / "report.json").write_text(json.dumps(report, indent=1))
    print(md)
    print(f"wrote {args.out / 'report.md'}, {args.out / 'report.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
