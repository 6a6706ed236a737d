"""Magnitude pruning of recurrent models, unstructured or in 16x1 blocks, with masks that survive training.

    masks = prune.global_magnitude(model, 0.85)      # {parameter name: bool mask}, one global threshold
    prune.apply_masks(model, masks)                  # zero the pruned weights
    handle = prune.keep_applied(optimizer, model, masks)   # re-zero them after every optimizer step
    sparse = model.egru.sparsify(prune.masks_for(model.egru, masks, prefix="egru."))

By default the prunable weights are the input and recurrent weight matrices of recurrent layers
(``evsparse.nn.EGRU``, ``torch.nn.LSTM``/``GRU``/``RNN``, ``evsparse.nn.SparseLinearRNN`` when present):
embeddings, decoders (other ``nn.Linear``), biases and thresholds are excluded. Pass ``include`` to
choose differently.

``block=16`` prunes whole 16x1 blocks instead of single weights: 16 consecutive output rows of one input
column (``W[16 b : 16 b + 16, j]`` of a ``[out, in]`` weight; the last block of an ``out`` that is not a
multiple of 16 is shorter), ranked by their L2 norm. The sparse layout multiplies such a weight with one
vector operation per block instead of a scattered add per weight (docs/guide/pruning-macs.md). An S5
layer's complex ``B``/``C`` pairs (``[out, in, 2]``) are blocked over their complex magnitudes, both
parts together, so their packed real and imaginary parts carry the same blocks.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from torch import nn

from .nn.egru import EGRU

__all__ = ["BLOCKS", "prunable_parameters", "global_magnitude", "erk_magnitude", "apply_masks", "keep_applied", "masks_for",
           "cubic_sparsity", "IterativePruner", "sparsity_of"]

Include = Callable[[str, nn.Module, str, torch.Tensor], bool]


def _recurrent_types() -> tuple:
    types = [EGRU, nn.RNNBase]
    try:  # the second model family, when present
        from .nn import SparseLinearRNN  # type: ignore[attr-defined]

        types.append(SparseLinearRNN)
    except ImportError:
        pass
    return tuple(types)


def _s5_types() -> tuple:
    from .nn.s5 import S5, S5Block, S5Stack

    return S5, S5Block, S5Stack


def default_include(module_name: str, module: nn.Module, param_name: str, param: torch.Tensor) -> bool:
    """Weight matrices of recurrent layers; no embeddings, decoders, biases or thresholds. In the S5
    family every matrix, as the paper prunes (encoder, decoder, GLU, B, C)."""
    if isinstance(module, _s5_types()):
        return param.dim() >= 2
    return isinstance(module, _recurrent_types()) and param_name.startswith("weight") and param.dim() == 2


def _is_pair(name: str, module: nn.Module) -> bool:
    from .nn.s5 import COMPLEX_PAIR_WEIGHTS, S5

    return isinstance(module, S5) and name.rsplit(".", 1)[-1] in COMPLEX_PAIR_WEIGHTS


def _scores(model: nn.Module, params: dict) -> tuple[dict, set]:
    """Per parameter the magnitude pruning ranks by: |w|, or for the S5's complex (re, im) pairs the
    complex magnitude, shared by both parts (so a pair is kept or pruned whole)."""
    owners = {}
    for mod_name, module in model.named_modules():
        for p_name, _ in module.named_parameters(recurse=False):
            owners[f"{mod_name}.{p_name}" if mod_name else p_name] = module
    out, pairs = {}, set()
    for name, p in params.items():
        w = p.detach().float().cpu()
        if _is_pair(name, owners[name]):
            out[name] = w.pow(2).sum(-1, keepdim=True).sqrt().expand_as(w).contiguous()
            pairs.add(name)
        else:
            out[name] = w.abs()
    return out, pairs


def _keep_largest(scores: torch.Tensor, n_prune: int) -> torch.Tensor:
    """A flat keep-mask pruning the ``n_prune`` smallest scores (ties broken by position)."""
    keep = torch.ones(scores.numel(), dtype=torch.bool)
    if n_prune > 0:
        keep[torch.argsort(scores, stable=True)[:n_prune]] = False
    return keep


def _tie_pairs(keep: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """A pair is kept only whole (a split at the threshold's tie is pruned)."""
    return keep.view_as(p).all(-1, keepdim=True).expand_as(p).reshape(-1)


def prunable_parameters(model: nn.Module, include: Optional[Include] = None) -> dict[str, nn.Parameter]:
    """Full parameter name -> parameter, for the parameters ``include`` selects (default above)."""
    include = include or default_include
    out = {}
    for mod_name, module in model.named_modules():
        for p_name, p in module.named_parameters(recurse=False):
            if include(mod_name, module, p_name, p):
                out[f"{mod_name}.{p_name}" if mod_name else p_name] = p
    return out


BLOCKS = (1, 16)


def _selected(model: nn.Module, sparsity: float, include: Optional[Include], who: str,
              block: int = 1) -> tuple[dict, dict, set]:
    """A pruner's checked start: (the selected parameters, their magnitude scores, the names scored as
    complex pairs)."""
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"{who}: sparsity must be in [0, 1], got {sparsity}")
    if block not in BLOCKS:
        raise ValueError(f"{who}: block must be one of {BLOCKS}, got {block!r}")
    params = prunable_parameters(model, include)
    if not params:
        raise ValueError(f"{who}: no prunable parameters selected")
    scores, pairs = _scores(model, params)
    if block > 1:
        bad = [n for n, p in params.items() if not (p.dim() == 2 or (n in pairs and p.dim() == 3))]
        if bad:
            raise ValueError(f"{who}: block={block} prunes 2-D [out, in] weights (and S5's [out, in, 2] complex "
                             f"pairs) only; {bad[0]!r} has shape {list(params[bad[0]].shape)}; pass include= to "
                             "leave it out")
    return params, scores, pairs


