"""The event-based GRU (EGRU): a trainable layer and its inference twin on the fused sparse kernels.

Per step (gate blocks [z, r, g] in the 3H dimension, reset gate after the recurrent product)::

    z  = sigmoid(W_z x + b_iz + R_z y_prev + b_hz)
    r  = sigmoid(W_r x + b_ir + R_r y_prev + b_hr)
    g  = tanh   (W_g x + b_ig + r * (R_g y_prev + b_hg))
    c~ = z * c_prev + (1 - z) * g
    o  = heaviside(c~ - thr)      # 0 at equality; thr per unit, clamped to [0, 1]
    y  = o * c~                   # the event output; only y feeds back through R
    c  = c~ - o * thr             # soft reset

Backward replaces d heaviside / dv by ``dampening * max(0, 1 - support * |v|)``.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from .. import functional, plan
from .._contract import EGRU_LAYER_ARGS
from .._deprecation import alias_classmethod, moved
from ..layout import choose_model_layouts, pace_seconds
from ._recurrent import (ActivityLog, FrameCycle, PlanModule, Stream, accepts_unbatched, check_sequence_input, plan_runner,
                         checked_weight_masks, fast_op, op_args, pack_layer, per_layer_layouts, step_through_forward,
                         timing_example)

__all__ = ["EGRU", "PackedEGRU", "spike", "egru_cell"]

State = tuple[torch.Tensor, torch.Tensor]


class _SpikeSurrogate(torch.autograd.Function):
    """Heaviside forward, triangular pseudo-derivative backward."""

    @staticmethod
    def forward(ctx, v, dampening: float, support: float):
        ctx.save_for_backward(v)
        ctx.dampening, ctx.support = dampening, support
        return (v > 0).to(v.dtype)

    @staticmethod
    def backward(ctx, grad):
        (v,) = ctx.saved_tensors
        pseudo = ctx.dampening * torch.clamp(1.0 - ctx.support * v.abs(), min=0.0)
        return grad * pseudo, None, None


def spike(v: torch.Tensor, dampening: float = 0.7, support: float = 1.0) -> torch.Tensor:
    """Heaviside step of ``v`` (0 at 0) with the EGRU's surrogate gradient."""
    return _SpikeSurrogate.apply(v, dampening, support)


def egru_cell(gi: torch.Tensor, gh: torch.Tensor, c_prev: torch.Tensor, thr: torch.Tensor,
              spike_fn: Callable[[torch.Tensor], torch.Tensor]):
    """One EGRU update from the pre-activations ``gi = W x + b_i`` and ``gh = R y_prev + b_h``
    (``[B, 3H]``, gate blocks [z, r, g]). Returns ``(c, y, o)``."""
    gi_z, gi_r, gi_g = gi.chunk(3, dim=-1)
    gh_z, gh_r, gh_g = gh.chunk(3, dim=-1)
    z = torch.sigmoid(gi_z + gh_z)
    r = torch.sigmoid(gi_r + gh_r)
    g = torch.tanh(gi_g + r * gh_g)
    c_tilde = z * c_prev + (1.0 - z) * g
    t = thr.clamp(0.0, 1.0)
    o = spike_fn(c_tilde - t)
    return c_tilde - o * t, o * c_tilde, o


def _initial_state(state: Optional[State], num_layers: int, batch: int, hidden: int, like: torch.Tensor,
                   who: str) -> State:
    if state is None:
        z = like.new_zeros((num_layers, batch, hidden))
        return z, z.clone()
    if not isinstance(state, (tuple, list)) or len(state) != 2:
        raise ValueError(f"{who}: state must be a tuple (c, y), each [num_layers, B, hidden_size]")
    c, y = state
    expected = (num_layers, batch, hidden)
    for name, t in (("c", c), ("y", y)):
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != expected:
            raise ValueError(f"{who}: state {name} must have shape {list(expected)}, got {getattr(t, 'shape', None)}")
    return c, y


