"""``layout="timed"``: the layout chosen by timing both on this machine, on the caller's own input.

``"auto"`` switches to the sparse layout at one fixed weight density (0.2), a compromise measured on
one machine: where a weight sits in the cache hierarchy moves the crossover (on the project's 2-core
VM the sparse-gather still won at 25-30% density on DRAM-bound 2048x6144, while a cache-resident
H=256 EGRU layer ran faster dense at 15%: README "Choosing a layout"). LIBXSMM's answer is to time the candidates once at load time and keep the faster; this
module does that, per weight matrix of a layer, on an example input (so at its real activity).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ._bench_common import time_interleaved

__all__ = ["LayoutChoice", "choose_layouts"]

CANDIDATES = ("dense", "sparse")
ROUNDS = 7  # interleaved ~2 ms blocks per candidate: medians that survive a noisy machine
# Auto's layouts stay unless another combination is this much faster. Near the crossover the layouts
# differ by less than repeated choices disagree on this machine (+-10% on the 2-core VM): a switch
# there would as often cost as gain, where keeping auto's layouts costs at most the margin.
MARGIN = 0.10


@dataclass(frozen=True)
class LayoutChoice:
    """What ``layout="timed"`` chose for one layer: ``layouts`` (one per weight matrix, in the layer's
    order) and ``seconds``, the median time of one call for every combination that was timed. The
    choice is the fastest combination, or ``"auto"``'s where that is within :data:`MARGIN` of it."""

    layouts: tuple[str, ...]
    seconds: dict[tuple[str, ...], float]

    def __str__(self) -> str:
        best = self.seconds[self.layouts]
        parts = [f"{'/'.join(c)} {s * 1e6:.1f} us{' *' if c == self.layouts else f' ({s / best:.2f}x)'}"
                 for c, s in sorted(self.seconds.items(), key=lambda kv: kv[1])]
        return "LayoutChoice(" + ", ".join(parts) + ")"


def choose_layouts(weights: Sequence[torch.Tensor], run: Callable[..., object]) -> tuple[list, LayoutChoice]:
    """Packs every weight (``[out, in]``, masked already) in both layouts, times ``run(*packed)`` for
    every combination of layouts (interleaved blocks, medians) and keeps the fastest, unless
    ``"auto"``'s combination is within :data:`MARGIN` of it (then auto's).

    ``run`` is the call the packed weights will serve, on representative input: one product for a
    single matrix, a layer's whole sequence op for a recurrent layer (its products share the cache, so
    they are timed together). Returns (the chosen PackedWeights, the :class:`LayoutChoice`)."""
    from .packed import _auto_layout, _pack_masked  # packed imports this module for layout="timed"

    packed = [{layout: _pack_masked(w, layout) for layout in CANDIDATES} for w in weights]
    combos = list(itertools.product(CANDIDATES, repeat=len(weights)))
    methods = {combo: (lambda _, combo=combo: run(*(p[lay] for p, lay in zip(packed, combo))), [None])
               for combo in combos}
    cuda = any(w.is_cuda for w in weights)
    seconds = time_interleaved(methods, ROUNDS, sync=torch.cuda.synchronize if cuda else None)
    best = min(combos, key=seconds.__getitem__)
    auto = tuple(_auto_layout(w) for w in weights)
    if seconds[auto] <= seconds[best] * (1 + MARGIN):
        best = auto
    return [p[lay] for p, lay in zip(packed, best)], LayoutChoice(best, seconds)
