"""Model plans (evsparse.plan, csrc/ops/plan.h) and the plan step ops: equal to the per-layer stack ops
they replace, functional where they say so, in place without aliasing what the caller keeps, and a
corrupted arena or meta refused with a ValueError."""

from __future__ import annotations

import pytest
import torch

import evsparse
from evsparse import plan
from evsparse.nn import EGRU, PackedEGRU, SparseLinearRNN

OPS = torch.ops.evsparse


def _egru(layout, n_layers=2, H=24, n_in=16, thr=0.05, seed=0, block=False):
    torch.manual_seed(seed)
    e = EGRU(n_in, H, num_layers=n_layers).eval()
    with torch.no_grad():
        for k in range(n_layers):
            getattr(e, f"thr_l{k}").fill_(thr)

    def mask(rows, cols):  # unstructured, or whole 16x1 blocks (the block path)
        if not block:
            return torch.rand(rows, cols) < 0.3
        return (torch.rand(-(-rows // 16), cols) < 0.3).repeat_interleave(16, 0)[:rows]

    masks = {f"weight_{w}_l{k}": mask(3 * H, n_in if (k == 0 and w == "ih") else H)
             for k in range(n_layers) for w in ("ih", "hh")}
    with torch.no_grad():  # the training module holds the pruned weights too (the dense reference)
        for name, m in masks.items():
            getattr(e, name).mul_(m)
    return e, e.sparsify(masks, layout=layout)


def _linear_rnn(layout, complex=True, W=12, seed=0):
    torch.manual_seed(seed)
    r = SparseLinearRNN(W, W, W, num_layers=3, complex=complex).eval()
    return r, r.sparsify(layout=layout)


MIXED = [("dense", "sparse"), ("sparse", "dense")]


def _state(p, B):
    shape = (p.num_layers, p.hidden_size) if B is None else (p.num_layers, B, p.hidden_size)
    return torch.randn(shape), torch.randn(shape).relu()


@pytest.mark.parametrize("layout", ["dense", "sparse", MIXED, "sparse, 16x1 blocks"])
@pytest.mark.parametrize("B", [1, 3])
def test_egru_plan_step_equals_the_stack_op(layout, B):
    block = layout == "sparse, 16x1 blocks"  # (the plan and the stack op both take the block path)
    _, p = _egru("sparse" if block else layout, block=block)
    x = torch.randn(B, 16).relu()
    c, y = _state(p, B)
    want = OPS.egru_stack_step(x, c, y, *p._stack_args())
    got = OPS.egru_plan_step(x, c, y, p.plan_arena, p.plan_meta)
    for w, g in zip(want, got):
        assert torch.equal(w, g)
    y_t, (c1, y1) = p.step(x, (c, y))
    assert torch.equal(y_t, want[0]) and torch.equal(c1, want[1]) and torch.equal(y1, want[2])
    c2, y2 = c.clone(), y.clone()
    assert OPS.egru_plan_step_(x, c2, y2, p.plan_arena, p.plan_meta) is None
    assert torch.equal(c2, want[1]) and torch.equal(y2, want[2])


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_egru_plan_step_unbatched_and_against_the_training_module(layout):
    e, p = _egru(layout, n_layers=3)
    x = torch.randn(16).relu()
    c, y = _state(p, None)
    y_t, (c1, y1) = p.step(x, (c, y))  # x [in], state [L, H]: no batch dimension anywhere
    assert y_t.shape == (24,) and c1.shape == (3, 24)
    want_y, (want_c, want_ys) = e.step(x, (c, y))
    torch.testing.assert_close(y_t, want_y, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(c1, want_c, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_weights_in_a_plan(dtype):
    torch.manual_seed(1)
    H, n_in = 16, 8
    layers = []
    for k, layout in enumerate(("dense", "sparse")):
        w_ih = evsparse.pack(torch.randn(3 * H, n_in if k == 0 else H), layout=layout).to(dtype=dtype)
        w_hh = evsparse.pack(torch.randn(3 * H, H) * (torch.rand(3 * H, H) < 0.4), layout="sparse").to(dtype=dtype)
        layers.append((w_ih, w_hh, torch.randn(3 * H), torch.randn(3 * H), torch.full((H,), 0.1)))
    p = PackedEGRU(n_in, H, False, layers)
    assert p.packed(0)[0].dtype == dtype
    x = torch.randn(3, n_in).relu()
    c, y = torch.randn(2, 3, H), torch.randn(2, 3, H).relu()
    want = OPS.egru_stack_step(x, c, y, *p._stack_args())
    got = OPS.egru_plan_step(x, c, y, p.plan_arena, p.plan_meta)
    for w, g in zip(want, got):
        assert torch.equal(w, g)


@pytest.mark.parametrize("layout", ["dense", "sparse"])
@pytest.mark.parametrize("complex", [False, True])
@pytest.mark.parametrize("B", [None, 1, 3])
def test_linear_rnn_plan_step_equals_the_stack_op(layout, complex, B):
    _, p = _linear_rnn(layout, complex)
    x = torch.randn(1 if B is None else B, 12).relu()
    h = torch.randn(3, x.shape[0], p.width)
    want = OPS.linear_rnn_stack_step(x, h, *p._stack_args())
    if B is None:
        x, h = x[0], h[:, 0].contiguous()
        want = (want[0][0], want[1][:, 0])
    got = p.step(x, h)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    h2, out = h.clone(), torch.empty_like(want[0])
    OPS.linear_rnn_plan_step_(x, h2, out, p.plan_arena, p.plan_meta)
    assert torch.equal(out, want[0]) and torch.equal(h2, want[1])


def test_functional_step_writes_nothing_it_was_given():
    _, p = _egru("sparse")
    x = torch.randn(2, 16).relu()
    c, y = _state(p, 2)
    keep = (x.clone(), c.clone(), y.clone())
    y_t, (c1, y1) = p.step(x, (c, y))
    assert all(torch.equal(a, b) for a, b in zip(keep, (x, c, y)))
    assert len({t.data_ptr() for t in (x, c, y, y_t, c1, y1)}) == 6  # no output aliases an input or another


def test_stream_never_writes_the_callers_state_and_matches_functional_steps():
    _, p = _egru("sparse")
    c, y = _state(p, None)
    keep = (c.clone(), y.clone())
    s = p.stream(state=(c, y))
    state = (c, y)
    for t in range(6):
        x = torch.randn(16).relu()
        y_t, state = p.step(x, state)
        assert torch.equal(s.step(x), y_t)
        assert torch.equal(s.state[0], state[0]) and torch.equal(s.state[1], state[1])
    assert torch.equal(c, keep[0]) and torch.equal(y, keep[1])
    # The stream's output is its own buffer (the top layer's row of its state), overwritten in place.
    out = s.step(torch.zeros(16))
    assert out.data_ptr() == s.state[1][-1].data_ptr()
    s.reset()
    assert not s.state[0].any() and not s.state[1].any()


def test_stream_follows_a_reloaded_state_dict():
    e, p = _egru("sparse", seed=0)
    with torch.no_grad():  # same structure (the pruned zeros stay zero), other values
        for name, t in e.named_parameters():
            if name.startswith("weight"):
                t.mul_(1.5)
    other = e.sparsify(layout="sparse")
    s = p.stream(batch_size=2)
    x = torch.randn(2, 16).relu()
    p.load_state_dict(other.state_dict())  # same sizes, new weights: copied into the same buffers
    want = other.stream(batch_size=2).step(x)
    assert torch.equal(s.step(x), want)
    p.load_state_dict(other.state_dict(), assign=True)  # replaced buffers: the stream rebinds
    s.reset()
    assert torch.equal(s.step(x), want)


def test_in_place_ops_refuse_overlapping_arguments():
    _, p = _egru("dense")
    c = torch.zeros(2, 1, 24)
    with pytest.raises(ValueError, match="must not overlap"):
        OPS.egru_plan_step_(torch.zeros(1, 16), c, c, p.plan_arena, p.plan_meta)
    _, r = _linear_rnn("dense", complex=False)
    h = torch.zeros(3, 1, 12)
    with pytest.raises(ValueError, match="must not overlap"):
        OPS.linear_rnn_plan_step_(h[0], h, torch.zeros(1, 12), r.plan_arena, r.plan_meta)


def test_state_shape_and_dtype_errors():
    _, p = _egru("dense")
    x = torch.zeros(1, 16)
    with pytest.raises(ValueError, match=r"c must have shape \[2, 1, 24\]"):
        p.step(x, (torch.zeros(2, 1, 23), torch.zeros(2, 1, 24)))
    with pytest.raises(ValueError, match="float32"):
        p.step(x, (torch.zeros(2, 1, 24, dtype=torch.float64), torch.zeros(2, 1, 24)))
    with pytest.raises(ValueError, match="x has 15 features"):
        p.step(torch.zeros(1, 15), (torch.zeros(2, 1, 24), torch.zeros(2, 1, 24)))


def _corrupt(meta: torch.Tensor, index: int, value: int) -> torch.Tensor:
    m = meta.clone()
    m[index] = value
    return m


W_B = plan.HEADER + 12  # layer 0's second weight descriptor


@pytest.mark.parametrize("index, value, match", [
    (0, 7, "not an evsparse plan"),
    (1, 99, "not an evsparse plan"),
    (2, plan.LINEAR_RNN, "kind"),
    (3, 5, "entries for 5 layers"),
    (6, 10, "arena"),
    (plan.HEADER + 0, 17, "in="),
    (W_B + 4, 1 << 40, "outside the"),   # values offset
    (W_B + 5, -64, "outside the"),       # col_ptr offset
    (W_B + 6, 3, "misaligned"),          # rows offset, odd
    (W_B + 3, 10 ** 9, "nnz="),
    (W_B + 0, 5, "layout code"),
    (W_B + 1, 9, "value dtype"),
    (plan.HEADER + 20, 1 << 50, "outside the"),  # b_ih offset
])
def test_corrupted_meta_is_refused(index, value, match):
    _, p = _egru("sparse")
    x, (c, y) = torch.zeros(1, 16), _state(p, 1)
    bad = _corrupt(p.plan_meta, index, value)
    with pytest.raises(ValueError, match=match):
        OPS.egru_plan_step(x, c, y, p.plan_arena, bad)
    with pytest.raises(ValueError, match=match):
        OPS.egru_plan_step_(x, c, y, p.plan_arena, bad)
    with pytest.raises(ValueError, match="invalid"):
        p.load_state_dict({"plan_arena": p.plan_arena.clone(), "plan_meta": bad})


def test_arena_and_meta_edited_in_place_are_revalidated():
    _, p = _egru("sparse", thr=0.0)
    x, (c, y) = torch.ones(1, 16), _state(p, 1)
    p.step(x, (c, y))
    rows = p.packed(0)[1].row_idx
    saved = rows.clone()
    rows[0] = 30000  # an edit of the arena through a view: its version moves
    with pytest.raises(ValueError, match="out of range"):
        OPS.egru_plan_step(x, c, y, p.plan_arena, p.plan_meta)
    with pytest.raises(ValueError, match="out of range"):
        p.stream().step(x[0])
    rows.copy_(saved)
    p.step(x, (c, y))
    p.plan_meta[W_B + 4] = 1 << 40
    with pytest.raises(ValueError, match="outside the"):
        p.step(x, (c, y))


def test_kind_mismatch_and_wrong_tensors():
    _, e = _egru("dense")
    _, r = _linear_rnn("dense", complex=False)
    with pytest.raises(ValueError, match="kind"):
        OPS.linear_rnn_plan_step(torch.zeros(1, 16), torch.zeros(2, 1, 24), e.plan_arena, e.plan_meta, 24)
    with pytest.raises(ValueError, match="out_features=11"):
        OPS.linear_rnn_plan_step(torch.zeros(1, 12), torch.zeros(3, 1, 12), r.plan_arena, r.plan_meta, 11)
    with pytest.raises(ValueError, match="Byte"):
        OPS.egru_plan_step(torch.zeros(1, 16), torch.zeros(2, 1, 24), torch.zeros(2, 1, 24),
                           e.plan_arena.float(), e.plan_meta)


def test_plan_format_round_trip():
    _, p = _egru(MIXED, n_layers=2)
    m = p.plan_meta.tolist()
    assert m[:6] == [plan.MAGIC, plan.VERSION, plan.EGRU, 2, 16, 24] and m[6] == p.plan_arena.numel()
    views = plan.layer_views(p.plan_arena, p.plan_meta)
    assert [(v.weights[0].layout, v.weights[1].layout) for v in views] == MIXED == p.layouts
    for v in views:  # every section starts on a 64-byte boundary of the arena
        for t in (*v.vectors, *(x for pw in v.weights for x in (pw.values, pw.col_ptr, pw.row_idx))):
            if t is not None:
                assert (t.data_ptr() - p.plan_arena.data_ptr()) % plan.ALIGN == 0


def test_weights_only_load_of_a_plan(tmp_path):
    _, p = _egru("sparse")
    path = tmp_path / "plan.pt"
    torch.save(p.state_dict(), path)
    e, _ = _egru("sparse", seed=0)
    with torch.no_grad():
        e.thr_l0.fill_(0.5)  # another model of the same structure
    fresh = e.sparsify(layout="sparse")
    fresh.load_state_dict(torch.load(path, weights_only=True))
    x, st = torch.randn(1, 16).relu(), _state(p, 1)
    assert torch.equal(fresh.step(x, st)[0], p.step(x, st)[0])


def test_loading_a_plan_of_another_size_leaves_the_module_intact():
    _, p = _egru("sparse", seed=0)
    _, other = _egru("sparse", seed=3)  # other masks: another arena size
    keep = p.state_dict()
    keep = {k: v.clone() for k, v in keep.items()}
    for assign in (False, True):
        with pytest.raises(RuntimeError, match="size mismatch for plan_arena"):
            p.load_state_dict(other.state_dict(), assign=assign)
    assert all(torch.equal(v, p.state_dict()[k]) for k, v in keep.items())
    x, st = torch.randn(1, 16).relu(), _state(p, 1)
    p.step(x, st)


@pytest.mark.parametrize("family", ["EGRU", "linear RNN"])
def test_step_compiles_whole_to_the_plan_op(family):
    """torch.compile(fullgraph=True) traces step as the plan op (its fake kernel), equal to eager."""
    if family == "EGRU":
        _, p = _egru("sparse")
        x, state = torch.randn(1, 16).relu(), _state(p, 1)
    else:
        _, p = _linear_rnn("sparse")
        x, state = torch.randn(1, 12).relu(), torch.randn(3, 1, p.width)
    compiled = torch.compile(lambda x, s: p.step(x, s), fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        got, want = compiled(x, state), p.step(x, state)
    assert torch.equal(got[0], want[0])


# ---- int8 weights in a plan, and the plan sequence ops -----------------------------------------------


def _egru_int8(layout, seed=0):
    e, _ = _egru(layout, seed=seed)
    masks = {f"weight_{w}_l{k}": getattr(e, f"weight_{w}_l{k}") != 0 for k in range(2) for w in ("ih", "hh")}
    return e.sparsify(masks, layout=layout, weight_dtype=torch.int8)


@pytest.mark.parametrize("index, value, match", [
    (W_B + 7, 1 << 40, "int8 scale"),  # scale offset outside the arena
    (W_B + 7, 2, "int8 scale"),        # misaligned
    (W_B + 1, 0, "scale offset but is not int8"),  # an int8 weight relabelled float32
])
def test_corrupted_int8_scale_descriptor_is_refused(index, value, match):
    p = _egru_int8("sparse")
    x, (c, y) = torch.zeros(1, 16), _state(p, 1)
    bad = _corrupt(p.plan_meta, index, value)
    with pytest.raises(ValueError, match=match):
        OPS.egru_plan_step(x, c, y, p.plan_arena, bad)
    with pytest.raises(ValueError, match="invalid"):
        p.load_state_dict({"plan_arena": p.plan_arena.clone(), "plan_meta": bad})


def test_int8_plan_value_minus_128_is_refused():
    p = _egru_int8("sparse")
    pw = p.packed(1)[0]
    start = pw.values.data_ptr() - p.plan_arena.data_ptr()
    arena = p.plan_arena.clone()
    arena[start] = 128  # the byte of int8 -128
    with pytest.raises(ValueError, match="-128"):
        p.load_state_dict({"plan_arena": arena, "plan_meta": p.plan_meta.clone()})


def test_int8_plan_scale_edited_to_nan_is_refused(tmp_path):
    p = _egru_int8("dense")
    pw = p.packed(0)[0]
    start = pw.scale.data_ptr() - p.plan_arena.data_ptr()
    arena = p.plan_arena.clone()
    arena[start:start + 4].view(torch.float32)[0] = float("nan")
    torch.save({"plan_arena": arena, "plan_meta": p.plan_meta.clone()}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="NaN or Inf"):
        p.load_state_dict(torch.load(tmp_path / "bad.pt", weights_only=True))
    x = torch.zeros(1, 16)
    x[0, 0] = 1.0  # input 0 is active: its scale is read
    c, y = _state(p, 1)
    with pytest.raises(ValueError, match="non-finite int8 scale"):  # the raw op, with the edited arena
        OPS.egru_plan_step(x, c, y, arena, p.plan_meta)


@pytest.mark.parametrize("layout", ["dense", "sparse", MIXED])
@pytest.mark.parametrize("B", [None, 1, 3])
def test_egru_plan_sequence_equals_the_per_layer_sequence_ops(layout, B):
    _, p = _egru(layout)
    T = 7
    xs = torch.randn(T, 16).relu() if B is None else torch.randn(T, B, 16).relu()
    c, y = _state(p, B)
    ys, c1, y1, nonzero = OPS.egru_plan_sequence(xs, c, y, p.plan_arena, p.plan_meta)
    inp, c3, y3 = (xs[:, None], c[:, None], y[:, None]) if B is None else (xs, c, y)  # per-layer ops: [T, B, .]
    counts = []
    for k in range(p.num_layers):
        inp, ck, yk = OPS.egru_sequence(inp, c3[k], y3[k], *p._args(k))
        assert torch.equal(ck.reshape(c1[k].shape), c1[k]) and torch.equal(yk.reshape(y1[k].shape), y1[k])
        counts.append(int((inp != 0).sum()))
    assert torch.equal(inp.reshape(ys.shape), ys)
    assert nonzero.tolist() == counts
    empty = OPS.egru_plan_sequence(xs[:0], c, y, p.plan_arena, p.plan_meta)
    assert empty[0].shape[0] == 0 and torch.equal(empty[1], c) and torch.equal(empty[2], y)
    with pytest.raises(ValueError, match="features"):
        OPS.egru_plan_sequence(xs[..., :15].contiguous(), c, y, p.plan_arena, p.plan_meta)


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_linear_rnn_plan_sequence_equals_the_per_layer_sequence_ops(layout):
    _, p = _linear_rnn(layout)
    xs = torch.randn(6, 2, 12)
    h = torch.randn(p.num_layers, 2, p.width)
    ys, h1, nonzero = OPS.linear_rnn_plan_sequence(xs, h, p.plan_arena, p.plan_meta, p.output_size)
    inp, counts = xs, []
    for k in range(p.num_layers):
        inp, hk = OPS.linear_rnn_sequence(inp, h[k], *p._args(k))
        assert torch.equal(hk, h1[k])
        counts.append(int((inp != 0).sum()))
    assert torch.equal(inp, ys) and nonzero.tolist() == counts
    with pytest.raises(ValueError, match="out_features"):
        OPS.linear_rnn_plan_sequence(xs, h, p.plan_arena, p.plan_meta, p.output_size + 1)
