"""Multiply-accumulates per token of recurrent models: dense, with weight sparsity, with activity
sparsity, and both, counted the way the literature counts them.

Per recurrent layer with ``G`` gate blocks (EGRU/GRU 3, LSTM 4, RNN 1), input size ``N``, hidden size
``H``, weight densities ``d_ih``, ``d_hh`` (fraction of nonzero weights), input activity ``a_in`` (fraction
of nonzero inputs) and output activity ``a`` (fraction of nonzero outputs, which feed back)::

    dense           = G H (N + H)
    weight_sparse   = G H (d_ih N + d_hh H)
    activity_sparse = G H (a_in N + a H)
    combined        = G H (d_ih a_in N + d_hh a H)

A ``SparseLinearRNN`` layer (state width ``W``: ``S``, or ``2S`` complex; output size ``O``) counts its input
product, its diagonal recurrence (``S`` MACs real, ``4S`` complex; never skipped) and its output
product, with ``d_ih``/``d_hh`` the densities of ``W_in``/``W_out``, ``a_in`` its input's activity and
``a`` its state's::

    combined = d_ih a_in N W + d_hh a W O + recurrence

Only the input and recurrent products count (as for AWD-LSTM's 20.2M MACs per token); embedding
lookups, other linear layers (decoders) and biases are reported separately. Activities are 1 unless
``inputs`` are given, in which case the model is run once and each layer's activity measured: the
EGRU's event outputs (``EGRU.activity()``) and each layer's actual input. ``torch.nn`` RNN outputs are
dense: their activity is measured on the output of the whole module and taken as 1 inside it.
With ``inputs``, the other ``nn.Linear`` layers are also counted with their zero inputs skipped
(``d a_in N O``, ``a_in`` measured on each one's actual input): a decoder fed an EGRU's event output
is an activity-sparse product too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

import torch
from torch import nn

from .nn.egru import EGRU
from .nn.linear_rnn import SparseLinearRNN

__all__ = ["LayerMACs", "LinearRNNLayerMACs", "MACReport", "count"]


@dataclass
class LayerMACs:
    name: str
    kind: str
    input_size: int
    hidden_size: int
    gates: int
    density_ih: float = 1.0
    density_hh: float = 1.0
    input_activity: float = 1.0
    activity: float = 1.0

    def _macs(self, d_ih, d_hh, a_in, a) -> float:
        return self.gates * self.hidden_size * (d_ih * a_in * self.input_size + d_hh * a * self.hidden_size)

    @property
    def dense(self) -> float:
        return self._macs(1, 1, 1, 1)

    @property
    def weight_sparse(self) -> float:
        return self._macs(self.density_ih, self.density_hh, 1, 1)

    @property
    def activity_sparse(self) -> float:
        return self._macs(1, 1, self.input_activity, self.activity)

    @property
    def combined(self) -> float:
        return self._macs(self.density_ih, self.density_hh, self.input_activity, self.activity)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(dense=self.dense, weight_sparse=self.weight_sparse, activity_sparse=self.activity_sparse,
                 combined=self.combined)
        return d


@dataclass
class LinearRNNLayerMACs(LayerMACs):
    """One ``SparseLinearRNN`` layer: ``hidden_size`` is the state width, ``density_hh`` the output
    weight's density and ``activity`` the state's (see the module docstring)."""

    output_size: int = 0
    recurrence: float = 0.0

    def _macs(self, d_ih, d_hh, a_in, a) -> float:
        return (d_ih * a_in * self.input_size * self.hidden_size + d_hh * a * self.hidden_size * self.output_size
                + self.recurrence)


@dataclass
class MACReport:
    """MACs per token; ``totals`` over the recurrent layers, ``other`` reported separately."""

    layers: list[LayerMACs]
    other: dict = field(default_factory=dict)

    @property
    def totals(self) -> dict:
        keys = ("dense", "weight_sparse", "activity_sparse", "combined")
        return {k: float(sum(getattr(layer, k) for layer in self.layers)) for k in keys}

    def to_dict(self) -> dict:
        return {"layers": [layer.to_dict() for layer in self.layers], "totals": self.totals, "other": dict(self.other)}

    def __str__(self) -> str:
        head = (f"{'layer':<22}{'kind':<6}{'in':>6}{'H':>6}{'d_ih':>7}{'d_hh':>7}{'a_in':>7}{'a':>7}"
                f"{'dense':>12}{'weight':>12}{'activity':>12}{'combined':>12}")
        lines = [head, "-" * len(head)]
        for r in self.layers:
            lines.append(f"{r.name:<22}{r.kind:<6}{r.input_size:>6}{r.hidden_size:>6}{r.density_ih:>7.3f}"
                         f"{r.density_hh:>7.3f}{r.input_activity:>7.3f}{r.activity:>7.3f}{_m(r.dense):>12}"
                         f"{_m(r.weight_sparse):>12}{_m(r.activity_sparse):>12}{_m(r.combined):>12}")
        t = self.totals
        lines.append(f"{'total (per token)':<68}{_m(t['dense']):>12}{_m(t['weight_sparse']):>12}"
                     f"{_m(t['activity_sparse']):>12}{_m(t['combined']):>12}")
        for k, v in self.other.items():
            lines.append(f"{'  not counted: ' + k:<68}{_m(v):>12}")
        return "\n".join(lines)


def _m(v: float) -> str:
    return f"{v / 1e6:.3f}M"


_GATES = {nn.LSTM: 4, nn.GRU: 3, nn.RNN: 1}


def _density(name: str, param: torch.Tensor, masks: Optional[dict]) -> float:
    if masks is not None and name in masks:
        mask = masks[name]
        if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != tuple(param.shape):
            raise ValueError(f"macs.count: the mask for {name} must be a tensor of shape {list(param.shape)}, "
                             f"got {getattr(mask, 'shape', type(mask).__name__)}")
        if mask.dtype != torch.bool and not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError(f"macs.count: the mask for {name} must be boolean or hold only 0 and 1")
        return _nonzero_fraction(mask)
    return _nonzero_fraction(param)


def _nonzero_fraction(t: torch.Tensor) -> float:
    """Fraction of nonzero entries; 0 for an empty tensor (a length-0 sequence does no work), not NaN."""
    return float((t.detach() != 0).sum()) / t.numel() if t.numel() else 0.0


def count(model: nn.Module, inputs=None, weight_masks: Optional[dict] = None) -> MACReport:
    """Walks ``model``'s recurrent layers (``evsparse.nn.EGRU``, ``SparseLinearRNN``, ``torch.nn.LSTM``/``GRU``/``RNN``) in
    module order. ``inputs``: a tensor or tuple passed to ``model(...)`` once (under ``no_grad``) to
    measure activities. ``weight_masks``: {full parameter name: mask}; without it densities are the
    fraction of nonzero weights."""
    recurrent = [(n, m) for n, m in model.named_modules() if isinstance(m, (EGRU, SparseLinearRNN, nn.RNNBase))]
    if not recurrent:
        raise ValueError("macs.count: the model has no EGRU/SparseLinearRNN/LSTM/GRU/RNN layer")
    inside = {id(p) for _, m in recurrent for p in m.parameters()}
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear) and id(m.weight) not in inside]
    measured_in: dict[str, float] = {}
    measured_out: dict[str, float] = {}
    if inputs is not None:
        hooks = []
        for name, mod in recurrent + linears:
            def pre(m, args, name=name):
                measured_in[name] = _nonzero_fraction(args[0])

            def post(m, args, out, name=name):
                y = out[0] if isinstance(out, tuple) else out
                measured_out[name] = _nonzero_fraction(y)

            hooks.append(mod.register_forward_pre_hook(pre))
            if not isinstance(mod, nn.Linear):
                hooks.append(mod.register_forward_hook(post))
        try:
            with torch.no_grad():
                model(*inputs) if isinstance(inputs, tuple) else model(inputs)
        finally:
            for h in hooks:
                h.remove()

    layers: list[LayerMACs] = []
    for name, mod in recurrent:
        prefix = f"{name}." if name else ""
        if isinstance(mod, SparseLinearRNN):
            layers += _linear_rnn_layers(prefix, mod, measured_in.get(name, 1.0), inputs is not None, weight_masks)
            continue
        if isinstance(mod, EGRU):
            gates, kind, acts = 3, "EGRU", (mod.activity() if inputs is not None else [])
        else:
            gates = next(g for t, g in _GATES.items() if isinstance(mod, t))
            kind, acts = type(mod).__name__, []
            if getattr(mod, "bidirectional", False) or getattr(mod, "proj_size", 0):
                raise ValueError(f"macs.count: {name}: bidirectional or projected RNNs are not supported")
        for k in range(mod.num_layers):
            w_ih = getattr(mod, f"weight_ih_l{k}")
            w_hh = getattr(mod, f"weight_hh_l{k}")
            H = w_hh.shape[1]
            if k == 0:
                a_in = measured_in.get(name, 1.0)
            else:
                a_in = layers[-1].activity
            a = acts[k] if k < len(acts) else (measured_out.get(name, 1.0) if k == mod.num_layers - 1 else 1.0)
            layers.append(LayerMACs(
                name=f"{prefix}l{k}", kind=kind, input_size=w_ih.shape[1], hidden_size=H, gates=gates,
                density_ih=_density(f"{prefix}weight_ih_l{k}", w_ih, weight_masks),
                density_hh=_density(f"{prefix}weight_hh_l{k}", w_hh, weight_masks),
                input_activity=a_in, activity=a))

    other = {}
    if linears:
        other["other nn.Linear (e.g. decoder)"] = float(sum(m.in_features * m.out_features for _, m in linears))
        if inputs is not None:
            other["other nn.Linear, zero inputs skipped"] = float(sum(
                measured_in.get(n, 1.0) * _density(f"{n}.weight" if n else "weight", m.weight, weight_masks)
                * m.in_features * m.out_features for n, m in linears))
    biases = sum(p.numel() for _, m in recurrent for n, p in m.named_parameters() if n.startswith("bias"))
    if biases:
        other["bias additions"] = float(biases)
    residual = sum(m.output_size * sum(m.residual) for _, m in recurrent if isinstance(m, SparseLinearRNN))
    if residual:
        other["residual additions"] = float(residual)
    return MACReport(layers, other)


def _linear_rnn_layers(prefix: str, mod: SparseLinearRNN, input_activity: float, measured: bool,
                       masks: Optional[dict]) -> list[LinearRNNLayerMACs]:
    out, a_in = [], input_activity
    for k in range(mod.num_layers):
        w_in, w_out = getattr(mod, f"weight_in_l{k}"), getattr(mod, f"weight_out_l{k}")
        out.append(LinearRNNLayerMACs(
            name=f"{prefix}l{k}", kind="LRNN", input_size=w_in.shape[1], hidden_size=mod.width, gates=1,
            density_ih=_density(f"{prefix}weight_in_l{k}", w_in, masks),
            density_hh=_density(f"{prefix}weight_out_l{k}", w_out, masks),
            input_activity=a_in, activity=mod.state_activity()[k] if measured else 1.0,
            output_size=mod.output_size, recurrence=float(4 * mod.state_size if mod.complex else mod.state_size)))
        a_in = mod.activity()[k] if measured else 1.0
    return out
