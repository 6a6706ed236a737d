"""int8 weights (symmetric, one float32 scale per input column) in every layout: the products against
their own dequantised matrix (exactly to rounding) and against float32 (the quantisation error), on
every ISA; autograd; the modules' sparsify(weight_dtype=torch.int8); serialisation; corrupted data."""

import io

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

import evsparse
from evsparse import PackedWeight, pack, sparse_linear
from evsparse.nn import EGRU, SparseLinear, SparseLinearRNN


def _input(B, n, activity, g):
    x = torch.randn(B, n, generator=g)
    return x * (torch.rand(B, n, generator=g) < activity)


def _dequantised_reference(x, pw, bias=None):
    # float64 on the dequantised matrix: what the kernels must equal up to float32 rounding
    w = pw.to_dense().double()
    y = x.double() @ w.T
    return y if bias is None else y + bias.double()


@given(out=st.integers(1, 300), inp=st.integers(1, 300), density=st.floats(0, 1), activity=st.floats(0, 1),
       B=st.sampled_from([1, 2, 7]), layout=st.sampled_from(["dense", "sparse"]), seed=st.integers(0, 2**16))
@example(out=1, inp=1, density=1.0, activity=1.0, B=1, layout="sparse", seed=0)   # one neuron
@example(out=97, inp=33, density=0.0, activity=1.0, B=2, layout="dense", seed=1)  # nothing stored
@example(out=97, inp=33, density=0.3, activity=0.0, B=7, layout="sparse", seed=2)  # nothing active
@example(out=2048, inp=17, density=0.15, activity=1.0, B=1, layout="sparse", seed=3)  # tails, many rows
# Threaded by output slices (B=7 x 257 x 146 MACs) against the unbatched row on one thread: with AVX-512's
# 16 lanes a slice ending on an odd vector once left it to the scalar tail (other rounding).
@example(out=146, inp=257, density=1.0, activity=1.0, B=7, layout="dense", seed=0)
def test_int8_equals_its_dequantised_matrix(isa, out, inp, density, activity, B, layout, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(out, inp, generator=g)
    mask = torch.rand(out, inp, generator=g) < density
    pw = pack(w, mask, layout, weight_dtype=torch.int8)
    assert pw.dtype == torch.int8 and pw.scale.shape == (inp,) and pw.layout == layout
    bias = torch.randn(out, generator=g)
    x = _input(B, inp, activity, g)
    ref = _dequantised_reference(x, pw, bias)
    y = sparse_linear(x, pw, bias)
    tol = 1e-5 * (1 + x.abs().sum(1, keepdim=True).double() * pw.to_dense().abs().max().double())
    assert torch.all((y.double() - ref).abs() <= tol)
    assert torch.all((sparse_linear(x[0], pw, bias).double() - ref[0]).abs() <= tol[0])  # unbatched
    # bitwise the batched row on one thread: on two, an unbatched product above the split threshold is
    # cut into column groups whose partial sums add in another order
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert torch.equal(sparse_linear(x[0], pw, bias), sparse_linear(x, pw, bias)[0])
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_int8_error_against_float32_is_the_rounding_bound(layout):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(256, 192, generator=g)
    mask = torch.rand(256, 192, generator=g) < 0.2
    pw = pack(w, mask, layout, weight_dtype=torch.int8)
    exact = w * mask
    err = (pw.to_dense() - exact).abs()
    assert torch.all(err <= pw.scale[None, :] / 2 + 1e-7)  # round-to-nearest: half a step per weight
    assert torch.all(pw.to_dense()[~mask] == 0)
    assert torch.all(pw.values.abs() <= 127)
    x = _input(3, 192, 0.3, g)
    y8, y32 = sparse_linear(x, pw), x @ exact.T
    rel = (y8 - y32).norm() / y32.norm()
    assert float(rel) < 0.01  # 7-bit mantissa-equivalent weights: well under 1% on random data


def test_int8_quantised_values_are_exact_for_representable_weights():
    # weights already on the int8 grid of their column quantise without error
    q = torch.randint(-127, 128, (40, 30)).float()
    q[0] = 127  # every column's max is exactly 127 steps
    scale = torch.rand(30) + 0.5
    w = q * scale
    for layout in ("dense", "sparse"):
        pw = pack(w, layout=layout, weight_dtype=torch.int8)
        assert torch.allclose(pw.scale, scale, rtol=1e-6)
        assert torch.allclose(pw.to_dense(), w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_int8_nonfinite_input_policy_matches_the_dequantised_matrix(layout):
    w = torch.randn(20, 10)
    mask = torch.rand(20, 10) < 0.5
    pw = pack(w, mask, layout, weight_dtype=torch.int8)
    x = torch.zeros(2, 10)
    x[0, 3], x[1, 5] = float("nan"), float("inf")
    ref = x @ pw.to_dense().T
    y = sparse_linear(x, pw)
    assert torch.equal(torch.isnan(y), torch.isnan(ref))
    assert torch.equal(y[~torch.isnan(y)], ref[~torch.isnan(ref)])


@pytest.mark.parametrize("xdtype", [torch.float16, torch.bfloat16])
def test_int8_with_half_inputs(xdtype):
    w = torch.randn(64, 48)
    pw = pack(w, layout="sparse", weight_dtype=torch.int8)
    x = _input(2, 48, 0.5, torch.Generator().manual_seed(1)).to(xdtype)
    y = sparse_linear(x, pw)
    assert y.dtype == xdtype
    torch.testing.assert_close(y.float(), (x.float() @ pw.to_dense().T), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("layout", ["dense", "sparse"])
@pytest.mark.parametrize("with_bias", [False, True])
def test_int8_gradcheck_x_and_scale(layout, with_bias):
    # Float64 gradcheck needs float64 arithmetic: the int8 ops accumulate in float32, so check the
    # analytic gradients against the dense dequantised formula instead, in float32.
    g = torch.Generator().manual_seed(2)
    w = torch.randn(30, 20, generator=g)
    pw = pack(w, torch.rand(30, 20, generator=g) < 0.4, layout, weight_dtype=torch.int8)
    bias = torch.randn(30, generator=g, requires_grad=True) if with_bias else None
    x = _input(4, 20, 0.6, g).requires_grad_()
    scale = pw.scale.clone().requires_grad_()
    pw_s = PackedWeight(layout, (30, 20), pw.values, pw.col_ptr, pw.row_idx, scale)
    y = sparse_linear(x, pw_s, bias)
    gy = torch.randn_like(y)
    grads = torch.autograd.grad(y, [x, scale] + ([bias] if with_bias else []), gy)
    x2, s2 = x.detach().clone().requires_grad_(), pw.scale.clone().requires_grad_()
    b2 = None if bias is None else bias.detach().clone().requires_grad_()
    w2 = PackedWeight(layout, (30, 20), pw.values, pw.col_ptr, pw.row_idx, s2).to_dense()
    y2 = x2 @ w2.T + (0 if b2 is None else b2)
    ref = torch.autograd.grad(y2, [x2, s2] + ([b2] if with_bias else []), gy)
    for a, b in zip(grads, ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_int8_save_load_weights_only(layout):
    pw = pack(torch.randn(50, 40), torch.rand(50, 40) < 0.3, layout, weight_dtype=torch.int8)
    buf = io.BytesIO()
    torch.save(pw, buf)
    buf.seek(0)
    back = torch.load(buf, weights_only=True)
    assert back.dtype == torch.int8 and torch.equal(back.scale, pw.scale)
    x = torch.randn(40)
    assert torch.equal(sparse_linear(x, back), sparse_linear(x, pw))


def _corrupt_and_load(pw, edit):
    state = pw.__getstate__()
    edit(state)
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    return PackedWeight.__new__(PackedWeight).__setstate__(loaded)


@pytest.mark.parametrize("edit, match", [
    (lambda s: s.update(scale=None), "need a float32 scale"),
    (lambda s: s.update(scale=s["scale"][:-1].clone()), "need a float32 scale"),
    (lambda s: s.update(scale=s["scale"].double()), "need a float32 scale"),
    (lambda s: s["scale"].__setitem__(3, float("nan")), "NaN or Inf"),
    (lambda s: s["values"].view(-1).__setitem__(0, -128), "-128"),
])
@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_int8_corrupted_on_disk_is_refused(layout, edit, match):
    pw = pack(torch.randn(20, 12), torch.rand(20, 12) < 0.5, layout, weight_dtype=torch.int8)
    with pytest.raises(ValueError, match=match):
        _corrupt_and_load(pw, edit)


def test_scale_with_float_weights_is_refused():
    pw = pack(torch.randn(8, 6), layout="dense")
    with pytest.raises(ValueError, match="only for int8"):
        PackedWeight("dense", (8, 6), pw.values, scale=torch.ones(6))
    with pytest.raises(ValueError, match="only for int8"):
        torch.ops.evsparse.gather_linear(torch.randn(6), pw.values, None, torch.ones(6))


def test_raw_ops_check_the_scale():
    pw = pack(torch.randn(8, 6), layout="sparse", weight_dtype=torch.int8)
    x = torch.randn(6)
    with pytest.raises(ValueError, match="needs its scale"):
        torch.ops.evsparse.sparse_gather_linear(x, pw.col_ptr, pw.row_idx, pw.values, 8)
    with pytest.raises(ValueError, match="scale must have shape"):
        torch.ops.evsparse.sparse_gather_linear(x, pw.col_ptr, pw.row_idx, pw.values, 8, None, torch.ones(5))
    bad = pw.scale.clone()
    bad[2] = float("inf")
    with pytest.raises(ValueError, match="non-finite int8 scale"):  # edited after construction
        torch.ops.evsparse.sparse_gather_linear(torch.ones(6), pw.col_ptr, pw.row_idx, pw.values, 8, None, bad)
    with pytest.raises(ValueError, match="int8"):  # the per-layer recurrent ops take no scale
        torch.ops.evsparse.egru_step(torch.randn(1, 6), torch.zeros(1, 2), torch.zeros(1, 2), pw.values.new_zeros(6, 6),
                                     None, None, torch.zeros(2, 6), None, None, torch.zeros(6), torch.zeros(6),
                                     torch.ones(2))


def test_sparse_linear_module_int8_state_dict_roundtrip():
    lin = torch.nn.Linear(40, 30)
    mask = torch.rand(30, 40) < 0.3
    m = SparseLinear.from_module(lin, mask, layout="sparse", weight_dtype=torch.int8)
    assert "weight_dtype=torch.int8" in repr(m) and not m.weight_values.requires_grad
    x = torch.randn(5, 40) * (torch.rand(5, 40) < 0.5)
    m2 = SparseLinear.from_module(torch.nn.Linear(40, 30), mask, layout="sparse", weight_dtype=torch.int8)
    m2.load_state_dict(m.state_dict())
    assert torch.equal(m2(x), m(x))
    bad = {k: v.clone() for k, v in m.state_dict().items()}
    bad["weight_scale"][0] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        m2.load_state_dict(bad)


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_egru_int8_plan_matches_dequantised_weights(layout):
    torch.manual_seed(0)
    egru = EGRU(12, 24, num_layers=2)
    masks = {f"weight_{n}_l{k}": torch.rand_like(getattr(egru, f"weight_{n}_l{k}")) < 0.4
             for k in range(2) for n in ("ih", "hh")}
    p8 = egru.sparsify(masks, layout=layout, weight_dtype=torch.int8)
    assert all(pw.dtype == torch.int8 for k in range(2) for pw in p8.packed(k))
    # the same model with every weight replaced by its dequantised matrix, float32
    ref = EGRU(12, 24, num_layers=2)
    ref.load_state_dict(egru.state_dict())
    with torch.no_grad():
        for k in range(2):
            for name, pw in zip(("weight_ih", "weight_hh"), p8.packed(k)):
                getattr(ref, f"{name}_l{k}").copy_(pw.to_dense())
    p32 = ref.sparsify(layout=layout)
    xs = torch.randn(9, 3, 12)
    y8, (c8, h8) = p8(xs)
    y32, (c32, h32) = p32(xs)
    torch.testing.assert_close(c8, c32, rtol=1e-4, atol=1e-4)
    assert float((y8 != 0).float().mean()) == pytest.approx(float((y32 != 0).float().mean()), abs=0.05)
    # the step op and the stream follow the sequence op exactly
    state = None
    for t in range(xs.shape[0]):
        y_t, state = p8.step(xs[t], state)
        assert torch.equal(y_t, y8[t])
    s = p8.stream(batch_size=3)
    for t in range(xs.shape[0]):
        assert torch.equal(s.step(xs[t]), y8[t])
    assert len(p8.activity()) == 2


def test_linear_rnn_int8_plan_roundtrip_and_reference():
    torch.manual_seed(1)
    rnn = SparseLinearRNN(10, 16, 10, num_layers=3, complex=True)
    p8 = rnn.sparsify(layout="sparse", weight_dtype=torch.int8)
    p32 = rnn.sparsify(layout="sparse")
    xs = torch.randn(20, 2, 10)
    y8, h8 = p8(xs)
    y32, h32 = p32(xs)
    rel = (y8 - y32).norm() / y32.norm()
    assert float(rel) < 0.05
    state = None
    for t in range(xs.shape[0]):
        y_t, state = p8.step(xs[t], state)
        torch.testing.assert_close(y_t, y8[t], rtol=0, atol=0)
    buf = io.BytesIO()
    torch.save(p8.state_dict(), buf)
    buf.seek(0)
    p8b = rnn.sparsify(layout="sparse", weight_dtype=torch.int8)
    p8b.load_state_dict(torch.load(buf, weights_only=True))
    assert torch.equal(p8b(xs)[0], y8)


def test_auto_layout_rule_for_int8():
    w = torch.randn(100, 100)
    thr = evsparse.AUTO_SPARSE_MAX_DENSITY_INT8
    assert thr < evsparse.AUTO_SPARSE_MAX_DENSITY  # int8 dense rows are 4x cheaper to read
    between = torch.rand(100, 100) < (thr + evsparse.AUTO_SPARSE_MAX_DENSITY) / 2
    low = torch.rand(100, 100) < thr * 0.5
    assert pack(w, between).layout == "sparse" and pack(w, between, weight_dtype=torch.int8).layout == "dense"
    assert pack(w, low, weight_dtype=torch.int8).layout == "sparse"


def test_timed_layouts_with_int8_time_int8_candidates_on_plans():
    torch.manual_seed(3)
    egru = EGRU(16, 24, num_layers=2)
    example = torch.randn(6, 1, 16) * (torch.rand(6, 1, 16) < 0.3)
    p = egru.sparsify(layout="timed", example_input=example, weight_dtype=torch.int8)
    assert all(pw.dtype == torch.int8 for k in range(2) for pw in p.packed(k))
    assert all(c is not None and len(c.seconds) == 4 for c in p.layout_choices)
    again = egru.sparsify(layout=p.layouts, weight_dtype=torch.int8)
    assert torch.equal(again(example)[0], p(example)[0])
    rnn = SparseLinearRNN(16, 8, 16, num_layers=2, complex=True)
    q = rnn.sparsify(layout="timed", example_input=example, weight_dtype=torch.int8)
    assert all(c is not None for c in q.layout_choices)
    assert torch.equal(rnn.sparsify(layout=q.layouts, weight_dtype=torch.int8)(example)[0], q(example)[0])
