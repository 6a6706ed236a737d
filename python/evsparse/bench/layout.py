"""The "layout chosen by timing" section of ``evsparse-bench``: a one-layer EGRU (input size = hidden,
batch 1) sparsified with ``layout="auto"`` and with ``layout="timed"``, the choice made on one input
stream and measured on another, beside both forced layouts. Densities 15% and 30% sit on either side
of auto's fixed threshold (20%), where the machine-dependent crossover can disagree with it."""

from __future__ import annotations

import time

import torch

from .common import calibrate_egru_thresholds_, magnitude_prune_, markdown_section, time_interleaved
from ..nn import EGRU

DEFAULT_HIDDEN = [256, 1024, 2048]
DENSITIES = [0.15, 0.3]
STEPS = 32  # length of the example stream and of the timed sequence
MODES = ("auto", "timed", "dense", "sparse")


def _stream(hidden: int, activity: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(STEPS, 1, hidden, generator=g) * (torch.rand(STEPS, 1, hidden, generator=g) < activity)


def build_layout_methods(hidden: int, density: float, activity: float = 0.1, seed: int = 0):
    """The EGRU layer's sequence forward over a fresh stream with each of :data:`MODES`. Returns
    (methods, info: the layouts of auto and timed, the measured activity, the seconds the timed
    choice took)."""
    torch.manual_seed(seed)
    egru = EGRU(hidden, hidden).eval()
    masks = magnitude_prune_(egru, density)
    example, stream = _stream(hidden, activity, seed + 1), _stream(hidden, activity, seed + 2)
    calibrate_egru_thresholds_(egru, example, activity)
    t0 = time.perf_counter()
    timed = egru.sparsify(masks, layout="timed", example_input=example)
    choose_seconds = time.perf_counter() - t0
    modules = {"auto": egru.sparsify(masks), "timed": timed, "dense": egru.sparsify(masks, layout="dense"),
               "sparse": egru.sparsify(masks, layout="sparse")}
    with torch.inference_mode():
        modules["auto"](stream)
    info = {"auto": modules["auto"].layouts[0], "timed": timed.layouts[0], "choose_seconds": choose_seconds,
            "activity": modules["auto"].activity()[0]}
    methods = {mode: (lambda xs, m=m: m(xs), [stream]) for mode, m in modules.items()}
    return methods, info


def timed_layout_section(hidden_sizes, reps: int, activity: float = 0.1) -> list[dict]:
    rows = []
    for hidden in hidden_sizes:
        for density in DENSITIES:
            methods, info = build_layout_methods(hidden, density, activity)
            t = time_interleaved(methods, reps)
            us = {mode: t[mode] / STEPS * 1e6 for mode in MODES}
            rows.append({"hidden": hidden, "density": density, **info, "us_per_step": us,
                         "timed_vs_auto": us["auto"] / us["timed"],
                         "timed_vs_best_forced": min(us["dense"], us["sparse"]) / us["timed"]})
    return rows


def to_markdown(rows: list[dict]) -> list[str]:
    lines = markdown_section(
        "Layout chosen by timing (EGRU layer, batch 1, us per step over a 32-step sequence)",
        "`sparsify(layout=\"timed\", example_input=...)` chose on one stream, timed here on another; layouts "
        "are (input weight, recurrent weight).",
        ["hidden", "weight density", "activity", "auto", "timed", "auto us", "timed us", "dense us", "sparse us",
         "timed vs auto", "timed vs best forced", "choosing took"])
    for r in rows:
        u = r["us_per_step"]
        lines.append(f"| {r['hidden']} | {r['density']:.0%} | {r['activity']:.1%} | {'/'.join(r['auto'])} | "
                     f"{'/'.join(r['timed'])} | {u['auto']:.1f} | {u['timed']:.1f} | {u['dense']:.1f} | "
                     f"{u['sparse']:.1f} | {r['timed_vs_auto']:.2f}x | {r['timed_vs_best_forced']:.2f}x | "
                     f"{r['choose_seconds']:.2f} s |")
    return lines
