"""The "whole-model step" section of ``evsparse-bench``: one step at batch 1 of an L-layer stack as the
inference modules take it, one ``*_stack_step`` op for every layer, against one op per layer from a
Python loop (indexing the state, stacking the new one: what ``step`` did before the stack ops), and
against the dense PyTorch step of the same stack (``torch.nn.GRU`` for the EGRU, the lean dense step
of :mod:`.linear_rnn` for the linear RNN). Small widths, where a step's fixed costs weigh most."""

from __future__ import annotations

import torch

from .._deprecation import measuring_deprecated
from .. import macs
from .common import (calibrate_egru_thresholds_, calibrate_linear_rnn_activity_, linear_rnn_stream,
                     markdown_section, section_parser, time_interleaved, write_section_report)
from .common import record_stream
from .linear_rnn import torch_dense_step
from ..nn import EGRU, SparseLinearRNN

DEFAULT_WIDTHS = [64, 256]
DEFAULT_LAYERS = [1, 2, 4]
STREAM = 16  # recorded steps whose (input, state) pairs the timed calls rotate through
STACK, STREAMED, IDLE = "module step", "stream (in place)", "module step, nothing active"
LISTS, LOOP, DENSE = "stack op (per-layer lists)", "one op per layer", "dense PyTorch"
METHODS = [STACK, STREAMED, IDLE, LISTS, LOOP, DENSE]


def _egru_methods(width: int, layers: int, activity: float, seed: int):
    torch.manual_seed(seed)
    egru = EGRU(width, width, num_layers=layers).eval()
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(64, 1, width, generator=g) * (torch.rand(64, 1, width, generator=g) < activity)
    calibrate_egru_thresholds_(egru, xs, activity)
    sparse = egru.sparsify()
    gru = torch.nn.GRU(width, width, num_layers=layers).eval().requires_grad_(False)
    pool = []
    state = (torch.zeros(layers, 1, width), torch.zeros(layers, 1, width))
    with torch.no_grad():  # not inference tensors: the warm-up calls run outside inference mode
        for x in xs[:STREAM]:  # (x_t, state before step t) on the real event pattern
            pool.append((x, state))
            _, state = sparse.step(x, state)
        sparse(xs)  # for .activity()
    args = [sparse._args(k) for k in range(layers)]
    lists = sparse._stack_args()
    stream = sparse.stream(batch_size=1)
    idle = [(torch.zeros_like(x), (c, torch.zeros_like(y))) for x, (c, y) in pool]  # no input, no unit fired

    def loop(a):
        x, (c0, y0) = a
        cs, ys, inp = [], [], x
        for k in range(layers):
            c, inp = torch.ops.evsparse.egru_step(inp, c0[k], y0[k], *args[k])
            cs.append(c)
            ys.append(inp)
        return inp, (torch.stack(cs), torch.stack(ys))

    methods = {STACK: (lambda a: sparse.step(a[0], a[1]), pool), STREAMED: (lambda a: stream.step(a[0]), pool),
               IDLE: (lambda a: sparse.step(a[0], a[1]), idle),
               LISTS: (lambda a: torch.ops.evsparse.egru_stack_step(a[0], a[1][0], a[1][1], *lists), pool),
               LOOP: (loop, pool), DENSE: (lambda a: gru(a[0][None], a[1][1]), pool)}
    return methods, _info(macs.count(egru, xs), sparse.activity())


def _linear_rnn_methods(width: int, layers: int, activity: float, seed: int):
    torch.manual_seed(seed)
    with measuring_deprecated():
        rnn = SparseLinearRNN(width, width, width, layers).eval()
    g = torch.Generator().manual_seed(seed)
    xs = linear_rnn_stream(64, width, activity, g)
    calibrate_linear_rnn_activity_(rnn, xs, activity)
    packed = rnn.sparsify()
    with torch.no_grad():
        packed(xs)
    pool = record_stream(packed, xs[:STREAM])
    args = [packed._args(k) for k in range(layers)]
    lists = packed._stack_args()
    stream = packed.stream(batch_size=1)
    idle = [(torch.zeros_like(x), torch.zeros_like(h)) for x, h in pool]

    def loop(a):
        inp, h0 = a
        hs = []
        for k in range(layers):
            inp, h = torch.ops.evsparse.linear_rnn_step(inp, h0[k], *args[k])
            hs.append(h)
        return inp, torch.stack(hs)

    dense = torch_dense_step(rnn)
    methods = {STACK: (lambda a: packed.step(a[0], a[1]), pool), STREAMED: (lambda a: stream.step(a[0]), pool),
               IDLE: (lambda a: packed.step(a[0], a[1]), idle),
               LISTS: (lambda a: torch.ops.evsparse.linear_rnn_stack_step(a[0], a[1], *lists), pool),
               LOOP: (loop, pool), DENSE: (lambda a: dense(*a), pool)}
    return methods, _info(macs.count(rnn, xs), packed.activity())


