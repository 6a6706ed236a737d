"""The sparse linear RNN: a diagonal linear recurrence between pruned projections, with ReLU activity
sparsity (the second model family, after Pierro et al. 2025's audio denoisers).

**Deprecated**: written from the paper's abstract before its model was known; the family is now
:class:`evsparse.nn.S5Stack` (:mod:`evsparse.nn.s5`), the published model. Constructing a
``SparseLinearRNN`` warns (``DeprecationWarning``); it keeps working until it is removed.

Per layer ``k``::

    u_t = gamma * (W_in x_t + b_in)          # W_in [width, in]; the input product
    h_t = a * h_{t-1} + u_t                  # diagonal: a real [S], or complex [S] (width = 2S, [re | im])
    y_t = relu(W_out h_t + b_out [+ x_t])    # W_out [out, width]; residual when in == out

``|a| = exp(-exp(nu_log))`` keeps every eigenvalue inside the unit circle whatever the optimizer does;
a complex ``a`` also has phase ``exp(theta_log)``. ``gamma = sqrt(1 - |a|^2)`` (``normalize=True``)
keeps the state's scale independent of how slow a mode is. The ReLU after the residual sum makes each
layer's output, the next layer's input, exactly zero for most units: the next input product skips them.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from .. import plan
from .._contract import LINEAR_RNN_LAYER_ARGS
from .._deprecation import linear_rnn_deprecated
from ._recurrent import (ActivityLog, PlanModule, Stream, accepts_unbatched, check_sequence_input, plan_runner,
                         checked_weight_masks, fast_op, op_args, pack_layer, per_layer_layouts, step_through_forward,
                         timing_example)

__all__ = ["SparseLinearRNN", "PackedLinearRNN", "diagonal_scan", "diagonal_step"]

SCANS = ("parallel", "loop")


def diagonal_scan(u: torch.Tensor, a: torch.Tensor, h0: Optional[torch.Tensor] = None,
                  method: str = "parallel") -> torch.Tensor:
    """All states of ``h_t = a * h_{t-1} + u_t`` for ``u`` [T, ...] (real or complex) and ``a`` broadcast
    over the trailing dimensions; ``h_{-1} = h0`` (zeros if None).

    ``"parallel"``: a Hillis-Steele scan, ``ceil(log2 T)`` vectorised steps of O(T) work each (at offset
    ``d`` every ``h_t`` adds ``a^d h_{t-d}``), then ``a^(t+1) h0``. ``"loop"``: one step per time step.
    Both are differentiable; the parallel one is the faster to train with at T >~ 16 on CPU.
    """
    if method not in SCANS:
        raise ValueError(f"diagonal_scan: method must be one of {SCANS}, got {method!r}")
    T = u.shape[0]
    if T == 0:
        return u.clone()
    if method == "loop":
        h = torch.zeros_like(u[0]) if h0 is None else h0.to(u.dtype)
        states = []
        for t in range(T):
            h = a * h + u[t]
            states.append(h)
        return torch.stack(states)
    h, a_d, d = u, a, 1
    while d < T:
        h = torch.cat([h[:d], h[d:] + a_d * h[:-d]])
        a_d, d = a_d * a_d, 2 * d
    if h0 is not None:
        powers = torch.cumprod(a.unsqueeze(0).expand(T, *a.shape), dim=0)  # a^(t+1)
        h = h + powers.reshape(T, *([1] * (u.dim() - 1 - a.dim())), *a.shape) * h0.to(u.dtype)
    return h


def diagonal_step(a_re: torch.Tensor, a_im: Optional[torch.Tensor], h: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """One step ``a * h + u`` on real tensors [B, width]: ``a_re`` alone is a real diagonal; with
    ``a_im`` the diagonal is complex and ``h``, ``u`` hold ``[re | im]`` (what the fused op computes)."""
    if a_im is None:
        return torch.addcmul(u, a_re, h)
    S = a_re.shape[0]
    hr, hi = h[:, :S], h[:, S:]
    return torch.cat([a_re * hr - a_im * hi, a_im * hr + a_re * hi], dim=-1) + u


def _check_input(x, input_size: int, batch_first: bool, who: str) -> torch.Tensor:
    x = check_sequence_input(x, input_size, batch_first, who)
    if not x.is_floating_point():
        raise ValueError(f"{who}: input must be floating point, got {x.dtype}")
    return x


def _initial_state(state, num_layers: int, batch: int, width: int, like: torch.Tensor, who: str) -> torch.Tensor:
    if state is None:
        return like.new_zeros((num_layers, batch, width))
    expected = (num_layers, batch, width)
    if not isinstance(state, torch.Tensor) or tuple(state.shape) != expected:
        raise ValueError(f"{who}: state must be a tensor of shape {list(expected)} "
                         f"([num_layers, B, state width]), got {getattr(state, 'shape', None)}")
    if state.device != like.device:
        raise ValueError(f"{who}: state is on {state.device} but the input is on {like.device}")
    return state


class SparseLinearRNN(nn.Module):
    """A stack of diagonal linear recurrent layers with pruned-able projections and ReLU outputs.
    Deprecated: use :class:`evsparse.nn.S5Stack` (see the module docstring).

    Args:
        input_size: features of ``x``.
        state_size: ``S``, the diagonal's size per layer (complex: ``S`` complex modes, ``2S`` floats).
        output_size: features of every layer's output (and of the next layer's input).
        num_layers: stacked layers.
        complex: complex-diagonal recurrence (oscillating modes) instead of a real one.
        residual: add each layer's input to its output before the ReLU where the widths agree
            (every layer but the first when ``input_size != output_size``).
        normalize: scale the input product by ``sqrt(1 - |a|^2)``.
        r_min: initial ``|a|`` uniform in ``[r_min, r_max]`` (the memory time scales).
        r_max: see ``r_min``.
        max_phase: initial phases uniform in ``[0, max_phase]`` (complex only).
        dropout: dropout on each layer's output but the last, while training.
        scan: ``"parallel"`` (log-depth scan over time, default) or ``"loop"`` for the training forward.

    Parameters (layer ``k``): ``weight_in_l{k}`` [width, in_k], ``bias_in_l{k}`` [width],
    ``weight_out_l{k}`` [output_size, width], ``bias_out_l{k}`` [output_size], ``nu_log_l{k}`` [S] and,
    complex, ``theta_log_l{k}`` [S]. The weights are what :mod:`evsparse.prune` prunes.

    ``y, state = rnn(x, state=None)``: ``x`` [T, B, in] (or [B, T, in] with ``batch_first``), ``y`` the
    last layer's outputs [T, B, output_size], ``state`` every layer's last ``h`` [num_layers, B, width]
    (complex: ``[re | im]``). ``step`` does one time step; :meth:`sparsify` gives the inference module on
    the fused sparse kernels.
    """

    def __init__(self, input_size: int, state_size: int, output_size: int, num_layers: int = 1,
                 complex: bool = False, residual: bool = True, normalize: bool = True, bias: bool = True,
                 r_min: float = 0.5, r_max: float = 0.99, max_phase: float = math.pi / 4, dropout: float = 0.0,
                 batch_first: bool = False, scan: str = "parallel"):
        linear_rnn_deprecated()
        super().__init__()
        if min(input_size, state_size, output_size, num_layers) < 1:
            raise ValueError("SparseLinearRNN: input_size, state_size, output_size and num_layers must be >= 1")
        if not 0.0 < r_min <= r_max < 1.0:
            raise ValueError(f"SparseLinearRNN: need 0 < r_min <= r_max < 1, got r_min={r_min}, r_max={r_max}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"SparseLinearRNN: dropout must be in [0, 1), got {dropout}")
        if scan not in SCANS:
            raise ValueError(f"SparseLinearRNN: scan must be one of {SCANS}, got {scan!r}")
        self.input_size, self.state_size, self.output_size = input_size, state_size, output_size
        self.num_layers, self.complex, self.normalize, self.bias = num_layers, complex, normalize, bias
        self.r_min, self.r_max, self.max_phase = r_min, r_max, max_phase
        self.dropout, self.batch_first, self.scan = dropout, batch_first, scan
        self.width = 2 * state_size if complex else state_size
        self.residual = [residual and self.layer_input_size(k) == output_size for k in range(num_layers)]
        for k in range(num_layers):
            n_in = self.layer_input_size(k)
            self.register_parameter(f"weight_in_l{k}", nn.Parameter(torch.empty(self.width, n_in)))
            self.register_parameter(f"weight_out_l{k}", nn.Parameter(torch.empty(output_size, self.width)))
            self.register_parameter(f"bias_in_l{k}", nn.Parameter(torch.empty(self.width)) if bias else None)
            self.register_parameter(f"bias_out_l{k}", nn.Parameter(torch.empty(output_size)) if bias else None)
            self.register_parameter(f"nu_log_l{k}", nn.Parameter(torch.empty(state_size)))
            self.register_parameter(f"theta_log_l{k}", nn.Parameter(torch.empty(state_size)) if complex else None)
        self._activity, self._state_activity = ActivityLog(), ActivityLog()
        self._output_means: list[torch.Tensor] = []
        self.reset_parameters()

    def layer_input_size(self, k: int) -> int:
        return self.input_size if k == 0 else self.output_size

    @torch.no_grad()
    def reset_parameters(self) -> None:
        for k in range(self.num_layers):
            n_in = self.layer_input_size(k)
            nn.init.uniform_(getattr(self, f"weight_in_l{k}"), -1 / math.sqrt(n_in), 1 / math.sqrt(n_in))
            nn.init.uniform_(getattr(self, f"weight_out_l{k}"), -1 / math.sqrt(self.width), 1 / math.sqrt(self.width))
            for name in ("bias_in", "bias_out"):
                b = getattr(self, f"{name}_l{k}")
                if b is not None:
                    b.zero_()
            # |a| uniform on [r_min, r_max] in the ring's area, as in the LRU initialisation.
            u = torch.rand(self.state_size)
            r = torch.sqrt(u * (self.r_max ** 2 - self.r_min ** 2) + self.r_min ** 2)
            getattr(self, f"nu_log_l{k}").copy_(torch.log(-torch.log(r)))
            if self.complex:
                phase = torch.rand(self.state_size) * self.max_phase
                getattr(self, f"theta_log_l{k}").copy_(torch.log(phase.clamp_min(1e-4)))

    def layer_params(self, k: int):
        """(weight_in, bias_in, weight_out, bias_out, nu_log, theta_log) of layer k (biases and
        theta_log may be None)."""
        return tuple(getattr(self, f"{n}_l{k}") for n in
                     ("weight_in", "bias_in", "weight_out", "bias_out", "nu_log", "theta_log"))

    def decay(self, k: int) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Layer k's diagonal ``a`` as (real part, imaginary part or None), each [S]."""
        nu_log, theta_log = getattr(self, f"nu_log_l{k}"), getattr(self, f"theta_log_l{k}")
        mag = torch.exp(-torch.exp(nu_log))
        if theta_log is None:
            return mag, None
        phase = torch.exp(theta_log)
        return mag * torch.cos(phase), mag * torch.sin(phase)

    def input_gain(self, k: int) -> torch.Tensor:
        """The per-row factor ``gamma`` of layer k's input product, [width]."""
        nu_log = getattr(self, f"nu_log_l{k}")
        if not self.normalize:
            return torch.ones(self.width, dtype=nu_log.dtype, device=nu_log.device)
        gamma = torch.sqrt(-torch.expm1(-2.0 * torch.exp(nu_log)))  # sqrt(1 - |a|^2), exact near |a| = 1
        return torch.cat([gamma, gamma]) if self.complex else gamma

    def _recurrence(self, k: int, u: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
        a_re, a_im = self.decay(k)
        if a_im is None:
            return diagonal_scan(u, a_re, h0, self.scan)
        S = self.state_size
        uc = torch.complex(u[..., :S], u[..., S:])
        hc = diagonal_scan(uc, torch.complex(a_re, a_im), torch.complex(h0[..., :S], h0[..., S:]), self.scan)
        return torch.cat([hc.real, hc.imag], dim=-1)

    @accepts_unbatched("width")
    def forward(self, x: torch.Tensor, state: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = _check_input(x, self.input_size, self.batch_first, "SparseLinearRNN")
        T, B = x.shape[0], x.shape[1]
        h0 = _initial_state(state, self.num_layers, B, self.width, x, "SparseLinearRNN")
        inp, h_last, self._output_means = x, [], []
        self._activity.start()
        self._state_activity.start()
        for k in range(self.num_layers):
            w_in, b_in, w_out, b_out, _, _ = self.layer_params(k)
            u = F.linear(inp, w_in, b_in) * self.input_gain(k)
            h = self._recurrence(k, u, h0[k])
            self._state_activity.add(h)
            v = F.linear(h, w_out, b_out)
            y = F.relu(v + inp if self.residual[k] else v)
            h_last.append(h[-1] if T > 0 else h0[k])
            self._activity.add(y)
            self._output_means.append(y.mean() if y.numel() else y.new_zeros(()))
            if self.training and self.dropout > 0 and k < self.num_layers - 1:
                y = F.dropout(y, self.dropout, training=True)
            inp = y
        out = inp.transpose(0, 1) if self.batch_first else inp
        return out, torch.stack(h_last)

    @accepts_unbatched("width", step=True)
    def step(self, x_t: torch.Tensor, state: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: ``x_t`` [B, input_size] -> (``y_t`` [B, output_size], state); unbatched,
        [input_size] -> [output_size]."""
        return step_through_forward(self, x_t, state, "SparseLinearRNN.step")

    def activity(self) -> list[float]:
        """Per layer, the fraction of nonzero outputs over the last forward."""
        return self._activity.fractions()

    def state_activity(self) -> list[float]:
        """Per layer, the fraction of nonzero state entries over the last forward (the input activity of
        the output product; a linear state is rarely exactly zero)."""
        return self._state_activity.fractions()

    def activity_loss(self) -> torch.Tensor:
        """Sum over layers of the mean output (an L1 penalty on the non-negative ReLU outputs) of the
        last forward: add ``lambda * rnn.activity_loss()`` to the loss to make activity sparser."""
        if not self._output_means:
            raise RuntimeError("SparseLinearRNN.activity_loss: run a forward pass first")
        return torch.stack(self._output_means).sum()

    def sparsify(self, weight_masks: Optional[dict] = None, layout: Union[str, Sequence] = "auto",
                 example_input: Optional[torch.Tensor] = None,
                 weight_dtype: Optional[torch.dtype] = None) -> "PackedLinearRNN":
        """The inference module on the fused kernels (``torch.ops.evsparse.linear_rnn_*``), float32.

        ``weight_masks`` maps ``weight_in_l{k}`` / ``weight_out_l{k}`` to masks; each weight is packed as
        ``weight * mask`` (``gamma`` folded into the input weight's rows; see :func:`evsparse.pack`).
        ``layout="timed"`` times every combination of layouts per layer on ``example_input`` (a sequence
        like this module's input) and keeps the fastest, as in :meth:`EGRU.sparsify`; a list of
        (input, output) weight layout pairs per layer (``.layouts`` of an earlier result) reproduces a
        choice. ``weight_dtype``: the packed weights' dtype (default float32; ``torch.int8`` quantises
        them per input column, see :func:`evsparse.pack`; biases and decays stay float32)."""
        return PackedLinearRNN.from_module(self, weight_masks, layout, example_input, weight_dtype)

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.state_size}, {self.output_size}, num_layers={self.num_layers}, "
                f"complex={self.complex}, residual={self.residual}, normalize={self.normalize}, bias={self.bias}, "
                f"scan={self.scan!r}, batch_first={self.batch_first}")


class PackedLinearRNN(PlanModule):
    """Deprecated with :class:`SparseLinearRNN` (use :class:`~evsparse.nn.PackedS5Stack`).
    Inference twin of :class:`SparseLinearRNN` on the fused kernels: each step reads only the
    input-weight rows (or nonzeros) of the nonzero inputs. Same call signature and state as the
    training module; float32; no autograd.

    Its weights and vectors live in one plan (buffers ``plan_arena``, ``plan_meta``; see
    :mod:`evsparse.plan`): :meth:`step` is one ``linear_rnn_plan_step`` call on the CPU, and
    :meth:`stream` gives an object whose steps update the state in place, allocating nothing."""

    _plan_kind = plan.LINEAR_RNN
    _WEIGHT_NAMES = ("w_in", "w_out")
    _LAYER_ARGS = LINEAR_RNN_LAYER_ARGS
    _STATE_NAMES = ("h",)
    _STREAM_OP = torch.ops.evsparse.linear_rnn_plan_step_.default

    def __init__(self, input_size: int, state_size: int, output_size: int, complex: bool, batch_first: bool,
                 layers: list):
        super().__init__()
        self.input_size, self.state_size, self.output_size = input_size, state_size, output_size
        self.num_layers, self.complex, self.batch_first = len(layers), complex, batch_first
        self.width = 2 * state_size if complex else state_size
        flags = plan.COMPLEX if complex else 0
        self._init_plan(input_size, self.width, [
            plan.PlanLayer(input_size if k == 0 else output_size, output_size, state_size,
                           flags | (plan.RESIDUAL if residual else 0), (w_in, w_out), (b_in, a_re, a_im, b_out))
            for k, (w_in, b_in, a_re, a_im, w_out, b_out, residual) in enumerate(layers)])
        self.layout_choices: list = [None] * len(layers)  # per layer, a LayoutChoice where sparsify timed layouts
        self._activity = ActivityLog()
        self._step_op = fast_op(torch.ops.evsparse.linear_rnn_plan_step.default)

    def _plan_dims(self) -> tuple:
        return self.input_size, self.width, self.num_layers

    @property
    def residual(self) -> list:
        """Per layer, whether its input is added before the ReLU."""
        return [bool(v.flags & plan.RESIDUAL) for v in self._views]

    def _legacy_layers(self, state_dict, prefix: str) -> list:
        raise ValueError("PackedLinearRNN: state dicts of the per-layer buffer format (w_in_l0_values, ...) do not "
                         "record the residual flags; rebuild the module with sparsify()")

    @classmethod
    @torch.no_grad()
    def from_module(cls, rnn: SparseLinearRNN, weight_masks: Optional[dict] = None,
                    layout: Union[str, Sequence] = "auto",
                    example_input: Optional[torch.Tensor] = None,
                    weight_dtype: Optional[torch.dtype] = None) -> "PackedLinearRNN":
        masks = checked_weight_masks(weight_masks, rnn.num_layers, ("weight_in", "weight_out"))
        inp = timing_example(example_input, layout, rnn, "SparseLinearRNN.sparsify")  # layer k's input when timed
        layouts = per_layer_layouts(layout, rnn.num_layers, "SparseLinearRNN.sparsify")
        layers, choices = [], []
        for k in range(rnn.num_layers):
            w_in, b_in, w_out, b_out, _, _ = rnn.layer_params(k)
            gamma = rnn.input_gain(k).detach().float()
            a_re, a_im = rnn.decay(k)
            zeros_in = torch.zeros(rnn.width, dtype=torch.float32, device=w_in.device)
            b_in = (zeros_in if b_in is None else b_in.detach().float() * gamma).contiguous()
            a_re = a_re.detach().float().contiguous()
            a_im = None if a_im is None else a_im.detach().float().contiguous()
            b_out = (torch.zeros(rnn.output_size, device=w_in.device) if b_out is None
                     else b_out.detach().float().contiguous().clone())
            residual = rnn.residual[k]

            def run(p_in, p_out, inp=inp, b_in=b_in, a_re=a_re, a_im=a_im, b_out=b_out, residual=residual):
                h0 = inp.new_zeros(inp.shape[1], rnn.width)
                return torch.ops.evsparse.linear_rnn_sequence(inp, h0, *op_args(p_in), b_in, a_re, a_im,
                                                              *op_args(p_out), b_out, residual)

            if weight_dtype == torch.int8 and inp is not None:  # int8 runs on plans only: time it there
                n_in = rnn.input_size if k == 0 else rnn.output_size
                flags = (plan.COMPLEX if rnn.complex else 0) | (plan.RESIDUAL if residual else 0)
                run = plan_runner(
                    plan.LINEAR_RNN, n_in, rnn.width,
                    lambda p_in, p_out, vec=(b_in, a_re, a_im, b_out), n_in=n_in, flags=flags: plan.PlanLayer(
                        n_in, rnn.output_size, rnn.state_size, flags, (p_in, p_out), vec),
                    lambda arena, meta, inp=inp: torch.ops.evsparse.linear_rnn_plan_sequence(
                        inp, inp.new_zeros(1, inp.shape[1], rnn.width), arena, meta, rnn.output_size)[:1])

            weights = [((w_in.detach().float() * gamma[:, None]).contiguous(), masks.get(f"weight_in_l{k}")),
                       (w_out.detach().float(), masks.get(f"weight_out_l{k}"))]
            (p_in, p_out), choice = pack_layer(weights, layouts[k], run, "SparseLinearRNN.sparsify", weight_dtype)
            if choice is not None:  # the next layer's timing input
                inp = run(p_in, p_out)[0]
            layers.append((p_in, b_in, a_re, a_im, p_out, b_out, residual))
            choices.append(choice)
        module = cls(rnn.input_size, rnn.state_size, rnn.output_size, rnn.complex, rnn.batch_first, layers)
        module.layout_choices = choices
        return module

    def _collect_args(self, k: int):
        v = self._layer_views()[k]
        (w_in, w_out), (b_in, a_re, a_im, b_out) = v.weights, v.vectors
        return (*op_args(w_in), b_in, a_re, a_im, *op_args(w_out), b_out, bool(v.flags & plan.RESIDUAL))

    def _collect_stack_args(self) -> tuple:
        layers = [self._collect_args(k) for k in range(self.num_layers)]
        return [a for args in layers for a in args[:-1]], [args[-1] for args in layers]  # weights, residual flags

    @accepts_unbatched("width")
    def forward(self, x: torch.Tensor, state: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = _check_input(x, self.input_size, self.batch_first, "PackedLinearRNN").contiguous()
        h0 = _initial_state(state, self.num_layers, x.shape[1], self.width, x, "PackedLinearRNN")
        self._activity.start()
        if self.plan_arena.device.type == "cpu":  # the whole stack over the sequence: one op call
            if not torch.compiler.is_compiling():
                self._ensure_packed_valid()
            out, h, nonzero = torch.ops.evsparse.linear_rnn_plan_sequence(x, h0.contiguous(), self.plan_arena,
                                                                          self.plan_meta, self.output_size)
            steps = x.shape[0] * x.shape[1]
            self._activity.add_counts(nonzero, [steps * v.out_features for v in self._layer_views()])
        else:  # the GPU kernels take the per-layer views
            inp, h_last = x, []
            for k in range(self.num_layers):
                inp, h_k = torch.ops.evsparse.linear_rnn_sequence(inp, h0[k].contiguous(), *self._args(k))
                h_last.append(h_k)
                self._activity.add(inp)
            out, h = inp, torch.stack(h_last)
        out = out.transpose(0, 1) if self.batch_first else out
        return out, h

    def step(self, x_t: torch.Tensor, state: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of every layer in one op call: ``x_t`` [B, input_size] -> (``y_t`` [B, output_size],
        state [num_layers, B, width]); unbatched, [input_size] -> [output_size] with the state
        [num_layers, width]. Functional: the state passed in is not written (see :meth:`stream`)."""
        call = self._plan_call
        if (call is not None and type(state) is torch.Tensor and self._packed_generation == self._buffers.generation
                and not torch.compiler.is_compiling()):
            return self._step_op(x_t, state, call[0], call[1], self.output_size)  # the C++ op checks every shape
        return self._step(x_t, state)

    @accepts_unbatched("width", step=True)
    def _step(self, x_t: torch.Tensor, state: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(x_t, torch.Tensor) or x_t.dim() != 2 or x_t.shape[-1] != self.input_size:
            raise ValueError(f"PackedLinearRNN.step: x_t must be [B, {self.input_size}] or [{self.input_size}], "
                             f"got {getattr(x_t, 'shape', None)}")
        h0 = _initial_state(state, self.num_layers, x_t.shape[0], self.width, x_t, "PackedLinearRNN.step")
        if not torch.compiler.is_compiling():  # traced: the buffers are export's/compile's own
            self._ensure_packed_valid()
        if self.plan_arena.device.type == "cpu":
            return torch.ops.evsparse.linear_rnn_plan_step.default(x_t.contiguous(), h0.contiguous(),
                                                                   self.plan_arena, self.plan_meta, self.output_size)
        return torch.ops.evsparse.linear_rnn_stack_step(x_t.contiguous(), h0.contiguous(), *self._stack_args())

    def stream(self, batch_size: Optional[int] = None, state: Optional[torch.Tensor] = None) -> Stream:
        """A :class:`~evsparse.nn.Stream` that steps this model with its state updated in place:
        ``s = model.stream(); y_t = s.step(x_t)`` (``y_t`` is the stream's output buffer, overwritten
        by the next step). ``state``: an initial state, copied."""
        return Stream(self, batch_size, state, self.output_size)

    def _stream_bind(self, state: tuple, out_shape: tuple) -> tuple:
        out = torch.zeros(out_shape)
        return out, (state[0], out, self.plan_arena, self.plan_meta)

    def activity(self) -> list[float]:
        """Per layer, the fraction of nonzero outputs over the last forward."""
        return self._activity.fractions()

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.state_size}, {self.output_size}, num_layers={self.num_layers}, "
                f"complex={self.complex}, layouts={self.layouts}, residual={self.residual}, "
                f"batch_first={self.batch_first}")
