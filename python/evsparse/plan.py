"""Model plans: every packed weight and vector of a recurrent stack in one byte tensor (the *arena*),
described by one int64 tensor (*meta*).

The plan step ops (``torch.ops.evsparse.egru_plan_step``, ``linear_rnn_plan_step`` and their in-place
``_`` variants) take ``(x, state, arena, meta)``: four or five tensors per step for the whole model,
instead of ~10 optional tensors per layer boxed and re-checked on every call. The format is defined in
``csrc/ops/plan.h``; this module writes it (:func:`build`) and reads it back as views
(:func:`layer_views`), which the sequence ops, the GPU kernels and ``.packed(k)`` use.

Every section starts on a 64-byte boundary of the arena, so views of it are aligned for their dtype.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import torch

from .packed import PackedWeight

__all__ = ["EGRU", "LINEAR_RNN", "S5", "PlanLayer", "build", "layer_views", "validate"]

MAGIC = 0x50535645  # "EVSP"
VERSION = 1
HEADER = 8
RECORD = 32
RECORD_S5 = 48  # an S5 record holds three weights and eight vector slots
MAX_LAYERS = 64
EGRU = 1
LINEAR_RNN = 2
S5 = 3
RESIDUAL = 1
COMPLEX = 2
LINEAR = 4  # S5 records: a dense layer instead of a block
RELU = 8  # S5 records: ReLU on the output (a block's after its residual add)
STATE_RELU = 16  # S5 blocks: ReLU on the complex states before C
ACTIVATIONS = {None: 0, "relu": 1, "gelu": 2}  # S5 blocks: the activation of C's output
ALIGN = 64
_ABSENT_WEIGHT = [-1, 0, 0, 0, -1, -1, -1, 0]

_VALUE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2, torch.int8: 3}
_VALUE_DTYPES = {v: k for k, v in _VALUE_CODES.items()}
_INDEX_CODES = {None: 0, torch.int16: 1, torch.int32: 2}
_INDEX_DTYPES = {1: torch.int16, 2: torch.int32}
# EGRU: b_ih, b_hh, thr; linear RNN: b_in, a_re, a_im, b_out; S5 block: b_in, lambda_re, lambda_im, b_out,
# d, b_glu (S5 linear record: bias)
_NUM_VECTORS = {EGRU: 3, LINEAR_RNN: 4, S5: 6}


def record_words(kind: int) -> int:
    return RECORD_S5 if kind == S5 else RECORD


class PlanLayer(NamedTuple):
    """One layer: sizes, flags (RESIDUAL | COMPLEX; S5: RESIDUAL | LINEAR | RELU | STATE_RELU), the
    packed weights (EGRU: w_ih, w_hh; linear RNN: w_in, w_out; S5 block: B, C, W2 or None; S5 linear:
    the weight, None, None) and the float32 vectors in the kind's order (None where absent: a real
    linear RNN layer's a_im). ``act``: an S5 block's activation code (:data:`ACTIVATIONS`). What
    :func:`build` takes, and what :func:`layer_views` returns (then every tensor is a view of the
    arena)."""

    in_features: int
    out_features: int
    state_size: int
    flags: int
    weights: tuple[Optional[PackedWeight], ...]
    vectors: tuple[Optional[torch.Tensor], ...]
    act: int = 0


def _fail(msg: str) -> None:
    raise ValueError(f"evsparse.plan: {msg}")


def build(kind: int, input_size: int, width: int, layers: Sequence[PlanLayer]) -> tuple[torch.Tensor, torch.Tensor]:
    """The (arena, meta) of a stack of layers, on the device of the first layer's weights. The parts
    are copied; the packed weights must already be validated (they come from :func:`evsparse.pack`)."""
    if kind not in _NUM_VECTORS:
        _fail(f"unknown plan kind {kind}")
    if not 1 <= len(layers) <= MAX_LAYERS:
        _fail(f"a plan holds 1..{MAX_LAYERS} layers, got {len(layers)}")
    device = layers[0].weights[0].values.device
    n_weights, n_slots = (3, 8) if kind == S5 else (2, 6)
    parts: list[tuple[int, torch.Tensor]] = []  # (byte offset, tensor)
    size = 0

    def place(t: Optional[torch.Tensor]) -> int:
        nonlocal size
        if t is None:
            return -1
        t = t.detach().contiguous().reshape(-1)
        off = size
        size = off + (t.numel() * t.element_size() + ALIGN - 1) // ALIGN * ALIGN
        parts.append((off, t))
        return off

    meta = [MAGIC, VERSION, kind, len(layers), input_size, width, 0, 0]
    for layer in layers:
        rec = [layer.in_features, layer.out_features, layer.flags, layer.state_size]
        weights = tuple(layer.weights) + (None,) * (n_weights - len(layer.weights))
        for pw in weights:
            if pw is None:
                rec += _ABSENT_WEIGHT
                continue
            if pw.dtype not in _VALUE_CODES:
                _fail(f"plan weights are float32, float16, bfloat16 or int8, got {pw.dtype}")
            sparse = pw.layout == "sparse"
            scale = place(pw.scale) if pw.dtype == torch.int8 else 0  # (0: the format's "no scale")
            rec += [int(sparse), _VALUE_CODES[pw.dtype], _INDEX_CODES[pw.row_idx.dtype if sparse else None],
                    pw.values.numel() if sparse else 0, place(pw.values), place(pw.col_ptr), place(pw.row_idx), scale]
        vectors = [place(None if v is None else v.float()) for v in layer.vectors]
        rec += vectors + [-1] * (n_slots - len(vectors))
        if kind == S5:
            rec.append(layer.act)
        meta += rec + [0] * (record_words(kind) - len(rec))
    meta[6] = size
    arena = torch.zeros(size, dtype=torch.uint8, device=device)
    for off, t in parts:
        arena[off:off + t.numel() * t.element_size()].view(t.dtype).copy_(t)
    return arena, torch.tensor(meta, dtype=torch.int64, device=device)


def _section(arena: torch.Tensor, off: int, count: int, dtype: torch.dtype) -> torch.Tensor:
    n = count * torch.empty((), dtype=dtype).element_size()
    return arena[off:off + n].view(dtype)


def layer_views(arena: torch.Tensor, meta: torch.Tensor, meta_list: Optional[list] = None) -> list[PlanLayer]:
    """The layers of a plan as views of its arena. Trusts the format: call :func:`validate` on data
    from outside first (the modules do, at construction and load). ``meta_list``: ``meta.tolist()``
    when the caller has it (a host sync for a GPU meta)."""
    m = meta.tolist() if meta_list is None else meta_list
    kind, num_layers, width = m[2], m[3], m[5]
    words = record_words(kind)
    views = []
    for k in range(num_layers):
        r = m[HEADER + k * words:HEADER + (k + 1) * words]
        n_in, n_out, flags, S = r[0], r[1], r[2], r[3]
        words_w, vec_at, act = (r[4:12], r[12:20]), 20, 0
        if kind == EGRU:
            dims = ((n_in, 3 * width), (width, 3 * width))
            lengths = (3 * width, 3 * width, width)
        elif kind == LINEAR_RNN:
            dims = ((n_in, width), (width, n_out))
            lengths = (width, S, S, n_out)
        elif flags & LINEAR:
            dims, words_w, vec_at, lengths = ((n_in, n_out), None, None), (r[4:12], None, None), 28, (n_out,)
        else:
            dims = ((n_in, 2 * S), (2 * S, n_out), (n_out, n_out))
            words_w, vec_at, act = (r[4:12], r[12:20], r[20:28]), 28, r[36]
            lengths = (2 * S, S, S, n_out, n_out, n_out)
        weights = []
        for dim, d in zip(dims, words_w):
            if d is None or d[0] == -1:
                weights.append(None)
                continue
            w_in, w_out = dim
            dtype = _VALUE_DTYPES[d[1]]
            scale = _section(arena, d[7], w_in, torch.float32) if dtype == torch.int8 else None
            if d[0] == 0:
                values = _section(arena, d[4], w_in * w_out, dtype).view(w_in, w_out)
                weights.append(PackedWeight._trusted("dense", (w_out, w_in), values, scale=scale))
            else:
                values = _section(arena, d[4], d[3], dtype)
                col_ptr = _section(arena, d[5], w_in + 1, torch.int64)
                rows = _section(arena, d[6], d[3], _INDEX_DTYPES[d[2]])
                weights.append(PackedWeight._trusted("sparse", (w_out, w_in), values, col_ptr, rows, scale))
        vectors = tuple(None if off < 0 else _section(arena, off, n, torch.float32)
                        for off, n in zip(r[vec_at:vec_at + len(lengths)], lengths))
        views.append(PlanLayer(n_in, n_out, S, flags, tuple(weights), vectors, act))
    return views


def validate(arena, meta, kind: int, who: str, weight_names: tuple[str, ...] = ("w0", "w1", "w2")) -> list[PlanLayer]:
    """Checks a plan from outside (a loaded file, a replaced buffer) in full and returns its views:
    the format, every section's bounds and every sparse weight's structure (the C++
    ``plan_validate``, on a CPU copy for other devices), then every weight's and vector's finiteness
    (what the C++ check leaves out: a NaN weight is not a memory hazard, only a wrong answer; for int8
    weights their scale's, and no -128, as :class:`~evsparse.PackedWeight` checks).
    ValueError naming ``who`` (and the weight, ``{name}_l{k}``) for anything corrupted."""
    for name, t, dtype in (("arena", arena, torch.uint8), ("meta", meta, torch.int64)):
        if not isinstance(t, torch.Tensor) or t.dtype != dtype or t.dim() != 1:
            raise ValueError(f"{who}: the plan is invalid: {name} must be a 1-D {dtype} tensor, got "
                             f"{getattr(t, 'dtype', type(t).__name__)} {list(getattr(t, 'shape', []))}")
    if meta.device != arena.device:
        raise ValueError(f"{who}: the plan is invalid: arena and meta are on different devices "
                         f"({arena.device}, {meta.device})")
    cpu_arena, cpu_meta = arena.detach().cpu().contiguous(), meta.detach().cpu().contiguous()
    try:
        torch.ops.evsparse.plan_validate(cpu_arena, cpu_meta, kind)
    except ValueError as e:
        raise ValueError(f"{who}: the plan is invalid: {e}") from None
    views = layer_views(arena, meta, cpu_meta.tolist())
    for k, v in enumerate(views):
        for name, pw in zip(weight_names, v.weights):
            if pw is None:
                continue
            try:
                pw._check_values()
            except ValueError as e:
                raise ValueError(f"{who}: packed weight {name}_l{k} is invalid: {e}") from None
        for vec in v.vectors:
            if vec is not None and not bool(torch.isfinite(vec).all()):
                raise ValueError(f"{who}: the plan is invalid: layer {k} has a vector with NaN or Inf entries")
    return views
