"""EGRU: equations, surrogate gradient, streaming, sparsify equality, EvNN import, bad input."""

import pytest
import torch
from torch.autograd import gradcheck

from evsparse.nn import EGRU, PackedEGRU
from evsparse.nn.egru import egru_cell, spike


def reference_egru_layer(x, w_ih, w_hh, b_ih, b_hh, thr, c, y):
    """Written from the equations (prior-art notes), independent of the module's code."""
    H = thr.shape[0]
    t_clamped = thr.clamp(0, 1)
    outs = []
    for t in range(x.shape[0]):
        a = x[t] @ w_ih.t() + b_ih
        b = y @ w_hh.t() + b_hh
        z = torch.sigmoid(a[:, :H] + b[:, :H])
        r = torch.sigmoid(a[:, H:2 * H] + b[:, H:2 * H])
        g = torch.tanh(a[:, 2 * H:] + r * b[:, 2 * H:])
        ct = z * c + (1 - z) * g
        o = (ct > t_clamped).to(x.dtype)
        y = o * ct
        c = ct - o * t_clamped
        outs.append(y)
    return torch.stack(outs), c, y


def reference_egru(model, x, state=None):
    L, H = model.num_layers, model.hidden_size
    c0 = torch.zeros(L, x.shape[1], H, dtype=x.dtype) if state is None else state[0]
    y0 = torch.zeros(L, x.shape[1], H, dtype=x.dtype) if state is None else state[1]
    inp, cs, ys = x, [], []
    for k in range(L):
        w_ih, w_hh, b_ih, b_hh, thr = (p.detach() for p in model.layer_params(k))
        inp, c, y = reference_egru_layer(inp, w_ih, w_hh, b_ih, b_hh, thr, c0[k], y0[k])
        cs.append(c)
        ys.append(y)
    return inp, torch.stack(cs), torch.stack(ys)


def make_model(seed=0, **kw):
    torch.manual_seed(seed)
    args = dict(input_size=12, hidden_size=24, num_layers=2, thr_mean=0.15)
    args.update(kw)
    return EGRU(**args).eval()


