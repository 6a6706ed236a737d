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

An ``S5Stack`` (the S5 family, :mod:`evsparse.nn.s5`) counts every product, encoder and decoder
included (as the paper's effective MACs do), one row each (``ProductMACs``): the encoder, per block
``B`` (folded with BatchNorm, its input is the block's input; ``2 P/2 H`` real MACs, plus the diagonal
recurrence ``4 P/2`` that is never skipped), ``C`` (input: the ReLU'd states; ``2 H P/2``, plus ``D``'s
``H``), the GLU's ``W2`` (input: the activation), and the decoder. With ``inputs`` each product's
``combined`` is the measured **effective** count: per step, the nonzero weights in the columns of the
nonzero inputs (exact, whatever the correlation of pruned columns and silent inputs), averaged over
steps. ``report.memory`` gives the weights' counts and bytes.

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
import torch.nn.functional as F
from torch import nn

from .nn.egru import EGRU
from .nn.linear_rnn import SparseLinearRNN
from .nn.s5 import S5Stack

__all__ = ["LayerMACs", "LinearRNNLayerMACs", "ProductMACs", "MACReport", "count"]


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
class ProductMACs(LayerMACs):
    """One product ``hidden_size x input_size`` of an ``S5Stack`` (``density_ih``: its weight's, ``input_activity``:
    its input's) plus ``elementwise`` MACs never skipped; ``effective``: the measured mean count of nonzero
    weights x nonzero inputs per step, which ``combined`` reports when measured."""

    elementwise: float = 0.0
    effective: Optional[float] = None

    def _macs(self, d_ih, d_hh, a_in, a) -> float:
        return d_ih * a_in * self.input_size * self.hidden_size + self.elementwise

    @property
    def combined(self) -> float:
        return super().combined if self.effective is None else self.effective + self.elementwise


@dataclass
class MACReport:
    """MACs per token; ``totals`` over the recurrent layers, ``other`` reported separately; ``memory``
    (S5 stacks): weight counts and bytes."""

    layers: list[LayerMACs]
    other: dict = field(default_factory=dict)
    memory: dict = field(default_factory=dict)

    @property
    def totals(self) -> dict:
        keys = ("dense", "weight_sparse", "activity_sparse", "combined")
        return {k: float(sum(getattr(layer, k) for layer in self.layers)) for k in keys}

    def to_dict(self) -> dict:
        return {"layers": [layer.to_dict() for layer in self.layers], "totals": self.totals, "other": dict(self.other),
                "memory": dict(self.memory)}

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


def _run_once(model: nn.Module, inputs, hooks: list) -> None:
    """``model(inputs)`` once under ``no_grad`` (a tuple is unpacked), then the ``hooks`` removed."""
    try:
        with torch.no_grad():
            model(*inputs) if isinstance(inputs, tuple) else model(inputs)
    finally:
        for h in hooks:
            h.remove()


def count(model: nn.Module, inputs=None, weight_masks: Optional[dict] = None) -> MACReport:
    """Walks ``model``'s recurrent layers (``evsparse.nn.EGRU``, ``SparseLinearRNN``, ``torch.nn.LSTM``/``GRU``/``RNN``) in
    module order. ``inputs``: a tensor or tuple passed to ``model(...)`` once (under ``no_grad``) to
    measure activities. ``weight_masks``: {full parameter name: mask}; without it densities are the
    fraction of nonzero weights."""
    if isinstance(model, S5Stack):
        return _s5_count(model, inputs, weight_masks)
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
        _run_once(model, inputs, hooks)

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


def _masked(name: str, param: torch.Tensor, masks: Optional[dict]) -> torch.Tensor:
    p = param.detach()
    if masks is not None and name in masks:
        _density(name, p, masks)  # checks the mask's shape and values
        p = p * masks[name].to(p.dtype)
    return p


def _s5_count(model: S5Stack, inputs, masks: Optional[dict]) -> MACReport:
    """The S5 rows (module docstring): each product as the inference plan runs it, i.e. as the real
    matrices ``[B_re; B_im]`` (pairs: a complex entry is two real rows, both kept or pruned), ``[2 C_re |
    -2 C_im]``, ``W2``, encoder and decoder, with their nonzero counts per input column."""
    H, S = model.d_model, model.state_size // 2
    products = [("encoder_weight", _masked("encoder_weight", model.encoder_weight, masks).ne(0).sum(0), "enc", 0.0)]
    for k, block in enumerate(model.blocks):
        B = _masked(f"blocks.{k}.s5.B", block.s5.B, masks).ne(0).any(-1)  # [S, H] complex entries kept
        C = _masked(f"blocks.{k}.s5.C", block.s5.C, masks).ne(0)  # [H, S, 2]
        W2 = _masked(f"blocks.{k}.glu_weight", block.glu_weight, masks).ne(0)
        products += [(f"blocks.{k}.s5.B", 2 * B.sum(0), "S5.B", 4.0 * S),
                     (f"blocks.{k}.s5.C", torch.cat([C[..., 0].sum(0), C[..., 1].sum(0)]), "S5.C", float(H)),
                     (f"blocks.{k}.glu_weight", W2.sum(0), "GLU", 0.0)]
    if model.decoder_weight is not None:
        products.append(("decoder_weight", _masked("decoder_weight", model.decoder_weight, masks).ne(0).sum(0),
                         "dec", 0.0))
    measured = _s5_product_inputs(model, inputs) if inputs is not None else None
    layers = []
    for i, (name, col_nnz, kind, elementwise) in enumerate(products):
        n_in = col_nnz.numel()
        n_out = {"S5.B": 2 * S, "S5.C": H, "GLU": H, "enc": H, "dec": model.out_features}[kind]
        row = ProductMACs(name=name, kind=kind, input_size=n_in, hidden_size=n_out, gates=1,
                          density_ih=float(col_nnz.sum()) / (n_in * n_out), elementwise=elementwise)
        if measured is not None:
            x = measured[i].reshape(-1, n_in).ne(0)
            row.input_activity = _nonzero_fraction(x)
            row.effective = float((x.to(torch.float64) @ col_nnz.to(torch.float64)).mean()) if x.shape[0] else 0.0
        layers.append(row)
    weights = [model.encoder_weight] + [w for b in model.blocks for w in (b.s5.B, b.s5.C, b.glu_weight)]
    weights += [model.decoder_weight] if model.decoder_weight is not None else []
    n_weights = sum(w.numel() for w in weights)
    nonzero = sum(float(r.density_ih) * r.input_size * r.hidden_size for r in layers)
    vectors = sum(p.numel() for p in model.parameters()) - n_weights
    other = {"GLU gate products (x1 * sigmoid)": float(H * model.num_layers),
             "residual additions": float(H * model.num_layers),
             "bias additions": float(H * (1 + 2 * model.num_layers) + (model.out_features if model.decoder_weight
                                                                      is not None else 0))}
    memory = {"weights": float(n_weights), "nonzero weights (as the plan stores them)": nonzero,
              "other parameters": float(vectors), "dense fp32 bytes": 4.0 * (n_weights + vectors)}
    return MACReport(layers, other, memory)


def _s5_product_inputs(model: S5Stack, inputs) -> list[torch.Tensor]:
    """Runs ``model`` once and returns every product's input in plan order: the stack's input, per block
    its input (B reads it once BatchNorm is folded), the ReLU'd states [re | im] and the activation,
    then the last block's output."""
    got: list = []
    hooks = [model.register_forward_pre_hook(lambda m, args: got.append(("x", args[0])))]
    for block in model.blocks:
        hooks.append(block.register_forward_pre_hook(lambda m, args: got.append(("B", args[0]))))

        def s5_hook(m, args, out):
            re, im = m.readout_input(m.states(*args))
            y = out[0]
            got.append(("C", torch.cat([re, im], -1)))
            got.append(("W2", F.relu(y) if m.state_relu else F.gelu(y)))
        hooks.append(block.s5.register_forward_hook(s5_hook))
        hooks.append(block.register_forward_hook(lambda m, args, out: got.append(("out", out[0]))))
    _run_once(model, inputs, hooks)
    x = got[0][1]
    x = x.unsqueeze(0) if x.dim() == 2 else x  # unbatched [T, in]
    seq = [x] + [t for kind, t in got[1:] if kind != "out"]
    if model.decoder_weight is not None:
        seq.append([t for kind, t in got if kind == "out"][-1])
    return seq
