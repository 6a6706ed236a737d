"""The fused recurrent ops on the device (``egru_step`` / ``egru_sequence``, ``linear_rnn_step`` /
``linear_rnn_sequence``): same arguments, checks and results as the C++ CPU ops.

At batch 1 a GPU step is bound by launches, not bytes, so the sequence ops are arranged to launch
little per step:

* The input products have no recurrence: every step's is done at once, as one [T*B, in] gather.
* EGRU: per step one recurrent gather and one fused gate kernel, which also compacts the new event
  output for the next step's gather (no separate compaction pass, no host sync).
* Linear RNN: the diagonal recurrence couples no units, so after the input product one scan kernel
  walks all T steps (a program per block of units) and the output product is again one [T*B, width]
  gather: a whole sequence in a fixed handful of launches.

The step ops are the sequence ops with T = 1.

The EGRU sequence has a second arrangement, ``"persistent"`` (dense recurrent weight only): one
kernel walks all T steps, a program per batch row (kernels.egru_sequence_persistent_kernel). It
trades the per-step launches for one SM per row; which wins depends on H and on whether the launches
are captured in a CUDA graph, so evsparse-gpu-bench times both. ``EVSPARSE_GPU_EGRU_SEQUENCE``
(``launches`` | ``persistent``) picks the default: launches until a GPU measurement says otherwise.

Under ``torch.use_deterministic_algorithms(True)`` the products take their deterministic forms
(launch.py) and the EGRU gate kernel no longer compacts (its blocks would reserve slots atomically):
an ordered compaction kernel follows it instead, one more launch per step. The persistent kernel is
deterministic as it is.
"""

from __future__ import annotations

import os
from typing import Optional

import torch

from .._contract import EGRU_LAYER_ARGS, LINEAR_RNN_LAYER_ARGS
from . import kernels
from .sparse_linear import Active, _rows, cdiv, check_csc, check_dense_weight, compact_active, new_output, product_into, \
    row_chunks, use_deterministic

GATE_BLOCK = 256
SCAN_BLOCK = 128
EGRU_SEQUENCE = os.environ.get("EVSPARSE_GPU_EGRU_SEQUENCE", "launches")
PERSISTENT_TILE = dict(BLOCK_K=32, BLOCK_N=256, BLOCK_H=256, num_warps=8)


def _check_tensor(op: str, name: str, t: torch.Tensor, like: torch.Tensor) -> None:
    if t.device != like.device:
        raise ValueError(f"evsparse.{op}: {name} is on {t.device} but x is on {like.device}")
    if not t.is_contiguous():
        raise ValueError(f"evsparse.{op}: {name} must be contiguous")


def _check_input(op: str, x: torch.Tensor, dim: int) -> None:
    if x.dim() != dim:
        raise ValueError(f"evsparse.{op}: x must be {dim}-D, got shape {tuple(x.shape)}")
    _check_tensor(op, "x", x, x)
    if x.dtype != torch.float32:
        raise ValueError(f"evsparse.{op}: x must be float32, got {x.dtype}")


def _check_float(op: str, name: str, t: torch.Tensor, shape: tuple, like: torch.Tensor) -> None:
    _check_tensor(op, name, t, like)
    if t.dtype != torch.float32:
        raise ValueError(f"evsparse.{op}: {name} must be float32, got {t.dtype}")
    if tuple(t.shape) != shape:
        raise ValueError(f"evsparse.{op}: {name} must have shape {list(shape)}, got {list(t.shape)}")


def _check_packed(op: str, name: str, values, col_ptr, row_idx, n_in: int, n_out: int, like) -> None:
    if (col_ptr is None) != (row_idx is None):
        raise ValueError(f"evsparse.{op}: {name} needs both col_ptr and row_idx (sparse layout) or neither "
                         "(dense layout)")
    for part, t in (("", values), (" col_ptr", col_ptr), (" row_idx", row_idx)):
        if t is not None:
            _check_tensor(op, name + part, t, like)
    if col_ptr is None:
        check_dense_weight(op, name, values, n_in, n_out)
        return
    check_csc(op, col_ptr, row_idx, values, n_out)
    if col_ptr.numel() != n_in + 1:
        raise ValueError(f"evsparse.{op}: {name} col_ptr must have {n_in + 1} entries, got {col_ptr.numel()}")


