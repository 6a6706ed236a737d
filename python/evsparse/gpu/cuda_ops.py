"""CUDA implementations of the ``torch.ops.evsparse`` ops: the products on the Triton kernels
(:mod:`.launch`), the elementwise parts and the gradient ops in PyTorch. The functions are device
agnostic (the tests run them on CPU tensors under ``TRITON_INTERPRET=1``); :func:`register` puts them on
the CUDA key."""

from __future__ import annotations

from typing import Optional

import torch

from ..nn.egru import egru_cell
from ..nn.linear_rnn import diagonal_step
from . import launch

_LIB: Optional[torch.library.Library] = None


def _product(x, values, col_ptr, row_idx, out: int, bias):
    if col_ptr is None:
        return launch.gather_linear(x, values, bias)
    return launch.sparse_gather_linear(x, col_ptr, row_idx, values, out, bias)


# ---- the linear ops' gradients (O(nnz) or one GEMM: plain PyTorch) ----------------------------------


def gather_linear_grad_weight(grad_out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    g, x2 = (grad_out, x) if x.dim() == 2 else (grad_out[None], x[None])
    return x2.to(g.dtype).T @ g


def _nnz_columns(col_ptr: torch.Tensor) -> torch.Tensor:
    counts = col_ptr[1:] - col_ptr[:-1]
    return torch.repeat_interleave(torch.arange(counts.numel(), device=col_ptr.device), counts)


def sparse_gather_linear_grad_values(grad_out, x, col_ptr, row_idx) -> torch.Tensor:
    g, x2 = (grad_out, x) if x.dim() == 2 else (grad_out[None], x[None])
    return (x2[:, _nnz_columns(col_ptr)].to(g.dtype) * g[:, row_idx.long()]).sum(0)


def sparse_gather_linear_grad_input(grad_out, col_ptr, row_idx, values) -> torch.Tensor:
    g = grad_out if grad_out.dim() == 2 else grad_out[None]
    contrib = g[:, row_idx.long()] * values.to(g.dtype)
    out = torch.zeros((g.shape[0], col_ptr.numel() - 1), dtype=g.dtype, device=g.device)
    out.index_add_(1, _nnz_columns(col_ptr), contrib)
    return out if grad_out.dim() == 2 else out[0]


# ---- fused recurrent layers: products on Triton, the rest elementwise --------------------------------


def egru_step(x, c, y, w_ih, w_ih_col_ptr, w_ih_row_idx, w_hh, w_hh_col_ptr, w_hh_row_idx, b_ih, b_hh, thr):
    H = thr.shape[0]
    gi = _product(x, w_ih, w_ih_col_ptr, w_ih_row_idx, 3 * H, b_ih)
    gh = _product(y, w_hh, w_hh_col_ptr, w_hh_row_idx, 3 * H, b_hh)
    c_new, y_new, _ = egru_cell(gi, gh, c, thr, lambda v: (v > 0).to(v.dtype))
    return c_new, y_new


def egru_sequence(xs, c, y, *weights):
    ys = []
    for t in range(xs.shape[0]):
        c, y = egru_step(xs[t], c, y, *weights)
        ys.append(y)
    out = torch.stack(ys) if ys else xs.new_empty((0, xs.shape[1], weights[-1].shape[0]))
    return out, c.clone(), y.clone()


def linear_rnn_step(x, h, w_in, w_in_col_ptr, w_in_row_idx, b_in, a_re, a_im, w_out, w_out_col_ptr, w_out_row_idx,
                    b_out, residual: bool):
    u = _product(x, w_in, w_in_col_ptr, w_in_row_idx, h.shape[-1], b_in)
    h_new = diagonal_step(a_re, a_im, h, u)
    v = _product(h_new, w_out, w_out_col_ptr, w_out_row_idx, b_out.shape[0], b_out)
    return torch.relu(v + x if residual else v), h_new


def linear_rnn_sequence(xs, h, *args):
    ys = []
    for t in range(xs.shape[0]):
        y, h = linear_rnn_step(xs[t], h, *args)
        ys.append(y)
    b_out = args[9]
    out = torch.stack(ys) if ys else xs.new_empty((0, xs.shape[1], b_out.shape[0]))
    return out, h.clone()


def register() -> None:
    """Puts every function above on the CUDA key of its ``torch.ops.evsparse`` op."""
    global _LIB
    if _LIB is not None:
        return
    lib = torch.library.Library("evsparse", "IMPL")
    impls = {
        "gather_linear": launch.gather_linear,
        "sparse_gather_linear": launch.sparse_gather_linear,
        "gather_linear_grad_weight": gather_linear_grad_weight,
        "sparse_gather_linear_grad_values": sparse_gather_linear_grad_values,
        "sparse_gather_linear_grad_input": sparse_gather_linear_grad_input,
        "egru_step": egru_step,
        "egru_sequence": egru_sequence,
        "linear_rnn_step": linear_rnn_step,
        "linear_rnn_sequence": linear_rnn_sequence,
    }
    for name, fn in impls.items():
        lib.impl(name, fn, "CUDA")
    _LIB = lib
