"""Deterministic mode of the Triton ops (``torch.use_deterministic_algorithms(True)``): ordered
compaction, fixed-order reductions and no atomic kernel anywhere, with the same results as the
dense reference and the CPU ops. On CPU tensors under ``TRITON_INTERPRET=1`` here (the interpreter
runs programs one at a time, so it checks the logic and which kernels run; bitwise repeatability is
only meaningful on a GPU: ``pytest -m gpu``)."""

import contextlib
import os

import pytest
import torch
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton")

import evsparse  # noqa: E402
from evsparse.gpu import kernels, recurrent  # noqa: E402
from evsparse.gpu import sparse_linear as launch  # noqa: E402
from test_triton import problem  # noqa: E402
from test_triton_recurrent import _assert_same, _dev, _egru_case  # noqa: E402

DEV = "cuda" if HAS_CUDA else "cpu"


@contextlib.contextmanager
def deterministic_algorithms(warn_only=False):
    prev, prev_warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=warn_only)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev, warn_only=prev_warn)


class _Forbidden:
    """Stands in for a nondeterministic kernel: launching it fails the test."""

    def __init__(self, name):
        self.name = name

    def __getitem__(self, grid):
        return self

    def __call__(self, *args, **kwargs):
        raise AssertionError(f"{self.name} (atomic, nondeterministic) launched in deterministic mode")


class _GateWithoutCompaction:
    """The EGRU gate kernel, checked to run without its (atomic) fused compaction."""

    def __init__(self, real):
        self.real = real

    def __getitem__(self, grid):
        def launch_(*args, **kwargs):
            assert not kwargs["COMPACT"], "the gate kernel compacted (atomically) in deterministic mode"
            return self.real[grid](*args, **kwargs)
        return launch_


@contextlib.contextmanager
def only_deterministic_kernels(sparse_splits=8):
    """Also few sparse splits: each program then walks several columns (and the interpreter, which
    runs every program and every reduction step in Python, stays quick)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(launch, "SPARSE_SPLITS", sparse_splits)
        mp.setattr(launch, "DENSE_GATHER", _Forbidden("dense_gather_kernel"))
        mp.setattr(launch, "SPARSE_GATHER", _Forbidden("sparse_gather_kernel"))
        mp.setattr(kernels, "compact_active_kernel", _Forbidden("compact_active_kernel"))
        mp.setattr(kernels, "egru_gate_kernel", _GateWithoutCompaction(kernels.egru_gate_kernel))
        yield mp


def test_the_guard_catches_an_atomic_kernel():
    """The checks below are only as good as this guard: outside deterministic mode it must trip."""
    x, w, _ = problem(0, 1, 20, 8, 0.5, 1.0)
    wt = evsparse.pack(w.cpu(), layout="dense").values.to(DEV)
    with only_deterministic_kernels(), pytest.raises(AssertionError, match="launched in deterministic mode"):
        launch.gather_linear(x, wt)


@pytest.mark.parametrize("n_in", [1, 255, 256, 257, 700])
@pytest.mark.parametrize("activity", [0.0, 0.1, 1.0])
def test_ordered_compaction_lists_active_inputs_in_order(n_in, activity):
    x, _, _ = problem(n_in, 3, n_in, 1, activity, 1.0)
    if n_in > 2:
        x[1, 2] = float("nan")  # NaN counts as active
    stale = launch.Active(torch.full((3, n_in), -7, dtype=torch.int32, device=DEV),
                          torch.full((3,), 99, dtype=torch.int32, device=DEV))  # count needs no zeroing
    idx, count = launch.compact_active(x, ordered=True, into=stale)
    for b in range(3):
        want = torch.nonzero(x[b] != 0).flatten().to(torch.int32)
        assert int(count[b]) == want.numel()
        assert torch.equal(idx[b, :want.numel()], want)


@settings(max_examples=10, phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(seed=st.integers(0, 2**16), B=st.integers(1, 2), n_in=st.sampled_from([1, 7, 33, 300]),
       n_out=st.sampled_from([1, 5, 130]), activity=st.sampled_from([0.0, 0.05, 0.3, 1.0]),
       density=st.sampled_from([0.1, 0.5, 1.0]), splits=st.sampled_from([1, 6, 128]), one_d=st.booleans())
def test_products_match_dense_reference_with_only_deterministic_kernels(seed, B, n_in, n_out, activity, density,
                                                                        splits, one_d):
    """Through PyTorch's switch, not the keyword. Few splits make one program walk many columns
    that add to the same outputs (the sparse partial rows' ordering)."""
    x, w, b = problem(seed, B, n_in, n_out, activity, density)
    if one_d:
        x = x[0]
    ref = x @ w.T + b
    sp = evsparse.pack(w.cpu(), layout="sparse")
    wt = evsparse.pack(w.cpu(), layout="dense").values.to(DEV)
    with deterministic_algorithms(), only_deterministic_kernels(sparse_splits=splits) as mp:
        mp.setattr(launch, "TWO_PASS_PROGRAMS", splits)
        got = {"dense": launch.gather_linear(x, wt, b),
               "sparse": launch.sparse_gather_linear(x, sp.col_ptr.to(DEV), sp.row_idx.to(DEV), sp.values.to(DEV),
                                                     n_out, b)}
    for name, y in got.items():
        assert y.shape == ref.shape, name
        torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-4, msg=name)