def _by_batch_chunks(chunks, run, xs, *states) -> tuple:
    """A sequence op over more batch rows than one launch holds (launch.row_chunks): the rows are
    independent, so ``run(xs, *states)`` goes chunk by chunk and its results are joined, ys [T, B, *]
    along the batch (dim 1), the states [B, *] along dim 0."""
    parts = [run(xs[:, r0:r1].contiguous(), *(s[r0:r1] for s in states)) for r0, r1 in chunks]
    return tuple(torch.cat([part[i] for part in parts], dim=1 if i == 0 else 0) for i in range(len(parts[0])))


def egru_sequence(xs, c, y, w_ih, w_ih_col_ptr, w_ih_row_idx, w_hh, w_hh_col_ptr, w_hh_row_idx, b_ih, b_hh, thr,
                  _op: str = "egru_sequence", mode: Optional[str] = None, _step: bool = False):
    """xs [T, B, in] -> (ys [T, B, H], c [B, H], y [B, H]) of the last step. ``mode``: "launches" or
    "persistent" (default :data:`EGRU_SEQUENCE`; the persistent kernel takes a dense ``w_hh`` only,
    a sparse one always runs as launches)."""
    mode = mode or EGRU_SEQUENCE
    if mode not in ("launches", "persistent"):
        raise ValueError(f"evsparse.{_op}: mode must be 'launches' or 'persistent', got {mode!r}")
    _check_input(_op, xs, 3)
    T, B, n_in = xs.shape
    if thr.dim() != 1:
        raise ValueError(f"evsparse.{_op}: thr must be 1-D [H], got shape {tuple(thr.shape)}")
    H = thr.shape[0]
    _check_float(_op, "thr", thr, (H,), xs)
    _check_float(_op, "b_ih", b_ih, (3 * H,), xs)
    _check_float(_op, "b_hh", b_hh, (3 * H,), xs)
    _check_packed(_op, "w_ih", w_ih, w_ih_col_ptr, w_ih_row_idx, n_in, 3 * H, xs)
    _check_packed(_op, "w_hh", w_hh, w_hh_col_ptr, w_hh_row_idx, H, 3 * H, xs)
    _check_float(_op, "c", c, (B, H), xs)
    _check_float(_op, "y", y, (B, H), xs)
    if T == 0 or B == 0 or H == 0:
        ys = torch.zeros((T, B, H), dtype=torch.float32, device=xs.device)
        return ys, c.clone(), (ys[-1] if T else y).clone()
    chunks = row_chunks(B, 3 * H)
    if len(chunks) > 1:
        return _by_batch_chunks(chunks, lambda xs_, c_, y_: egru_sequence(
            xs_, c_, y_, w_ih, w_ih_col_ptr, w_ih_row_idx, w_hh, w_hh_col_ptr, w_hh_row_idx, b_ih, b_hh, thr, _op=_op,
            mode=mode), xs, c, y)

    det = use_deterministic()
    gi = new_output(T * B, 3 * H, b_ih, xs.device)  # every step's input product in one launch
    product_into(gi, xs.view(T * B, n_in), w_ih, w_ih_col_ptr, w_ih_row_idx, deterministic=det)
    if mode == "persistent" and w_hh_col_ptr is None:
        ys_ext = torch.empty((T + 1, B, H), dtype=torch.float32, device=xs.device)
        ys_ext[0].copy_(y)
        c_run = c.clone()
        scratch_gh = torch.empty((B, 3 * H), dtype=torch.float32, device=xs.device)
        scratch_idx = torch.empty((B, H), dtype=torch.int32, device=xs.device)
        kernels.egru_sequence_persistent_kernel[(B,)](gi, w_hh, b_hh, thr, c_run, ys_ext, scratch_gh, scratch_idx,
                                                      T, B, H, **PERSISTENT_TILE)
        return ys_ext[1:], c_run, ys_ext[T].clone()

    # Per-step tensors are row ranges of [T*B, *] buffers (_rows: no slice at all when T = 1, the step
    # op, whose host time per call is the eager step's cost).
    ys = torch.empty((T * B, H), dtype=torch.float32, device=xs.device)
    gh = new_output(T * B, 3 * H, b_hh, xs.device)
    if T > 1:  # the gate kernel compacts step t's events for step t + 1's gather into idx[t % 2]
        counts = torch.zeros((T, B), dtype=torch.int32, device=xs.device)
        idx = torch.empty((2, B, H), dtype=torch.int32, device=xs.device)
    active = compact_active(y, ordered=det)
    y_prev, c_prev = y, c
    grid = (cdiv(H, GATE_BLOCK), B)
    for t in range(T):
        r0, r1 = t * B, (t + 1) * B
        gh_t, y_t = _rows(gh, r0, r1), _rows(ys, r0, r1)
        product_into(gh_t, y_prev, w_hh, w_hh_col_ptr, w_hh_row_idx, active, deterministic=det)
        c_next = torch.empty((B, H), dtype=torch.float32, device=xs.device)
        compact = t + 1 < T
        if compact:
            active = Active(idx[t % 2], counts[t])
        # (without COMPACT the kernel leaves the index list alone: the last step passes the one just read)
        kernels.egru_gate_kernel[grid](_rows(gi, r0, r1), gh_t, c_prev, thr, c_next, y_t, active.idx, active.count,
                                       H, COMPACT=compact and not det, BLOCK=GATE_BLOCK)
        if det and compact:
            compact_active(y_t, ordered=True, into=active)
        y_prev, c_prev = y_t, c_next
    if _step:  # egru_step returns no ys: its last row needs no copy of its own
        return None, c_prev, y_prev
    return ys.view(T, B, H), c_prev, y_prev.clone()


