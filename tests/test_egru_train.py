"""The fused EGRU training op (torch.ops.evsparse.egru_train, evsparse.functional.egru_train) and
EGRU.forward on it: values and every gradient against the Python loop over time (the reference),
gradcheck, bad input, and a tiny training run."""

import copy

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.autograd import gradcheck

from evsparse import functional
from evsparse.nn import EGRU
from evsparse.nn.egru import egru_cell, spike


def loop_reference(gi, c0, y0, w_hh, b_hh, thr, dampening, support):
    """The recurrence as EGRU's Python loop runs it (egru_cell + the surrogate spike), with autograd."""
    c, y, ys, events = c0, y0, [], torch.zeros_like(c0)
    for t in range(gi.shape[0]):
        c, y, o = egru_cell(gi[t], F.linear(y, w_hh, b_hh), c, thr, lambda v: spike(v, dampening, support))
        ys.append(y)
        events = events + o
    ys = torch.stack(ys) if ys else gi.new_zeros((0, *c0.shape))
    return ys, c, events


def make_args(T, B, H, dtype, weight_density=1.0, seed=0, thr_range=(0.0, 0.6), y0_active=0.3):
    g = torch.Generator().manual_seed(seed)
    gi = torch.randn(T, B, 3 * H, dtype=dtype, generator=g)
    c0 = torch.randn(B, H, dtype=dtype, generator=g) * 0.3
    y0 = torch.randn(B, H, dtype=dtype, generator=g) * (torch.rand(B, H, generator=g) < y0_active)
    w_hh = torch.randn(3 * H, H, dtype=dtype, generator=g) * (torch.rand(3 * H, H, generator=g) < weight_density)
    b_hh = torch.randn(3 * H, dtype=dtype, generator=g) * 0.5
    lo, hi = thr_range
    thr = lo + (hi - lo) * torch.rand(H, dtype=dtype, generator=g)
    return [t.requires_grad_() for t in (gi, c0, y0, w_hh, b_hh, thr)]


def grads_of(outputs, inputs, seed=1):
    g = torch.Generator().manual_seed(seed)
    weights = [torch.randn(o.shape, dtype=o.dtype, generator=g) for o in outputs]
    loss = sum((o * w).sum() for o, w in zip(outputs, weights))
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)  # (T = 0: the loop never reads gi)
    return [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads)]


def tolerances(dtype):
    return dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=2e-4, atol=2e-5)


@settings(max_examples=40, deadline=None)
@given(T=st.sampled_from([0, 1, 2, 7]), B=st.sampled_from([1, 2, 3]), H=st.sampled_from([1, 3, 8, 17]),
       dtype=st.sampled_from([torch.float32, torch.float64]), density=st.sampled_from([1.0, 0.3, 0.0]),
       dampening=st.sampled_from([0.7, 0.3]), support=st.sampled_from([1.0, 2.5]), seed=st.integers(0, 10**6))
def test_equals_the_python_loop_values_and_every_gradient(isa, T, B, H, dtype, density, dampening, support, seed):
    # thr drawn in [-0.2, 1.2]: the clamp to [0, 1] and its gradient on both sides.
    args = make_args(T, B, H, dtype, density, seed, thr_range=(-0.2, 1.2))
    fused = functional.egru_train(*args, dampening=dampening, support=support)
    ref = loop_reference(*args, dampening, support)
    for a, b in zip(fused, ref):
        torch.testing.assert_close(a, b, **tolerances(dtype))
    for a, b in zip(grads_of(fused, args), grads_of(ref, args)):
        torch.testing.assert_close(a, b, **tolerances(dtype))


@pytest.mark.parametrize("activity", ["none", "all"])
def test_nothing_and_everything_active(activity):
    T, B, H = 5, 3, 9
    args = make_args(T, B, H, torch.float64, y0_active=0.0 if activity == "none" else 1.0)
    with torch.no_grad():
        args[5].fill_(1.0 if activity == "none" else 0.0)  # thr 1: c~ (a convex mix of tanh values) never exceeds it
        if activity == "all":
            args[0][:, :, 2 * H:] += 20.0  # g -> 1, c~ -> ~1 > 0 from the first step on
            args[0][:, :, :H] -= 20.0  # z -> 0
    fused = functional.egru_train(*args)
    ref = loop_reference(*args, 0.7, 1.0)
    fired = (fused[0] != 0).float().mean().item()
    assert fired == (0.0 if activity == "none" else 1.0)
    for a, b in zip(grads_of(fused, args), grads_of(ref, args)):
        torch.testing.assert_close(a, b, **tolerances(torch.float64))


