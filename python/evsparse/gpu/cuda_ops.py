"""CUDA implementations of the ``torch.ops.evsparse`` ops: the products on the Triton kernels
(:mod:`.launch`), the fused recurrent layers on them and two elementwise kernels (:mod:`.recurrent`),
the gradient ops in PyTorch. The functions are device agnostic (the tests run them on CPU tensors
under ``TRITON_INTERPRET=1``); :func:`register` puts them on the CUDA key."""

from __future__ import annotations

import functools
from typing import Optional

import torch

from . import sparse_linear as launch
from .recurrent import (egru_sequence, egru_stack_step, egru_step, linear_rnn_sequence, linear_rnn_stack_step,
                        linear_rnn_step)

_LIB: Optional[torch.library.Library] = None


# ---- the linear products (the op schemas' scale argument: int8 weights are CPU-only) ---------------


def _no_int8(op: str, scale) -> None:
    if scale is not None:
        raise ValueError(f"evsparse.{op}: int8 weights (a scale) run on the CPU kernels only; pack with a "
                         "float weight_dtype for the GPU")


def gather_linear(x, weight_t, bias=None, scale=None):
    _no_int8("gather_linear", scale)
    return launch.gather_linear(x, weight_t, bias)


def sparse_gather_linear(x, col_ptr, row_idx, values, out_features, bias=None, scale=None):
    _no_int8("sparse_gather_linear", scale)
    return launch.sparse_gather_linear(x, col_ptr, row_idx, values, out_features, bias)


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


def _cuda_device_of(args) -> Optional[torch.device]:
    """The device of the first CUDA tensor among ``args``."""
    return next((a.device for a in args if getattr(a, "is_cuda", False)), None)


def on_inputs_device(fn):
    """Runs ``fn`` with its inputs' GPU as the current device. Triton launches on the current device,
    not on the tensors', and the dispatcher sets no device guard for an op implemented in Python: a
    model on ``cuda:1`` would otherwise launch on ``cuda:0`` with ``cuda:1``'s pointers."""

    @functools.wraps(fn)
    def guarded(*args, **kwargs):
        dev = _cuda_device_of(args)
        if dev is None or dev.index is None or dev.index == torch.cuda.current_device():
            return fn(*args, **kwargs)
        with torch.cuda.device(dev.index):
            return fn(*args, **kwargs)

    return guarded


def register() -> None:
    """Puts every function above on the CUDA key of its ``torch.ops.evsparse`` op, each run on its
    inputs' GPU (:func:`on_inputs_device`)."""
    global _LIB
    if _LIB is not None:
        return
    lib = torch.library.Library("evsparse", "IMPL")
    impls = {
        "gather_linear": gather_linear,
        "sparse_gather_linear": sparse_gather_linear,
        "gather_linear_grad_weight": gather_linear_grad_weight,
        "sparse_gather_linear_grad_values": sparse_gather_linear_grad_values,
        "sparse_gather_linear_grad_input": sparse_gather_linear_grad_input,
        "egru_step": egru_step,
        "egru_sequence": egru_sequence,
        "linear_rnn_step": linear_rnn_step,
        "linear_rnn_sequence": linear_rnn_sequence,
        "egru_stack_step": egru_stack_step,
        "linear_rnn_stack_step": linear_rnn_stack_step,
    }
    for name, fn in impls.items():
        lib.impl(name, on_inputs_device(fn), "CUDA")
    _LIB = lib