def egru_step(x, c, y, *weights):
    """x [B, in] -> (c, y) [B, H]."""
    _check_input("egru_step", x, 2)
    _, c_new, y_new = egru_sequence(x[None], c, y, *weights, _op="egru_step", _step=True)
    return c_new, y_new


def linear_rnn_sequence(xs, h, w_in, w_in_col_ptr, w_in_row_idx, b_in, a_re, a_im: Optional[torch.Tensor], w_out,
                        w_out_col_ptr, w_out_row_idx, b_out, residual: bool, _op: str = "linear_rnn_sequence"):
    """xs [T, B, in] -> (ys [T, B, out], h [B, width]) of the last step."""
    _check_input(_op, xs, 3)
    T, B, n_in = xs.shape
    if a_re.dim() != 1 or b_out.dim() != 1:
        raise ValueError(f"evsparse.{_op}: a_re must be 1-D [S] and b_out 1-D [out], got shapes "
                         f"{tuple(a_re.shape)} and {tuple(b_out.shape)}")
    S, n_out = a_re.shape[0], b_out.shape[0]
    W = S if a_im is None else 2 * S
    _check_float(_op, "a_re", a_re, (S,), xs)
    if a_im is not None:
        _check_float(_op, "a_im", a_im, (S,), xs)
    _check_float(_op, "b_in", b_in, (W,), xs)
    _check_float(_op, "b_out", b_out, (n_out,), xs)
    if residual and n_in != n_out:
        raise ValueError(f"evsparse.{_op}: a residual layer needs in_features == out_features, got {n_in} and {n_out}")
    _check_packed(_op, "w_in", w_in, w_in_col_ptr, w_in_row_idx, n_in, W, xs)
    _check_packed(_op, "w_out", w_out, w_out_col_ptr, w_out_row_idx, W, n_out, xs)
    _check_float(_op, "h", h, (B, W), xs)
    if T == 0 or B == 0:
        return torch.empty((T, B, n_out), dtype=torch.float32, device=xs.device), h.clone()
    chunks = row_chunks(B, max(W, n_out))
    if len(chunks) > 1:
        return _by_batch_chunks(chunks, lambda xs_, h_: linear_rnn_sequence(
            xs_, h_, w_in, w_in_col_ptr, w_in_row_idx, b_in, a_re, a_im, w_out, w_out_col_ptr, w_out_row_idx, b_out,
            residual, _op=_op), xs, h)

    u = new_output(T * B, W, b_in, xs.device)
    product_into(u, xs.view(T * B, n_in), w_in, w_in_col_ptr, w_in_row_idx)
    hs = torch.empty((T, B, W), dtype=torch.float32, device=xs.device)
    if S:
        kernels.diagonal_scan_kernel[(cdiv(S, SCAN_BLOCK), B)](
            a_re, a_re if a_im is None else a_im, h, u, hs, T, B, S, W, COMPLEX=a_im is not None, BLOCK=SCAN_BLOCK)
    v = new_output(T * B, n_out, b_out, xs.device)
    product_into(v, hs.view(T * B, W), w_out, w_out_col_ptr, w_out_row_idx)
    ys = v.view(T, B, n_out)
    if residual:
        ys += xs
    return torch.relu_(ys), hs[-1].clone()


