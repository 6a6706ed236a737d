"""Pieces shared by the recurrent layers (EGRU, SparseLinearRNN) and their kernel twins."""

from __future__ import annotations

import functools
from typing import Callable, Optional

import torch

from ..layout import LAYOUTS, LayoutChoice, choose_layouts, masked_weight, pack
from ..packed import PackedWeight
from ._buffers import PackedModule


def check_sequence_input(x, input_size: int, batch_first: bool, who: str) -> torch.Tensor:
    """``x`` as [T, B, input_size] (transposed from [B, T, ...] when ``batch_first``), or a ValueError."""
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        raise ValueError(f"{who}: input must be 3-D [{'B, T' if batch_first else 'T, B'}, input_size] "
                         f"or 2-D [T, input_size] (unbatched), got shape {getattr(x, 'shape', None)}")
    if x.shape[-1] != input_size:
        raise ValueError(f"{who}: input has {x.shape[-1]} features, expected input_size={input_size}")
    return x.transpose(0, 1) if batch_first else x


def accepts_unbatched(width: str, step: bool = False, state_names: Optional[tuple[str, ...]] = None):
    """Decorates ``forward`` (or, with ``step=True``, ``step``) of a recurrent module to take
    ``torch.nn.GRU``'s unbatched form as well: a sequence [T, input_size] (whatever ``batch_first``
    says) or a step input [input_size], with every state tensor [num_layers, width] (``width`` names
    the module attribute) instead of [num_layers, B, width]. It runs as a batch of one and returns
    output and state without the batch dimension. The state is one tensor, or with ``state_names``
    a tuple of that many tensors (EGRU's ``("c", "y")``)."""

    def wrap(method):
        @functools.wraps(method)
        def call(self, x, state=None):
            if not isinstance(x, torch.Tensor) or x.dim() != (1 if step else 2):
                return method(self, x, state)
            who = f"{type(self).__name__}{'.step' if step else ''}"
            expected = (self.num_layers, getattr(self, width))
            _check_unbatched_state_form(state, state_names, expected, who)
            axis = 0 if step or self.batch_first else 1  # where the batched form has its batch dimension
            y, state = method(self, x.unsqueeze(axis), _map_state(state, lambda t: _batch_of_one(t, expected, who)))
            return y.squeeze(axis), _map_state(state, lambda t: t.squeeze(1))

        # torch.compile keeps compiled variants, and its recompile budget (8), per code object: one
        # shared wrapper code made every decorated method of every class draw on one budget, and
        # fullgraph compiles failed after 8 variants per process. A code object per method instead.
        names = {"co_name": method.__name__}
        if hasattr(call.__code__, "co_qualname"):  # Python 3.11+
            names["co_qualname"] = method.__qualname__
        call.__code__ = call.__code__.replace(**names)
        return call

    return wrap


def _map_state(state, fn):
    if state is None:
        return None
    if isinstance(state, (tuple, list)):
        return type(state)(fn(t) for t in state)
    return fn(state)


def _check_unbatched_state_form(state, state_names: Optional[tuple[str, ...]], expected: tuple, who: str) -> None:
    # Checked here, before the batch-of-one conversion, so that the message names the unbatched shapes.
    shape = list(expected)
    if state is None:
        return
    if state_names is None and not isinstance(state, torch.Tensor):
        raise ValueError(f"{who}: with an unbatched input the state must be one tensor {shape} "
                         f"([num_layers, width]), got {type(state).__name__}")
    if state_names is not None and (not isinstance(state, (tuple, list)) or len(state) != len(state_names)):
        raise ValueError(f"{who}: with an unbatched input the state must be a tuple ({', '.join(state_names)}), "
                         f"each {shape} ([num_layers, width]), got {type(state).__name__}")


def _batch_of_one(t, expected: tuple, who: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor) or tuple(t.shape) != expected:
        raise ValueError(f"{who}: with an unbatched input each state tensor must be unbatched too, "
                         f"{list(expected)} ([num_layers, width]), got shape {getattr(t, 'shape', None)}")
    return t.unsqueeze(1)


def step_through_forward(module, x_t, state, who: str):
    """One step of a sequence module: ``x_t`` [B, input_size] run as a length-1 sequence."""
    if not isinstance(x_t, torch.Tensor) or x_t.dim() != 2:
        raise ValueError(f"{who}: x_t must be 2-D [B, input_size] or 1-D [input_size] (unbatched), "
                         f"got {getattr(x_t, 'shape', None)}")
    seq = x_t.unsqueeze(1) if module.batch_first else x_t.unsqueeze(0)
    y, state = module.forward(seq, state)
    return (y[:, 0] if module.batch_first else y[0]), state


def checked_weight_masks(weight_masks: Optional[dict], num_layers: int, names: tuple[str, ...]) -> dict:
    """A copy of ``sparsify``'s ``weight_masks``, refusing keys other than ``{name}_l{k}``."""
    masks = dict(weight_masks or {})
    known = {f"{n}_l{k}" for k in range(num_layers) for n in names}
    unknown = set(masks) - known
    if unknown:
        raise ValueError(f"sparsify: unknown weight_masks keys {sorted(unknown)}; expected some of {sorted(known)}")
    return masks


