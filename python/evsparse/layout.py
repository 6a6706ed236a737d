"""Packing a weight and choosing its layout: ``pack`` (``"dense"``, ``"sparse"``, ``"auto"`` by
density, ``"timed"`` by measurement), on top of the storage type :class:`~evsparse.PackedWeight`.

``"timed"``: the layout chosen by timing both on this machine, on the caller's own input.

``"auto"`` switches to the sparse layout at one fixed weight density (0.2), a compromise measured on
one machine: where a weight sits in the cache hierarchy moves the crossover (on the project's 2-core
VM the sparse-gather still won at 25-30% density on DRAM-bound 2048x6144, while a cache-resident
H=256 EGRU layer ran faster dense at 15%: docs, "Choosing a layout"). LIBXSMM's answer is to time the
candidates once at load time and keep the faster; this
module does that, per weight matrix of a layer, on an example input (so at its real activity).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from .functional import sparse_linear
from .packed import PACKED_DTYPES, VALUE_DTYPES, PackedWeight
from .timing import time_interleaved, time_paced

__all__ = ["pack", "masked_weight", "auto_layout", "choose_layouts", "LayoutChoice", "choose_model_layouts",
           "ModelLayoutChoice", "LAYOUTS",
           "AUTO_SPARSE_MAX_DENSITY", "AUTO_SPARSE_MAX_DENSITY_INT8", "AUTO_SPARSE_MAX_DENSITY_BLOCKS",
           "AUTO_SPARSE_MAX_DENSITY_BLOCKS_INT8", "block_fraction"]

LAYOUTS = ("dense", "sparse", "auto", "timed")

# "auto" picks the sparse layout at or below this weight density (the measured crossover: docs,
# "Choosing a layout"). The sparse kernel reads an index and a value per nonzero and scatters them;
# the dense-gather kernel streams whole rows with SIMD FMAs.
AUTO_SPARSE_MAX_DENSITY = 0.2
# The same for int8 weights: the dense-gather then reads 1 byte per weight and the sparse-gather 3 per
# nonzero (int16 index + value) with the same scalar scatter, so dense wins down to lower densities
# (docs, "Choosing a layout": int8 sparse won at <= 10% on 1024x3072 and 2048x6144, lost at >= 15%).
AUTO_SPARSE_MAX_DENSITY_INT8 = 0.1
# The same for float weights pruned in whole 16x1 blocks (evsparse.prune's block=16), which the sparse
# layout multiplies one vector operation per block: it beat the dense layout up to 40% density on
# 1024x3072 and 2048x6144 at 10% activity (1.11x, 1.32x; 0.96x, 0.89x at 50%) and beyond 50% with every
# input active (AMD EPYC Zen 4, 2026-12-03, benchmarks/ab/block_pruned.py; docs, "Choosing a layout").
# On 256x768 at 10% activity the dense layout won at every density, as it does for unstructured weights.
AUTO_SPARSE_MAX_DENSITY_BLOCKS = 0.4
# The same for int8 block-pruned weights, against the int8 dense layout (1 byte per weight): the block
# path beat it at 20% density by 1.17x and 1.30x (1024x3072, 2048x6144, 10% activity) and 1.79x, 2.38x
# with every input active; at 30% it lost on 1024x3072 (0.85x) (AMD EPYC Zen 4, 2026-12-03,
# benchmarks/ab/int8_block_crossover.py). On 256x768 at 10% activity the dense layout won at every density.
AUTO_SPARSE_MAX_DENSITY_BLOCKS_INT8 = 0.2


def pack(weight: torch.Tensor, mask: Optional[torch.Tensor] = None, layout: str = "auto",
         example_input: Optional[torch.Tensor] = None, weight_dtype: Optional[torch.dtype] = None,
         pace_ms: Optional[float] = None) -> PackedWeight:
    """Packs ``weight`` (``[out, in]``, as in ``nn.Linear``) for the gather kernels.

    ``mask`` (same shape, bool or 0/1) zeroes pruned weights: the result equals ``weight * mask``.
    ``layout``: ``"dense"``, ``"sparse"``, ``"auto"`` (sparse when the density of ``weight * mask``
    is at most :data:`AUTO_SPARSE_MAX_DENSITY`) or ``"timed"``: both layouts are packed and
    ``sparse_linear(example_input, ...)`` is timed with each on this machine; the faster is kept
    (see :func:`choose_layouts`). ``example_input`` is needed by, and only allowed with,
    ``"timed"``: an input like those the weight will see (``[in]`` or ``[B, in]``, at its usual
    activity). ``weight_dtype``: the packed values' dtype (default: ``weight``'s): float32, float16,
    bfloat16, float64, or ``torch.int8``, quantised symmetrically with one float32 scale per input
    column (:meth:`PackedWeight.quantized`; the layout is chosen from the mask, as for float weights,
    and ``"timed"`` times the int8 candidates). ``pace_ms`` (with ``"timed"`` only): time the candidates
    as a stream calls them, one call every ``pace_ms`` milliseconds (median of :data:`PACED_SAMPLES`
    calls each), instead of in a hot loop; the two can pick differently (docs, "Choosing a layout").
    Non-finite weights are rejected. The packed values are a detached copy; call ``.requires_grad_()``
    on the result to train them.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"evsparse.pack: layout must be one of {LAYOUTS}, got {layout!r}")
    if (layout == "timed") != (example_input is not None):
        raise ValueError("evsparse.pack: layout='timed' needs example_input (an input to time both layouts on), "
                         "and example_input is used only with layout='timed'")
    if weight_dtype is not None and weight_dtype not in PACKED_DTYPES:
        raise ValueError(f"evsparse.pack: weight_dtype must be one of {PACKED_DTYPES}, got {weight_dtype}")
    pace_s = pace_seconds(pace_ms, layout == "timed", "evsparse.pack")
    w = masked_weight(weight, mask, "evsparse.pack")
    if layout == "timed":
        (pw,), _ = choose_layouts([w], lambda p: sparse_linear(example_input, p), weight_dtype, pace_s=pace_s)
        return pw
    return PackedWeight.from_masked(w, auto_layout(w, weight_dtype) if layout == "auto" else layout, weight_dtype)