def linear_rnn_step(x, h, *args):
    """x [B, in] -> (y [B, out], h [B, width])."""
    _check_input("linear_rnn_step", x, 2)
    ys, h_new = linear_rnn_sequence(x[None], h, *args, _op="linear_rnn_step")
    return ys[0], h_new


def _check_stack(op: str, x, states: dict, layers, required: tuple) -> int:
    """The number of layers of a stack op (from the state [L, B, width] tensors), after the checks
    the C++ op makes: equal state shapes, one entry of ``layers`` per argument of each layer."""
    _check_input(op, x, 2)
    first = next(iter(states.values()))
    for name, t in states.items():
        _check_tensor(op, name, t, x)
        if t.dtype != torch.float32:
            raise ValueError(f"evsparse.{op}: {name} must be float32, got {t.dtype}")
        if t.dim() != 3 or t.shape[0] < 1 or t.shape[1] != x.shape[0] or t.shape != first.shape:
            raise ValueError(f"evsparse.{op}: {name} must have shape [num_layers >= 1, {x.shape[0]}, width] "
                             f"(as every state tensor), got {list(t.shape)}")
    L = first.shape[0]
    if len(layers) != L * len(required):
        raise ValueError(f"evsparse.{op}: layers must hold {len(required)} entries per layer ({L} layers, from the "
                         f"state), got {len(layers)}")
    for i, t in enumerate(layers):
        if required[i % len(required)] and t is None:
            raise ValueError(f"evsparse.{op}: layers entry {i} (layer {i // len(required)}, argument "
                             f"{i % len(required)}) is required, got None")
    return L


def egru_stack_step(x, c, y, layers):
    """One step of a stack of EGRU layers: x [B, in], c and y [L, B, H] -> (the top layer's y [B, H],
    c, y [L, B, H]); ``layers`` holds per layer the 9 weight arguments of :func:`egru_step`."""
    op = "egru_stack_step"
    L = _check_stack(op, x, {"c": c, "y": y}, layers, (True, False, False, True, False, False, True, True, True))
    c_out, y_out = torch.empty_like(c), torch.empty_like(y)
    inp = x
    for k in range(L):
        _, c_k, inp = egru_sequence(inp[None], c[k], y[k], *layers[len(EGRU_LAYER_ARGS) * k:len(EGRU_LAYER_ARGS) * (k + 1)], _op=op, _step=True)
        c_out[k].copy_(c_k)
        y_out[k].copy_(inp)
    return inp, c_out, y_out


def linear_rnn_stack_step(x, h, layers, residual):
    """One step of a stack of linear RNN layers: x [B, in], h [L, B, width] -> (the top layer's y,
    h [L, B, width]); ``layers`` holds per layer the 10 weight arguments of :func:`linear_rnn_step`
    (w_in .. b_out), ``residual`` one flag per layer."""
    op = "linear_rnn_stack_step"
    L = _check_stack(op, x, {"h": h}, layers, (True, False, False, True, True, False, True, False, False, True))
    if len(residual) != L:
        raise ValueError(f"evsparse.{op}: residual must hold one flag per layer ({L} layers), got {len(residual)}")
    h_out = torch.empty_like(h)
    inp = x
    for k in range(L):
        ys, h_k = linear_rnn_sequence(inp[None], h[k], *layers[len(LINEAR_RNN_LAYER_ARGS) * k:len(LINEAR_RNN_LAYER_ARGS) * (k + 1)], residual[k], _op=op)
        h_out[k].copy_(h_k)
        inp = ys[0]
    return inp, h_out
