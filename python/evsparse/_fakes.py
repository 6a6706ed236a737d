"""Fake (meta) kernels for the C++ ``torch.ops.evsparse`` operators, so ``torch.compile`` can trace them.

The operators, their CPU kernels and their autograd formulas are registered in C++ (``csrc/ops``):
autograd lives there because a Python-registered formula costs several microseconds on every call,
more than a small recurrent step.
"""

from __future__ import annotations

import torch

from ._contract import EGRU_LAYER_ARGS, LINEAR_RNN_LAYER_ARGS, check_csc_meta


def _same_device(op: str, x: torch.Tensor, *others) -> None:
    for t in others:
        if t is not None and t.device != x.device:
            raise ValueError(f"evsparse.{op}: all tensors must be on x's device {x.device}, got {t.device}")


def _check_stack_layers(op: str, layers, num_layers, per_layer: tuple) -> None:
    if len(layers) != num_layers * len(per_layer):
        raise ValueError(f"evsparse.{op}: layers must hold {len(per_layer)} entries per layer ({num_layers} layers, "
                         f"from the state), got {len(layers)}")


# --------------------------------------------------------------------------------------------
# Fake kernels: shapes and dtypes only.


@torch.library.register_fake("evsparse::gather_linear")
def _gather_linear_fake(x, weight_t, bias=None, scale=None):
    _same_device("gather_linear", x, weight_t, bias, scale)
    torch._check(x.dim() in (1, 2), lambda: "x must be 1-D or 2-D")
    torch._check(x.shape[-1] == weight_t.shape[0], lambda: "x and weight_t disagree on in_features")
    return x.new_empty((*x.shape[:-1], weight_t.shape[1]), dtype=x.dtype)


@torch.library.register_fake("evsparse::sparse_gather_linear")
def _sparse_gather_linear_fake(x, col_ptr, row_idx, values, out_features, bias=None, scale=None):
    _same_device("sparse_gather_linear", x, col_ptr, row_idx, values, bias, scale)
    # The structure's metadata, checked as PackedWeight and the Triton launchers check it (_contract).
    check_csc_meta(col_ptr, row_idx, out_features, col_ptr.shape[0] - 1, values.shape[0], x.device,
                   "evsparse.sparse_gather_linear")
    torch._check(x.dim() in (1, 2), lambda: "x must be 1-D or 2-D")
    torch._check(x.shape[-1] == col_ptr.shape[0] - 1, lambda: "x and col_ptr disagree on in_features")
    return x.new_empty((*x.shape[:-1], out_features), dtype=x.dtype)


@torch.library.register_fake("evsparse::gather_linear_grad_weight")
def _gather_linear_grad_weight_fake(grad_out, x):
    return grad_out.new_empty((x.shape[-1], grad_out.shape[-1]))


@torch.library.register_fake("evsparse::sparse_gather_linear_grad_values")
def _sparse_grad_values_fake(grad_out, x, col_ptr, row_idx):
    return grad_out.new_empty(row_idx.shape)


@torch.library.register_fake("evsparse::sparse_gather_linear_grad_input")
def _sparse_grad_input_fake(grad_out, col_ptr, row_idx, values):
    return grad_out.new_empty((*grad_out.shape[:-1], col_ptr.shape[0] - 1))


@torch.library.register_fake("evsparse::egru_step")
def _egru_step_fake(x, c, y, w_ih, w_ih_col_ptr, w_ih_row_idx, w_hh, w_hh_col_ptr, w_hh_row_idx, b_ih, b_hh, thr):
    _same_device("egru_step", x, c, y, w_ih, w_hh, b_ih, b_hh, thr)
    return torch.empty_like(c), torch.empty_like(y)


@torch.library.register_fake("evsparse::egru_sequence")
def _egru_sequence_fake(xs, c, y, w_ih, w_ih_col_ptr, w_ih_row_idx, w_hh, w_hh_col_ptr, w_hh_row_idx, b_ih, b_hh,
                        thr):
    _same_device("egru_sequence", xs, c, y, w_ih, w_hh, b_ih, b_hh, thr)
    return xs.new_empty((xs.shape[0], xs.shape[1], thr.shape[0])), torch.empty_like(c), torch.empty_like(y)


@torch.library.register_fake("evsparse::linear_rnn_step")
def _linear_rnn_step_fake(x, h, w_in, w_in_col_ptr, w_in_row_idx, b_in, a_re, a_im, w_out, w_out_col_ptr,
                          w_out_row_idx, b_out, residual):
    _same_device("linear_rnn_step", x, h, w_in, b_in, a_re, a_im, w_out, b_out)
    return x.new_empty((x.shape[0], b_out.shape[0])), torch.empty_like(h)


@torch.library.register_fake("evsparse::linear_rnn_sequence")
def _linear_rnn_sequence_fake(xs, h, w_in, w_in_col_ptr, w_in_row_idx, b_in, a_re, a_im, w_out, w_out_col_ptr,
                              w_out_row_idx, b_out, residual):
    _same_device("linear_rnn_sequence", xs, h, w_in, b_in, a_re, a_im, w_out, b_out)
    return xs.new_empty((xs.shape[0], xs.shape[1], b_out.shape[0])), torch.empty_like(h)


