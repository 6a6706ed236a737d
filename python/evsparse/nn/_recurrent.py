"""Pieces shared by the recurrent layers (EGRU, SparseLinearRNN) and their kernel twins."""

from __future__ import annotations

import functools
from typing import Callable, Optional

import torch

from .. import plan
from .._contract import layer_buffer
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


class FrameCycle:
    """The frames of a [T, B, in] sequence as one-step sequences [1, B, in], one per call, in turn: what a
    paced layout timing (``pace_ms``) runs a layer on, a stream's step at a time."""

    def __init__(self, seq: torch.Tensor):
        self.seq, self.t = seq, -1

    def __call__(self) -> torch.Tensor:
        self.t = (self.t + 1) % self.seq.shape[0]
        return self.seq[self.t:self.t + 1]


def plan_runner(kind: int, input_size: int, width: int, make_layer: Callable[..., "plan.PlanLayer"],
                call: Callable[[torch.Tensor, torch.Tensor], tuple]) -> Callable[..., tuple]:
    """A ``run(*packed)`` for layout timing through a one-layer plan and its sequence op, ``call(arena,
    meta)``: what int8 layers need (the per-layer sequence ops take no scale). Each candidate's plan
    is built on its first call (the timing's warm-up), not inside the timed calls."""
    plans: dict = {}

    def run(*packed):
        key = tuple(id(p) for p in packed)
        if key not in plans:  # (packed kept alive with it, so its id is not reused)
            plans[key] = (packed, *plan.build(kind, input_size, width, [make_layer(*packed)]))
        _, arena, meta = plans[key]
        return call(arena, meta)

    return run


def pack_layer(weights: list, layout, run: Optional[Callable[..., tuple]], who: str,
               weight_dtype: Optional[torch.dtype] = None,
               pace_s: Optional[float] = None) -> tuple[list[PackedWeight], Optional[LayoutChoice]]:
    """One layer's ``(weight, mask)`` pairs packed with ``layout`` (a name, or one per weight) and
    values of ``weight_dtype`` (see :func:`evsparse.pack`); with ``"timed"``, in the combination of
    layouts with which ``run(*packed)`` (the layer's sequence op on its example input, on candidates of
    ``weight_dtype``) was fastest (paced, one call per ``pace_s`` seconds, if given)."""
    if layout == "timed":
        return choose_layouts([masked_weight(w, m, who) for w, m in weights], run, weight_dtype, pace_s=pace_s)
    names = (layout,) * len(weights) if isinstance(layout, str) else layout
    return [pack(w, m, name, weight_dtype=weight_dtype) for (w, m), name in zip(weights, names)], None


def op_args(pw: PackedWeight) -> tuple:
    """A packed weight as the fused ops take it: values, col_ptr, row_idx (None for the dense layout)."""
    return pw.values, pw.col_ptr, pw.row_idx


def fast_op(overload):
    """The callable behind an op overload: calling it skips ``OpOverload.__call__``'s Python frame
    (a few hundred ns per step). Eager only: traced code calls the overload itself."""
    return getattr(overload, "_op", overload)


