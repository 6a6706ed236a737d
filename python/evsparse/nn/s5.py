"""The S5 family as Pierro et al. (2025) use it for streaming denoising: S5 layers (Smith et al., 2023)
in prenorm GLU blocks, "relufied" so that every product's input is event-sparse.

S5 layer (MIMO, complex diagonal, conjugate symmetric: ``S = P/2`` complex states stand for ``P``)::

    Lambda_bar = exp(Lambda * dt)                    # zero-order hold, dt = exp(log_step) per state
    B_bar      = (Lambda_bar - 1) / Lambda * B       # B complex [S, H]
    x_k = Lambda_bar * x_{k-1} + B_bar u_k
    y_k = 2 Re(C relu(x_k)) + D * u_k                # relu on the states: read-out only (relufied)

``Lambda`` starts at the HiPPO-LegS normal eigenvalues (block-diagonal over ``blocks``), ``B`` and ``C``
in the eigenbasis (``V^-1 B``, ``C V``), as in the S5 reference code. JAX's relu on a complex number,
which the reference applies to the states, keeps ``z`` where ``Re z > 0`` and zeroes both parts
elsewhere; so does :func:`complex_relu`.

Block (``S5Block``)::

    skip = x; x = BatchNorm(x); y = S5(x); x1 = act(y)          # act: ReLU (relufied) or GELU
    x = x1 * sigmoid(W2 x1 + b2); x = x + skip; [x = ReLU(x)]   # a one-matrix GLU; ReLU if relufied

Stack (``S5Stack``, the paper's model without the STFT): dense encoder ``input_size -> d_model``
(ReLU if relufied), ``num_layers`` blocks, optional dense decoder ``d_model -> output_size``.
:meth:`S5Stack.sparsify` folds each BatchNorm into ``B`` and ``D`` and packs the whole stack into one
plan (``torch.ops.evsparse.s5_plan_step``) where every product reads only its input's nonzeros.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from .. import plan
from ..functional import sparse_linear
from ..layout import choose_layouts, choose_model_layouts, pace_seconds, pack
from ._recurrent import (ActivityLog, FrameCycle, PlanModule, Stream, accepts_unbatched, fast_op, plan_runner,
                         step_through_forward,
                         timing_example)
from .linear_rnn import SCANS, _check_input, _initial_state, diagonal_scan

__all__ = ["S5", "S5Block", "S5Stack", "PackedS5Stack", "hippo_legs_eigen", "complex_relu", "fold_block",
           "width_scale",
           "COMPLEX_PAIR_WEIGHTS"]

ACTIVATIONS = ("relu", "gelu")
# Parameters stored as [..., 2] (re, im) pairs: pruning scores and masks them per complex entry
# (both parts together, evsparse.prune), so the discretised B keeps the mask's pattern.
COMPLEX_PAIR_WEIGHTS = ("B", "C")


def hippo_legs_eigen(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (complex [n]) and eigenvectors (complex [n, n]) of the normal part of the HiPPO-LegS
    matrix of size ``n``, sorted by imaginary part (S5's ``make_DPLR_HiPPO``): real parts all -1/2."""
    p = torch.sqrt(1 + 2 * torch.arange(n, dtype=torch.float64))
    A = -(torch.tril(p[:, None] * p[None, :]) - torch.diag(torch.arange(n, dtype=torch.float64)))
    q = torch.sqrt(torch.arange(n, dtype=torch.float64) + 0.5)
    S = A + q[:, None] * q[None, :]  # normal: -1/2 I + a skew-symmetric part
    skew = S - torch.diag(torch.diagonal(S))
    lam_im, V = torch.linalg.eigh(-1j * skew.to(torch.complex128))
    lam = torch.complex(torch.full((n,), float(torch.diagonal(S).mean()), dtype=torch.float64), lam_im.to(torch.float64))
    return lam, V


def width_scale(k: float) -> dict:
    """The paper's width scale ``k`` as ``S5Stack`` arguments: ``int(16 k)`` init blocks, ``d_model`` =
    12 per block, ``state_size`` = 16 per block (k=1: H 192, P 256, 16 blocks)."""
    if not k > 0:
        raise ValueError(f"width_scale: k must be > 0, got {k}")
    blocks = max(1, int(16 * k))
    return {"d_model": 12 * blocks, "state_size": 16 * blocks, "blocks": blocks}