class EGRU(nn.Module):
    """Event-based GRU, a drop-in recurrent layer in the style of ``torch.nn.GRU``.

    Args:
        input_size: as in ``nn.GRU``.
        hidden_size: as in ``nn.GRU``.
        num_layers: as in ``nn.GRU``.
        batch_first: as in ``nn.GRU``.
        dropout: variational dropout between layers (one mask per sequence, as in AWD-LSTM).
        thr_mean: initial mean of the per-unit thresholds (initialised N(thr_mean, 0.05), clamped to [0, 1]).
        dampening: the surrogate gradient is ``dampening * max(0, 1 - support * |c~ - thr|)``.
        support: see ``dampening``.
        bias: as in ``nn.GRU``.
        dropconnect: DropConnect probability on the recurrent weights while training.
        fused: on the CPU (float32/float64), run each layer's recurrence over the sequence, forward
            and backward through time, in one C++ op (:func:`evsparse.functional.egru_train`: the
            recurrent product and its weight gradient touch only the units that fired). ``False``, and
            every other device, runs the Python loop over time (the reference). Same values and
            gradients to float rounding. An attribute, so it can be switched on a built module.

    Parameters (layer ``k``): ``weight_ih_l{k}`` [3H, in], ``weight_hh_l{k}`` [3H, H], ``bias_ih_l{k}``,
    ``bias_hh_l{k}`` [3H], ``thr_l{k}`` [H]. Gate blocks are [z, r, g] (EvNN's order; ``nn.GRU`` uses
    [r, z, n]).

    ``y, (c, y_last) = egru(x, state)``: ``x`` [T, B, in] (or [B, T, in]), ``y`` the last layer's event
    outputs [T, B, H]; the state is ``(c, y)`` of the last step, each [num_layers, B, H]. The cell
    state ``c`` is carried across calls, so a stream processed in chunks equals one long call.
    The training forward uses dense products; :meth:`sparsify` gives the inference module on the
    sparse kernels.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, batch_first: bool = False,
                 dropout: float = 0.0, thr_mean: float = 0.3, dampening: float = 0.7, support: float = 1.0,
                 bias: bool = True, dropconnect: float = 0.0, *, fused: bool = True):
        super().__init__()
        if input_size < 1 or hidden_size < 1 or num_layers < 1:
            raise ValueError("EGRU: input_size, hidden_size and num_layers must be >= 1")
        for name, p in (("dropout", dropout), ("dropconnect", dropconnect)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"EGRU: {name} must be in [0, 1), got {p}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.batch_first, self.dropout, self.dropconnect = batch_first, dropout, dropconnect
        self.thr_mean, self.dampening, self.support, self.bias = thr_mean, dampening, support, bias
        self.fused = fused
        H = hidden_size
        for k in range(num_layers):
            n_in = input_size if k == 0 else H
            self.register_parameter(f"weight_ih_l{k}", nn.Parameter(torch.empty(3 * H, n_in)))
            self.register_parameter(f"weight_hh_l{k}", nn.Parameter(torch.empty(3 * H, H)))
            if bias:
                self.register_parameter(f"bias_ih_l{k}", nn.Parameter(torch.empty(3 * H)))
                self.register_parameter(f"bias_hh_l{k}", nn.Parameter(torch.empty(3 * H)))
            else:
                self.register_parameter(f"bias_ih_l{k}", None)
                self.register_parameter(f"bias_hh_l{k}", None)
            self.register_parameter(f"thr_l{k}", nn.Parameter(torch.empty(H)))
        self._activity = ActivityLog()
        self._event_rates: list[torch.Tensor] = []
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        for name, p in self.named_parameters():
            if name.startswith("thr"):
                with torch.no_grad():
                    p.normal_(self.thr_mean, 0.05).clamp_(0.0, 1.0)
            else:
                nn.init.uniform_(p, -bound, bound)

    def layer_params(self, k: int):
        """(weight_ih, weight_hh, bias_ih, bias_hh, thr) of layer k."""
        return tuple(getattr(self, f"{n}_l{k}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "thr"))

    def _spike(self, v):
        return spike(v, self.dampening, self.support)

    @accepts_unbatched("hidden_size", state_names=("c", "y"))
    def forward(self, x: torch.Tensor, state: Optional[State] = None) -> tuple[torch.Tensor, State]:
        x = check_sequence_input(x, self.input_size, self.batch_first, "EGRU")
        T, B = x.shape[0], x.shape[1]
        c0, y0 = _initial_state(state, self.num_layers, B, self.hidden_size, x, "EGRU")
        inp = x
        c_last, y_last, self._event_rates = [], [], []
        fused = (getattr(self, "fused", True) and x.device.type == "cpu"  # (modules pickled before it: on)
                 and x.dtype in (torch.float32, torch.float64))
        self._activity.start()
        for k in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh, thr = self.layer_params(k)
            if self.training and self.dropconnect > 0:
                w_hh = functional.dropconnect(w_hh, self.dropconnect)  # F.dropout's distribution, faster on CPU
            gi_all = F.linear(inp, w_ih, b_ih)  # the input product for every step at once
            if fused:
                if b_hh is None:
                    b_hh = gi_all.new_zeros(3 * self.hidden_size)
                inp, c, events = functional.egru_train(gi_all.contiguous(), c0[k].contiguous(), y0[k].contiguous(),
                                                       w_hh, b_hh, thr, self.dampening, self.support)
                y = inp[-1] if T > 0 else y0[k]
                # = sum over steps of o_t.mean(), as the loop below forms it
                rate = events.sum() / (B * self.hidden_size) if T > 0 else 0.0
            else:
                c, y = c0[k], y0[k]
                ys, rate = [], 0.0
                for t in range(T):
                    c, y, o = egru_cell(gi_all[t], F.linear(y, w_hh, b_hh), c, thr, self._spike)
                    ys.append(y)
                    rate = rate + o.mean()
                inp = torch.stack(ys) if T > 0 else x.new_zeros((0, B, self.hidden_size))
            c_last.append(c)
            y_last.append(y)
            self._activity.add(inp)
            self._event_rates.append(rate / max(T, 1))
            if self.training and self.dropout > 0 and k < self.num_layers - 1:
                # Variational dropout: one mask per sequence and unit, shared by all steps.
                mask = F.dropout(inp.new_ones((1, B, self.hidden_size)), self.dropout, training=True)
                inp = inp * mask
        out = inp.transpose(0, 1) if self.batch_first else inp
        return out, (torch.stack(c_last), torch.stack(y_last))

    @accepts_unbatched("hidden_size", step=True, state_names=("c", "y"))
    def step(self, x_t: torch.Tensor, state: Optional[State] = None) -> tuple[torch.Tensor, State]:
        """One step: ``x_t`` [B, input_size] -> (``y_t`` [B, H], state); unbatched, [input_size] -> [H]."""
        return step_through_forward(self, x_t, state, "EGRU.step")

    def activity(self) -> list[float]:
        """Per layer, the fraction of nonzero event outputs over the last forward."""
        return self._activity.fractions()

    def activity_loss(self) -> torch.Tensor:
        """Sum over layers of the mean event rate of the last forward; differentiable through the
        surrogate gradient. Add ``lambda * egru.activity_loss()`` to the loss to push activity down."""
        if not self._event_rates:
            raise RuntimeError("EGRU.activity_loss: run a forward pass first")
        return torch.stack([torch.as_tensor(r) for r in self._event_rates]).sum()

    def sparsify(self, weight_masks: Optional[dict] = None, layout: Union[str, Sequence] = "auto",
                 example_input: Optional[torch.Tensor] = None,
                 weight_dtype: Optional[torch.dtype] = None, pace_ms: Optional[float] = None) -> "PackedEGRU":
        """The inference module on the fused sparse kernels, with the same outputs (float32).

        ``weight_masks`` maps parameter names (``weight_ih_l0``, ``weight_hh_l0``, ...) to masks; each
        weight is packed as ``weight * mask`` (see :func:`evsparse.pack`, also for ``layout``). With
        ``layout="timed"``, each layer runs its sequence op on ``example_input`` (a sequence like this
        module's input) with every combination of layouts for its two weights, and keeps the fastest
        (``PackedEGRU.layout_choices`` holds the timings); then, on the CPU, whole models that change one
        layer's layouts are timed stepping their streams on the frames of ``example_input`` and the
        fastest is kept (``.model_choice``, see :func:`evsparse.layout.choose_model_layouts`). A list of
        (input, recurrent) weight layout pairs per layer (``.layouts`` of an earlier result) reproduces a choice. ``weight_dtype``: the
        packed weights' dtype (default float32; ``torch.int8`` quantises them per input column, see
        :func:`evsparse.pack`; biases and thresholds stay float32). ``pace_ms`` (with ``"timed"``): time
        each layer, then each model, as a stream runs it, one step (a frame of ``example_input``, in
        turn) every ``pace_ms`` milliseconds, instead of in a hot loop."""
        return PackedEGRU.from_module(self, weight_masks, layout, example_input, weight_dtype, pace_ms)

    def load_evnn_state_dict(self, state_dict: Union[dict, Sequence[dict]]) -> None:
        """Loads EvNN ``EGRU`` weights: ``kernel`` [in, 3H], ``recurrent_kernel`` [H, 3H], ``bias``,
        ``recurrent_bias`` [3H] and ``thr`` [H] per layer (same gate order [z, r, g]). Pass one dict
        for a single layer, a list of dicts (one per layer), or one dict whose keys are prefixed
        ``"{k}."`` or ``"layers.{k}."``."""
        layers = _split_evnn_layers(state_dict, self.num_layers)
        H = self.hidden_size
        with torch.no_grad():
            for k, sd in enumerate(layers):
                n_in = self.input_size if k == 0 else H
                expected = {"kernel": (n_in, 3 * H), "recurrent_kernel": (H, 3 * H), "bias": (3 * H,),
                            "recurrent_bias": (3 * H,), "thr": (H,)}
                for key, shape in expected.items():
                    if key not in sd:
                        raise ValueError(f"load_evnn_state_dict: layer {k} lacks '{key}'")
                    if tuple(sd[key].shape) != shape:
                        raise ValueError(f"load_evnn_state_dict: layer {k} '{key}' has shape {list(sd[key].shape)}, "
                                         f"expected {list(shape)}")
                w_ih, w_hh, b_ih, b_hh, thr = self.layer_params(k)
                w_ih.copy_(sd["kernel"].t())
                w_hh.copy_(sd["recurrent_kernel"].t())
                thr.copy_(sd["thr"])
                if self.bias:
                    b_ih.copy_(sd["bias"])
                    b_hh.copy_(sd["recurrent_bias"])
                elif bool(sd["bias"].any()) or bool(sd["recurrent_bias"].any()):
                    raise ValueError("load_evnn_state_dict: this EGRU has bias=False but the state dict has biases")

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, batch_first={self.batch_first}, "
                f"dropout={self.dropout}, dropconnect={self.dropconnect}, thr_mean={self.thr_mean}, "
                f"dampening={self.dampening}, support={self.support}, bias={self.bias}, "
                f"fused={getattr(self, 'fused', True)}")


def _split_evnn_layers(state_dict, num_layers: int) -> list[dict]:
    if isinstance(state_dict, (list, tuple)):
        layers = list(state_dict)
    elif "kernel" in state_dict:
        layers = [state_dict]
    else:
        layers = []
        for k in range(num_layers):
            for prefix in (f"{k}.", f"layers.{k}."):
                sub = {key[len(prefix):]: v for key, v in state_dict.items() if key.startswith(prefix)}
                if sub:
                    layers.append(sub)
                    break
    if len(layers) != num_layers:
        raise ValueError(f"load_evnn_state_dict: found {len(layers)} layer(s), the model has {num_layers}")
    return layers


class PackedEGRU(PlanModule):
    """Inference twin of :class:`EGRU` on the fused sparse kernels: each step reads only the weight
    rows (or nonzeros) of the inputs and units that are nonzero. Same call signature and state as
    :class:`EGRU`; float32; no autograd.

    Its weights, biases and thresholds live in one plan (buffers ``plan_arena``, ``plan_meta``; see
    :mod:`evsparse.plan`): :meth:`step` is one ``egru_plan_step`` call on the CPU, and
    :meth:`stream` gives an object whose steps update the state in place (``egru_plan_step_``),
    allocating nothing."""

    _plan_kind = plan.EGRU
    _WEIGHT_NAMES = ("w_ih", "w_hh")
    _LAYER_ARGS = EGRU_LAYER_ARGS
    _STATE_NAMES = ("c", "y")
    _STREAM_OP = torch.ops.evsparse.egru_plan_step_.default

    def __init__(self, input_size: int, hidden_size: int, batch_first: bool, layers: list):
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, len(layers)
        self.batch_first = batch_first
        H = hidden_size
        self._init_plan(input_size, H, [
            plan.PlanLayer(input_size if k == 0 else H, H, H, 0, (w_ih, w_hh), (b_ih, b_hh, thr))
            for k, (w_ih, w_hh, b_ih, b_hh, thr) in enumerate(layers)])
        self.layout_choices: list = [None] * len(layers)  # per layer, a LayoutChoice where sparsify timed layouts
        self._activity = ActivityLog()
        self._step_op = fast_op(torch.ops.evsparse.egru_plan_step.default)

    def _plan_dims(self) -> tuple:
        return self.input_size, self.hidden_size, self.num_layers

    def _legacy_layers(self, state_dict, prefix: str) -> list:
        H, layers = self.hidden_size, []
        for k in range(self.num_layers):
            n_in = self.input_size if k == 0 else H
            weights = (self._legacy_weight(state_dict, prefix, "w_ih", k, (3 * H, n_in)),
                       self._legacy_weight(state_dict, prefix, "w_hh", k, (3 * H, H)))
            vectors = tuple(self._legacy_part(state_dict, prefix, n, k) for n in ("b_ih", "b_hh", "thr"))
            layers.append(plan.PlanLayer(n_in, H, H, 0, weights, vectors))
        return layers

    @classmethod
    @torch.no_grad()
    def from_module(cls, egru: EGRU, weight_masks: Optional[dict] = None, layout: Union[str, Sequence] = "auto",
                    example_input: Optional[torch.Tensor] = None,
                    weight_dtype: Optional[torch.dtype] = None, pace_ms: Optional[float] = None) -> "PackedEGRU":
        masks = checked_weight_masks(weight_masks, egru.num_layers, ("weight_ih", "weight_hh"))
        inp = timing_example(example_input, layout, egru, "EGRU.sparsify")  # layer k's input when timed
        pace_s = pace_seconds(pace_ms, inp is not None, "EGRU.sparsify")
        layouts = per_layer_layouts(layout, egru.num_layers, "EGRU.sparsify")
        example = inp
        layers, choices = [], []
        for k in range(egru.num_layers):
            w_ih, w_hh, b_ih, b_hh, thr = (p.detach() if p is not None else None for p in egru.layer_params(k))
            zeros = torch.zeros(3 * egru.hidden_size, dtype=torch.float32, device=w_ih.device)
            b_ih = zeros if b_ih is None else b_ih.float().contiguous().clone()
            b_hh = zeros.clone() if b_hh is None else b_hh.float().contiguous().clone()
            thr = thr.float().contiguous().clone()

            def run(p_ih, p_hh, inp=inp, b_ih=b_ih, b_hh=b_hh, thr=thr):
                state = inp.new_zeros(inp.shape[1], egru.hidden_size)
                return torch.ops.evsparse.egru_sequence(inp, state, state, *op_args(p_ih), *op_args(p_hh),
                                                        b_ih, b_hh, thr)

            frames = FrameCycle(inp) if pace_s is not None else None  # paced: one step per timed call
            timing_run = run if frames is None else (lambda p_ih, p_hh, run=run, f=frames: run(p_ih, p_hh, inp=f()))
            if weight_dtype == torch.int8 and inp is not None:  # int8 runs on plans only: time it there
                H, n_in = egru.hidden_size, (egru.input_size if k == 0 else egru.hidden_size)

                def plan_run(next_input, n_in=n_in, H=H, vec=(b_ih, b_hh, thr)):
                    return plan_runner(
                        plan.EGRU, n_in, H, lambda p_ih, p_hh: plan.PlanLayer(n_in, H, H, 0, (p_ih, p_hh), vec),
                        lambda arena, meta: torch.ops.evsparse.egru_plan_sequence(
                            (x := next_input()), *(x.new_zeros(1, x.shape[1], H),) * 2, arena, meta)[:1])

                run = plan_run(lambda inp=inp: inp)
                timing_run = run if frames is None else plan_run(frames)

            weights = [(w_ih.float(), masks.get(f"weight_ih_l{k}")), (w_hh.float(), masks.get(f"weight_hh_l{k}"))]
            (p_ih, p_hh), choice = pack_layer(weights, layouts[k], timing_run, "EGRU.sparsify", weight_dtype, pace_s)
            if choice is not None:  # the next layer's timing input
                inp = run(p_ih, p_hh)[0]
            layers.append((p_ih, p_hh, b_ih, b_hh, thr))
            choices.append(choice)
        module = cls(egru.input_size, egru.hidden_size, egru.batch_first, layers)
        if example is not None and example.device.type == "cpu":  # then whole models, as they stream
            module, module.model_choice = choose_model_layouts(
                module.layouts, lambda groups: cls.from_module(egru, weight_masks, groups, weight_dtype=weight_dtype),
                list(example.unbind(0)), example.shape[1], pace_s, current=module)
        module.layout_choices = choices
        return module

    from_egru = alias_classmethod("from_module", "PackedEGRU.from_egru", "PackedEGRU.from_module")

    def _collect_args(self, k: int):
        v = self._layer_views()[k]
        (w_ih, w_hh), (b_ih, b_hh, thr) = v.weights, v.vectors
        return (*op_args(w_ih), *op_args(w_hh), b_ih, b_hh, thr)

    def _collect_stack_args(self) -> tuple:
        return ([a for k in range(self.num_layers) for a in self._collect_args(k)],)

    @accepts_unbatched("hidden_size", state_names=("c", "y"))
    def forward(self, x: torch.Tensor, state: Optional[State] = None) -> tuple[torch.Tensor, State]:
        x = check_sequence_input(x, self.input_size, self.batch_first, "PackedEGRU").contiguous()
        c0, y0 = _initial_state(state, self.num_layers, x.shape[1], self.hidden_size, x, "PackedEGRU")
        self._activity.start()
        if self.plan_arena.device.type == "cpu":  # the whole stack over the sequence: one op call
            if not torch.compiler.is_compiling():
                self._ensure_packed_valid()
            out, c, y, nonzero = torch.ops.evsparse.egru_plan_sequence(x, c0.contiguous(), y0.contiguous(),
                                                                       self.plan_arena, self.plan_meta)
            self._activity.add_counts(nonzero, [x.shape[0] * x.shape[1] * self.hidden_size] * self.num_layers)
        else:  # the GPU kernels take the per-layer views
            inp, c_last, y_last = x, [], []
            for k in range(self.num_layers):
                inp, c_k, y_k = torch.ops.evsparse.egru_sequence(inp, c0[k].contiguous(), y0[k].contiguous(),
                                                                 *self._args(k))
                c_last.append(c_k)
                y_last.append(y_k)
                self._activity.add(inp)
            out, c, y = inp, torch.stack(c_last), torch.stack(y_last)
        out = out.transpose(0, 1) if self.batch_first else out
        return out, (c, y)

    def step(self, x_t: torch.Tensor, state: Optional[State] = None) -> tuple[torch.Tensor, State]:
        """One step of every layer in one op call: ``x_t`` [B, input_size] -> (``y_t`` [B, H], state);
        unbatched, [input_size] -> [H] with each state tensor [num_layers, H]. Functional: the state
        passed in is not written (see :meth:`stream` for the in-place form)."""
        call = self._plan_call
        if (call is not None and type(state) is tuple and len(state) == 2
                and self._packed_generation == self._buffers.generation and not torch.compiler.is_compiling()):
            y_t, c, y = self._step_op(x_t, state[0], state[1], call[0], call[1])  # the C++ op checks every shape
            return y_t, (c, y)
        return self._step(x_t, state)

    @accepts_unbatched("hidden_size", step=True, state_names=("c", "y"))
    def _step(self, x_t: torch.Tensor, state: Optional[State] = None) -> tuple[torch.Tensor, State]:
        if not isinstance(x_t, torch.Tensor) or x_t.dim() != 2 or x_t.shape[-1] != self.input_size:
            raise ValueError(f"PackedEGRU.step: x_t must be [B, {self.input_size}] or [{self.input_size}], "
                             f"got {getattr(x_t, 'shape', None)}")
        c0, y0 = _initial_state(state, self.num_layers, x_t.shape[0], self.hidden_size, x_t, "PackedEGRU.step")
        if not torch.compiler.is_compiling():  # traced: the buffers are export's/compile's own
            self._ensure_packed_valid()
        if self.plan_arena.device.type == "cpu":
            y_t, c, y = torch.ops.evsparse.egru_plan_step.default(x_t.contiguous(), c0.contiguous(), y0.contiguous(),
                                                                  self.plan_arena, self.plan_meta)
        else:  # the GPU kernels take the per-layer views
            y_t, c, y = torch.ops.evsparse.egru_stack_step(x_t.contiguous(), c0.contiguous(), y0.contiguous(),
                                                           *self._stack_args())
        return y_t, (c, y)

    def stream(self, batch_size: Optional[int] = None, state: Optional[State] = None) -> Stream:
        """A :class:`~evsparse.nn.Stream` that steps this model with its state updated in place:
        ``s = model.stream(); y_t = s.step(x_t)`` (``x_t`` [input_size], or [batch_size, input_size];
        ``y_t`` is the stream's buffer, overwritten by the next step). ``state``: an initial (c, y),
        copied."""
        return Stream(self, batch_size, state, self.hidden_size)

    def _stream_bind(self, state: tuple, out_shape: tuple) -> tuple:
        c, y = state
        return y[-1], (c, y, self.plan_arena, self.plan_meta)

    def activity(self) -> list[float]:
        """Per layer, the fraction of nonzero event outputs over the last forward."""
        return self._activity.fractions()

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
                f"layouts={self.layouts}, batch_first={self.batch_first}")


def __getattr__(name: str):
    if name == "SparseEGRU":  # renamed: the inference twins are Packed<Layer> (PackedEGRU, PackedLinearRNN)
        moved("evsparse.nn.SparseEGRU", "evsparse.nn.PackedEGRU")
        return PackedEGRU
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