@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("density", [1.0, 0.3])
def test_gradcheck_float64_without_the_surrogate(isa, B, density):
    """With dampening 0 the surrogate is off and the op is smooth wherever no unit sits on its threshold
    (almost surely at random points): gradcheck then checks every gradient path against finite
    differences of the op's own forward. The surrogate's part is checked against the loop above, whose
    surrogate test_egru.py gradchecks through a smooth function with that derivative."""
    args = make_args(6, B, 5, torch.float64, density, seed=B)

    def f(*a):
        return torch.ops.evsparse.egru_train(*a, 0.0, 1.0)

    assert gradcheck(f, args)


def test_large_sizes_and_threads_equal_the_loop():
    # Big enough to split the batch across threads; a tail of rows per thread.
    args = make_args(9, 11, 70, torch.float32, 0.5, seed=3)
    fused = functional.egru_train(*args)
    ref = loop_reference(*args, 0.7, 1.0)
    torch.testing.assert_close(fused[0], ref[0], rtol=2e-4, atol=2e-5)
    for a, b in zip(grads_of(fused, args), grads_of(ref, args)):
        torch.testing.assert_close(a, b, rtol=5e-4, atol=5e-5)


@pytest.mark.parametrize("T, B, H", [(20, 13, 130), (17, 8, 96), (3, 2, 33)])
@pytest.mark.parametrize("dampening, support", [(0.7, 1.0), (0.0, 1.0), (0.7, 12.0)])
def test_kernel_blocks_and_tails_equal_the_loop(isa, threads, T, B, H, dampening, support):
    """The float kernels' blocking: dy = dgh W in register blocks of 6/4/2/1 rows x 2 or 4 vectors of units
    (H = 130 and 33 leave single vectors and a scalar tail on AVX2 and AVX-512; 3H not a multiple of 16
    pads the scratch rows), dR^T summed every few steps (T = 20 and 17 span several flushes). With
    dampening 0 only fired units need dy, and with a narrow surrogate (support 12) few others do: then
    the needed entries are dot products with R^T's rows (the sparse dy), in groups of four and a tail."""
    threads(2)
    args = make_args(T, B, H, torch.float32, 0.5, seed=H + T)
    with torch.no_grad():
        args[3].mul_(H ** -0.5)  # pre-activations of order 1: no threshold sits within rounding of c~
    fused = functional.egru_train(*args, dampening=dampening, support=support)
    ref = loop_reference(*args, dampening, support)
    for a, b in zip(fused, ref):
        torch.testing.assert_close(a, b, rtol=2e-4, atol=2e-5)
    for a, b in zip(grads_of(fused, args), grads_of(ref, args)):
        torch.testing.assert_close(a, b, rtol=5e-4, atol=5e-5)


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
def test_module_fused_equals_loop_with_dropout_dropconnect_and_activity_loss(num_layers, bias):
    torch.manual_seed(0)
    m = EGRU(6, 10, num_layers=num_layers, dropout=0.3, dropconnect=0.4, thr_mean=0.1, bias=bias).double().train()
    loop = copy.deepcopy(m)
    loop.fused = False
    x = torch.randn(8, 3, 6, dtype=torch.float64)
    state = (torch.randn(num_layers, 3, 10, dtype=torch.float64) * 0.2, torch.zeros(num_layers, 3, 10, dtype=torch.float64))
    outs = []
    for mod in (m, loop):
        torch.manual_seed(5)  # the same dropout and DropConnect masks for both
        y, (c, y_last) = mod(x, state)
        loss = y.square().sum() + c.sum() + y_last.sum() + 0.5 * mod.activity_loss()
        loss.backward()
        outs.append((y, c, y_last, mod.activity()))
    for a, b in zip(outs[0][:3], outs[1][:3]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert outs[0][3] == outs[1][3]
    for (name, p), (_, q) in zip(m.named_parameters(), loop.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-9, atol=1e-11, msg=name)


def test_module_uses_the_op_only_where_it_runs():
    m = EGRU(4, 6)
    assert m.fused and "fused=True" in repr(m)
    x = torch.randn(3, 2, 4)
    calls = []
    op = torch.ops.evsparse.egru_train
    orig = functional.egru_train
    try:
        functional.egru_train = lambda *a, **k: calls.append(1) or orig(*a, **k)
        m(x)
        assert calls == [1]
        m.fused = False
        m(x)
        assert calls == [1]
        m.fused = True
        m.half()(x.half())  # float16: the loop
        assert calls == [1]
    finally:
        functional.egru_train = orig
    assert op is torch.ops.evsparse.egru_train


def test_unbatched_and_empty_sequences_match_the_loop():
    m = EGRU(4, 6, num_layers=2).double()
    loop = copy.deepcopy(m)
    loop.fused = False
    for x in (torch.randn(5, 4, dtype=torch.float64), torch.randn(0, 2, 4, dtype=torch.float64)):
        a, (ca, ya) = m(x)
        b, (cb, yb) = loop(x)
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(ca, cb)
        torch.testing.assert_close(ya, yb)


def test_no_grad_and_inference_mode():
    args = [t.detach() for t in make_args(4, 2, 5, torch.float32)]
    with torch.no_grad():
        a = functional.egru_train(*args)
    with torch.inference_mode():
        b = functional.egru_train(*args)
    ref = loop_reference(*args, 0.7, 1.0)
    for x, y, z in zip(a, b, ref):
        torch.testing.assert_close(x, z)
        torch.testing.assert_close(y, z)


def test_double_backward_is_refused_not_silently_zero():
    args = make_args(3, 2, 4, torch.float64)
    ys, c, _ = functional.egru_train(*args)
    (g,) = torch.autograd.grad((ys.square().sum() + c.sum()), args[0], create_graph=True)
    with pytest.raises(RuntimeError, match="not implemented"):
        g.sum().backward()


def test_tiny_training_run_lowers_the_loss():
    torch.manual_seed(0)
    m = EGRU(5, 16, num_layers=2, thr_mean=0.05, dropconnect=0.2).train()
    head = torch.nn.Linear(16, 1)
    x = torch.randn(20, 8, 5)
    target = x.cumsum(0)[..., :1].tanh()  # a running sum: needs the recurrence
    opt = torch.optim.Adam([*m.parameters(), *head.parameters()], lr=0.02)
    losses = []
    for _ in range(60):
        y, _ = m(x)
        loss = F.mse_loss(head(y), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5


def test_compile_fullgraph_trains():
    torch.manual_seed(0)
    m = EGRU(4, 8).train()
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")
    x = torch.randn(5, 2, 4)
    y, _ = compiled(x)
    y.square().sum().backward()
    grads = [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    y2, _ = m(x)
    y2.square().sum().backward()
    torch.testing.assert_close(y, y2)
    for a, p in zip(grads, m.parameters()):
        torch.testing.assert_close(a, p.grad)


def _bad(i, value):
    args = [t.detach() for t in make_args(3, 2, 4, torch.float32)]
    args[i] = value(args[i])
    return args


@pytest.mark.parametrize("args, match", [
    (_bad(0, lambda t: t[0]), "gi must be 3-D"),
    (_bad(0, lambda t: t[..., :-1].contiguous()), r"gi must be \[T, B, 3H\]"),
    (_bad(0, lambda t: t.transpose(0, 1)), "contiguous"),
    (_bad(0, lambda t: t.half()), "float32 or float64"),
    (_bad(1, lambda t: t.double()), "c0 must be Float"),
    (_bad(2, lambda t: t[:1].contiguous()), r"y0 must have shape \[2, 4\]"),
    (_bad(3, lambda t: t.t().contiguous()), r"w_hh must have shape \[12, 4\]"),
    (_bad(4, lambda t: t[:-1].contiguous()), r"b_hh must have shape \[12\]"),
    (_bad(5, lambda t: t[None]), "thr must be 1-D"),
    (_bad(0, lambda t: t.to_sparse()), "strided|layout|Sparse"),
])
def test_bad_input_is_a_value_error(args, match):
    with pytest.raises((ValueError, RuntimeError, NotImplementedError), match=match):
        torch.ops.evsparse.egru_train(*args, 0.7, 1.0)


def test_bad_input_to_the_backward_half():
    args = [t.detach() for t in make_args(3, 2, 4, torch.float32)]
    ys, c, ev, saved = torch.ops.evsparse.egru_train_forward(*args)
    c0, y0, w, thr = args[1], args[2], args[3], args[5]
    with pytest.raises(ValueError, match=r"saved must be \[T, B, 5H\]"):
        torch.ops.evsparse.egru_train_backward(ys, c, ev, c0, y0, w, thr, saved[..., :-1].contiguous(), 0.7, 1.0)
    with pytest.raises(ValueError, match="grad_ys must have shape"):
        torch.ops.evsparse.egru_train_backward(ys[1:].contiguous(), c, ev, c0, y0, w, thr, saved, 0.7, 1.0)