def complex_relu(re: torch.Tensor, im: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """relu on complex values given as parts: ``z`` where ``Re z > 0``, else 0 (both parts)."""
    keep = re > 0
    return re * keep, im * keep


class S5(nn.Module):
    """One S5 layer, ``d_model -> d_model``, with ``state_size`` = P (``P/2`` complex states are kept:
    conjugate symmetry). ``y, x_last = s5(u, x0=None)`` with ``u`` [T, B, d_model], ``x0``/``x_last``
    [B, P] real (``[re | im]`` of the P/2 complex states). ``state_relu``: ReLU on the states before C
    (the read-out path only). ``scan``: ``"parallel"`` (log-depth) or ``"loop"``.

    Parameters: ``Lambda_re``, ``Lambda_im``, ``log_step`` [P/2]; ``B`` [P/2, d_model, 2] and ``C``
    [d_model, P/2, 2] as (re, im) pairs; ``D`` [d_model]."""

    def __init__(self, d_model: int, state_size: int, blocks: int = 1, dt_min: float = 0.001, dt_max: float = 0.1,
                 state_relu: bool = False, scan: str = "parallel"):
        super().__init__()
        if d_model < 1 or state_size < 2 or state_size % 2:
            raise ValueError(f"S5: need d_model >= 1 and an even state_size >= 2, got {d_model}, {state_size}")
        if blocks < 1 or state_size % (2 * blocks):
            raise ValueError(f"S5: state_size={state_size} must split into blocks={blocks} blocks of even size")
        if not 0.0 < dt_min <= dt_max:
            raise ValueError(f"S5: need 0 < dt_min <= dt_max, got {dt_min}, {dt_max}")
        if scan not in SCANS:
            raise ValueError(f"S5: scan must be one of {SCANS}, got {scan!r}")
        self.d_model, self.state_size, self.blocks = d_model, state_size, blocks
        self.dt_min, self.dt_max, self.state_relu, self.scan = dt_min, dt_max, state_relu, scan
        S = state_size // 2
        self.Lambda_re = nn.Parameter(torch.empty(S))
        self.Lambda_im = nn.Parameter(torch.empty(S))
        self.log_step = nn.Parameter(torch.empty(S))
        self.B = nn.Parameter(torch.empty(S, d_model, 2))
        self.C = nn.Parameter(torch.empty(d_model, S, 2))
        self.D = nn.Parameter(torch.empty(d_model))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        P, H, n = self.state_size, self.d_model, self.state_size // self.blocks
        lam, V = hippo_legs_eigen(n)
        lam, V = lam[:n // 2], V[:, :n // 2]  # conjugate symmetry: one of each pair
        Vb = torch.block_diag(*[V] * self.blocks)  # [P, P/2]
        self.Lambda_re.copy_(lam.real.repeat(self.blocks))
        self.Lambda_im.copy_(lam.imag.repeat(self.blocks))
        B = torch.randn(P, H, dtype=torch.float64) / math.sqrt(P)  # lecun normal over the P rows
        VinvB = Vb.conj().T @ B.to(torch.complex128)
        self.B.copy_(torch.stack([VinvB.real, VinvB.imag], -1))
        C = torch.complex(torch.randn(H, P, dtype=torch.float64), torch.randn(H, P, dtype=torch.float64))
        CV = (C / math.sqrt(2 * P)) @ Vb
        self.C.copy_(torch.stack([CV.real, CV.imag], -1))
        self.D.normal_()
        lo, hi = math.log(self.dt_min), math.log(self.dt_max)
        self.log_step.uniform_(lo, hi)

    def discretize(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(Lambda_bar complex [P/2], B_bar complex [P/2, d_model]) by zero-order hold; eigenvalues'
        real parts clipped to <= -1e-4 (stable whatever the optimizer does)."""
        lam = torch.complex(self.Lambda_re.clamp(max=-1e-4), self.Lambda_im)
        lam_bar = torch.exp(lam * torch.exp(self.log_step))
        B = torch.complex(self.B[..., 0], self.B[..., 1])
        return lam_bar, ((lam_bar - 1) / lam)[:, None] * B

    def states(self, u: torch.Tensor, x0: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The complex states [T, B, P/2] of ``u`` [T, B, d_model] from ``x0`` (unchecked: see forward)."""
        S = self.state_size // 2
        lam_bar, B_bar = self.discretize()
        Bu = torch.complex(F.linear(u, B_bar.real.to(u.dtype)), F.linear(u, B_bar.imag.to(u.dtype)))
        h0 = None if x0 is None else torch.complex(x0[:, :S], x0[:, S:]).to(Bu.dtype)
        return diagonal_scan(Bu, lam_bar.to(Bu.dtype), h0, self.scan)

    def readout_input(self, xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What C reads: the states' (re, im) parts, ReLU'd if ``state_relu``."""
        return complex_relu(xs.real, xs.imag) if self.state_relu else (xs.real, xs.imag)

    def forward(self, u: torch.Tensor, x0: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(u, torch.Tensor) or u.dim() != 3 or u.shape[-1] != self.d_model:
            raise ValueError(f"S5: u must be [T, B, {self.d_model}], got {getattr(u, 'shape', None)}")
        S = self.state_size // 2
        if x0 is not None and (not isinstance(x0, torch.Tensor) or tuple(x0.shape) != (u.shape[1], 2 * S)):
            raise ValueError(f"S5: x0 must be [B, {2 * S}] ([re | im]), got {getattr(x0, 'shape', None)}")
        xs = self.states(u, x0)
        re, im = self.readout_input(xs)
        y = 2 * (F.linear(re, self.C[..., 0].to(u.dtype)) - F.linear(im, self.C[..., 1].to(u.dtype))) + self.D * u
        last = torch.cat([xs.real[-1], xs.imag[-1]], -1) if u.shape[0] else (
            x0 if x0 is not None else u.new_zeros(u.shape[1], 2 * S))
        return y, last

    def extra_repr(self) -> str:
        return (f"{self.d_model}, state_size={self.state_size}, blocks={self.blocks}, "
                f"state_relu={self.state_relu}, scan={self.scan!r}")


class S5Block(nn.Module):
    """The paper's block: BatchNorm -> S5 -> act -> one-matrix GLU -> + skip [-> ReLU].
    ``relufied=True`` (the sparse models): act = ReLU, ReLU on the S5 states and after the residual
    add; ``False``: GELU and no ReLUs (the dense models). ``y, x_last = block(x, x0=None)``."""

    def __init__(self, d_model: int, state_size: int, blocks: int = 1, relufied: bool = True, dropout: float = 0.0,
                 dt_min: float = 0.001, dt_max: float = 0.1, scan: str = "parallel"):
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"S5Block: dropout must be in [0, 1), got {dropout}")
        self.relufied, self.dropout = relufied, dropout
        self.norm = nn.BatchNorm1d(d_model)
        self.s5 = S5(d_model, state_size, blocks, dt_min, dt_max, state_relu=relufied, scan=scan)
        self.glu_weight = nn.Parameter(torch.empty(d_model, d_model))
        self.glu_bias = nn.Parameter(torch.empty(d_model))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.glu_weight.shape[1])
        self.glu_weight.uniform_(-bound, bound)
        self.glu_bias.uniform_(-bound, bound)

    @property
    def activation(self) -> str:
        return "relu" if self.relufied else "gelu"

    def forward(self, x: torch.Tensor, x0: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        T, B, H = x.shape
        z = self.norm(x.reshape(T * B, H)).reshape(T, B, H) if T * B else x
        y, last = self.s5(z, x0)
        x1 = F.relu(y) if self.relufied else F.gelu(y)
        if self.training and self.dropout > 0:
            x1 = F.dropout(x1, self.dropout, training=True)
        out = x1 * torch.sigmoid(F.linear(x1, self.glu_weight, self.glu_bias)) + x
        return (F.relu(out) if self.relufied else out), last


class S5Stack(nn.Module):
    """Encoder -> ``num_layers`` :class:`S5Block` s -> optional decoder: the model of Pierro et al.
    (2025) between its STFT front end and mask (``examples/s5_denoise``).

    Args:
        input_size: features per step (257 STFT bins in the paper).
        d_model: the blocks' width H (192 in the paper).
        state_size: P per layer (256 in the paper; P/2 complex states are stored).
        num_layers: blocks (3 in the paper).
        output_size: the decoder's outputs (257: a mask), or None for no decoder.
        blocks: HiPPO initialisation blocks per layer (16 in the paper).
        relufied: the sparse models' ReLUs (encoder, S5 states, GLU activation, after the residual):
            every product's input is then event-sparse. False: the dense models (GELU, no ReLUs).
        dropout: on the GLU input while training (0.1 in the paper).
        dt_min, dt_max: the range of the initial step sizes.
        batch_first: input [B, T, input_size].
        scan: ``"parallel"`` or ``"loop"`` for the training forward.

    ``y, state = model(x, state=None)``: ``x`` [T, B, input_size] (or unbatched [T, input_size]),
    ``state`` [num_layers, B, state_size] (each layer's states, ``[re | im]``). ``step`` does one step.
    Parameters to prune (the paper prunes every matrix): ``encoder_weight``, ``blocks.{k}.s5.B``,
    ``blocks.{k}.s5.C``, ``blocks.{k}.glu_weight``, ``decoder_weight``.
    """

    def __init__(self, input_size: int, d_model: int, state_size: int, num_layers: int = 3,
                 output_size: Optional[int] = None, blocks: int = 1, relufied: bool = True, dropout: float = 0.0,
                 dt_min: float = 0.001, dt_max: float = 0.1, batch_first: bool = False, scan: str = "parallel"):
        super().__init__()
        if min(input_size, d_model, num_layers) < 1 or (output_size is not None and output_size < 1):
            raise ValueError("S5Stack: input_size, d_model, num_layers (and output_size) must be >= 1")
        self.input_size, self.d_model, self.state_size = input_size, d_model, state_size
        self.num_layers, self.output_size, self.relufied = num_layers, output_size, relufied
        self.batch_first = batch_first
        self.width = state_size  # floats of state per layer
        self.encoder_weight = nn.Parameter(torch.empty(d_model, input_size))
        self.encoder_bias = nn.Parameter(torch.empty(d_model))
        self.blocks = nn.ModuleList(S5Block(d_model, state_size, blocks, relufied, dropout, dt_min, dt_max, scan)
                                    for _ in range(num_layers))
        if output_size is not None:
            self.decoder_weight = nn.Parameter(torch.empty(output_size, d_model))
            self.decoder_bias = nn.Parameter(torch.empty(output_size))
        else:
            self.register_parameter("decoder_weight", None)
            self.register_parameter("decoder_bias", None)
        self._activity = ActivityLog()
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        for w, b in ((self.encoder_weight, self.encoder_bias), (self.decoder_weight, self.decoder_bias)):
            if w is not None:
                bound = 1 / math.sqrt(w.shape[1])
                w.uniform_(-bound, bound)
                b.uniform_(-bound, bound)

    @property
    def out_features(self) -> int:
        return self.d_model if self.output_size is None else self.output_size

    @accepts_unbatched("width")
    def forward(self, x: torch.Tensor, state: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = _check_input(x, self.input_size, self.batch_first, "S5Stack")
        h0 = _initial_state(state, self.num_layers, x.shape[1], self.width, x, "S5Stack")
        self._activity.start()
        z = F.linear(x, self.encoder_weight, self.encoder_bias)
        z = F.relu(z) if self.relufied else z
        self._activity.add(z)
        means = [z.abs().mean() if z.numel() else z.new_zeros(())]
        last = []
        for k, block in enumerate(self.blocks):
            z, h = block(z, h0[k])
            self._activity.add(z)
            means.append(z.abs().mean() if z.numel() else z.new_zeros(()))
            last.append(h)
        self._output_means = means
        if self.decoder_weight is not None:
            z = F.linear(z, self.decoder_weight, self.decoder_bias)
        out = z.transpose(0, 1) if self.batch_first else z
        return out, torch.stack(last)

    @accepts_unbatched("width", step=True)
    def step(self, x_t: torch.Tensor, state: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: ``x_t`` [B, input_size] -> (``y_t`` [B, out], state); unbatched [input_size]."""
        return step_through_forward(self, x_t, state, "S5Stack.step")

    def activity(self) -> list[float]:
        """Fraction of nonzero outputs of the encoder and of each block over the last forward."""
        return self._activity.fractions()

    def activity_loss(self) -> torch.Tensor:
        """Sum of the mean absolute outputs of the encoder and of every block over the last forward: an
        L1 penalty (on the non-negative ReLU outputs when relufied). Add ``lambda * model.activity_loss()``
        to the loss to make every product's input sparser."""
        if not getattr(self, "_output_means", None):
            raise RuntimeError("S5Stack.activity_loss: run a forward pass first")
        return torch.stack(self._output_means).sum()

    def sparsify(self, weight_masks: Optional[dict] = None, layout: Union[str, Sequence[str]] = "auto",
                 weight_dtype: Optional[torch.dtype] = None,
                 example_input: Optional[torch.Tensor] = None,
                 pace_ms: Optional[float] = None) -> "PackedS5Stack":
        """The inference module on one S5 plan (``torch.ops.evsparse.s5_plan_step``), float32:
        BatchNorm (its running statistics) folded into ``B`` and ``D``, the zero-order hold into ``B``
        and ``Lambda``, the conjugate-symmetric read-out's ``2 Re`` into ``C``. ``weight_masks``: masks
        keyed like the parameters (see the class docstring; ``B``/``C`` masks of their [.., 2] shape).
        ``layout``: ``"dense"``, ``"sparse"``, ``"auto"`` (by density), or one name per packed weight in
        plan order (encoder, then B, C, W2 per block, then decoder), as ``.layouts`` reports them.
        ``"timed"``: per record (encoder, block, decoder), every combination of its weights' layouts
        timed through the plan's sequence op on ``example_input`` ([T, B, input_size] float32; each
        record on the previous one's output), the fastest kept (``.layout_choices``); then whole models
        that change one record's layouts, timed stepping their streams on the frames of ``example_input``
        (``.model_choice``, see :func:`evsparse.layout.choose_model_layouts`). ``pace_ms`` (with
        ``"timed"``): time both stages as a stream runs, one step every ``pace_ms`` milliseconds, instead
        of in a hot loop. ``weight_dtype``: ``torch.int8`` quantises every packed weight per input column."""
        return PackedS5Stack.from_module(self, weight_masks, layout, weight_dtype, example_input, pace_ms)

    def extra_repr(self) -> str:
        return (f"{self.input_size}, d_model={self.d_model}, state_size={self.state_size}, "
                f"num_layers={self.num_layers}, output_size={self.output_size}, relufied={self.relufied}")


@torch.no_grad()
def fold_block(block: S5Block, who: str = "fold_block") -> dict:
    """A block's S5 layer as inference computes it, in float64 real matrices: BatchNorm's running
    statistics folded into ``B`` (its scale) and a bias (its shift), the zero-order hold into ``B`` and
    ``lambda``, the conjugate-symmetric read-out ``2 Re(C x)`` into ``C``::

        x_k = lambda * x_{k-1} + B u_k + b_in     (x = [re | im], complex multiply by lambda)
        y_k = C relu?(x_k) + d_scale * u_k + d_shift

    with ``B`` [P, H] (rows [re | im]), ``C`` [H, P], ``b_in`` [P], ``lambda_re``/``lambda_im`` [P/2],
    ``d_scale``/``d_shift`` [H]."""
    bn, s5, H = block.norm, block.s5, block.s5.d_model
    if bn.running_mean is None:
        raise ValueError(f"{who}'s BatchNorm keeps no running statistics to fold")
    scale = ((bn.weight if bn.affine else torch.ones(H)) / torch.sqrt(bn.running_var + bn.eps)).double()
    shift = ((bn.bias if bn.affine else torch.zeros(H)) - bn.running_mean * scale).double()
    lam_bar, B_bar = (t.to(torch.complex128) for t in s5.discretize())
    Bs = B_bar * scale[None, :]  # B_bar diag(scale): BatchNorm's scale folded into B
    b_in = B_bar @ shift.to(torch.complex128)  # ... and its shift into a bias
    C = s5.C.detach().double()
    D = s5.D.detach().double()
    return {"B": torch.cat([Bs.real, Bs.imag], 0), "b_in": torch.cat([b_in.real, b_in.imag]),
            "lambda_re": lam_bar.real, "lambda_im": lam_bar.imag,
            "C": torch.cat([2 * C[..., 0], -2 * C[..., 1]], 1), "d_scale": D * scale, "d_shift": D * shift}


def _pair_mask(masks: dict, name: str, shape: tuple) -> Optional[torch.Tensor]:
    m = masks.get(name)
    if m is None:
        return None
    if not isinstance(m, torch.Tensor) or tuple(m.shape) != shape:
        raise ValueError(f"S5Stack.sparsify: the mask for {name} must have shape {list(shape)}, "
                         f"got {getattr(m, 'shape', None)}")
    return m.bool()


class PackedS5Stack(PlanModule):
    """Inference twin of :class:`S5Stack` on one plan: each step is one ``s5_plan_step`` call in which
    every product (encoder, B, C, W2, decoder) reads only its input's nonzero entries. Same call
    signature and state as the training module; float32; CPU; no autograd. :meth:`stream` steps with
    the state updated in place."""

    _plan_kind = plan.S5
    _WEIGHT_NAMES = ("w0", "w1", "w2")
    _LAYER_ARGS: tuple = ()
    _STATE_NAMES = ("h",)
    _STREAM_OP = torch.ops.evsparse.s5_plan_step_.default

    def __init__(self, input_size: int, d_model: int, state_size: int, output_size: Optional[int],
                 batch_first: bool, records: list):
        super().__init__()
        self.input_size, self.d_model, self.state_size, self.output_size = input_size, d_model, state_size, output_size
        self.batch_first, self.width = batch_first, state_size
        self.num_layers = sum(not (r.flags & plan.LINEAR) for r in records)  # state rows (blocks)
        self.num_records = len(records)
        self.layout_choices: list = [None] * len(records)  # per record, a LayoutChoice where sparsify timed layouts
        self._init_plan(input_size, state_size, records)
        self._activity = ActivityLog()
        self._step_op = fast_op(torch.ops.evsparse.s5_plan_step.default)

    @property
    def out_features(self) -> int:
        return self.d_model if self.output_size is None else self.output_size

    def _plan_dims(self) -> tuple:
        return self.input_size, self.width, self.num_records

    def _legacy_layers(self, state_dict, prefix: str) -> list:
        raise ValueError("PackedS5Stack: no earlier buffer format")

    @property
    def layouts(self) -> list:
        """Every packed weight's layout, in plan order (encoder, B, C, W2 per block, decoder)."""
        return [w.layout for v in self._views for w in v.weights if w is not None]

    def weight_bytes(self) -> int:
        """Bytes of every packed weight as stored (values, indices, int8 scales): the memory the
        weights take on the device."""
        total = 0
        for v in self._views:
            for w in v.weights:
                if w is not None:
                    total += sum(t.numel() * t.element_size() for t in (w.values, w.col_ptr, w.row_idx, w.scale)
                                 if t is not None)
        return total

    @classmethod
    @torch.no_grad()
    def from_module(cls, model: S5Stack, weight_masks: Optional[dict] = None,
                    layout: Union[str, Sequence[str]] = "auto",
                    weight_dtype: Optional[torch.dtype] = None,
                    example_input: Optional[torch.Tensor] = None,
                    pace_ms: Optional[float] = None) -> "PackedS5Stack":
        who = "S5Stack.sparsify"
        masks = dict(weight_masks or {})
        known = {"encoder_weight", "decoder_weight"} | {f"blocks.{k}.{n}" for k in range(model.num_layers)
                                                        for n in ("s5.B", "s5.C", "glu_weight")}
        unknown = set(masks) - known
        if unknown:
            raise ValueError(f"{who}: unknown weight_masks keys {sorted(unknown)}; expected some of {sorted(known)}")
        n_weights = 3 * model.num_layers + 1 + (model.decoder_weight is not None)
        fixed = ("dense", "sparse", "auto")
        if isinstance(layout, str):
            if layout not in fixed + ("timed",):
                raise ValueError(f"{who}: layout must be 'dense', 'sparse', 'auto', 'timed' or one of the first "
                                 f"three per weight, got {layout!r}")
            names = [layout] * n_weights
        else:
            names = list(layout)
            if len(names) != n_weights or not all(n in fixed for n in names):
                raise ValueError(f"{who}: layout as a list needs {n_weights} names of 'dense'/'sparse'/'auto' "
                                 f"(encoder, B, C, W2 per block, decoder), got {layout!r}")
        inp = timing_example(example_input, layout if isinstance(layout, str) else None, model, who)
        pace_s = pace_seconds(pace_ms, inp is not None, who)
        example = inp

        def masked(w: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
            w = w.detach().float().contiguous()
            return w if mask is None else w * mask.to(w.dtype)

        def vec(t: torch.Tensor) -> torch.Tensor:
            return t.detach().float().contiguous()

        # Every record as (n_in, n_out, S, flags, masked weights, vectors, activation), packed below.
        H, S = model.d_model, model.state_size // 2
        specs = [(model.input_size, H, 0, plan.LINEAR | (plan.RELU if model.relufied else 0),
                  [masked(model.encoder_weight, masks.get("encoder_weight"))], (vec(model.encoder_bias),), 0)]
        for k, block in enumerate(model.blocks):
            f = fold_block(block, f"{who}: block {k}")
            s5 = block.s5
            mB = _pair_mask(masks, f"blocks.{k}.s5.B", tuple(s5.B.shape))
            mB = None if mB is None else torch.cat([mB.any(-1)] * 2, 0)  # pairs: both parts kept or pruned
            mC = _pair_mask(masks, f"blocks.{k}.s5.C", tuple(s5.C.shape))
            mC = None if mC is None else torch.cat([mC[..., 0], mC[..., 1]], 1)
            specs.append((H, H, S, plan.RESIDUAL | (plan.RELU | plan.STATE_RELU if model.relufied else 0),
                          [masked(f["B"], mB), masked(f["C"], mC),
                           masked(block.glu_weight, masks.get(f"blocks.{k}.glu_weight"))],
                          tuple(vec(f[n]) for n in ("b_in", "lambda_re", "lambda_im", "d_shift", "d_scale"))
                          + (vec(block.glu_bias),), plan.ACTIVATIONS[block.activation]))
        if model.decoder_weight is not None:
            specs.append((H, model.output_size, 0, plan.LINEAR,
                          [masked(model.decoder_weight, masks.get("decoder_weight"))], (vec(model.decoder_bias),), 0))
        records, choices, names_iter = [], [], iter(names)
        for n_in, n_out, S_k, flags, weights, vectors, act in specs:
            def make(*pws, n_in=n_in, n_out=n_out, S_k=S_k, flags=flags, vectors=vectors, act=act):
                return plan.PlanLayer(n_in, n_out, S_k, flags, pws, vectors, act)

            if layout == "timed":  # this record's layouts timed on its own input, then its output feeds the next
                def record_run(next_input, bias=vectors[0], relu=bool(flags & plan.RELU), make=make, n_out=n_out):
                    if flags & plan.LINEAR:  # a plan needs a block: a dense layer is timed as its product op
                        def run(pw):
                            y = sparse_linear(next_input(), pw, bias)
                            return (F.relu(y) if relu else y),
                        return run
                    return plan_runner(plan.S5, n_in, model.state_size, make, lambda arena, meta: (
                        torch.ops.evsparse.s5_plan_sequence(
                            (x := next_input()), x.new_zeros(1, x.shape[1], model.state_size), arena, meta, n_out)))

                run = record_run(lambda inp=inp: inp)
                # paced: one step (a frame of the record's input, in turn) per timed call
                timing_run = run if pace_s is None else record_run(FrameCycle(inp))
                pws, choice = choose_layouts(weights, timing_run, weight_dtype, pace_s=pace_s)
                inp = run(*pws)[0]
            else:
                pws, choice = [pack(w, None, next(names_iter), weight_dtype=weight_dtype) for w in weights], None
            records.append(make(*pws))
            choices.append(choice)
        module = cls(model.input_size, H, model.state_size, model.output_size, model.batch_first, records)
        if example is not None:  # then whole models, as they stream (records: encoder, blocks, decoder)
            flat = iter(module.layouts)
            groups = [tuple(next(flat) for _ in spec[4]) for spec in specs]  # (spec[4]: a record's weights)
            module, module.model_choice = choose_model_layouts(
                groups, lambda gs: cls.from_module(model, weight_masks, [n for g in gs for n in g], weight_dtype),
                list(example.unbind(0)), example.shape[1], pace_s, current=module)
        module.layout_choices = choices
        return module

    def _check_cpu(self, who: str) -> None:
        if self.plan_arena.device.type != "cpu":
            raise ValueError(f"{who}: S5 plans run on the CPU kernels only (no GPU kernel yet); the module is on "
                             f"{self.plan_arena.device}")

    @accepts_unbatched("width")
    def forward(self, x: torch.Tensor, state: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = _check_input(x, self.input_size, self.batch_first, "PackedS5Stack").contiguous()
        self._check_cpu("PackedS5Stack")
        h0 = _initial_state(state, self.num_layers, x.shape[1], self.width, x, "PackedS5Stack")
        if not torch.compiler.is_compiling():
            self._ensure_packed_valid()
        self._activity.start()
        out, h, nonzero = torch.ops.evsparse.s5_plan_sequence(x, h0.contiguous(), self.plan_arena, self.plan_meta,
                                                              self.out_features)
        steps = x.shape[0] * x.shape[1]
        self._activity.add_counts(nonzero, [steps * v.out_features for v in self._layer_views()])
        return (out.transpose(0, 1) if self.batch_first else out), h

    def step(self, x_t: torch.Tensor, state: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of the whole stack in one op call: ``x_t`` [B, input_size] -> (``y_t`` [B, out],
        state [num_layers, B, state_size]); unbatched [input_size] with the state [num_layers,
        state_size]. Functional: the state passed in is not written (see :meth:`stream`)."""
        call = self._plan_call
        if (call is not None and type(state) is torch.Tensor and self._packed_generation == self._buffers.generation
                and not torch.compiler.is_compiling()):
            return self._step_op(x_t, state, call[0], call[1], self.out_features)  # the C++ op checks every shape
        return self._step(x_t, state)

    @accepts_unbatched("width", step=True)
    def _step(self, x_t: torch.Tensor, state: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(x_t, torch.Tensor) or x_t.dim() != 2 or x_t.shape[-1] != self.input_size:
            raise ValueError(f"PackedS5Stack.step: x_t must be [B, {self.input_size}] or [{self.input_size}], "
                             f"got {getattr(x_t, 'shape', None)}")
        self._check_cpu("PackedS5Stack.step")
        h0 = _initial_state(state, self.num_layers, x_t.shape[0], self.width, x_t, "PackedS5Stack.step")
        if not torch.compiler.is_compiling():
            self._ensure_packed_valid()
        return torch.ops.evsparse.s5_plan_step.default(x_t.contiguous(), h0.contiguous(), self.plan_arena,
                                                       self.plan_meta, self.out_features)

    def stream(self, batch_size: Optional[int] = None, state: Optional[torch.Tensor] = None) -> Stream:
        """A :class:`~evsparse.nn.Stream` stepping this model with its state updated in place."""
        return Stream(self, batch_size, state, self.out_features)

    def _stream_bind(self, state: tuple, out_shape: tuple) -> tuple:
        out = torch.zeros(out_shape)
        return out, (state[0], out, self.plan_arena, self.plan_meta)

    def activity(self) -> list[float]:
        """Fraction of nonzero outputs of every plan record (encoder, blocks, decoder) over the last
        forward."""
        return self._activity.fractions()

    def extra_repr(self) -> str:
        return (f"{self.input_size}, d_model={self.d_model}, state_size={self.state_size}, "
                f"num_layers={self.num_layers}, output_size={self.output_size}, layouts={self.layouts}")
