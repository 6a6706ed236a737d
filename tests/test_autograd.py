"""Gradients of sparse_linear with respect to x, bias and the packed weight values."""

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

import evsparse
from evsparse import PackedWeight


def _with_values(pw, values):
    return PackedWeight._trusted(pw.layout, pw.shape, values, pw.col_ptr, pw.row_idx)


@pytest.mark.parametrize("layout", ["dense", "sparse"])
@pytest.mark.parametrize("x_shape", [(9,), (3, 9), (2, 3, 9)], ids=["vector", "batch", "leading-dims"])
@pytest.mark.parametrize("with_bias", [True, False])
def test_gradcheck_float64(isa, layout, x_shape, with_bias):
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(11, 9, generator=gen, dtype=torch.float64)
    mask = torch.rand(11, 9, generator=gen) < 0.5
    pw = evsparse.pack(w, mask, layout)
    x = torch.randn(x_shape, generator=gen, dtype=torch.float64)
    x[..., 2] = 0  # inactive inputs: still get a gradient
    x[..., 5] = 0
    x.requires_grad_()
    values = pw.values.clone().requires_grad_()
    bias = torch.randn(11, generator=gen, dtype=torch.float64, requires_grad=True) if with_bias else None

    def f(x, values, bias):
        return evsparse.sparse_linear(x, _with_values(pw, values), bias)

    assert gradcheck(f, (x, values, bias), eps=1e-6, atol=1e-8)


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_gradients_equal_dense_reference(layout):
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(30, 20, generator=gen)
    mask = torch.rand(30, 20, generator=gen) < 0.3
    x = torch.randn(4, 20, generator=gen) * (torch.rand(4, 20, generator=gen) < 0.3)
    bias = torch.randn(30, generator=gen)
    pw = evsparse.pack(w, mask, layout).requires_grad_()
    xe, be = x.clone().requires_grad_(), bias.clone().requires_grad_()
    evsparse.sparse_linear(xe, pw, be).square().sum().backward()

    wr = (w * mask).requires_grad_()
    xr, br = x.clone().requires_grad_(), bias.clone().requires_grad_()
    F.linear(xr, wr, br).square().sum().backward()

    torch.testing.assert_close(xe.grad, xr.grad)
    torch.testing.assert_close(be.grad, br.grad)
    dense_grad = wr.grad * mask if layout == "sparse" else wr.grad
    grad_values_as_matrix = _with_values(pw, pw.values.grad).to_dense()
    torch.testing.assert_close(grad_values_as_matrix, dense_grad)


def test_weight_gradient_touches_only_active_columns():
    w = torch.randn(16, 12)
    x = torch.zeros(2, 12)
    x[0, 3] = 1.0
    x[1, 8] = -2.0
    for layout in ("dense", "sparse"):
        pw = evsparse.pack(w, layout=layout).requires_grad_()
        evsparse.sparse_linear(x, pw).sum().backward()
        g = _with_values(pw, pw.values.grad).to_dense()
        touched = (g != 0).any(0).nonzero().flatten().tolist()
        assert touched == [3, 8], layout


@pytest.mark.parametrize("w_dtype", [torch.float16, torch.bfloat16])
def test_half_weight_gradients_keep_their_dtype(w_dtype):
    w = torch.randn(8, 6).to(w_dtype)
    x = torch.randn(6, requires_grad=True)
    pw = evsparse.pack(w, layout="sparse").requires_grad_()
    bias = torch.randn(8).to(w_dtype).requires_grad_()
    evsparse.sparse_linear(x, pw, bias).sum().backward()
    assert pw.values.grad.dtype == w_dtype and bias.grad.dtype == w_dtype and x.grad.dtype == torch.float32
    torch.testing.assert_close(x.grad, w.float().sum(0), rtol=1e-2, atol=1e-2)


def test_no_grad_and_inference_mode_build_no_graph():
    pw = evsparse.pack(torch.randn(8, 6)).requires_grad_()
    x = torch.randn(6)
    with torch.no_grad():
        assert evsparse.sparse_linear(x, pw).grad_fn is None
    with torch.inference_mode():
        assert evsparse.sparse_linear(x, pw).grad_fn is None
    assert evsparse.sparse_linear(x, pw).grad_fn is not None


@pytest.mark.parametrize("layout", ["dense", "sparse"])
@pytest.mark.parametrize("x_shape", [(9,), (3, 9)], ids=["vector", "batch"])
def test_gradgradcheck_float64(layout, x_shape):
    """Second-order gradients (create_graph) are right, not silently zero: under create_graph the
    backward uses differentiable formulas (checked against finite differences of the first order)."""
    gen = torch.Generator().manual_seed(2)
    w = torch.randn(11, 9, generator=gen, dtype=torch.float64)
    pw = evsparse.pack(w, torch.rand(11, 9, generator=gen) < 0.5, layout)
    x = torch.randn(x_shape, generator=gen, dtype=torch.float64)
    x[..., 3] = 0
    x.requires_grad_()
    values = pw.values.clone().requires_grad_()
    bias = torch.randn(11, generator=gen, dtype=torch.float64, requires_grad=True)

    def f(x, values, bias):
        return evsparse.sparse_linear(x, _with_values(pw, values), bias)

    assert torch.autograd.gradgradcheck(f, (x, values, bias), eps=1e-6, atol=1e-7)


def test_hessian_vector_product_equals_dense_reference():
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(7, 5, generator=gen, dtype=torch.float64)
    mask = torch.rand(7, 5, generator=gen) < 0.5
    pw = evsparse.pack(w, mask, "sparse")
    x = torch.randn(4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    v = torch.randn(4, 5, generator=gen, dtype=torch.float64)

    def hvp(fn):
        (g,) = torch.autograd.grad(fn(x).pow(2).sum(), x, create_graph=True)
        (h,) = torch.autograd.grad((g * v).sum(), x)
        return h

    got = hvp(lambda t: evsparse.sparse_linear(t, pw))
    want = hvp(lambda t: F.linear(t, w * mask))
    assert want.abs().max() > 1  # a nonzero Hessian: zeros would have passed before
    torch.testing.assert_close(got, want)


def test_inference_ops_raise_when_a_gradient_is_requested():
    """The recurrent ops are inference only: a gradient through them raises instead of returning None."""
    from evsparse.nn import EGRU, SparseLinearRNN

    torch.manual_seed(0)
    x = torch.randn(3, 1, 4, requires_grad=True)
    for module in (EGRU(4, 6, 2).sparsify(), SparseLinearRNN(4, 5, 4, num_layers=2).sparsify()):
        for out in (module(x)[0], module.step(x[0])[0]):
            with pytest.raises(RuntimeError, match="derivative for evsparse::.* is not implemented"):
                out.sum().backward()
    g = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    with pytest.raises(RuntimeError, match="not implemented"):
        torch.ops.evsparse.gather_linear_grad_weight(g, torch.randn(3, 4, dtype=torch.float64)).sum().backward()
