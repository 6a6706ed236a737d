"""The fused recurrent ops on the Triton kernels (evsparse.gpu.recurrent) against the C++ CPU ops:
every step's input product at once, the EGRU gate kernel with its compaction of the next step's
active outputs, the linear RNN's scan kernel. On CPU tensors under ``TRITON_INTERPRET=1`` here; on
the GPU with ``pytest -m gpu`` where one is present (the same tests, on CUDA tensors)."""

import os

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton")

import evsparse  # noqa: E402
from evsparse.gpu import recurrent  # noqa: E402

DEV = "cuda" if HAS_CUDA else "cpu"


def _dev(args):
    return [a.to(DEV) if isinstance(a, torch.Tensor) else a for a in args]


def _egru_case(seed, n_in, H, B, T, layout, activity, thr_mean):
    torch.manual_seed(seed)
    egru = evsparse.nn.EGRU(n_in, H, thr_mean=thr_mean).eval()
    packed = egru.sparsify(layout=layout)
    xs = torch.randn(T, B, n_in) * (torch.rand(T, B, n_in) < activity)
    c0 = torch.randn(B, H)
    y0 = torch.relu(torch.randn(B, H)) * (torch.rand(B, H) < activity)
    return xs, c0, y0, packed._args(0)


def _assert_same(got, ref):
    for g, r in zip(got, ref):
        assert g.shape == r.shape
        torch.testing.assert_close(g.cpu(), r, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("layout,mode", [("dense", "launches"), ("sparse", "launches"), ("dense", "persistent")])
@pytest.mark.parametrize("T,B,H,activity,thr_mean", [
    (5, 1, 37, 0.3, 0.2),    # odd hidden size, a few units firing per step
    (4, 2, 8, 1.0, 0.0),     # everything active (threshold 0)
    (3, 1, 300, 0.0, 0.9),   # no input or recurrent events at the start; several gate blocks
    (1, 1, 1, 1.0, 0.0),     # one neuron
    (0, 2, 6, 0.5, 0.3),     # empty sequence: states come back unchanged
])
def test_egru_sequence_matches_cpu_op(layout, mode, T, B, H, activity, thr_mean):
    xs, c0, y0, args = _egru_case(T * 100 + H, 6, H, B, T, layout, activity, thr_mean)
    ref = torch.ops.evsparse.egru_sequence(xs, c0, y0, *args)
    got = recurrent.egru_sequence(xs.to(DEV), c0.to(DEV), y0.to(DEV), *_dev(args), mode=mode)
    _assert_same(got, ref)


def test_egru_step_matches_cpu_op_and_events_feed_back():
    xs, c0, y0, args = _egru_case(7, 5, 24, 2, 6, "sparse", 0.4, 0.1)
    got_c, got_y = c0.to(DEV), y0.to(DEV)
    ref_c, ref_y = c0, y0
    fired = 0
    for t in range(xs.shape[0]):  # step by step, so each step's recurrent input is the last output
        ref_c, ref_y = torch.ops.evsparse.egru_step(xs[t], ref_c, ref_y, *args)
        got_c, got_y = recurrent.egru_step(xs[t].to(DEV), got_c, got_y, *_dev(args))
        _assert_same((got_c, got_y), (ref_c, ref_y))
        fired += int((ref_y != 0).sum())
    assert 0 < fired < 6 * 2 * 24  # sparse events, not all or nothing


@pytest.mark.parametrize("mode", ["launches", "persistent"])
def test_egru_sequence_uses_the_compacted_events_of_each_step(mode):
    """A long sequence where which units fire changes from step to step: a stale or missing compaction
    (the gate kernel's output, or the persistent kernel's own pass) would drop or misplace recurrent
    input. B = 2 and H over one block: rows and blocks must not mix."""
    xs, c0, y0, args = _egru_case(11, 4, 300, 2, 12, "dense", 0.8, 0.05)
    ref = torch.ops.evsparse.egru_sequence(xs, c0, y0, *args)
    active = ref[0][:, 0] != 0
    assert not torch.equal(active[1:], active[:-1])
    _assert_same(recurrent.egru_sequence(xs.to(DEV), c0.to(DEV), y0.to(DEV), *_dev(args), mode=mode), ref)


@pytest.mark.parametrize("layout", ["dense", "sparse"])
@pytest.mark.parametrize("complex_, residual, T, B", [(True, False, 5, 2), (False, True, 4, 1), (True, True, 1, 1),
                                                      (False, False, 0, 2)])
def test_linear_rnn_sequence_matches_cpu_op(layout, complex_, residual, T, B):
    torch.manual_seed(T + 10 * B)
    n_in = 7
    rnn = evsparse.nn.SparseLinearRNN(n_in, 9, n_in, complex=complex_, residual=residual).eval()
    packed = rnn.sparsify(layout=layout)
    xs = torch.relu(torch.randn(T, B, n_in))
    h0 = torch.randn(B, rnn.width)
    args = packed._args(0)
    ref = torch.ops.evsparse.linear_rnn_sequence(xs, h0, *args)
    _assert_same(recurrent.linear_rnn_sequence(xs.to(DEV), h0.to(DEV), *_dev(args)), ref)
    if T:
        ref_step = torch.ops.evsparse.linear_rnn_step(xs[0], h0, *args)
        _assert_same(recurrent.linear_rnn_step(xs[0].to(DEV), h0.to(DEV), *_dev(args)), ref_step)


def test_nan_propagates_like_the_cpu_ops():
    xs, c0, y0, args = _egru_case(3, 6, 10, 1, 3, "dense", 0.5, 0.2)
    xs[1, 0, 2] = float("nan")
    ref = torch.ops.evsparse.egru_sequence(xs, c0, y0, *args)
    got = recurrent.egru_sequence(xs.to(DEV), c0.to(DEV), y0.to(DEV), *_dev(args))
    for g, r in zip(got, ref):
        assert torch.equal(torch.isnan(g.cpu()), torch.isnan(r))


def test_bad_input_is_a_clear_error():
    xs, c0, y0, args = _egru_case(1, 6, 8, 2, 3, "sparse", 0.5, 0.2)
    xs, c0, y0, args = xs.to(DEV), c0.to(DEV), y0.to(DEV), _dev(args)
    seq = recurrent.egru_sequence
    with pytest.raises(ValueError, match="x must be 3-D"):
        seq(xs[0], c0, y0, *args)
    with pytest.raises(ValueError, match="x must be float32"):
        seq(xs.double(), c0, y0, *args)
    with pytest.raises(ValueError, match="c must have shape \\[2, 8\\]"):
        seq(xs, c0[:1], y0, *args)
    with pytest.raises(ValueError, match="y must be float32"):
        seq(xs, c0, y0.half(), *args)
    with pytest.raises(ValueError, match="y must be contiguous"):
        seq(xs, c0, torch.zeros(8, 2, device=DEV).T, *args)
    bad = list(args)
    bad[1] = bad[1].int()  # w_ih col_ptr
    with pytest.raises(ValueError, match="col_ptr must be a 1-D int64"):
        seq(xs, c0, y0, *bad)
    bad = list(args)
    bad[2] = None  # row_idx without col_ptr
    with pytest.raises(ValueError, match="needs both col_ptr and row_idx"):
        seq(xs, c0, y0, *bad)
    bad = list(args)
    bad[-1] = bad[-1][:5]  # thr
    with pytest.raises(ValueError, match="b_ih must have shape \\[15\\]"):
        seq(xs, c0, y0, *bad)
    with pytest.raises(ValueError, match="x must be 2-D"):
        recurrent.egru_step(xs, c0, y0, *args)
    with pytest.raises(ValueError, match="mode must be 'launches' or 'persistent'"):
        seq(xs, c0, y0, *args, mode="graph")

    rnn = evsparse.nn.SparseLinearRNN(6, 4, 6, residual=True).eval()
    rargs = _dev(rnn.sparsify(layout="dense")._args(0))
    h0 = torch.zeros(2, rnn.width, device=DEV)
    with pytest.raises(ValueError, match="h must have shape"):
        recurrent.linear_rnn_sequence(xs, h0[:, :2].contiguous(), *rargs)
    bad = list(rargs)
    bad[0] = bad[0][:, :3].contiguous()  # w_in
    with pytest.raises(ValueError, match="w_in \\(dense layout, input-major\\) must have shape \\[6, 4\\]"):
        recurrent.linear_rnn_sequence(xs, h0, *bad)
