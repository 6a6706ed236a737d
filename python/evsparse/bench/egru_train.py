"""The EGRU training section of ``evsparse-bench``: one layer's training step (forward + backward over
a [T, B] batch) per token, side by side: ``EGRU`` on the fused op (``torch.ops.evsparse.egru_train``,
its default on the CPU), the same module's Python loop over time (``fused=False``, what it ran before),
and ``torch.nn.GRU`` of the same sizes (PyTorch's CPU training).

Thresholds are calibrated so that about ``activity`` of the units fire (PTB training measured
10-15%: examples/ptb), and DropConnect is on as in training. Reported beside the times: the measured
activity, and the backward's sparsity: the fraction of (step, row, unit) gradients dy_{t-1} the op
forms (units that fired or lie inside the surrogate's support; the rest are skipped). The loop and
``nn.GRU`` compute every product densely.
"""

from __future__ import annotations

import copy
import statistics
import time

import torch

from ..nn import EGRU
from .common import markdown_section, section_parser, write_section_report

# (input, hidden, batch, steps): PTB-small's two layers at its batch and BPTT length, the same at
# batch 64 and 70 steps, and a paper-scale layer.
DEFAULT_CASES = [(256, 384, 32, 35), (384, 256, 32, 35), (256, 384, 64, 70), (1350, 1350, 32, 35)]
FUSED, LOOP, GRU = "EGRU fused op", "EGRU Python loop", "nn.GRU"


def parse_case(text: str) -> tuple[int, int, int, int]:
    """``IN:H:B:T``, e.g. ``256:384:32:35``."""
    parts = [int(p) for p in text.split(":")]
    if len(parts) != 4 or min(parts) < 1:
        raise ValueError(f"a training case is IN:H:B:T (positive integers), got {text!r}")
    return tuple(parts)


@torch.no_grad()
def fused_forward(layer: EGRU, x: torch.Tensor, state=None, w_hh=None) -> tuple:
    """The forward half of ``layer``'s fused op (a one-layer EGRU) over ``x`` [T, B, in], from ``state``
    ((c, y), each [1, B, H]; zeros if None) with ``w_hh`` in place of its recurrent weight if given (e.g.
    DropConnect applied): (ys, c, saved), saved [T, B, 5H] with c~ in its last block."""
    w_ih, weight_hh, b_ih, b_hh, thr = layer.layer_params(0)
    H, B = layer.hidden_size, x.shape[1]
    c0, y0 = (x.new_zeros(B, H), x.new_zeros(B, H)) if state is None else (state[0][0], state[1][0])
    gi = torch.nn.functional.linear(x, w_ih, b_ih).contiguous()
    b_hh = b_hh if b_hh is not None else x.new_zeros(3 * H)
    ys, c, _, saved = torch.ops.evsparse.egru_train_forward(gi, c0.contiguous(), y0.contiguous(),
                                                            weight_hh if w_hh is None else w_hh, b_hh, thr)
    return ys, c, saved


def sparsity_counts(layer: EGRU, ys: torch.Tensor, saved: torch.Tensor) -> dict:
    """Of a :func:`fused_forward`'s T x B x H outputs: how many fired (what the forward recurrent product
    and dR read), and how many dy_{t-1} entries the backward needs (fired, or |c~ - thr| < 1 / support)."""
    H = layer.hidden_size
    v = saved[..., 4 * H:] - layer.layer_params(0)[4].clamp(0, 1)
    need = (v > 0) | (layer.support * v.abs() < 1)
    return {"units": ys.numel(), "fired": int((ys != 0).sum()), "dy_needed": int(need.sum())}


@torch.no_grad()
def calibrate(layer: EGRU, x: torch.Tensor, activity: float, iters: int = 4) -> None:
    """Sets every unit's threshold so that about ``activity`` of its outputs over ``x`` fire (a few
    rounds of per-unit quantiles of c~, which moves as the thresholds reset it)."""
    H, thr = layer.hidden_size, layer.layer_params(0)[4]
    for _ in range(iters):
        c_tilde = fused_forward(layer, x)[2][..., 4 * H:].reshape(-1, H)
        thr.copy_(torch.quantile(c_tilde, 1.0 - activity, dim=0).clamp(0.0, 1.0))


def backward_sparsity(layer: EGRU, x: torch.Tensor) -> dict:
    """Measured on ``x``: the activity, and the fraction of dy_{t-1} entries the backward needs."""
    ys, _, saved = fused_forward(layer, x)
    n = sparsity_counts(layer, ys, saved)
    return {"activity": n["fired"] / n["units"], "dy_needed": n["dy_needed"] / n["units"]}


