"""The S5 family (evsparse.nn.s5) and its plan ops (csrc/ops/s5_ops.cpp): the recurrence against a plain
per-step complex reference, scan == loop, step == sequence, the sparsified module == the training module
(dense, sparse and int8 against its dequantised weights; every ISA), BatchNorm folding exact, pair and
ERK pruning, bad inputs and corrupted plans refused with a ValueError."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from evsparse import plan, prune
from evsparse.nn import S5, PackedS5Stack, S5Stack
from evsparse.nn.s5 import hippo_legs_eigen

OPS = torch.ops.evsparse


def _model(seed=0, n_in=12, H=16, P=8, L=2, out=5, relufied=True, blocks=2, warm=True):
    torch.manual_seed(seed)
    m = S5Stack(n_in, H, P, num_layers=L, output_size=out, blocks=blocks, relufied=relufied)
    if warm:  # non-trivial BatchNorm statistics to fold
        m.train()
        with torch.no_grad():
            for _ in range(3):
                m(torch.randn(20, 3, n_in) * 2 + 0.5)
    return m.eval()


def _reference_s5(s5: S5, u: torch.Tensor) -> torch.Tensor:
    """S5 step by step in complex128 straight from the definition (ZOH, conjugate symmetry)."""
    lam = torch.complex(s5.Lambda_re.double().clamp(max=-1e-4), s5.Lambda_im.double())
    dt = torch.exp(s5.log_step.double())
    lam_bar = torch.exp(lam * dt)
    B = torch.complex(s5.B[..., 0].double(), s5.B[..., 1].double())
    C = torch.complex(s5.C[..., 0].double(), s5.C[..., 1].double())
    B_bar = ((lam_bar - 1) / lam)[:, None] * B
    x = torch.zeros(u.shape[1], lam.shape[0], dtype=torch.complex128)
    ys = []
    for t in range(u.shape[0]):
        x = lam_bar * x + u[t].double().to(torch.complex128) @ B_bar.T
        r = torch.where(x.real > 0, x, torch.zeros_like(x)) if s5.state_relu else x
        ys.append(2 * (r @ C.T).real + s5.D.double() * u[t].double())
    return torch.stack(ys)


def test_hippo_legs_eigen_is_the_normal_part():
    lam, V = hippo_legs_eigen(8)
    assert torch.allclose(lam.real, torch.full((8,), -0.5, dtype=torch.float64))
    n = torch.arange(8, dtype=torch.float64)
    p = torch.sqrt(1 + 2 * n)
    A = -(torch.tril(p[:, None] * p[None, :]) - torch.diag(n))
    q = torch.sqrt(n + 0.5)
    S = (A + q[:, None] * q[None, :]).to(torch.complex128)
    assert torch.allclose(S @ V, V * lam, atol=1e-9)  # eigenpairs of the normal matrix
    assert torch.allclose(lam.imag[:4], -lam.imag[4:].flip(0), atol=1e-9)  # conjugate pairs


@pytest.mark.parametrize("state_relu", [False, True])
@pytest.mark.parametrize("scan", ["parallel", "loop"])
def test_s5_matches_the_per_step_reference(state_relu, scan):
    torch.manual_seed(1)
    s5 = S5(6, 8, blocks=2, state_relu=state_relu, scan=scan).double()
    u = torch.randn(17, 3, 6, dtype=torch.float64)
    y, _ = s5(u)
    assert torch.allclose(y, _reference_s5(s5, u), atol=1e-10)


def test_parallel_scan_equals_loop_with_an_initial_state():
    torch.manual_seed(2)
    a = S5(5, 6, scan="parallel").double()
    b = S5(5, 6, scan="loop").double()
    b.load_state_dict(a.state_dict())
    u, x0 = torch.randn(33, 2, 5, dtype=torch.float64), torch.randn(2, 6, dtype=torch.float64)
    (ya, ha), (yb, hb) = a(u, x0), b(u, x0)
    assert torch.allclose(ya, yb, atol=1e-10) and torch.allclose(ha, hb, atol=1e-10)


@pytest.mark.parametrize("relufied", [True, False])
def test_step_streaming_equals_sequence(relufied):
    m = _model(relufied=relufied)
    x = torch.randn(25, 2, 12)
    with torch.no_grad():
        y, h = m(x)
        state, outs = None, []
        for t in range(25):
            o, state = m.step(x[t], state)
            outs.append(o)
    assert torch.allclose(torch.stack(outs), y, atol=1e-5) and torch.allclose(state, h, atol=1e-5)


def test_batchnorm_folding_is_exact():
    m = _model().double()
    x = torch.randn(15, 2, 12, dtype=torch.float64)
    with torch.no_grad():
        y, _ = m(x)
        p = m.float().sparsify(layout="dense")
        y2, _ = p(x.float())
    assert (y.float() - y2).abs().max() < 2e-5 * max(1.0, float(y.abs().max()))


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2 ** 16), H=st.integers(1, 33), half_p=st.integers(1, 9), L=st.integers(1, 3),
       relufied=st.booleans(), density=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
       layout=st.sampled_from(["dense", "sparse", "auto"]), batch=st.sampled_from([None, 1, 3]),
       decoder=st.booleans())
def test_sparsified_equals_module(seed, H, half_p, L, relufied, density, layout, batch, decoder):
    torch.manual_seed(seed)
    m = S5Stack(7, H, 2 * half_p, num_layers=L, output_size=4 if decoder else None, relufied=relufied).eval()
    masks = prune.global_magnitude(m, 1.0 - density) if density < 1.0 else {}
    prune.apply_masks(m, masks)
    x = torch.randn(9, 7) if batch is None else torch.randn(9, batch, 7)
    with torch.no_grad():
        y, h = m(x)
        p = m.sparsify(masks, layout=layout)
        y2, h2 = p(x)
    assert torch.allclose(y, y2, atol=1e-4, rtol=1e-4) and torch.allclose(h, h2, atol=1e-4, rtol=1e-4)


def test_every_isa_and_stream(isa):
    m = _model(seed=3)
    masks = prune.erk_magnitude(m, 0.8)
    prune.apply_masks(m, masks)
    x = torch.randn(20, 12)
    with torch.no_grad():
        y, h = m(x)
        for layout in ("dense", "sparse"):
            p = m.sparsify(masks, layout=layout)
            s = p.stream()
            ys = torch.stack([s.step(x[t]).clone() for t in range(20)])
            assert torch.allclose(ys, y, atol=1e-4), layout
            assert torch.allclose(s.state, h, atol=1e-4)
            y1, h1 = p.step(x[0], torch.zeros(2, 8))
            assert torch.allclose(y1, y[0], atol=1e-4)


def test_int8_against_its_dequantised_weights(isa):
    m = _model(seed=4)
    x = torch.randn(12, 2, 12)
    p8 = m.sparsify(weight_dtype=torch.int8, layout="sparse")
    # The same plan with every int8 weight dequantised to float32 is the reference.
    views = plan.layer_views(p8.plan_arena, p8.plan_meta)
    deq = [v._replace(weights=tuple(None if w is None else w.to(dtype=torch.float32) for w in v.weights))
           for v in views]
    arena, meta = plan.build(plan.S5, 12, 8, deq)
    with torch.no_grad():
        y8, _ = p8(x)
        yr, _, _ = OPS.s5_plan_sequence(x, torch.zeros(2, 2, 8), arena, meta, 5)
        y, _ = m(x)
    assert torch.allclose(y8, yr, atol=1e-5)
    assert (y8 - y).abs().max() < 0.05 * y.abs().max()  # quantisation error, small
    assert p8.weight_bytes() < m.sparsify(layout="sparse").weight_bytes()


def test_pair_pruning_keeps_complex_pairs_whole():
    m = _model()
    for fn in (prune.global_magnitude, prune.erk_magnitude):
        masks = fn(m, 0.7)
        for k in range(2):
            for name in ("B", "C"):
                mk = masks[f"blocks.{k}.s5.{name}"]
                assert torch.equal(mk[..., 0], mk[..., 1])
        kept = sum(int(v.sum()) for v in masks.values())
        total = sum(v.numel() for v in masks.values())
        assert abs(1 - kept / total - 0.7) < 0.03


def test_erk_gives_small_matrices_more_density():
    torch.manual_seed(0)
    m = S5Stack(200, 16, 8, num_layers=1, output_size=200).eval()
    masks = prune.erk_magnitude(m, 0.9)
    d = {k: float(v.float().mean()) for k, v in masks.items()}
    assert d["blocks.0.glu_weight"] > d["encoder_weight"]  # (16+16)/256 > (200+16)/3200
    assert math.isclose(d["encoder_weight"], d["decoder_weight"], rel_tol=0.05)


def test_activity_and_relu_sparsity():
    m = _model()
    x = torch.randn(30, 12)
    p = m.sparsify()
    with torch.no_grad():
        m(x)
        p(x)
    a, b = m.activity(), p.activity()
    assert len(a) == 3 and len(b) == 4 and all(0 < v < 1 for v in a)
    assert all(abs(u - v) < 1e-6 for u, v in zip(a, b[:3]))


# ----------------------------------------------------------------------------- bad input

def test_bad_inputs_are_clear_errors():
    m = _model()
    p = m.sparsify()
    with pytest.raises(ValueError, match="features"):
        m(torch.randn(5, 2, 11))
    with pytest.raises(ValueError, match="state must"):
        m(torch.randn(5, 2, 12), torch.zeros(3, 2, 8))
    with pytest.raises(ValueError, match="features|input_size"):
        p(torch.randn(5, 2, 11))
    with pytest.raises(ValueError, match="shape"):
        p.step(torch.randn(2, 12), torch.zeros(2, 2, 7))
    with pytest.raises(ValueError, match="even state_size"):
        S5(4, 5)
    with pytest.raises(ValueError, match="blocks"):
        S5(4, 8, blocks=3)
    with pytest.raises(ValueError, match="unknown weight_masks"):
        m.sparsify({"nope": torch.ones(1)})
    with pytest.raises(ValueError, match="must have shape"):
        m.sparsify({"blocks.0.s5.B": torch.ones(4, 16)})
    with pytest.raises(ValueError, match="layout"):
        m.sparsify(layout="timed")
    with pytest.raises(ValueError, match="float32"):
        OPS.s5_plan_step(torch.randn(2, 12).double(), torch.zeros(2, 2, 8), p.plan_arena, p.plan_meta, 5)
    with pytest.raises(ValueError, match="out_features"):
        OPS.s5_plan_step(torch.randn(2, 12), torch.zeros(2, 2, 8), p.plan_arena, p.plan_meta, 6)


def test_non_finite_parameters_are_refused_at_sparsify():
    m = _model()
    with torch.no_grad():
        m.blocks[0].glu_bias[0] = float("nan")
    with pytest.raises(ValueError, match="NaN|finite"):
        m.sparsify()


def test_plan_kind_mismatch_and_corrupted_meta():
    m = _model()
    p = m.sparsify(layout="sparse")
    with pytest.raises(ValueError, match="kind"):
        OPS.linear_rnn_plan_step(torch.randn(12), torch.zeros(2, 8), p.plan_arena, p.plan_meta, 5)
    words = plan.RECORD_S5
    for idx, value in ((plan.HEADER + 2, 999), (plan.HEADER + words + 3, 50), (plan.HEADER + words + 36, 7),
                       (plan.HEADER + 4 + 4, 10 ** 9), (plan.HEADER + words + 20, 5),
                       (plan.HEADER + words + 28 + 5, -1)):
        meta = p.plan_meta.clone()
        meta[idx] = value
        with pytest.raises(ValueError, match="corrupted|flags|kind"):
            OPS.s5_plan_step(torch.randn(12), torch.zeros(2, 8), p.plan_arena, meta, 5)
    with pytest.raises(ValueError):
        PackedS5Stack(12, 16, 8, 5, False, [])


def test_state_dict_round_trip_and_corruption(tmp_path):
    m = _model()
    p = m.sparsify(layout="sparse")
    path = tmp_path / "s5.pt"
    torch.save(p.state_dict(), path)
    q = m.sparsify(layout="sparse")
    q.load_state_dict(torch.load(path, weights_only=True))
    x = torch.randn(6, 12)
    assert torch.equal(p(x)[0], q(x)[0])
    sd = torch.load(path, weights_only=True)
    sd["plan_meta"][plan.HEADER + plan.RECORD_S5 + 2] = 1 << 20  # unknown flags
    with pytest.raises(ValueError, match="invalid|flags"):
        q.load_state_dict(sd)


def test_compile_fullgraph_step():
    m = _model()
    p = m.sparsify()
    x, h = torch.randn(2, 12), torch.zeros(2, 2, 8)
    f = torch.compile(lambda x, h: p._step(x, h), fullgraph=True, backend="eager")
    y, h2 = f(x, h)
    ye, he = p.step(x, h)
    assert torch.allclose(y, ye) and torch.allclose(h2, he)


def test_width_scale_is_the_papers():
    from evsparse.nn.s5 import width_scale

    assert width_scale(1.0) == {"d_model": 192, "state_size": 256, "blocks": 16}
    assert width_scale(0.25) == {"d_model": 48, "state_size": 64, "blocks": 4}
    assert width_scale(0.01)["blocks"] == 1
    with pytest.raises(ValueError, match="k must be > 0"):
        width_scale(0)


def test_macs_dense_count_is_the_papers():
    """The paper's per-step weight-MACs (read from its code): k=1 ~507K (encoder and decoder included),
    0.5 ~152K, 0.25 ~51K."""
    from evsparse import macs
    from evsparse.nn.s5 import width_scale

    for k, paper in ((1.0, 507e3), (0.5, 152e3), (0.25, 51e3)):
        m = S5Stack(257, num_layers=3, output_size=257, **width_scale(k))
        tot = macs.count(m).totals
        assert tot["dense"] == tot["combined"] and abs(tot["dense"] - paper) / paper < 0.01, (k, tot)
    m = S5Stack(257, num_layers=3, output_size=257, **width_scale(1.0))
    H, S = 192, 128
    assert macs.count(m).totals["dense"] == 2 * 257 * H + 3 * (2 * S * H + 2 * H * S + 4 * S + H + H * H)


@pytest.mark.parametrize("relufied", [True, False])
def test_macs_effective_counts_nonzero_input_times_nonzero_weight(relufied):
    """Effective MACs against a brute-force count: every (nonzero weight, nonzero input) pair of every
    product of every step, with the inputs recomputed here step by step and the weights as the plan
    holds them (B with BatchNorm and the ZOH folded: a kept complex entry is two real weights)."""
    import torch.nn.functional as F

    from evsparse import macs
    from evsparse.nn.s5 import complex_relu, fold_block

    torch.manual_seed(3)
    m = S5Stack(11, 8, 6, 2, 5, relufied=relufied).eval()
    with torch.no_grad():
        for b in m.blocks:
            b.norm.running_mean.normal_()
    masks = prune.erk_magnitude(m, 0.6)
    prune.apply_masks(m, masks)
    x = torch.relu(torch.randn(7, 2, 11))
    rep = macs.count(m, x, masks)
    brute, z = 0, F.linear(x, m.encoder_weight, m.encoder_bias)
    pairs = lambda w, inp: float(((w != 0).double() @ (inp != 0).double().reshape(-1, inp.shape[-1]).T).sum())  # noqa: E731
    brute += pairs(m.encoder_weight, x)
    z = torch.relu(z) if relufied else z
    with torch.no_grad():
        for b in m.blocks:
            f = fold_block(b)
            brute += pairs(f["B"], z)
            zn = b.norm(z.reshape(-1, 8)).reshape(z.shape)
            xs = b.s5.states(zn)
            re, im = complex_relu(xs.real, xs.imag) if relufied else (xs.real, xs.imag)
            brute += pairs(f["C"], torch.cat([re, im], -1))
            y, _ = b.s5(zn)
            brute += pairs(b.glu_weight, F.relu(y) if relufied else F.gelu(y))
            z, _ = b(z)
        brute += pairs(m.decoder_weight, z)
    elementwise = 2 * (4 * 3 + 8)  # per block: the diagonal recurrence 4 P/2 and D's H
    assert rep.totals["combined"] == pytest.approx(brute / 14 + elementwise, rel=1e-9)
    assert rep.totals["combined"] <= rep.totals["weight_sparse"] <= rep.totals["dense"]
    assert rep.memory["nonzero weights (as the plan stores them)"] == pytest.approx(
        sum(w.values.numel() for v in m.sparsify(masks, layout="sparse")._views for w in v.weights if w is not None))


def test_lean_torch_step_equals_the_module():
    from evsparse.bench.s5 import torch_dense_step

    torch.manual_seed(0)
    for relufied in (True, False):
        m = S5Stack(20, 16, 12, 3, 7, relufied=relufied).eval()
        with torch.no_grad():
            m.blocks[0].norm.running_mean.normal_()
            m.blocks[1].norm.running_var.uniform_(0.5, 2)
        step = torch_dense_step(m)
        x = torch.rand(10, 2, 20)
        y, h = m(x)
        s, ys = torch.zeros(3, 2, 12), []
        for t in range(10):
            yt, s = step(x[t], s)
            ys.append(yt)
        torch.testing.assert_close(torch.stack(ys), y, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(s, h, rtol=1e-5, atol=1e-5)


def test_activity_loss_is_the_l1_of_the_product_inputs_and_has_gradients():
    torch.manual_seed(0)
    m = S5Stack(6, 8, 4, 2, 3)
    with pytest.raises(RuntimeError, match="run a forward pass first"):
        m.activity_loss()
    x = torch.rand(5, 2, 6)
    m(x)
    loss = m.activity_loss()
    z = torch.relu(torch.nn.functional.linear(x, m.encoder_weight, m.encoder_bias))
    expected = z.mean()
    for b in m.blocks:
        z, _ = b(z)
        expected = expected + z.mean()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert m.encoder_weight.grad is not None and m.blocks[1].glu_weight.grad.abs().sum() > 0
