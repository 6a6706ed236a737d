"""Zero-size dimensions behave as in F.linear and nn.GRU: empty results of the right shape, no error."""

import pytest
import torch
import torch.nn.functional as F

import evsparse
from evsparse.nn import EGRU, SparseLinear, SparseLinearRNN


@pytest.mark.parametrize("layout", ["dense", "sparse"])
@pytest.mark.parametrize("x_shape, w_shape", [
    ((2, 3, 0), (5, 0)),   # in_features 0 (the reported reshape error)
    ((2, 0, 4), (5, 4)),   # an empty leading dimension
    ((0, 4), (5, 4)),      # batch 0
    ((3, 4), (0, 4)),      # out_features 0
    ((4,), (0, 4)),
    ((0,), (3, 0)),
    ((3, 0), (0, 0)),
])
def test_sparse_linear_zero_sizes(layout, x_shape, w_shape):
    w = torch.randn(w_shape, dtype=torch.float64)
    x = torch.randn(x_shape, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(w_shape[0], dtype=torch.float64, requires_grad=True)
    pw = evsparse.pack(w, layout=layout).requires_grad_()
    y = evsparse.sparse_linear(x, pw, bias)
    ref = F.linear(x, w, bias)
    assert y.shape == ref.shape
    torch.testing.assert_close(y, ref)
    gy = torch.randn_like(y)
    gx, gv, gb = torch.autograd.grad(y, (x, pw.values, bias), gy, allow_unused=True)
    rx, rb = torch.autograd.grad(ref, (x, bias), gy)
    torch.testing.assert_close(gx, rx)
    torch.testing.assert_close(gb, rb)
    assert gv.shape == pw.values.shape
    layer = SparseLinear.from_module(torch.nn.Linear(w_shape[1], w_shape[0]), layout=layout)
    assert layer(x.detach().float()).shape == ref.shape


@pytest.mark.parametrize("make", [lambda: EGRU(4, 6, 2), lambda: EGRU(4, 6, 2).sparsify(),
                                  lambda: SparseLinearRNN(4, 5, 4, num_layers=2),
                                  lambda: SparseLinearRNN(4, 5, 4, num_layers=2).sparsify()],
                         ids=["EGRU", "PackedEGRU", "SparseLinearRNN", "PackedLinearRNN"])
def test_recurrent_zero_batch_and_length(make):
    torch.manual_seed(0)
    module = make()
    width = module.hidden_size if hasattr(module, "hidden_size") else module.width
    # Batch 0, as nn.GRU: empty outputs and states.
    y, state = module(torch.randn(3, 0, 4))
    assert y.shape == (3, 0, module(torch.randn(1, 1, 4))[0].shape[-1])
    for s in (state if isinstance(state, tuple) else (state,)):
        assert s.shape == (2, 0, width)
    y_t, _ = module.step(torch.randn(0, 4))
    assert y_t.shape[0] == 0
    # Length 0 (nn.GRU refuses it): an empty output, and the given state passed through unchanged.
    _, s0 = module(torch.randn(2, 2, 4))
    y, s1 = module(torch.randn(0, 2, 4), s0)
    assert y.shape[:2] == (0, 2)
    for a, b in zip(s1 if isinstance(s1, tuple) else (s1,), s0 if isinstance(s0, tuple) else (s0,)):
        torch.testing.assert_close(a, b)