@pytest.mark.parametrize("num_layers", [1, 3])
def test_forward_matches_equations(num_layers):
    m = make_model(num_layers=num_layers)
    x = torch.randn(20, 3, 12)
    y, (c, yl) = m(x)
    y_ref, c_ref, yl_ref = reference_egru(m, x)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(c, c_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(yl, yl_ref)
    assert 0.0 < m.activity()[-1] < 1.0  # the test exercises events and silence
    assert m.activity()[-1] == pytest.approx(float((y != 0).float().mean()))


def test_threshold_is_clamped_and_event_is_zero_at_equality():
    v = torch.tensor([-0.5, 0.0, 1e-9, 0.5])
    assert spike(v).tolist() == [0.0, 0.0, 1.0, 1.0]
    m = make_model(num_layers=1)
    with torch.no_grad():
        m.thr_l0.fill_(5.0)  # clamped to 1: |c~| < 1 always, so no unit can fire
    y, _ = m(torch.randn(6, 2, 12))
    assert bool((y == 0).all())


def test_surrogate_gradient_is_the_triangle():
    v = torch.linspace(-2, 2, 41, dtype=torch.float64, requires_grad=True)
    g = torch.randn(41, dtype=torch.float64)
    spike(v, dampening=0.7, support=1.5).backward(g)
    expected = g * 0.7 * torch.clamp(1 - 1.5 * v.detach().abs(), min=0)
    torch.testing.assert_close(v.grad, expected)


def smooth_spike(v, dampening=0.7, support=1.0):
    """A smooth function whose true derivative is the surrogate: lets gradcheck verify every other
    gradient path of the cell (the surrogate itself is checked against its formula above)."""
    a = v.abs()
    inside = dampening * (v - support * v * a / 2)
    outside = torch.sign(v) * dampening / (2 * support)
    return torch.where(a < 1 / support, inside, outside)


def test_gradcheck_cell_with_surrogate_derivative():
    torch.manual_seed(1)
    B, H = 3, 5
    gi = torch.randn(B, 3 * H, dtype=torch.float64, requires_grad=True)
    gh = torch.randn(B, 3 * H, dtype=torch.float64, requires_grad=True)
    c = torch.randn(B, H, dtype=torch.float64, requires_grad=True)
    thr = torch.rand(H, dtype=torch.float64).mul(0.8).add(0.1).requires_grad_()

    def f(gi, gh, c, thr):
        c_new, y, o = egru_cell(gi, gh, c, thr, smooth_spike)
        return c_new, y

    assert gradcheck(f, (gi, gh, c, thr))


def test_gradcheck_whole_layer_float64(monkeypatch):
    m = make_model(num_layers=2, input_size=4, hidden_size=5).double()
    m.fused = False  # the smooth stand-in replaces the loop's spike; the fused op: test_egru_train.py
    monkeypatch.setattr(m, "_spike", lambda v: smooth_spike(v, m.dampening, m.support))
    x = torch.randn(4, 2, 4, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(2, 2, 5, dtype=torch.float64, requires_grad=True)
    y0 = torch.randn(2, 2, 5, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda x, c0, y0: m(x, (c0, y0))[0], (x, c0, y0))


def test_training_gradients_reach_every_parameter_and_activity_loss_lowers_activity():
    torch.manual_seed(2)
    m = EGRU(8, 32, num_layers=2, thr_mean=0.05).train()
    x = torch.randn(30, 4, 8)
    opt = torch.optim.Adam(m.parameters(), lr=0.02)
    m(x)
    start = sum(m.activity())
    for _ in range(25):
        opt.zero_grad()
        m(x)
        m.activity_loss().backward()
        opt.step()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    m(x)
    assert sum(m.activity()) < 0.8 * start


def test_dropconnect_and_dropout_only_in_training():
    m = make_model(dropout=0.5, dropconnect=0.5)
    x = torch.randn(10, 2, 12)
    m.train()
    torch.manual_seed(0)
    a, _ = m(x)
    torch.manual_seed(1)
    b, _ = m(x)
    assert not torch.equal(a, b)
    m.eval()
    c, _ = m(x)
    d, _ = m(x)
    assert torch.equal(c, d)
    torch.testing.assert_close(c, reference_egru(m, x)[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("batch_first", [False, True])
def test_streaming_in_chunks_equals_one_call(batch_first):
    m = make_model(batch_first=batch_first)
    x = torch.randn(3, 25, 12) if batch_first else torch.randn(25, 3, 12)
    full, (c_full, y_full) = m(x)
    dim = 1 if batch_first else 0
    state, parts = None, []
    for chunk in x.split([7, 1, 10, 7], dim=dim):
        out, state = m(chunk, state)
        parts.append(out)
    torch.testing.assert_close(torch.cat(parts, dim=dim), full)
    torch.testing.assert_close(state[0], c_full)
    steps, state = [], None
    for t in range(25):
        y_t, state = m.step(x[:, t] if batch_first else x[t], state)
        steps.append(y_t)
    torch.testing.assert_close(torch.stack(steps, dim=dim), full)


@pytest.mark.parametrize("layout", ["dense", "sparse", "auto"])
@pytest.mark.parametrize("bias", [True, False])
def test_sparsify_equals_training_module_with_masks(isa, layout, bias):
    m = make_model(bias=bias, num_layers=2)
    gen = torch.Generator().manual_seed(3)
    masks = {name: torch.rand(p.shape, generator=gen) < 0.15
             for name, p in m.named_parameters() if name.startswith("weight")}
    with torch.no_grad():
        for name, mask in masks.items():
            getattr(m, name).mul_(mask)
    x = torch.randn(30, 2, 12)
    y, (c, yl) = m(x)
    sp = m.sparsify(weight_masks=masks, layout=layout)
    assert isinstance(sp, PackedEGRU)
    y2, (c2, yl2) = sp(x)
    torch.testing.assert_close(y2, y, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(c2, c, rtol=1e-5, atol=1e-5)
    assert sp.activity() == pytest.approx(m.activity())
    if layout != "dense":
        assert sp.packed(0)[1].layout == "sparse"
    # streaming on the kernels, from a nonzero state, equals the sequence call
    state = (c2, yl2)
    ref, _ = sp(x[:5], state)
    outs = []
    for t in range(5):
        y_t, state = sp.step(x[t], state)
        outs.append(y_t)
    torch.testing.assert_close(torch.stack(outs), ref)


def test_concurrent_inference_from_threads_is_exact(threads):
    """The ops release the GIL and keep their scratch buffers per thread: Python threads sharing one
    PackedEGRU get exactly the single-threaded results (each op also runs its own parallel_for)."""
    import threading

    threads(2)
    torch.manual_seed(0)
    m = EGRU(64, 128, num_layers=2, thr_mean=0.1).eval()
    mods = {layout: m.sparsify(layout=layout) for layout in ("dense", "sparse")}
    inputs = [torch.randn(20, 1, 64) * (torch.rand(20, 1, 64) < 0.3) for _ in range(4)]
    refs = {k: [mod(x)[0] for x in inputs] for k, mod in mods.items()}
    wrong = []

    def work(i):
        for _ in range(20):
            for k, mod in mods.items():
                if not torch.equal(mod(inputs[i])[0], refs[k][i]):
                    wrong.append((k, i, "forward"))
                if not torch.equal(mod.step(inputs[i][0])[0], refs[k][i][0]):
                    wrong.append((k, i, "step"))

    workers = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert wrong == []


def test_sparsify_half_weights_close():
    m = make_model()
    x = torch.randn(10, 1, 12)
    y, _ = m(x)
    sp = m.sparsify(layout="dense")
    for name, buf in sp.named_buffers():
        if name.endswith("_values"):
            buf.data = buf.data.to(torch.bfloat16)
    y2, _ = sp(x)
    assert y2.shape == y.shape  # bf16 weights run; values drift, so only agreement in bulk is checked
    assert float((y2 - y.detach()).abs().mean()) < 0.05


def evnn_state_dict(input_size, H, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "kernel": torch.randn(input_size, 3 * H, generator=g) * 0.3,
        "recurrent_kernel": torch.randn(H, 3 * H, generator=g) * 0.3,
        "bias": torch.randn(3 * H, generator=g) * 0.1,
        "recurrent_bias": torch.randn(3 * H, generator=g) * 0.1,
        "thr": torch.rand(H, generator=g) * 0.3,
    }


def test_load_evnn_state_dict_single_and_stacked():
    sd = evnn_state_dict(12, 24)
    m = EGRU(12, 24).eval()
    m.load_evnn_state_dict(sd)
    x = torch.randn(9, 2, 12)
    c0, y0 = torch.zeros(2, 24), torch.zeros(2, 24)
    # EvNN layout is input-major: x @ kernel
    ref, _, _ = reference_egru_layer(x, sd["kernel"].t(), sd["recurrent_kernel"].t(), sd["bias"],
                                     sd["recurrent_bias"], sd["thr"], c0, y0)
    torch.testing.assert_close(m(x)[0], ref)
    two = EGRU(12, 24, num_layers=2)
    layers = [sd, evnn_state_dict(24, 24, seed=1)]
    two.load_evnn_state_dict(layers)
    prefixed = {f"layers.{k}.{key}": v for k, d in enumerate(layers) for key, v in d.items()}
    three = EGRU(12, 24, num_layers=2)
    three.load_evnn_state_dict(prefixed)
    for (n1, p1), (_, p2) in zip(two.named_parameters(), three.named_parameters()):
        assert torch.equal(p1, p2), n1


def test_load_evnn_state_dict_errors():
    m = EGRU(12, 24)
    sd = evnn_state_dict(12, 24)
    with pytest.raises(ValueError, match="'kernel' has shape"):
        m.load_evnn_state_dict({**sd, "kernel": sd["kernel"].t()})
    with pytest.raises(ValueError, match="lacks 'thr'"):
        m.load_evnn_state_dict({k: v for k, v in sd.items() if k != "thr"})
    with pytest.raises(ValueError, match="found 1 layer"):
        EGRU(12, 24, num_layers=2).load_evnn_state_dict(sd)


def test_bad_inputs():
    m = make_model()
    with pytest.raises(ValueError, match="11 features, expected input_size=12"):
        m(torch.randn(5, 2, 11))
    with pytest.raises(ValueError, match="3-D"):
        m(torch.randn(12))  # 2-D is the unbatched form (tests/test_unbatched.py)
    with pytest.raises(ValueError, match="state c must have shape"):
        m(torch.randn(5, 2, 12), (torch.zeros(2, 3, 24), torch.zeros(2, 2, 24)))
    with pytest.raises(ValueError, match="tuple"):
        m(torch.randn(5, 2, 12), torch.zeros(2, 2, 24))
    with pytest.raises(ValueError, match="x_t must be 2-D"):
        m.step(torch.randn(1, 1, 12))
    with pytest.raises(ValueError, match="dropout"):
        EGRU(4, 4, dropout=1.0)
    with pytest.raises(ValueError, match="unknown weight_masks"):
        m.sparsify({"weight_ih_l7": torch.ones(1)})
    with pytest.raises(RuntimeError, match="forward pass first"):
        EGRU(4, 4).activity_loss()
    sp = m.sparsify()
    with pytest.raises(ValueError, match="x_t must be"):
        sp.step(torch.randn(2, 11))
    with pytest.raises(ValueError, match="state y must have shape"):
        sp(torch.randn(5, 2, 12), (torch.zeros(2, 2, 24), torch.zeros(2, 2, 23)))


def test_raw_egru_op_rejects_bad_arguments():
    m = make_model(num_layers=1)
    sp = m.sparsify(layout="dense")
    args = list(sp._args(0))
    x, c, y = torch.randn(2, 12), torch.zeros(2, 24), torch.zeros(2, 24)
    op = torch.ops.evsparse.egru_step
    with pytest.raises(ValueError, match="w_ih \\(dense layout\\) must have shape"):
        op(torch.randn(2, 11), c, y, *args)
    with pytest.raises(ValueError, match="'c' must have shape|c must have shape"):
        op(x, torch.zeros(3, 24), y, *args)
    with pytest.raises(ValueError, match="x must be float32"):
        op(x.double(), c, y, *args)
    bad = list(args)
    bad[8] = torch.zeros(23)  # thr of the wrong size
    with pytest.raises(ValueError, match="b_ih must have shape"):
        op(x, c, y, *bad)
    bad = list(args)
    bad[1] = torch.zeros(13, dtype=torch.int64)  # col_ptr without row_idx
    with pytest.raises(ValueError, match="needs both col_ptr and row_idx"):
        op(x, c, y, *bad)