class PlanModule(PackedModule):
    """Base of the kernel twins. A model's packed weights and vectors live in one plan
    (:mod:`evsparse.plan`): the buffers ``plan_arena`` (uint8) and ``plan_meta`` (int64), which the
    CPU step ops take whole, so a step is one op call with four or five tensors. Per-layer views of the
    arena serve the sequence ops, the GPU kernels and ``.packed(k)``. The plan is validated in full at
    construction and load and whenever a buffer is replaced (``load_state_dict(assign=True)``,
    ``.to()``, ``torch.func.functional_call``); the CPU ops re-validate an arena edited in place
    themselves, and off the CPU the module does before the next call."""

    _plan_kind: int = 0
    _views: Optional[list] = None
    _meta_list: Optional[list] = None
    _cached_args: Optional[list] = None
    _cached_stack_args: Optional[tuple] = None
    _plan_call: Optional[tuple] = None  # (arena, meta) when the CPU plan ops can run the step
    model_choice: Optional[object] = None  # a ModelLayoutChoice where sparsify timed whole models

    def _init_plan(self, input_size: int, width: int, layers: list) -> None:
        arena, meta = plan.build(self._plan_kind, input_size, width, layers)
        self.register_buffer("plan_arena", arena)
        self.register_buffer("plan_meta", meta)
        self._validate_packed()

    def _plan_dims(self) -> tuple:
        """(input_size, width, num_layers) the module's plan must have."""
        raise NotImplementedError

    def _validate_packed(self) -> None:
        who = type(self).__name__
        arena, meta = self._buffers.get("plan_arena"), self._buffers.get("plan_meta")
        views = plan.validate(arena, meta, self._plan_kind, who, self._WEIGHT_NAMES)
        m = meta.detach().cpu().tolist()
        if (m[4], m[5], m[3]) != self._plan_dims():
            raise ValueError(f"{who}: the plan is for input_size={m[4]}, width={m[5]}, num_layers={m[3]}; this "
                             f"module has {self._plan_dims()} (a state dict of another model)")
        self._views, self._meta_list = views, m
        self._packed_seen.record((arena, meta))
        self._packed_watch_versions = arena.device.type != "cpu"
        self._packed_generation = self._buffers.generation
        self._cached_args = self._cached_stack_args = None
        self._plan_call = (arena, meta) if arena.device.type == "cpu" else None

    @property
    def layouts(self) -> list:
        """Per layer, the (input weight, second weight) layouts."""
        return [(v.weights[0].layout, v.weights[1].layout) for v in self._views]

    def _layer_views(self) -> list:
        if torch.compiler.is_compiling():  # traced: views of the buffers as export/compile see them
            return plan.layer_views(self.plan_arena, self.plan_meta, self._meta_list)
        self._ensure_packed_valid()
        return self._views

    def _args(self, k: int):
        if torch.compiler.is_compiling():
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

    def packed(self, k: int) -> tuple[PackedWeight, PackedWeight]:
        """Layer k's packed weights (views of the plan's arena)."""
        return self._layer_views()[k].weights

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        arena = state_dict.get(prefix + "plan_arena")
        if isinstance(arena, torch.Tensor) and arena.shape != self.plan_arena.shape:
            # A plan of another pruning or layout has another size, which load_state_dict does not load
            # (assign=True included); loading its meta alone would leave the two inconsistent, so
            # neither is loaded and load_state_dict raises.
            error_msgs.append(f"size mismatch for {prefix}plan_arena: the plan in the state dict has "
                              f"{arena.numel()} bytes, this module's {self.plan_arena.numel()} (another pruning "
                              "or layout): build the module with the same masks and layouts, or save and load "
                              "the whole module (torch.save(module))")
            return
        args = (local_metadata, strict, missing_keys, unexpected_keys, error_msgs)
        # State dicts of the per-layer buffer format held one buffer per layer and part (w_ih_l0_values, ...).
        if prefix + "plan_arena" not in state_dict and any(key.startswith(prefix) and key[len(prefix):]
                                                          in self._legacy_keys() for key in state_dict):
            arena, meta = plan.build(self._plan_kind, *self._plan_dims()[:2], self._legacy_layers(state_dict, prefix))
            for key in [key for key in state_dict if key.startswith(prefix) and key[len(prefix):] in self._legacy_keys()]:
                del state_dict[key]
            state_dict[prefix + "plan_arena"], state_dict[prefix + "plan_meta"] = arena, meta
        super()._load_from_state_dict(state_dict, prefix, *args)

    def _legacy_keys(self) -> set:
        return {layer_buffer(arg, k) for k in range(self.num_layers) for arg in self._LAYER_ARGS}

    def _legacy_part(self, state_dict, prefix: str, arg: str, k: int):
        return state_dict.get(prefix + layer_buffer(arg, k))

    def _legacy_weight(self, state_dict, prefix: str, name: str, k: int, shape: tuple) -> PackedWeight:
        values, col_ptr, row_idx = (self._legacy_part(state_dict, prefix, a, k)
                                    for a in (name, f"{name}_col_ptr", f"{name}_row_idx"))
        if values is None:
            raise ValueError(f"{type(self).__name__}: the state dict lacks {prefix}{layer_buffer(name, k)}")
        return PackedWeight("sparse" if col_ptr is not None else "dense", shape, values, col_ptr, row_idx)


