"""The sparse linear RNN section of ``evsparse-bench``: per-step latency at batch 1 of a stack on the
fused kernels against the same stack stepped with dense PyTorch products, next to the theoretical
MAC speedup counted by :mod:`evsparse.macs` with the activities measured on the stream."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .. import macs
from .._deprecation import measuring_deprecated
from ..nn.linear_rnn import SparseLinearRNN, diagonal_step
from .common import (calibrate_linear_rnn_activity_, linear_rnn_stream, magnitude_prune_, markdown_section,
                     record_stream, time_interleaved)

DEFAULT_WIDTHS = [256, 1024]
STREAM = 32  # recorded steps whose (input, state) pairs the timed calls rotate through


def torch_dense_step(rnn: SparseLinearRNN) -> Callable:
    """A lean plain-PyTorch step of ``rnn`` (dense ``F.linear`` products, pruned zeros included): the
    baseline a user would write, without the training module's bookkeeping."""
    layers = []
    with torch.no_grad():
        for k in range(rnn.num_layers):
            w_in, b_in, w_out, b_out, _, _ = rnn.layer_params(k)
            g = rnn.input_gain(k)
            a_re, a_im = rnn.decay(k)
            layers.append(((w_in * g[:, None]).contiguous(), None if b_in is None else b_in * g, a_re,
                           a_im, w_out.contiguous(), b_out, rnn.residual[k]))

    def step(x: torch.Tensor, state: torch.Tensor):
        hs = []
        for k, (w_in, b_in, a_re, a_im, w_out, b_out, residual) in enumerate(layers):
            h = diagonal_step(a_re, a_im, state[k], F.linear(x, w_in, b_in))
            v = F.linear(h, w_out, b_out)
            x = torch.relu(v + x if residual else v)
            hs.append(h)
        return x, torch.stack(hs)

    return step


def build_linear_rnn_methods(width: int, activity: float, density: float, num_layers: int = 2, seed: int = 0):
    """A ``num_layers`` stack (input = state = output = ``width``) pruned to ``density`` and calibrated
    to ``activity``; the timed methods at batch 1 and the MAC report with measured activities."""
    torch.manual_seed(seed)
    with measuring_deprecated():
        rnn = SparseLinearRNN(width, width, width, num_layers).eval()
    masks = magnitude_prune_(rnn, density)
    g = torch.Generator().manual_seed(seed)
    xs = linear_rnn_stream(256, width, activity, g)
    calibrate_linear_rnn_activity_(rnn, xs, activity)
    report = macs.count(rnn, xs[:STREAM * 4], masks)
    packed = rnn.sparsify(masks)
    dense = torch_dense_step(rnn)
    pool = record_stream(packed, xs[:STREAM])
    methods = {
        "evsparse PackedLinearRNN.step": (lambda a: packed.step(a[0], a[1]), pool),
        "PyTorch dense step": (lambda a: dense(a[0], a[1]), pool),
    }
    return methods, report


def linear_rnn_section(widths, activity: float, densities, reps: int) -> list[dict]:
    rows = []
    for width in widths:
        for d in densities:
            methods, report = build_linear_rnn_methods(width, activity, d)
            t = time_interleaved(methods, reps)
            tot = report.totals
            rows.append({"width": width, "layers": len(report.layers), "target_activity": activity, "density": d,
                         "activity": [layer.input_activity for layer in report.layers][1:]
                         + [None], "macs": tot, "theoretical_speedup": tot["dense"] / tot["combined"],
                         "times_us": {k: v * 1e6 for k, v in t.items()},
                         "speedup": t["PyTorch dense step"] / t["evsparse PackedLinearRNN.step"]})
    return rows


def to_markdown(rows: list[dict]) -> list[str]:
    lines = markdown_section(
        "Sparse linear RNN step, batch 1 (two layers, input = state = output width; us per step)",
        "Output activity calibrated to the target on a random stream (layer 1's measured activity in brackets); "
        "theoretical = dense MACs / combined MACs from `evsparse.macs` (the elementwise recurrence and the "
        "dense-state output product included).",
        ["width", "activity", "weight density", "dense MACs", "combined MACs", "theoretical", "evsparse step",
         "PyTorch dense step", "measured"])
    for r in rows:
        t = r["times_us"]
        lines.append(f"| {r['width']} | {r['target_activity']:.0%} ({r['activity'][0]:.1%}) | {r['density']:.0%} | "
                     f"{r['macs']['dense'] / 1e3:.0f}K | {r['macs']['combined'] / 1e3:.0f}K | "
                     f"{r['theoretical_speedup']:.1f}x | {t['evsparse PackedLinearRNN.step']:.1f} | "
                     f"{t['PyTorch dense step']:.1f} | {r['speedup']:.1f}x |")
    return lines