def pace_seconds(pace_ms, timed: bool, who: str) -> Optional[float]:
    """A ``pace_ms`` argument checked (a positive, finite number of milliseconds, only with
    ``layout="timed"``) and in seconds; None stays None."""
    if pace_ms is None:
        return None
    if not timed or isinstance(pace_ms, bool) or not isinstance(pace_ms, (int, float)) or not math.isfinite(pace_ms) \
            or pace_ms <= 0:
        raise ValueError(f"{who}: pace_ms must be a positive number of milliseconds and is used only with "
                         f"layout='timed', got {pace_ms!r}" + ("" if timed else " without layout='timed'"))
    return float(pace_ms) * 1e-3


def block_fraction(w: torch.Tensor) -> float:
    """The fraction of ``w``'s nonzeros in columns made of whole 16x1 blocks (16 consecutive rows from a
    multiple of 16, the last block up to ``out``): what the op layer's block path serves (see
    :data:`AUTO_SPARSE_MAX_DENSITY_BLOCKS`)."""
    nz = w != 0
    out, inp = nz.shape
    total = int(nz.sum())
    if total == 0:
        return 0.0
    nb = -(-out // 16)
    pad = torch.zeros(nb * 16, inp, dtype=torch.int32)
    pad[:out] = nz.to(torch.int32)
    per_block = pad.view(nb, 16, inp).sum(1)  # [nb, in]: stored rows per block
    full = torch.full((nb, 1), 16, dtype=torch.int32)
    full[-1] = out - (nb - 1) * 16
    whole = (per_block == 0) | (per_block == full)
    blocked_cols = whole.all(0)
    return float(nz[:, blocked_cols].sum()) / total


def auto_layout(w: torch.Tensor, weight_dtype: Optional[torch.dtype] = None) -> str:
    """``layout="auto"``'s choice for a masked weight: sparse at or below the density threshold
    (:data:`AUTO_SPARSE_MAX_DENSITY`, or :data:`AUTO_SPARSE_MAX_DENSITY_INT8` for int8 values, or
    :data:`AUTO_SPARSE_MAX_DENSITY_BLOCKS` / :data:`AUTO_SPARSE_MAX_DENSITY_BLOCKS_INT8` for weights
    mostly made of 16x1 blocks)."""
    total = w.numel()
    density = int(torch.count_nonzero(w)) / total if total else 1.0
    int8 = weight_dtype == torch.int8
    limit = AUTO_SPARSE_MAX_DENSITY_INT8 if int8 else AUTO_SPARSE_MAX_DENSITY
    block_limit = AUTO_SPARSE_MAX_DENSITY_BLOCKS_INT8 if int8 else AUTO_SPARSE_MAX_DENSITY_BLOCKS
    # (block_fraction only where it can change the answer: it costs a pass over w)
    if limit < density <= block_limit and block_fraction(w) >= 0.5:  # (the op layer's block path takes it from half, too)
        limit = block_limit
    return "sparse" if density <= limit else "dense"


def masked_weight(weight: torch.Tensor, mask: Optional[torch.Tensor], who: str) -> torch.Tensor:
    """``weight * mask`` detached, after checking both (2-D, a value dtype, finite): what gets packed."""
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise ValueError(f"{who}: weight must be a 2-D [out, in] tensor, got {type(weight).__name__} "
                         f"with shape {getattr(weight, 'shape', None)}")
    if weight.dtype not in VALUE_DTYPES:
        raise ValueError(f"{who}: weight dtype must be one of {VALUE_DTYPES}, got {weight.dtype}")
    w = weight.detach()
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != tuple(w.shape):
            raise ValueError(f"{who}: mask must be a tensor of shape {list(w.shape)}, "
                             f"got {getattr(mask, 'shape', None)}")
        if mask.device != w.device:
            raise ValueError(f"{who}: mask is on {mask.device} but weight is on {w.device}")
        w = torch.where(mask.to(torch.bool), w, torch.zeros((), dtype=w.dtype, device=w.device))
    if not bool(torch.isfinite(w).all()):
        raise ValueError(f"{who}: weight contains NaN or Inf; the kernels skip inactive inputs, so "
                         "non-finite weights would not propagate as in F.linear")
    return w






CANDIDATES = ("dense", "sparse")
ROUNDS = 7  # interleaved ~2 ms blocks per candidate: medians that survive a noisy machine
PACED_SAMPLES = 40  # paced calls per candidate (pace_ms): 40 x 8 ms x 2 layouts is 0.64 s per weight
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


def choose_layouts(weights: Sequence[torch.Tensor], run: Callable[..., object],
                   weight_dtype: Optional[torch.dtype] = None,
                   pace_s: Optional[float] = None) -> tuple[list, LayoutChoice]:
    """Packs every weight (``[out, in]``, masked already) in both layouts, times ``run(*packed)`` for
    every combination of layouts (interleaved blocks, medians) and keeps the fastest, unless
    ``"auto"``'s combination is within :data:`MARGIN` of it (then auto's).

    ``run`` is the call the packed weights will serve, on representative input: one product for a
    single matrix, a layer's whole sequence op for a recurrent layer (its products share the cache, so
    they are timed together). ``weight_dtype``: as in :func:`pack`. ``pace_s``: time each combination
    paced, one call per ``pace_s`` seconds (combinations taking turns, :data:`PACED_SAMPLES` calls each,
    medians), instead of in interleaved hot blocks. Returns (the chosen PackedWeights, the
    :class:`LayoutChoice`)."""
    packed = [{layout: PackedWeight.from_masked(w, layout, weight_dtype) for layout in CANDIDATES} for w in weights]
    combos = list(itertools.product(CANDIDATES, repeat=len(weights)))
    methods = {combo: (lambda _, combo=combo: run(*(p[lay] for p, lay in zip(packed, combo))), [None])
               for combo in combos}
    cuda = any(w.is_cuda for w in weights)
    if pace_s is not None and cuda:
        raise ValueError("layout timing: paced timing (pace_ms) is for CPU weights")
    if pace_s is None:
        seconds = time_interleaved(methods, ROUNDS, sync=torch.cuda.synchronize if cuda else None)
    else:
        seconds = {c: med for c, (med, _p99) in time_paced(methods, pace_s, PACED_SAMPLES).items()}
    best = min(combos, key=seconds.__getitem__)
    auto = tuple(auto_layout(w, weight_dtype) for w in weights)
    if seconds[auto] <= seconds[best] * (1 + MARGIN):
        best = auto
    return [p[lay] for p, lay in zip(packed, best)], LayoutChoice(best, seconds)


@dataclass(frozen=True)
class ModelLayoutChoice:
    """What the whole-model stage of ``layout="timed"`` chose (:func:`choose_model_layouts`):
    ``layouts``, per group of weights (a layer, or an S5 record) their layouts; ``seconds``, the median
    time of one stream step of every model timed; ``pace_s``, the interval of a paced timing (None: hot).
    The choice is the fastest model, or the per-layer choice where that is within :data:`MARGIN` of it."""

    layouts: tuple[tuple[str, ...], ...]
    seconds: dict[tuple[tuple[str, ...], ...], float]
    pace_s: Optional[float] = None

    def __str__(self) -> str:
        best = self.seconds[self.layouts]
        def name(c):
            return " | ".join("/".join(g) for g in c)
        parts = [f"{name(c)} {s * 1e6:.1f} us{' *' if c == self.layouts else f' ({s / best:.2f}x)'}"
                 for c, s in sorted(self.seconds.items(), key=lambda kv: kv[1])]
        how = "hot" if self.pace_s is None else f"paced {self.pace_s * 1e3:g} ms"
        return f"ModelLayoutChoice({how}: " + ", ".join(parts) + ")"


def model_candidates(start: tuple[tuple[str, ...], ...]) -> list:
    """The models the whole-model stage times: ``start`` (the per-layer choices), every model that changes
    one group (all combinations of a group of up to two weights; for larger groups all-dense, all-sparse
    and each single weight flipped), and the all-dense and all-sparse models. ``start`` first."""
    flip = {"dense": "sparse", "sparse": "dense"}
    out = [start]

    def add(c):
        if c not in out:
            out.append(c)

    for k, g in enumerate(start):
        if len(g) <= 2:
            alts = list(itertools.product(CANDIDATES, repeat=len(g)))
        else:
            alts = [(n,) * len(g) for n in CANDIDATES] + [g[:i] + (flip[g[i]],) + g[i + 1:] for i in range(len(g))]
        for a in alts:
            add(start[:k] + (tuple(a),) + start[k + 1:])
    for n in CANDIDATES:
        add(tuple((n,) * len(g) for g in start))
    return out


# The whole-model stage keeps every candidate module alive at once (they are timed side by side): it is
# skipped when their packed weights would take more than this many bytes together.
MODEL_STAGE_MAX_BYTES = 512 << 20


def choose_model_layouts(start: Sequence[Sequence[str]], build: Callable[[list], object], frames: list,
                         batch_size: Optional[int], pace_s: Optional[float] = None,
                         current: Optional[object] = None) -> tuple[object, Optional[ModelLayoutChoice]]:
    """The whole-model stage of ``layout="timed"`` (CPU): per-layer timing times a layer alone, which
    does not see the other layers' weights share (and, paced, evict) the caches, so here whole models
    are timed as they stream. ``start``: the per-layer choice, per group its layouts ("dense"/"sparse");
    ``build(groups)``: the packed module with those layouts; ``frames``: its stream's inputs, one per
    step, in turn; ``current``: the module already built for ``start`` (else built). Every model of
    :func:`model_candidates` is timed stepping its stream (``module.stream(batch_size)``), hot in
    interleaved rounds, or paced one step per ``pace_s`` (models taking turns, :data:`PACED_SAMPLES`
    steps each), medians; ``start``'s is kept unless another is :data:`MARGIN` faster. Returns (the
    chosen module, the :class:`ModelLayoutChoice`), or (``start``'s module, None) without timing when the
    candidates' buffers would exceed :data:`MODEL_STAGE_MAX_BYTES` together (a large model)."""
    start = tuple(tuple(g) for g in start)
    cands = model_candidates(start)
    modules, total = {}, 0
    for c in cands:  # built one by one, so a model too large for the stage stops it early
        m = current if c == start and current is not None else build([list(g) for g in c])
        modules[c] = m
        total += sum(b.numel() * b.element_size() for b in m.buffers())
        if total > MODEL_STAGE_MAX_BYTES:
            return modules[start], None
    methods = {c: (m.stream(batch_size=batch_size).step, frames) for c, m in modules.items()}
    if pace_s is None:
        seconds = time_interleaved(methods, ROUNDS)
    else:
        seconds = {c: med for c, (med, _p99) in time_paced(methods, pace_s, PACED_SAMPLES).items()}
    best = min(cands, key=seconds.__getitem__)
    if seconds[start] <= seconds[best] * (1 + MARGIN):
        best = start
    return modules[best], ModelLayoutChoice(best, seconds, pace_s)