@torch.library.register_fake("evsparse::egru_stack_step")
def _egru_stack_step_fake(x, c, y, layers):
    _same_device("egru_stack_step", x, c, y, *layers)
    _check_stack_layers("egru_stack_step", layers, c.shape[0], EGRU_LAYER_ARGS)
    return x.new_empty((x.shape[0], c.shape[2])), torch.empty_like(c), torch.empty_like(y)


@torch.library.register_fake("evsparse::linear_rnn_stack_step")
def _linear_rnn_stack_step_fake(x, h, layers, residual):
    _same_device("linear_rnn_stack_step", x, h, *layers)
    _check_stack_layers("linear_rnn_stack_step", layers, h.shape[0], LINEAR_RNN_LAYER_ARGS)
    return x.new_empty((x.shape[0], layers[-1].shape[0])), torch.empty_like(h)


@torch.library.register_fake("evsparse::egru_plan_step")
def _egru_plan_step_fake(x, c, y, arena, meta):
    _same_device("egru_plan_step", x, c, y, arena, meta)
    return y.new_empty(y.shape[1:]), torch.empty_like(c), torch.empty_like(y)


@torch.library.register_fake("evsparse::egru_plan_step_")
def _egru_plan_step_inplace_fake(x, c, y, arena, meta):
    _same_device("egru_plan_step_", x, c, y, arena, meta)


def _register_state_plan_step_fakes(family: str) -> None:
    """The step fakes of a plan kind with one state tensor (linear_rnn, s5): ``{family}_plan_step``
    and ``{family}_plan_step_`` share their shapes."""
    op = f"{family}_plan_step"

    @torch.library.register_fake(f"evsparse::{op}")
    def _step(x, h, arena, meta, out_features):
        _same_device(op, x, h, arena, meta)
        shape = (out_features,) if x.dim() == 1 else (x.shape[0], out_features)
        return x.new_empty(shape), torch.empty_like(h)

    @torch.library.register_fake(f"evsparse::{op}_")
    def _step_inplace(x, h, out, arena, meta):
        _same_device(f"{op}_", x, h, out, arena, meta)


for _family in ("linear_rnn", "s5"):
    _register_state_plan_step_fakes(_family)


@torch.library.register_fake("evsparse::egru_plan_sequence")
def _egru_plan_sequence_fake(xs, c, y, arena, meta):
    _same_device("egru_plan_sequence", xs, c, y, arena, meta)
    return (xs.new_empty((xs.shape[0], *y.shape[1:])), torch.empty_like(c), torch.empty_like(y),
            c.new_empty((c.shape[0],), dtype=torch.int64))


@torch.library.register_fake("evsparse::linear_rnn_plan_sequence")
def _linear_rnn_plan_sequence_fake(xs, h, arena, meta, out_features):
    _same_device("linear_rnn_plan_sequence", xs, h, arena, meta)
    return (xs.new_empty((*xs.shape[:-1], out_features)), torch.empty_like(h),
            h.new_empty((h.shape[0],), dtype=torch.int64))


@torch.library.register_fake("evsparse::s5_plan_sequence")
def _s5_plan_sequence_fake(xs, h, arena, meta, out_features):
    _same_device("s5_plan_sequence", xs, h, arena, meta)
    # nonzero has one count per plan record; the record count is in meta, which a fake cannot read:
    # a data-dependent size.
    n = torch.library.get_ctx().new_dynamic_size()
    return xs.new_empty((*xs.shape[:-1], out_features)), torch.empty_like(h), h.new_empty((n,), dtype=torch.int64)


def _egru_train_shapes(op: str, gi, c0, y0, w_hh, thr) -> tuple:
    _same_device(op, gi, c0, y0, w_hh, thr)
    torch._check(gi.dim() == 3, lambda: f"evsparse.{op}: gi must be 3-D [T, B, 3H]")
    T, B, H = gi.shape[0], gi.shape[1], thr.shape[0]
    torch._check(gi.shape[2] == 3 * H, lambda: f"evsparse.{op}: gi must be [T, B, 3H] with H from thr")
    return T, B, H


@torch.library.register_fake("evsparse::dropconnect")
def _dropconnect_fake(w, p, seed):
    return torch.empty_like(w, memory_format=torch.contiguous_format)


@torch.library.register_fake("evsparse::egru_train")
def _egru_train_fake(gi, c0, y0, w_hh, b_hh, thr, dampening, support):
    T, B, H = _egru_train_shapes("egru_train", gi, c0, y0, w_hh, thr)
    return gi.new_empty((T, B, H)), gi.new_empty((B, H)), gi.new_empty((B, H))


@torch.library.register_fake("evsparse::egru_train_forward")
def _egru_train_forward_fake(gi, c0, y0, w_hh, b_hh, thr):
    T, B, H = _egru_train_shapes("egru_train_forward", gi, c0, y0, w_hh, thr)
    return gi.new_empty((T, B, H)), gi.new_empty((B, H)), gi.new_empty((B, H)), gi.new_empty((T, B, 5 * H))


@torch.library.register_fake("evsparse::egru_train_backward")
def _egru_train_backward_fake(grad_ys, grad_c, grad_events, c0, y0, w_hh, thr, saved, dampening, support):
    T, B, H = saved.shape[0], saved.shape[1], thr.shape[0]
    return (saved.new_empty((T, B, 3 * H)), saved.new_empty((B, H)), saved.new_empty((B, H)),
            saved.new_empty((3 * H, H)), saved.new_empty((3 * H,)), saved.new_empty((H,)))