class Stream:
    """A stream through a packed recurrent model at batch 1 (or a fixed batch): the state stays in
    this object and each :meth:`step` updates it in place with the model's in-place plan op, so a
    step allocates nothing. ``step`` returns the stream's output buffer, which the next step
    overwrites: ``.clone()`` what you keep. Build it with ``module.stream()``; CPU only."""

    def __init__(self, module: PlanModule, batch_size: Optional[int], state, out_features: int):
        module._ensure_packed_valid()
        if module._plan_call is None:
            raise ValueError(f"{type(module).__name__}.stream: streams run on the CPU plan ops; the module is on "
                             f"{module.plan_arena.device}")
        self.module = module
        self.batch_size = batch_size
        lead = (module.num_layers,) if batch_size is None else (module.num_layers, batch_size)
        self._shape = (*lead, module._meta_list[5])
        self._out_shape = (out_features,) if batch_size is None else (batch_size, out_features)
        self.reset(state)

    def reset(self, state=None) -> None:
        """Back to the zero state, or to a copy of ``state`` (never aliased: the caller's tensors are
        not written)."""
        names = self.module._STATE_NAMES
        parts = (state,) if len(names) == 1 and state is not None else state
        if parts is not None and (not isinstance(parts, (tuple, list)) or len(parts) != len(names)):
            raise ValueError(f"{type(self.module).__name__}.stream: state must be "
                             f"{'a tensor' if len(names) == 1 else 'a tuple (' + ', '.join(names) + ')'}")
        tensors = []
        for i, name in enumerate(names):
            t = torch.zeros(self._shape)
            if parts is not None:
                if not isinstance(parts[i], torch.Tensor) or tuple(parts[i].shape) != self._shape:
                    raise ValueError(f"{type(self.module).__name__}.stream: state {name} must have shape "
                                     f"{list(self._shape)}, got {getattr(parts[i], 'shape', None)}")
                t.copy_(parts[i])
            tensors.append(t)
        self._state = tuple(tensors)
        self._bind()

    def _bind(self) -> None:
        m = self.module
        self._generation = m._buffers.generation
        self._out, self._rest = m._stream_bind(self._state, self._out_shape)
        self._op = fast_op(m._STREAM_OP)

    @property
    def state(self):
        """The live state (updated in place by every step)."""
        return self._state[0] if len(self._state) == 1 else self._state

    def step(self, x: torch.Tensor) -> torch.Tensor:
        """One step: ``x`` [input_size] (or [batch_size, input_size]) -> the output buffer."""
        m = self.module
        if m._packed_generation != m._buffers.generation or self._generation != m._buffers.generation:
            m._ensure_packed_valid()
            self._bind()
        self._op(x, *self._rest)
        return self._out


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

    def add_counts(self, counts: torch.Tensor, numels: list) -> None:
        """Per layer, a count of nonzero entries already made (a plan sequence op's ``nonzero``)."""
        if not torch.compiler.is_exporting():
            self._counts.extend((counts[k], n) for k, n in enumerate(numels))

    def fractions(self) -> list[float]:
        if not self._counts:
            return []
        counts = torch.stack([c for c, _ in self._counts]).tolist()  # one sync for all layers
        return [c / n if n else 0.0 for c, (_, n) in zip(counts, self._counts)]
