"""Functional interface: the gather-by-active-neuron linear product, the EGRU's fused training recurrence, and
DropConnect on the CPU."""

from __future__ import annotations

from typing import Optional

import torch

from .packed import PackedWeight

__all__ = ["sparse_linear", "egru_train", "dropconnect"]


# The overloads themselves: resolving torch.ops.evsparse.<name> and its overload packet costs about a
# microsecond per call, as much as a small product.
_GATHER_LINEAR = torch.ops.evsparse.gather_linear.default
_SPARSE_GATHER_LINEAR = torch.ops.evsparse.sparse_gather_linear.default


def sparse_linear(x: torch.Tensor, weight: PackedWeight, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``F.linear(x, W, bias)`` for a packed ``W``, skipping every exact zero of ``x``.

    ``x``: ``[*, in]`` like ``F.linear`` (``[in]``, ``[B, in]``, or more leading dimensions, which are
    flattened into the batch and restored), contiguous; float32/float64, or float16/bfloat16 with weights of the
    same dtype (float32 ``x`` also takes float16/bfloat16 weights, and float32/float16/bfloat16 ``x``
    int8 weights; accumulation is float32).
    Returns ``[*, out]`` in ``x``'s dtype. NaN/Inf in ``x`` propagate exactly as in
    ``F.linear`` on the dense matrix (a NaN input is active). Differentiable with respect to ``x``,
    ``bias`` and ``weight.values`` (for int8 weights ``weight.scale`` instead).
    """
    if not isinstance(weight, PackedWeight):
        raise ValueError(
            f"evsparse.sparse_linear: weight must be a PackedWeight (see evsparse.pack), got {type(weight).__name__}"
        )
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"evsparse.sparse_linear: x must be a tensor, got {type(x).__name__}")
    if not (x.is_cpu and weight.values.is_cpu):  # (is_cpu: a tenth of the cost of comparing devices)
        if x.device != weight.device:
            raise ValueError(f"evsparse.sparse_linear: x is on {x.device} but the weight is on {weight.device}")
        if not torch.compiler.is_compiling():
            weight._ensure_checked()  # the CPU ops validate every new or edited structure themselves
    if x.dim() > 2:  # the ops take [in] or [B, in]; flatten (not reshape(-1, in)) also takes zero sizes
        lead = x.shape[:-1]
        return sparse_linear(x.flatten(0, -2), weight, bias).reshape(*lead, weight.out_features)
    if weight.layout == "dense":
        return _GATHER_LINEAR(x, weight.values, bias, weight.scale)
    if weight.layout == "sparse":
        return _SPARSE_GATHER_LINEAR(x, weight.col_ptr, weight.row_idx, weight.values, weight.out_features, bias,
                                     weight.scale)
    raise ValueError(f"evsparse.sparse_linear: unknown layout {weight.layout!r}")


def egru_train(gi: torch.Tensor, c0: torch.Tensor, y0: torch.Tensor, weight_hh: torch.Tensor,
               bias_hh: torch.Tensor, thr: torch.Tensor, dampening: float = 0.7,
               support: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One EGRU layer's recurrence over a sequence, forward and backward through time in one C++ op
    (``torch.ops.evsparse.egru_train``; CPU, float32 or float64), what :class:`evsparse.nn.EGRU`'s
    forward runs on the CPU.

    ``gi`` [T, B, 3H]: the input product of every step plus its bias (``F.linear(x, W_ih, b_ih)``, one
    GEMM, differentiated by autograd as usual); ``c0``, ``y0`` [B, H]: the initial state; ``weight_hh``
    [3H, H], ``bias_hh`` [3H], ``thr`` [H]: as the module holds them (DropConnect applied to the weight
    beforehand). Returns ``(ys, c, events)``: the event outputs [T, B, H], the last cell state [B, H],
    and per unit the number of steps it fired [B, H], as a float that is differentiable through the
    surrogate gradient (``dampening * max(0, 1 - support * |c~ - thr|)``), for an activity loss.

    The recurrent product reads only the weight rows of units that fired; the backward's weight
    gradient touches only those rows, and the gradient reaching ``y_{t-1}`` is formed only for units
    that fired or lie inside the surrogate's support (docs/guide/egru-training.md)."""
    return torch.ops.evsparse.egru_train(gi, c0, y0, weight_hh, bias_hh, thr, float(dampening), float(support))


_DROPCONNECT = torch.ops.evsparse.dropconnect.default


def dropconnect(weight: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """DropConnect: ``F.dropout(weight, p, training)``'s result in distribution (every element kept with
    probability ``1 - p`` and scaled by ``1 / (1 - p)``; a fresh mask per call), several times faster
    on the CPU. The mask is drawn from a counter-based hash keyed by a seed that is itself drawn from
    torch's default generator, so ``torch.manual_seed`` makes it reproducible, any thread draws any part
    of it, and the backward redraws it instead of storing it (``torch.ops.evsparse.dropconnect``).
    The masks differ from ``F.dropout``'s for the same seed. float32/float64 CPU weights; other
    devices and dtypes fall back to ``F.dropout``."""
    if not training or p == 0.0:
        return weight
    if not (weight.is_cpu and weight.dtype in (torch.float32, torch.float64)):
        return torch.nn.functional.dropout(weight, p, training=True)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"evsparse.functional.dropconnect: p must be in [0, 1], got {p}")
    seed = torch.randint(-(2**63), 2**63 - 1, (), dtype=torch.int64)
    return _DROPCONNECT(weight, float(p), seed)