def _pair_block_scores(score: torch.Tensor, pair: bool, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_block_scores` of a selected parameter's score; an S5 complex pair ([out, in, 2], both
    parts scored by the complex magnitude) is blocked over its [out, in] magnitudes, and each block
    counts both parts' weights. Packed, the pair's real and imaginary rows (B) or columns (C) then
    carry the same 16x1 blocks."""
    if not pair:
        return _block_scores(score, block)
    norms, sizes = _block_scores(score[..., 0], block)
    return norms, 2 * sizes


def _block_mask(keep: torch.Tensor, p: torch.Tensor, pair: bool, block: int) -> torch.Tensor:
    """A [nb, in] block keep-mask as ``p``'s mask (a pair's two parts alike)."""
    m = _expand_blocks(keep, p.shape[0], block)
    return (m.unsqueeze(-1).expand(*m.shape, 2) if pair else m).contiguous().to(p.device)


def _block_scores(score: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A [out, in] magnitude's 16x1 blocks: (their L2 norms [nb, in], their sizes [nb, in])."""
    out, inp = score.shape
    nb = -(-out // block)
    padded = torch.zeros(nb * block, inp, dtype=torch.float64)
    padded[:out] = score.double()
    norms = padded.pow(2).view(nb, block, inp).sum(1).sqrt()
    sizes = torch.full((nb, inp), block, dtype=torch.int64)
    sizes[-1] = out - (nb - 1) * block
    return norms, sizes


def _expand_blocks(keep: torch.Tensor, out: int, block: int) -> torch.Tensor:
    """A [nb, in] block keep-mask as the [out, in] weight mask."""
    return keep.repeat_interleave(block, 0)[:out]


def _keep_largest_blocks(norms: torch.Tensor, sizes: torch.Tensor, n_prune: int) -> torch.Tensor:
    """A flat keep-mask over blocks pruning the smallest norms (ties by position) until the pruned
    weights come closest to ``n_prune`` (whole blocks: exact only up to a block)."""
    keep = torch.ones(norms.numel(), dtype=torch.bool)
    if n_prune > 0:
        order = torch.argsort(norms, stable=True)
        cum = torch.cumsum(sizes[order], 0)
        n = int(torch.searchsorted(cum, torch.tensor([n_prune]), right=True))  # cum[n - 1] <= n_prune
        if n < cum.numel() and (n == 0 or int(cum[n]) - n_prune < n_prune - int(cum[n - 1])):
            n += 1  # one block more comes closer
        keep[order[:n]] = False
    return keep


def global_magnitude(model: nn.Module, sparsity: float, include: Optional[Include] = None,
                     block: int = 1) -> dict[str, torch.Tensor]:
    """Masks keeping the ``1 - sparsity`` fraction of largest-magnitude weights across all selected
    parameters together (one global threshold). Ties at the threshold are broken by position, so
    exactly ``round(sparsity * total)`` weights are pruned. ``block=16``: whole 16x1 blocks by their
    L2 norm (module docstring), as close to that count as whole blocks allow."""
    params, scores, pairs = _selected(model, sparsity, include, "global_magnitude", block)
    total = sum(p.numel() for p in params.values())
    if block > 1:
        blocks = {n: _pair_block_scores(sc, n in pairs, block) for n, sc in scores.items()}
        flat = torch.cat([b[0].flatten() for b in blocks.values()])
        sizes = torch.cat([b[1].flatten() for b in blocks.values()])
        keep = _keep_largest_blocks(flat, sizes, int(round(sparsity * total)))
        masks, offset = {}, 0
        for name, p in params.items():
            nb = blocks[name][0].numel()
            k = keep[offset:offset + nb].view_as(blocks[name][0])
            masks[name] = _block_mask(k, p, name in pairs, block)
            offset += nb
        return masks
    flat = torch.cat([sc.flatten() for sc in scores.values()])
    keep = _keep_largest(flat, int(round(sparsity * flat.numel())))
    masks, offset = {}, 0
    for name, p in params.items():
        k = keep[offset:offset + p.numel()]
        masks[name] = (_tie_pairs(k, p) if name in pairs else k).view_as(p).to(p.device)
        offset += p.numel()
    return masks


def erk_magnitude(model: nn.Module, sparsity: float, include: Optional[Include] = None,
                  block: int = 1) -> dict[str, torch.Tensor]:
    """Masks with a per-layer sparsity allocated by Erdos-Renyi-Kernel (Evci et al., 2020; what the
    sparse linear RNN paper uses): a matrix of shape ``(n_out, n_in)`` gets density proportional to
    ``(n_out + n_in) / (n_out n_in)`` (capped at 1, the rest redistributed), scaled so that
    ``sparsity`` of all selected weights is pruned; within each, the smallest magnitudes go (complex
    pairs by their complex magnitude, as :func:`global_magnitude`). ``block=16``: whole 16x1 blocks
    by their L2 norm within each matrix."""
    params, scores, pairs = _selected(model, sparsity, include, "erk_magnitude", block)
    sizes = {n: p.numel() for n, p in params.items()}
    raw = {}
    for n, p in params.items():
        dims = [d for d in p.shape]
        if n in pairs:  # (re, im) pairs: a complex matrix
            dims = dims[:-1]
        raw[n] = sum(dims) / math.prod(dims)
    keep_total = (1.0 - sparsity) * sum(sizes.values())
    dense: set = set()
    while True:  # the scale eps with sum(min(1, eps raw) size) = keep_total
        rest = keep_total - sum(sizes[n] for n in dense)
        denom = sum(raw[n] * sizes[n] for n in params if n not in dense)
        eps = rest / denom if denom > 0 else 0.0
        newly = {n for n in params if n not in dense and eps * raw[n] > 1.0}
        if not newly:
            break
        dense |= newly
    masks = {}
    for n, p in params.items():
        density = 1.0 if n in dense else max(0.0, min(1.0, eps * raw[n]))
        if block > 1:
            norms, bsizes = _pair_block_scores(scores[n], n in pairs, block)
            keep = _keep_largest_blocks(norms.flatten(), bsizes.flatten(), int(round((1.0 - density) * p.numel())))
            masks[n] = _block_mask(keep.view_as(norms), p, n in pairs, block)
            continue
        flat = scores[n].flatten()
        keep = _keep_largest(flat, int(round((1.0 - density) * flat.numel())))
        if n in pairs:
            keep = _tie_pairs(keep, p)
        masks[n] = keep.view_as(p).to(p.device)
    return masks


def _resolve(model: nn.Module, masks: dict) -> list[tuple[torch.Tensor, torch.Tensor]]:
    params = dict(model.named_parameters())
    pairs = []
    for name, mask in masks.items():
        if name not in params:
            raise ValueError(f"masks name a parameter the model does not have: {name!r}")
        if tuple(mask.shape) != tuple(params[name].shape):
            raise ValueError(f"mask for {name!r} has shape {list(mask.shape)}, parameter {list(params[name].shape)}")
        pairs.append((params[name], mask.to(device=params[name].device, dtype=torch.bool)))
    return pairs


@torch.no_grad()
def apply_masks(model: nn.Module, masks: dict) -> None:
    """Zeroes the pruned weights in place."""
    for p, mask in _resolve(model, masks):
        p.mul_(mask)


def keep_applied(optimizer: torch.optim.Optimizer, model: nn.Module, masks: dict):
    """Re-applies ``masks`` after every ``optimizer.step()`` so pruned weights stay exactly zero while
    fine-tuning (zeroing gradients alone is not enough: Adam's moments and weight decay move them).
    Returns a handle; ``handle.remove()`` stops it."""
    pairs = _resolve(model, masks)

    @torch.no_grad()
    def reapply(opt, args, kwargs):
        for p, mask in pairs:
            p.mul_(mask)

    apply_masks(model, masks)
    return optimizer.register_step_post_hook(reapply)


def masks_for(module: nn.Module, masks: dict, prefix: str) -> dict:
    """The masks of a submodule, with ``prefix`` (its name in the model plus '.') stripped: what
    ``EGRU.sparsify(weight_masks=...)`` expects."""
    return {k[len(prefix):]: v for k, v in masks.items() if k.startswith(prefix)}


def sparsity_of(model: nn.Module, include: Optional[Include] = None) -> float:
    """Fraction of exact zeros among the selected weights."""
    params = prunable_parameters(model, include)
    total = sum(p.numel() for p in params.values())
    zeros = sum(int((p.detach() == 0).sum()) for p in params.values())
    return zeros / total if total else 0.0


def cubic_sparsity(step: int, final_sparsity: float, start_step: int, end_step: int,
                   initial_sparsity: float = 0.0) -> float:
    """Zhu & Gupta's gradual schedule: ``s_f + (s_i - s_f) * (1 - progress)^3`` between start and end."""
    if end_step <= start_step:
        raise ValueError("cubic_sparsity: end_step must be after start_step")
    if step <= start_step:
        return initial_sparsity if step == start_step else 0.0
    progress = min(1.0, (step - start_step) / (end_step - start_step))
    return final_sparsity + (initial_sparsity - final_sparsity) * (1.0 - progress) ** 3


class IterativePruner:
    """Train -> prune -> fine-tune on a cubic schedule. Call :meth:`step` after each optimizer step
    (or each epoch: ``step`` counts whatever unit the schedule uses). Every ``every`` steps between
    ``start_step`` and ``end_step`` it recomputes global magnitude masks at the scheduled sparsity
    (already pruned weights are zero, so they stay pruned) and keeps them applied through the
    optimizer. ``pruner.masks`` is what ``sparsify()`` takes. ``allocation``: ``"global"`` (one
    threshold, :func:`global_magnitude`) or ``"erk"`` (per-layer, :func:`erk_magnitude`); ``block``: 1 or
    16 (16x1 blocks, as the pruners take it)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, final_sparsity: float,
                 start_step: int, end_step: int, every: int = 1, include: Optional[Include] = None,
                 allocation: str = "global", block: int = 1):
        if every < 1:
            raise ValueError("IterativePruner: every must be >= 1")
        if allocation not in ("global", "erk"):
            raise ValueError(f"IterativePruner: allocation must be 'global' or 'erk', got {allocation!r}")
        self._prune = global_magnitude if allocation == "global" else erk_magnitude
        self.model, self.optimizer, self.include = model, optimizer, include
        self.final_sparsity, self.start_step, self.end_step, self.every = final_sparsity, start_step, end_step, every
        if block not in BLOCKS:
            raise ValueError(f"IterativePruner: block must be one of {BLOCKS}, got {block!r}")
        self.block = block
        self.masks: dict = {}
        self.sparsity = 0.0
        self._handle = None

    def step(self, step: int) -> float:
        """Updates the masks when the schedule says so; returns the current target sparsity."""
        due = self.start_step <= step and ((step - self.start_step) % self.every == 0 or step >= self.end_step)
        target = cubic_sparsity(step, self.final_sparsity, self.start_step, self.end_step)
        if due and target > self.sparsity:
            self.masks = self._prune(self.model, target, self.include, block=self.block)
            if self._handle is not None:
                self._handle.remove()
            self._handle = keep_applied(self.optimizer, self.model, self.masks)
            self.sparsity = target
        return self.sparsity

    def remove(self) -> None:
        """Stops re-applying the masks (the weights stay as they are)."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