def _info(report, activity: list) -> dict:
    """Each layer's output activity (the kernel module's, on the stream) and the theoretical MAC
    speedup of the whole step (the MAC report of the same stream)."""
    return {"activity": activity, "theoretical_speedup": report.totals["dense"] / report.totals["combined"]}


def build_stack_methods(family: str, width: int, layers: int, activity: float = 0.1, seed: int = 0):
    """(methods, info) for ``family`` "EGRU" or "linear RNN"; info: the measured output activity per
    layer and the theoretical MAC speedup (``evsparse.macs``, activities measured on the stream)."""
    build = {"EGRU": _egru_methods, "linear RNN": _linear_rnn_methods}[family]
    return build(width, layers, activity, seed)


def stack_step_section(widths, layer_counts, reps: int, activity: float = 0.1) -> list[dict]:
    rows = []
    for family in ("EGRU", "linear RNN"):
        for width in widths:
            for layers in layer_counts:
                methods, info = build_stack_methods(family, width, layers, activity)
                t = time_interleaved(methods, reps)
                rows.append({"family": family, "width": width, "layers": layers, **info,
                             "times_us": {k: v * 1e6 for k, v in t.items()},
                             "stack_vs_loop": t[LOOP] / t[STACK], "stack_vs_dense": t[DENSE] / t[STACK],
                             "stream_vs_dense": t[DENSE] / t[STREAMED]})
    return rows


def to_markdown(rows: list[dict]) -> list[str]:
    lines = markdown_section(
        "Whole-model step, batch 1: the plan op, its in-place stream, the floor (us per step)",
        "The module's `step` is one `egru_plan_step` / `linear_rnn_plan_step` call on the model's plan (one "
        "weight arena + one meta tensor); the stream updates its state in place (`*_plan_step_`, nothing "
        "allocated); nothing active = the module step with a zero input and no unit fired (the fixed cost: "
        "dispatch, checks, the elementwise update); the stack op is the earlier form (per-layer `Tensor?[]` "
        "lists); the loop calls the one-layer op per layer from Python. Dense weights, ~10% output activity "
        "(measured per layer); theoretical = dense / combined MACs (`evsparse.macs`, the linear RNN's "
        "dense-state output product and recurrence included); dense PyTorch = `torch.nn.GRU` (EGRU) or a "
        "plain `F.linear` step (linear RNN).",
        ["model", "width", "layers", "activity", "theoretical", "module step", "stream", "nothing active",
         "stack op (lists)", "one op per layer", "dense PyTorch", "step vs dense", "stream vs dense"])
    for r in rows:
        t = r["times_us"]
        act = "/".join(f"{a:.0%}" for a in r["activity"])
        lines.append(f"| {r['family']} | {r['width']} | {r['layers']} | {act} | {r['theoretical_speedup']:.1f}x | "
                     f"{t[STACK]:.1f} | {t[STREAMED]:.1f} | {t[IDLE]:.1f} | {t[LISTS]:.1f} | {t[LOOP]:.1f} | "
                     f"{t[DENSE]:.1f} | {r['stack_vs_dense']:.1f}x | {r['stream_vs_dense']:.1f}x |")
    return lines


def main(argv=None) -> int:
    """This section alone (``python -c "from evsparse.bench import stack; stack.main()"``; the full
    report has it too)."""
    ap = section_parser("evsparse.bench.stack", __doc__, "bench-out/stack")
    ap.add_argument("--widths", type=int, nargs="+", default=DEFAULT_WIDTHS)
    ap.add_argument("--layers", type=int, nargs="+", default=DEFAULT_LAYERS)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = stack_step_section(args.widths, args.layers, args.reps)
    return write_section_report(args, "evsparse whole-model step, batch 1", "stack_step", rows, to_markdown(rows))
