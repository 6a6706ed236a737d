"""evsparse.nn.SparseLinearRNN, its inference twin PackedLinearRNN and the fused linear_rnn ops."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.autograd import gradcheck

from evsparse import macs, prune
from evsparse.nn import PackedLinearRNN, SparseLinearRNN
from evsparse.nn.linear_rnn import diagonal_scan


# ---- an independent plain-PyTorch reference: explicit per-step loop, real arithmetic for complex --------


def reference_forward(m: SparseLinearRNN, x, h0=None):
    """The layer equations written out step by step from the parameters (x [T, B, in])."""
    T, B = x.shape[0], x.shape[1]
    S = m.state_size
    inp, states = x, []
    for k in range(m.num_layers):
        w_in, b_in, w_out, b_out, nu_log, theta_log = m.layer_params(k)
        mag = torch.exp(-torch.exp(nu_log))
        gamma = torch.sqrt(1 - mag ** 2) if m.normalize else torch.ones_like(mag)
        h = torch.zeros(B, m.width, dtype=x.dtype) if h0 is None else h0[k]
        ys = []
        for t in range(T):
            u = inp[t] @ w_in.T + (0 if b_in is None else b_in)
            if theta_log is None:
                h = mag * h + gamma * u
            else:
                ph = torch.exp(theta_log)
                ar, ai = mag * torch.cos(ph), mag * torch.sin(ph)
                hr, hi = h[:, :S], h[:, S:]
                h = torch.cat([ar * hr - ai * hi + gamma * u[:, :S], ai * hr + ar * hi + gamma * u[:, S:]], dim=1)
            v = h @ w_out.T + (0 if b_out is None else b_out)
            if m.residual[k]:
                v = v + inp[t]
            ys.append(torch.clamp(v, min=0))
        inp = torch.stack(ys) if T else x.new_zeros(0, B, m.output_size)
        states.append(h)
    return inp, torch.stack(states)


def make(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(input_size=6, state_size=5, output_size=7, num_layers=2)
    cfg.update(kw)
    return SparseLinearRNN(**cfg).eval()


# ---- the scan --------------------------------------------------------------------------------------


@given(T=st.integers(0, 40), B=st.integers(1, 3), S=st.integers(1, 6), cplx=st.booleans(), with_h0=st.booleans(),
       seed=st.integers(0, 2**16))
def test_parallel_scan_equals_loop_and_definition(T, B, S, cplx, with_h0, seed):
    g = torch.Generator().manual_seed(seed)
    dtype = torch.complex128 if cplx else torch.float64
    u = torch.randn(T, B, S, dtype=dtype, generator=g)
    a = torch.rand(S, dtype=torch.float64, generator=g) * 0.98
    if cplx:
        a = a * torch.exp(1j * torch.rand(S, dtype=torch.float64, generator=g) * math.pi)
    h0 = torch.randn(B, S, dtype=dtype, generator=g) if with_h0 else None
    expected, h = [], (torch.zeros(B, S, dtype=dtype) if h0 is None else h0)
    for t in range(T):
        h = a * h + u[t]
        expected.append(h)
    for method in ("parallel", "loop"):
        got = diagonal_scan(u, a, h0, method)
        assert got.shape == u.shape
        if T:
            torch.testing.assert_close(got, torch.stack(expected), rtol=1e-10, atol=1e-10)


# ---- the training module ---------------------------------------------------------------------------


@pytest.mark.parametrize("cplx", [False, True])
@pytest.mark.parametrize("scan", ["parallel", "loop"])
@pytest.mark.parametrize("kw", [{}, {"bias": False, "normalize": False}, {"residual": False, "num_layers": 3},
                                {"input_size": 7, "num_layers": 1}])
def test_forward_matches_reference(cplx, scan, kw):
    m = make(complex=cplx, scan=scan, **kw).double()
    x = torch.randn(9, 2, m.input_size, dtype=torch.float64)
    h0 = torch.randn(m.num_layers, 2, m.width, dtype=torch.float64)
    for state in (None, h0):
        y, h = m(x, state)
        y_ref, h_ref = reference_forward(m, x, state)
        torch.testing.assert_close(y, y_ref)
        torch.testing.assert_close(h, h_ref)


def test_residual_only_where_widths_agree_and_state_layout():
    m = make(input_size=6, output_size=7, num_layers=3, complex=True)
    assert m.residual == [False, True, True]
    assert m.width == 10
    assert make(input_size=7, output_size=7).residual == [True, True]
    assert make(residual=False).residual == [False, False]
    a_re, a_im = m.decay(0)
    assert bool(((a_re ** 2 + a_im ** 2) < 1).all())  # stable whatever the parameters are
    with torch.no_grad():
        m.nu_log_l0.fill_(-30.0)  # |a| -> 1 from below, never above
    a_re, a_im = m.decay(0)
    assert bool(((a_re ** 2 + a_im ** 2) <= 1).all())


def test_gradcheck_float64_both_scans():
    for scan in ("parallel", "loop"):
        for cplx in (False, True):
            m = make(complex=cplx, scan=scan, input_size=3, state_size=2, output_size=3).double()
            x = torch.rand(5, 2, 3, dtype=torch.float64, requires_grad=True) + 0.1
            h0 = torch.randn(2, 2, m.width, dtype=torch.float64, requires_grad=True)
            params = [p for p in m.parameters()]

            def f(x, h0, *ps):
                with torch.nn.utils.stateless._reparametrize_module(
                        m, dict(zip([n for n, _ in m.named_parameters()], ps))):
                    return m(x, h0)

            assert gradcheck(f, (x, h0, *[p.detach().clone().requires_grad_() for p in params]))


def test_activity_loss_lowers_activity_and_gradients_reach_every_parameter():
    m = make(input_size=8, state_size=16, output_size=8, num_layers=2).train()
    x = torch.rand(20, 4, 8)
    m(x)
    start = sum(m.activity())
    loss = m(x)[0].pow(2).mean() * 0 + m.activity_loss()
    loss.backward()
    assert all(p.grad is not None for p in m.parameters())
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    for _ in range(30):
        opt.zero_grad()
        m(x)
        m.activity_loss().backward()
        opt.step()
    m(x)
    assert sum(m.activity()) < 0.5 * start


def test_step_streaming_equals_sequence(batch_first=True):
    m = make(complex=True, batch_first=True)
    x = torch.randn(3, 8, 6)
    y, h = m(x)
    state, ys = None, []
    for t in range(8):
        y_t, state = m.step(x[:, t], state)
        ys.append(y_t)
    torch.testing.assert_close(torch.stack(ys, 1), y)
    torch.testing.assert_close(state, h)
    # Chunks carry the state.
    y1, s1 = m(x[:, :3])
    y2, s2 = m(x[:, 3:], s1)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y)


# ---- the inference twin on the kernels ---------------------------------------------------------------


@pytest.mark.parametrize("layout", ["dense", "sparse", "auto"])
@pytest.mark.parametrize("cplx", [False, True])
@pytest.mark.parametrize("sparsity", [0.0, 0.8])
def test_sparsify_equals_dense_masked_module(isa, layout, cplx, sparsity):
    m = make(complex=cplx, input_size=7, state_size=12, output_size=7, num_layers=3)
    masks = prune.global_magnitude(m, sparsity) if sparsity else None
    if masks:
        prune.apply_masks(m, masks)
    packed = m.sparsify(masks, layout)
    assert isinstance(packed, PackedLinearRNN)
    x = torch.relu(torch.randn(10, 2, 7))  # ReLU-sparse inputs, as a previous layer would give
    h0 = torch.randn(3, 2, m.width)
    with torch.no_grad():
        y_ref, h_ref = m(x, h0)
    y, h = packed(x, h0)
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(h, h_ref, rtol=1e-4, atol=1e-5)
    assert packed.activity() == pytest.approx(m.activity(), abs=0.02)
    # Streaming one step at a time on the kernels equals the sequence call.
    state, ys = h0, []
    for t in range(10):
        y_t, state = packed.step(x[t], state)
        ys.append(y_t)
    torch.testing.assert_close(torch.stack(ys), y)
    torch.testing.assert_close(state, h)


@given(T=st.integers(0, 6), B=st.integers(1, 3), n_in=st.integers(1, 9), S=st.integers(1, 9),
       activity=st.sampled_from([0.0, 0.1, 0.5, 1.0]), density=st.sampled_from([0.05, 0.3, 1.0]),
       cplx=st.booleans(), residual=st.booleans(), seed=st.integers(0, 2**16))
def test_sequence_op_matches_reference_over_shapes(T, B, n_in, S, activity, density, cplx, residual, seed):
    torch.manual_seed(seed)
    m = SparseLinearRNN(n_in, S, n_in, 1, complex=cplx, residual=residual).eval()
    with torch.no_grad():
        for name in ("weight_in_l0", "weight_out_l0"):
            p = getattr(m, name)
            p.mul_(torch.rand_like(p) < density)
        m.bias_out_l0.normal_()
    x = torch.randn(T, B, n_in) * (torch.rand(T, B, n_in) < activity)
    h0 = torch.randn(1, B, m.width)
    with torch.no_grad():
        y_ref, h_ref = reference_forward(m, x, h0)
    for layout in ("dense", "sparse"):
        y, h = m.sparsify(layout=layout)(x, h0)
        torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(h, h_ref if T else h0, rtol=1e-4, atol=1e-5)


def test_nothing_active_gives_relu_of_bias_and_nan_propagates():
    m = make(input_size=5, output_size=5, num_layers=1)
    with torch.no_grad():
        m.bias_in_l0.zero_()
        m.bias_out_l0.copy_(torch.tensor([-1.0, 0.0, 0.5, 2.0, -3.0]))
    packed = m.sparsify(layout="sparse")
    y, h = packed.step(torch.zeros(1, 5), torch.zeros(1, 1, m.width))
    assert torch.equal(y[0], torch.tensor([0.0, 0.0, 0.5, 2.0, 0.0]))
    assert torch.equal(h, torch.zeros_like(h))
    x = torch.zeros(1, 5)
    x[0, 2] = float("nan")
    y, h = packed.step(x, torch.zeros(1, 1, m.width))
    with torch.no_grad():
        y_ref, _ = m.step(x, torch.zeros(1, 1, m.width))
    assert torch.equal(torch.isnan(y), torch.isnan(y_ref)) and bool(torch.isnan(y).any())


# ---- pruning and MAC accounting ---------------------------------------------------------------------


def test_prune_selects_projection_weights_and_macs_formula():
    m = make(input_size=6, state_size=4, output_size=6, num_layers=2, complex=True)
    assert set(prune.prunable_parameters(m)) == {"weight_in_l0", "weight_out_l0", "weight_in_l1", "weight_out_l1"}
    rep = macs.count(m)
    W, O = 8, 6
    per_layer = 6 * W + W * O + 4 * 4  # input product, output product, complex recurrence
    assert rep.totals["dense"] == 2 * per_layer
    masks = prune.global_magnitude(m, 0.75)
    prune.apply_masks(m, masks)
    x = torch.relu(torch.randn(30, 2, 6))
    rep = macs.count(m, x, masks)
    l0, l1 = rep.layers
    a_in0 = float((x != 0).float().mean())
    assert l0.input_activity == pytest.approx(a_in0)
    assert l1.input_activity == pytest.approx(m.activity()[0])
    d_in0, d_out0 = float(masks["weight_in_l0"].float().mean()), float(masks["weight_out_l0"].float().mean())
    assert l0.combined == pytest.approx(d_in0 * a_in0 * 6 * W + d_out0 * l0.activity * W * O + 16)
    assert "residual additions" in rep.other


# ---- bad input --------------------------------------------------------------------------------------


def test_bad_inputs():
    m = make()
    with pytest.raises(ValueError, match="5 features, expected input_size=6"):
        m(torch.randn(4, 2, 5))
    with pytest.raises(ValueError, match="3-D"):
        m(torch.randn(6))  # 2-D is the unbatched form (tests/test_unbatched.py)
    with pytest.raises(ValueError, match="floating point"):
        m(torch.ones(4, 2, 6, dtype=torch.int64))
    with pytest.raises(ValueError, match="state must be a tensor of shape \\[2, 2, 5\\]"):
        m(torch.randn(4, 2, 6), torch.zeros(2, 3, 5))
    with pytest.raises(ValueError, match="x_t must be 2-D"):
        m.step(torch.randn(1, 1, 6))
    with pytest.raises(ValueError, match="r_min"):
        SparseLinearRNN(4, 4, 4, r_min=0.9, r_max=1.0)
    with pytest.raises(ValueError, match="scan"):
        SparseLinearRNN(4, 4, 4, scan="fft")
    with pytest.raises(ValueError, match=">= 1"):
        SparseLinearRNN(4, 0, 4)
    with pytest.raises(ValueError, match="unknown weight_masks"):
        m.sparsify({"weight_hh_l0": torch.ones(1)})
    with pytest.raises(RuntimeError, match="forward pass first"):
        make().activity_loss()
    with pytest.raises(ValueError, match="method"):
        diagonal_scan(torch.zeros(2, 1), torch.zeros(1), method="fft")
    packed = m.sparsify()
    with pytest.raises(ValueError, match="x_t must be"):
        packed.step(torch.randn(2, 5))
    with pytest.raises(ValueError, match="state must be"):
        packed(torch.randn(4, 2, 6), torch.zeros(2, 2, 4))


def test_raw_linear_rnn_op_rejects_bad_arguments():
    m = make(input_size=7, output_size=7, num_layers=1, complex=True)
    args = list(m.sparsify(layout="sparse")._args(0))
    x, h = torch.rand(2, 7), torch.zeros(2, m.width)
    op = torch.ops.evsparse.linear_rnn_step
    op(x, h, *args)  # the good call
    with pytest.raises(ValueError, match="h must have shape \\[2, 10\\]"):
        op(x, torch.zeros(2, 5), *args)
    with pytest.raises(ValueError, match="x must be float32"):
        op(x.double(), h, *args)
    with pytest.raises(ValueError, match="x must be 2-D"):
        op(x[0], h, *args)
    with pytest.raises(ValueError, match="must be contiguous"):
        op(torch.rand(7, 2).T, h, *args)
    bad = list(args)
    bad[5] = torch.zeros(4)  # a_im of the wrong size
    with pytest.raises(ValueError, match="a_im must have shape \\[5\\]"):
        op(x, h, *bad)
    bad = list(args)
    bad[3] = torch.zeros(5)  # b_in sized for a real diagonal
    with pytest.raises(ValueError, match="b_in must have shape \\[10\\]"):
        op(x, h, *bad)
    bad = list(args)
    bad[2] = None  # col_ptr without row_idx
    with pytest.raises(ValueError, match="needs both col_ptr and row_idx"):
        op(x, h, *bad)
    bad = list(args)
    bad[9] = torch.zeros(6)  # output size 6 with a residual from 7 inputs
    with pytest.raises(ValueError, match="residual layer needs in_features == out_features"):
        op(x, h, *bad)
    bad = list(args)
    bad[1] = args[1].clone()
    bad[1][3] = 10**6  # corrupted column pointer
    x_all = torch.ones(2, 7)
    with pytest.raises(ValueError, match="col_ptr is inconsistent"):
        op(x_all, h, *bad)
    with pytest.raises(ValueError, match="xs|x must be 3-D"):
        torch.ops.evsparse.linear_rnn_sequence(x, h, *args)


def test_sparse_linear_rnn_is_deprecated_for_s5stack():
    """It gives way to the published model (S5Stack): constructing one warns, naming the successor; the
    benchmark harness, which still measures it, does not warn."""
    import warnings

    with pytest.warns(DeprecationWarning, match="S5Stack"):
        SparseLinearRNN(4, 3, 4)
    from evsparse.bench.stack import build_stack_methods

    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        build_stack_methods("linear RNN", 8, 1, 0.5)