def build_methods(n_in: int, hidden: int, batch: int, steps: int, activity: float, seed: int = 0,
                  support: float = 1.0):
    """name -> a zero-argument training step (forward + backward, gradients accumulated), and the
    measured sparsity. ``support``: the surrogate's (a larger one narrows it: backward sparsity)."""
    torch.manual_seed(seed)
    fused = EGRU(n_in, hidden, dropconnect=0.3, support=support).train()
    x = torch.randn(steps, batch, n_in)
    calibrate(fused, x, activity)
    loop = copy.deepcopy(fused)
    loop.fused = False
    gru = torch.nn.GRU(n_in, hidden).train()

    def step(module):
        def run():
            y, _ = module(x)
            y.sum().backward()
        return run

    info = {"input": n_in, "hidden": hidden, "batch": batch, "steps": steps, "target_activity": activity,
            "support": support,
            **backward_sparsity(fused, x)}
    return {FUSED: step(fused), LOOP: step(loop), GRU: step(gru)}, info


def time_rounds(methods: dict, rounds: int) -> dict:
    """Median seconds per call, one call of each method per round (each is milliseconds long), after
    one warm-up call each."""
    for fn in methods.values():
        fn()
    samples = {n: [] for n in methods}
    for _ in range(rounds):
        for name, fn in methods.items():
            t0 = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
    return {n: statistics.median(v) for n, v in samples.items()}


def dropconnect_times(hidden: int, rounds: int) -> dict:
    """Milliseconds to draw DropConnect on a [3H, H] recurrent weight, as every training forward does:
    ``evsparse.functional.dropconnect`` (what EGRU runs on the CPU) against ``F.dropout``."""
    from ..functional import dropconnect

    w = torch.randn(3 * hidden, hidden)
    secs = time_rounds({"evsparse": lambda: dropconnect(w, 0.3),
                        "F.dropout": lambda: torch.nn.functional.dropout(w, 0.3, training=True)}, rounds)
    return {n: s * 1e3 for n, s in secs.items()}


def egru_train_section(cases, activity: float = 0.12, rounds: int = 5, support: float = 1.0) -> list[dict]:
    rows = []
    for n_in, hidden, batch, steps in cases:
        methods, info = build_methods(n_in, hidden, batch, steps, activity, support=support)
        secs = time_rounds(methods, rounds)
        tokens = batch * steps
        info["us_per_token"] = {n: s / tokens * 1e6 for n, s in secs.items()}
        info["ms_per_step"] = {n: s * 1e3 for n, s in secs.items()}
        info["dropconnect_ms"] = dropconnect_times(hidden, rounds)
        rows.append(info)
    return rows


def to_markdown(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    lines = markdown_section(
        "EGRU training step (one layer, forward + backward, CPU)",
        "Microseconds per token of a [T, B] batch (ms per training step in brackets), median of interleaved rounds. "
        f"Thresholds calibrated to the target activity, DropConnect 0.3, surrogate support {rows[0]['support']:g}; "
        "'dy needed': the fraction of recurrent-input gradients the fused backward forms (fired or inside the "
        "surrogate's support). DropConnect: ms to draw the mask on the [3H, H] weight (both EGRU columns draw "
        "it with evsparse.functional.dropconnect; F.dropout is what they drew before).",
        ["in -> H", "B x T", "activity", "dy needed", f"{FUSED}", f"{LOOP}", f"{GRU}", "fused vs loop",
         "fused vs nn.GRU", "DropConnect ms: evsparse / F.dropout"])
    for r in rows:
        u, m, d = r["us_per_token"], r["ms_per_step"], r["dropconnect_ms"]
        lines.append(f"| {r['input']} -> {r['hidden']} | {r['batch']} x {r['steps']} | {r['activity']:.1%} | "
                     f"{r['dy_needed']:.1%} | " + " | ".join(f"{u[n]:.2f} ({m[n]:.0f})" for n in (FUSED, LOOP, GRU))
                     + f" | {u[LOOP] / u[FUSED]:.2f}x | {u[GRU] / u[FUSED]:.2f}x | "
                     f"{d['evsparse']:.2f} / {d['F.dropout']:.2f} |")
    return lines


def main(argv=None) -> int:
    ap = section_parser("python -m evsparse.bench.egru_train", __doc__, "bench-out-egru-train")
    ap.add_argument("--cases", type=parse_case, nargs="+", default=DEFAULT_CASES, help="IN:H:B:T each")
    ap.add_argument("--activity", type=float, default=0.12, help="the fraction of units that fire (calibrated)")
    ap.add_argument("--support", type=float, default=1.0,
                    help="the surrogate's support (EGRU(support=...)); larger: narrower, more backward sparsity")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = egru_train_section(args.cases, args.activity, args.reps, args.support)
    return write_section_report(args, "EGRU training step", "egru_train", rows, to_markdown(rows))


if __name__ == "__main__":
    raise SystemExit(main())