def test_explicit_atomic_reduction_is_refused_in_deterministic_mode():
    x, w, b = problem(1, 1, 20, 8, 0.5, 1.0)
    wt = evsparse.pack(w.cpu(), layout="dense").values.to(DEV)
    with deterministic_algorithms():
        with pytest.raises(RuntimeError, match="reduction='atomic'.*does not have a deterministic implementation"):
            launch.gather_linear(x, wt, b, reduction="atomic")
    with deterministic_algorithms(warn_only=True):
        with pytest.warns(UserWarning, match="does not have a deterministic implementation"):
            y = launch.gather_linear(x, wt, b, reduction="atomic")
    torch.testing.assert_close(y, x @ w.T + b, rtol=1e-4, atol=1e-4)
    launch.gather_linear(x, wt, b, reduction="atomic", deterministic=False)  # the keyword overrides the mode


@pytest.mark.parametrize("layout,mode", [("dense", "launches"), ("sparse", "launches"), ("dense", "persistent")])
@pytest.mark.parametrize("T,B,H,activity,thr_mean", [
    (4, 2, 270, 0.5, 0.05),  # 60-140 events per step and row, in both gate and compaction blocks
    (3, 1, 9, 0.0, 0.9),     # nothing active
    (2, 1, 1, 1.0, 0.0),     # one neuron, firing
])
def test_egru_sequence_with_only_deterministic_kernels(layout, mode, T, B, H, activity, thr_mean):
    xs, c0, y0, args = _egru_case(T + H, 5, H, B, T, layout, activity, thr_mean)
    ref = torch.ops.evsparse.egru_sequence(xs, c0, y0, *args)
    with deterministic_algorithms(), only_deterministic_kernels():
        got = recurrent.egru_sequence(xs.to(DEV), c0.to(DEV), y0.to(DEV), *_dev(args), mode=mode)
    _assert_same(got, ref)


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_linear_rnn_sequence_with_only_deterministic_kernels(layout):
    torch.manual_seed(3)
    rnn = evsparse.nn.SparseLinearRNN(6, 9, 6, complex=True, residual=True).eval()
    args = rnn.sparsify(layout=layout)._args(0)
    xs, h0 = torch.relu(torch.randn(4, 2, 6)), torch.randn(2, rnn.width)
    ref = torch.ops.evsparse.linear_rnn_sequence(xs, h0, *args)
    with deterministic_algorithms(), only_deterministic_kernels():
        got = recurrent.linear_rnn_sequence(xs.to(DEV), h0.to(DEV), *_dev(args))
    _assert_same(got, ref)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU: the interpreter runs programs one at a time")
def test_deterministic_mode_is_bitwise_repeatable_on_the_gpu():
    """Large enough that atomic ordering would show in the last bits (many blocks per output)."""
    x, w, b = problem(9, 1, 4096, 4096, 0.5, 0.3)
    sp = evsparse.pack(w, layout="sparse")
    dn = evsparse.pack(w, layout="dense")
    egru = evsparse.nn.EGRU(256, 512, thr_mean=0.05).eval().sparsify(layout="sparse").to(DEV)
    xs = torch.relu(torch.randn(16, 1, 256, device=DEV))
    with deterministic_algorithms():
        runs = [(evsparse.sparse_linear(x, sp, b), evsparse.sparse_linear(x, dn, b), egru(xs)[0]) for _ in range(5)]
    for run in runs[1:]:
        for got, first in zip(run, runs[0]):
            assert torch.equal(got, first)
    torch.testing.assert_close(runs[0][0], x @ w.T + b, rtol=1e-4, atol=1e-3)