def timing_example(example_input, layout: str, module, who: str) -> Optional[torch.Tensor]:
    """``sparsify``'s ``example_input`` (batched, or unbatched [T, input_size]) as a [T, B, input_size]
    float32 tensor on the module's device (None unless ``layout="timed"``, which needs it)."""
    if (layout == "timed") != (example_input is not None):
        raise ValueError(f"{who}: layout='timed' needs example_input (a [T, B, input_size] sequence to time the "
                         "layouts on), and example_input is used only with layout='timed'")
    if example_input is None:
        return None
    if isinstance(example_input, torch.Tensor) and example_input.dim() == 2:  # unbatched [T, input_size]
        example_input = example_input.unsqueeze(0 if module.batch_first else 1)
    x = check_sequence_input(example_input, module.input_size, module.batch_first, who)
    device = next(module.parameters()).device
    if x.device != device or x.dtype != torch.float32:
        raise ValueError(f"{who}: example_input must be float32 on {device} (the inference module's dtype and the "
                         f"weights' device), got {x.dtype} on {x.device}")
    return x.contiguous()


def per_layer_layouts(layout, num_layers: int, who: str) -> list:
    """``sparsify``'s ``layout``, one entry per layer: a name for every weight (``"dense"``, ``"sparse"``,
    ``"auto"``, ``"timed"``), or a list with a pair per layer (input, second weight), as a module's
    ``.layouts`` reports them, which reproduces an earlier (e.g. timed) choice."""
    if isinstance(layout, str):
        return [layout] * num_layers
    fixed = tuple(name for name in LAYOUTS if name != "timed")  # timing is per layer, not per weight
    if (not isinstance(layout, (list, tuple)) or len(layout) != num_layers
            or not all(isinstance(p, (list, tuple)) and len(p) == 2 and all(n in fixed for n in p) for p in layout)):
        raise ValueError(f"{who}: layout must be one of {LAYOUTS} or a list of "
                         f"{num_layers} (input weight, second weight) pairs of {fixed} (as .layouts reports), "
                         f"got {layout!r}")
    return [tuple(p) for p in layout]


def pack_layer(weights: list, layout, run: Optional[Callable[..., tuple]], who: str
               ) -> tuple[list[PackedWeight], Optional[LayoutChoice]]:
    """One layer's ``(weight, mask)`` pairs packed with ``layout`` (a name, or one per weight); with
    ``"timed"``, in the combination of layouts with which ``run(*packed)`` (the layer's sequence op on
    its example input) was fastest."""
    if layout == "timed":
        return choose_layouts([masked_weight(w, m, who) for w, m in weights], run)
    names = (layout,) * len(weights) if isinstance(layout, str) else layout
    return [pack(w, m, name) for (w, m), name in zip(weights, names)], None


def op_args(pw: PackedWeight) -> tuple:
    """A packed weight as the fused ops take it: values, col_ptr, row_idx (None for the dense layout)."""
    return pw.values, pw.col_ptr, pw.row_idx


class CachedOpArgs(PackedModule):
    """Base of the kernel twins: each layer's op arguments (``self._collect_args(k)``), and the whole
    stack's for the stack-step op (``self._collect_stack_args()``), gathered once. nn.Module attribute
    lookups cost about a microsecond each, on every step. The cache lives only as long as the buffers
    it was built from: a replaced buffer (``load_state_dict(assign=True)``, ``.to()``,
    ``torch.func.functional_call``) re-validates and rebuilds it; an index tensor edited in place is
    re-validated by the CPU ops themselves, and off the CPU before the next call (see
    :class:`~evsparse.nn._buffers.PackedModule`)."""

    _cached_args: Optional[list] = None
    _cached_stack_args: Optional[tuple] = None

    def _packed_changed(self) -> None:
        self._cached_args = self._cached_stack_args = None

    def _args(self, k: int):
        if torch.compiler.is_compiling():  # traced: the buffers as export/compile see them (not the cache's)
            return self._collect_args(k)
        self._ensure_packed_valid()
        if self._cached_args is None:
            self._cached_args = [self._collect_args(i) for i in range(self.num_layers)]
        return self._cached_args[k]

    def _stack_args(self) -> tuple:
        if torch.compiler.is_compiling():
            return self._collect_stack_args()
        self._ensure_packed_valid()
        if self._cached_stack_args is None:
            self._cached_stack_args = self._collect_stack_args()
        return self._cached_stack_args


class ActivityLog:
    """Per layer, the fraction of nonzero entries of a tensor in a module's last forward.

    Counted on the tensor's device and turned into floats only when read: a ``float()`` in forward is
    a host sync per layer, which stalls a GPU pipeline, fails inside CUDA-graph capture, breaks the
    graph under ``torch.compile`` and stops ``torch.export`` (a data-dependent value). Under
    ``torch.compile`` the counts are graph outputs; ``torch.export`` records nothing (an exported
    program has no module to keep them on), so the log keeps the last run's numbers."""

    def __init__(self) -> None:
        self._counts: list[tuple[torch.Tensor, int]] = []

    def start(self) -> None:
        if not torch.compiler.is_exporting():
            self._counts = []

    def add(self, t: torch.Tensor) -> None:
        if not torch.compiler.is_exporting():
            self._counts.append((torch.count_nonzero(t.detach()), t.numel()))  # NaN counts as nonzero

    def fractions(self) -> list[float]:
        if not self._counts:
            return []
        counts = torch.stack([c for c, _ in self._counts]).tolist()  # one sync for all layers
        return [c / n if n else 0.0 for c, (_, n) in zip(counts, self._counts)]
