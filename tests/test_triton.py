"""The Triton kernels and the CUDA implementations of the ops.

Without a GPU they run on CPU tensors under Triton's interpreter (``TRITON_INTERPRET=1``, set here
before Triton is imported), against the dense reference and against the C++ CPU ops. ``pytest -m gpu``
runs the same ops through the CUDA dispatch key on a real GPU.
"""

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
from evsparse.gpu import cuda_ops, recurrent  # noqa: E402
from evsparse.gpu import sparse_linear as launch  # noqa: E402

DEV = "cuda" if HAS_CUDA else "cpu"


def problem(seed, B, n_in, n_out, activity, density):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n_out, n_in, generator=g) * (torch.rand(n_out, n_in, generator=g) < density)
    x = torch.randn(B, n_in, generator=g) * (torch.rand(B, n_in, generator=g) < activity)
    b = torch.randn(n_out, generator=g)
    return x.to(DEV), w.to(DEV), b.to(DEV)


# The interpreter runs every program instance in Python: few examples, no shrinking.
@settings(max_examples=12, phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(seed=st.integers(0, 2**16), B=st.integers(1, 2), n_in=st.sampled_from([1, 7, 33, 300]),
       n_out=st.sampled_from([1, 5, 130]), activity=st.sampled_from([0.0, 0.05, 0.3, 1.0]),
       density=st.sampled_from([0.1, 1.0]), one_d=st.booleans(), with_bias=st.booleans())
def test_products_match_dense_reference(seed, B, n_in, n_out, activity, density, one_d, with_bias):
    x, w, b = problem(seed, B, n_in, n_out, activity, density)
    b = b if with_bias else None
    if one_d:
        x = x[0]
    ref = x @ w.T + (0 if b is None else b)
    b_before = None if b is None else b.clone()
    dense = evsparse.pack(w.cpu(), layout="dense")
    sparse = evsparse.pack(w.cpu(), layout="sparse")
    wt = dense.values.to(DEV)
    got = {
        "dense-gather": launch.gather_linear(x, wt, b),
        "dense-gather two-pass": launch.gather_linear(x, wt, b, reduction="two_pass"),
        "sparse-gather": launch.sparse_gather_linear(x, sparse.col_ptr.to(DEV), sparse.row_idx.to(DEV),
                                                     sparse.values.to(DEV), n_out, b),
        "masked split-K": launch.masked_splitk_linear(x, wt, b),
    }
    for name, y in got.items():
        assert y.shape == ref.shape, name
        torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-4, msg=name)
    if b is not None:  # the output starts as a copy of the bias, never the bias itself
        assert torch.equal(b, b_before)


@pytest.mark.parametrize("programs", [1, 3, 1000])
def test_sparse_gather_spreads_columns_over_programs(programs, monkeypatch):
    """The atomic sparse-gather cuts each active column into pieces (cdiv(mean column length, BLOCK))
    and strides its programs over (column, piece) items: columns far longer and far shorter than the
    mean (full, one entry, empty), fewer programs than items and more, a NaN input in a long column
    (its implicit zeros are filled once, by piece 0)."""
    import triton

    monkeypatch.setattr(launch, "INTERPRET_PROGRAMS", programs)
    monkeypatch.setattr(launch.SPARSE_GATHER, "tuned", None)
    monkeypatch.setattr(launch.SPARSE_GATHER, "fixed", triton.Config({"BLOCK": 32}, num_warps=1))
    g = torch.Generator().manual_seed(3)
    n_in, n_out = 12, 300
    keep = torch.rand(n_out, n_in, generator=g) < 0.3
    keep[:, 0] = True   # a full column: ~3x the mean length
    keep[:, 1] = False  # empty
    keep[:, 2] = False
    keep[7, 2] = True   # one entry
    w = torch.randn(n_out, n_in, generator=g) * keep
    x = torch.randn(2, n_in, generator=g)
    x[1, 5] = 0.0
    sp = evsparse.pack(w, layout="sparse")
    args = (sp.col_ptr.to(DEV), sp.row_idx.to(DEV), sp.values.to(DEV), n_out)
    y = launch.sparse_gather_linear(x.to(DEV), *args, deterministic=False)
    torch.testing.assert_close(y.cpu(), x @ w.T, rtol=1e-4, atol=1e-4)
    x[0, 0] = float("nan")
    y = launch.sparse_gather_linear(x.to(DEV), *args, deterministic=False)
    assert torch.isnan(y[0]).all() and not torch.isnan(y[1]).any()
    torch.testing.assert_close(y[1].cpu(), x[1] @ w.T, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("programs", [1, 5, 1000])
def test_atomic_dense_gather_with_capped_programs(programs, monkeypatch):
    """Fewer programs than active blocks x tiles (each program walks several blocks of its tile), and
    more (one block per program; the grid's own extent, cdiv(in, BLOCK_K), is then the cap)."""
    monkeypatch.setattr(launch, "INTERPRET_PROGRAMS", programs)
    x, w, b = problem(6, 2, 200, 140, 0.6, 1.0)
    wt = evsparse.pack(w.cpu(), layout="dense").values.to(DEV)
    torch.testing.assert_close(launch.gather_linear(x, wt, b, reduction="atomic"), x @ w.T + b, rtol=1e-4, atol=1e-4)


def test_int32_row_indices_and_half_weights():
    x, w, b = problem(1, 2, 40, 50, 0.3, 0.3)
    sparse = evsparse.pack(w.cpu(), layout="sparse")
    y = launch.sparse_gather_linear(x, sparse.col_ptr.to(DEV), sparse.row_idx.int().to(DEV), sparse.values.to(DEV), 50, b)
    torch.testing.assert_close(y, x @ w.T + b, rtol=1e-4, atol=1e-4)
    wt16 = evsparse.pack(w.cpu().half(), layout="dense").values.to(DEV)
    y16 = launch.gather_linear(x, wt16, b)
    torch.testing.assert_close(y16, x @ w.half().float().T + b, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("programs", [4, 12])
def test_two_pass_dense_gather_with_few_splits(programs, monkeypatch):
    """Few splits, so each split walks several active blocks (the loop the default sizing rarely takes)."""
    monkeypatch.setattr(launch, "TWO_PASS_PROGRAMS", programs)
    x, w, b = problem(5, 2, 200, 140, 0.6, 1.0)  # 2 rows x 2 output tiles -> 1 or 3 splits; ~120 active = 8 blocks
    wt = evsparse.pack(w.cpu(), layout="dense").values.to(DEV)
    torch.testing.assert_close(launch.gather_linear(x, wt, b, reduction="two_pass"), x @ w.T + b, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="reduction must be 'atomic' or 'two_pass'"):
        launch.gather_linear(x, wt, b, reduction="tree")


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # the interpreter's numpy: Inf * 0
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("deterministic", [False, True])
def test_nonfinite_input_propagates_like_dense(bad, deterministic):
    """NaN/Inf inputs follow F.linear on the dense matrix (README NaN/Inf policy): with a pruned
    weight the implicit zeros give Inf * 0 = NaN too, not only the stored entries."""
    x, w, b = problem(2, 2, 20, 37, 0.2, 0.3)
    x[0, 3], x[1, 11] = bad, 1.0
    ref = x @ w.T + b
    assert (~torch.isnan(ref)).any() and torch.isnan(ref).any()  # some outputs NaN, some not
    sp = evsparse.pack(w.cpu(), layout="sparse")
    got = {"sparse": launch.sparse_gather_linear(x, sp.col_ptr.to(DEV), sp.row_idx.to(DEV), sp.values.to(DEV), 37, b,
                                                 deterministic=deterministic)}
    wt = evsparse.pack(w.cpu(), layout="dense").values.to(DEV)
    for reduction in (("two_pass",) if deterministic else ("atomic", "two_pass")):
        got[reduction] = launch.gather_linear(x, wt, b, reduction=reduction, deterministic=deterministic)
    for name, y in got.items():
        assert torch.equal(torch.isnan(y), torch.isnan(ref)), name
        torch.testing.assert_close(y[~torch.isnan(ref)], ref[~torch.isnan(ref)], rtol=1e-4, atol=1e-4)


def _over_rows(grids: list, rows: int) -> list:
    """The grids that put more than ``rows`` programs on a rows axis: 1 or 2, or 0 of a 1-D grid (the
    ordered compaction's program per row)."""
    return [g for g in grids if max(g[1:], default=1) > rows or (len(g) == 1 and g[0] > rows)]


def _grids_launched(monkeypatch) -> list:
    """Records the grid of every kernel launch (``kernel[grid](...)``, as the launchers call them)."""
    from triton.runtime.jit import KernelInterface
    grids, real = [], KernelInterface.__getitem__

    def spy(self, grid):
        grids.append(tuple(grid))
        return real(self, grid)

    monkeypatch.setattr(KernelInterface, "__getitem__", spy)
    return grids


def test_row_chunks_respect_both_limits(monkeypatch):
    assert launch.row_chunks(0, 5) == []
    assert launch.row_chunks(70_000, 10) == [(0, 65_535), (65_535, 70_000)]
    assert launch.row_chunks(10, 2**30) == [(r, r + 1) for r in range(10)]  # 2 rows x 2**30 would pass int32
    monkeypatch.setattr(launch, "MAX_ROW_OFFSET", 100)
    assert launch.row_chunks(7, 30) == [(0, 3), (3, 6), (6, 7)]
    assert launch.row_chunks(2, 500) == [(0, 1), (1, 2)]  # a row wider than the bound still gets a launch


@pytest.mark.parametrize("limit", ["grid", "offset"])
@pytest.mark.parametrize("deterministic", [False, True])
def test_rows_beyond_one_launch_are_split(limit, deterministic, monkeypatch):
    """The sequence ops do all T steps' input products as one [T*B, in] launch; past 65535 rows that
    reaches CUDA's limit on grid axes 1 and 2 (where the kernels put rows), and row * width can pass
    int32. Both limits are shrunk here so that 8 rows need three launches: every launch must stay
    within 3 rows and the results must not change."""
    if limit == "grid":
        monkeypatch.setattr(launch, "MAX_GRID_ROWS", 3)
    else:
        monkeypatch.setattr(launch, "MAX_ROW_OFFSET", 3 * 100 + 2)  # 3 rows of in = out = 100
    grids = _grids_launched(monkeypatch)
    x, w, b = problem(7, 8, 100, 100, 0.2, 0.5)
    ref = x @ w.T + b
    sp = evsparse.pack(w.cpu(), layout="sparse")
    wt = evsparse.pack(w.cpu(), layout="dense").values.to(DEV)
    got = {"sparse": launch.sparse_gather_linear(x, sp.col_ptr.to(DEV), sp.row_idx.to(DEV), sp.values.to(DEV), 100, b,
                                                 deterministic=deterministic),
           "two_pass": launch.gather_linear(x, wt, b, reduction="two_pass", deterministic=deterministic)}
    if not deterministic:
        got["atomic"] = launch.gather_linear(x, wt, b, reduction="atomic")
        got["masked"] = launch.masked_splitk_linear(x, wt, b)
    for name, y in got.items():
        torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-4, msg=name)
    assert grids and not _over_rows(grids, 3), _over_rows(grids, 3)


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_a_batch_beyond_one_launch_is_split(layout, monkeypatch):
    """The recurrent ops' kernels put the batch on grid axis 1: a batch past the limit runs in chunks."""
    monkeypatch.setattr(launch, "MAX_GRID_ROWS", 3)
    grids = _grids_launched(monkeypatch)
    torch.manual_seed(1)
    egru = evsparse.nn.EGRU(6, 8, thr_mean=0.1).eval()
    xs = torch.randn(2, 7, 6) * (torch.rand(2, 7, 6) < 0.5)
    c0, y0 = torch.randn(7, 8), torch.relu(torch.randn(7, 8))
    args = egru.sparsify(layout=layout)._args(0)
    ref = torch.ops.evsparse.egru_sequence(xs, c0, y0, *args)
    dev_args = [a.to(DEV) if isinstance(a, torch.Tensor) else a for a in args]
    for mode in ("launches", "persistent"):
        got = recurrent.egru_sequence(xs.to(DEV), c0.to(DEV), y0.to(DEV), *dev_args, mode=mode)
        for r, g_ in zip(ref, got):
            torch.testing.assert_close(g_.cpu(), r, rtol=1e-4, atol=1e-5)
    rnn = evsparse.nn.SparseLinearRNN(6, 5, 6, complex=True).eval()
    h0 = torch.randn(7, rnn.width)
    args = rnn.sparsify(layout=layout)._args(0)
    ref = torch.ops.evsparse.linear_rnn_sequence(torch.relu(xs), h0, *args)
    dev_args = [a.to(DEV) if isinstance(a, torch.Tensor) else a for a in args]
    got = cuda_ops.linear_rnn_sequence(torch.relu(xs).to(DEV), h0.to(DEV), *dev_args)
    for r, g_ in zip(ref, got):
        torch.testing.assert_close(g_.cpu(), r, rtol=1e-4, atol=1e-5)
    assert grids and not _over_rows(grids, 3), _over_rows(grids, 3)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU: the real limit is 65535 programs on grid axes 1 and 2")
def test_more_rows_than_a_grid_axis_holds_on_the_gpu():
    x, w, b = problem(8, 70_000, 16, 24, 0.3, 0.5)
    ref = x @ w.T + b
    sp = evsparse.pack(w.cpu(), layout="sparse")
    wt = evsparse.pack(w.cpu(), layout="dense").values.to(DEV)
    for det in (False, True):
        torch.testing.assert_close(launch.gather_linear(x, wt, b, deterministic=det), ref, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(launch.sparse_gather_linear(x, sp.col_ptr.to(DEV), sp.row_idx.to(DEV),
                                                               sp.values.to(DEV), 24, b, deterministic=det),
                                   ref, rtol=1e-4, atol=1e-4)
    torch.manual_seed(2)
    egru = evsparse.nn.EGRU(4, 4, thr_mean=0.1).eval()
    xs = torch.randn(70_000, 1, 4) * (torch.rand(70_000, 1, 4) < 0.5)
    c0, y0 = torch.zeros(1, 4), torch.zeros(1, 4)
    args = egru.sparsify()._args(0)
    ref = torch.ops.evsparse.egru_sequence(xs, c0, y0, *args)
    got = recurrent.egru_sequence(xs.to(DEV), c0.to(DEV), y0.to(DEV), *[a.to(DEV) if isinstance(a, torch.Tensor)
                                                                      else a for a in args])
    for r, g_ in zip(ref, got):
        torch.testing.assert_close(g_.cpu(), r, rtol=1e-4, atol=1e-4)


def test_ops_run_on_their_inputs_gpu(monkeypatch):
    """Triton launches on the current device, so the CUDA implementations switch to their inputs' GPU
    (multi-GPU, untestable on one: the device switch is recorded instead of made)."""
    from types import SimpleNamespace
    entered, seen = [], []

    class Recorder:
        def __init__(self, index):
            entered.append(index)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "device", Recorder)
    op = cuda_ops.on_inputs_device(lambda *args: seen.append(len(entered)) or "result")
    on = lambda i: SimpleNamespace(is_cuda=True, device=torch.device("cuda", i))  # noqa: E731
    assert op(3, on(1), on(0)) == "result" and entered == [1] and seen == [1]
    assert op(on(0), on(1)) == "result" and entered == [1]  # already current: no switch
    assert op(torch.zeros(1)) == "result" and entered == [1]  # no CUDA tensor


def test_gradient_ops_match_cpu_ops():
    x, w, _ = problem(3, 3, 12, 9, 0.5, 0.4)
    g = torch.randn(3, 9).to(DEV)
    sp = evsparse.pack(w.cpu(), layout="sparse")
    cp, ri, v = sp.col_ptr.to(DEV), sp.row_idx.to(DEV), sp.values.to(DEV)
    ops = torch.ops.evsparse
    torch.testing.assert_close(cuda_ops.gather_linear_grad_weight(g, x).cpu(),
                               ops.gather_linear_grad_weight(g.cpu(), x.cpu()))
    torch.testing.assert_close(cuda_ops.sparse_gather_linear_grad_values(g, x, cp, ri).cpu(),
                               ops.sparse_gather_linear_grad_values(g.cpu(), x.cpu(), sp.col_ptr, sp.row_idx))
    torch.testing.assert_close(cuda_ops.sparse_gather_linear_grad_input(g, cp, ri, v).cpu(),
                               ops.sparse_gather_linear_grad_input(g.cpu(), sp.col_ptr, sp.row_idx, sp.values))
    torch.testing.assert_close(cuda_ops.sparse_gather_linear_grad_input(g[0], cp, ri, v).cpu(),
                               ops.sparse_gather_linear_grad_input(g[0].cpu(), sp.col_ptr, sp.row_idx, sp.values))


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_fused_egru_and_linear_rnn_match_cpu_ops(layout):
    torch.manual_seed(0)
    egru = evsparse.nn.EGRU(6, 8, thr_mean=0.0).eval()
    sp = egru.sparsify(layout=layout)
    xs = torch.randn(3, 2, 6) * (torch.rand(3, 2, 6) < 0.5)
    c0, y0 = torch.randn(2, 8), torch.relu(torch.randn(2, 8))
    args = sp._args(0)
    ref = torch.ops.evsparse.egru_sequence(xs, c0, y0, *args)
    dev_args = [a.to(DEV) if isinstance(a, torch.Tensor) else a for a in args]
    got = cuda_ops.egru_sequence(xs.to(DEV), c0.to(DEV), y0.to(DEV), *dev_args)
    for r, g_ in zip(ref, got):
        torch.testing.assert_close(g_.cpu(), r, rtol=1e-4, atol=1e-5)

    rnn = evsparse.nn.SparseLinearRNN(6, 5, 6, complex=True).eval()
    packed = rnn.sparsify(layout=layout)
    h0 = torch.randn(2, rnn.width)
    args = packed._args(0)
    ref = torch.ops.evsparse.linear_rnn_sequence(torch.relu(xs), h0, *args)
    dev_args = [a.to(DEV) if isinstance(a, torch.Tensor) else a for a in args]
    got = cuda_ops.linear_rnn_sequence(torch.relu(xs).to(DEV), h0.to(DEV), *dev_args)
    for r, g_ in zip(ref, got):
        torch.testing.assert_close(g_.cpu(), r, rtol=1e-4, atol=1e-5)


def test_bad_input_is_a_clear_error():
    x, w, b = problem(4, 1, 10, 4, 0.5, 1.0)
    wt = evsparse.pack(w.cpu(), layout="dense").values.to(DEV)
    with pytest.raises(ValueError, match="x has 9 features"):
        launch.gather_linear(x[:, :9].contiguous(), wt)
    with pytest.raises(ValueError, match="1-D \\[in\\] or 2-D"):
        launch.gather_linear(x[None], wt)
    with pytest.raises(ValueError, match="contiguous"):
        launch.gather_linear(torch.zeros(10, 2, device=DEV).T, wt)
    with pytest.raises(ValueError, match="float32/float16/bfloat16"):
        launch.gather_linear(x.double(), wt)
    with pytest.raises(ValueError, match="bias must be a floating 1-D tensor of out_features=4"):
        launch.gather_linear(x, wt, b[:3])


def _outcome(fn):
    try:
        return fn()
    except ValueError as e:
        return e


@pytest.mark.parametrize("layout", ["dense", "sparse"])
@pytest.mark.parametrize("x_dtype,w_dtype,b_dtype", [
    (xd, wd, xd) for xd in (torch.float32, torch.float16, torch.bfloat16)
    for wd in (torch.float32, torch.float16, torch.bfloat16)] + [
    (torch.float32, torch.float16, torch.float16), (torch.float32, torch.float32, torch.float16)])
def test_dtype_contract_matches_the_cpu_ops(layout, x_dtype, w_dtype, b_dtype):
    """The same call is accepted or refused alike on either device (mixed half types, bias dtype)."""
    x, w, b = problem(8, 2, 12, 7, 0.5, 0.5)
    x, w, b = x.cpu().to(x_dtype), w.cpu().to(w_dtype), b.cpu().to(b_dtype)
    pw = evsparse.pack(w, layout=layout)
    ops = torch.ops.evsparse
    if layout == "dense":
        cpu = _outcome(lambda: ops.gather_linear(x, pw.values, b))
        dev = _outcome(lambda: launch.gather_linear(x.to(DEV), pw.values.to(DEV), b.to(DEV)))
    else:
        cpu = _outcome(lambda: ops.sparse_gather_linear(x, pw.col_ptr, pw.row_idx, pw.values, 7, b))
        dev = _outcome(lambda: launch.sparse_gather_linear(x.to(DEV), pw.col_ptr.to(DEV), pw.row_idx.to(DEV),
                                                           pw.values.to(DEV), 7, b.to(DEV)))
    assert isinstance(cpu, ValueError) == isinstance(dev, ValueError), (cpu, dev)
    if isinstance(cpu, ValueError):
        assert "dtype" in str(dev)
    else:
        assert dev.dtype == cpu.dtype == x_dtype
        torch.testing.assert_close(dev.cpu().float(), cpu.float(), rtol=1e-2, atol=1e-2)


def test_corrupted_csc_structure_is_a_clear_error():
    """Checked once per pair of index tensors (one host sync), again after an in-place change."""
    x, w, b = problem(6, 1, 10, 4, 1.0, 0.6)
    sp = evsparse.pack(w.cpu(), layout="sparse")
    cp, ri, v = sp.col_ptr.to(DEV), sp.row_idx.to(DEV), sp.values.to(DEV)
    call = launch.sparse_gather_linear
    torch.testing.assert_close(call(x, cp, ri, v, 4, b), x @ w.T + b, rtol=1e-4, atol=1e-4)
    bad = ri.clone()
    bad[-1] = 4
    with pytest.raises(ValueError, match=r"row_idx has entries out of range \[0, 4\)"):
        call(x, cp, bad, v, 4, b)
    bad = cp.clone()
    bad[4] = bad[3] - 1
    with pytest.raises(ValueError, match="col_ptr is not monotone at column 3"):
        call(x, bad, ri, v, 4, b)
    with pytest.raises(ValueError, match="col_ptr must start at 0 and end at nnz"):
        call(x, cp - 1, ri, v, 4, b)
    k0 = int(sp.col_ptr[5])
    assert int(sp.col_ptr[6]) - k0 >= 2  # column 5 holds two entries to swap or repeat
    for first, second in ((ri[k0 + 1], ri[k0]), (ri[k0], ri[k0])):  # unsorted, then a duplicate row
        bad = ri.clone()
        bad[k0], bad[k0 + 1] = first, second
        with pytest.raises(ValueError, match="strictly increasing within each column; column 5 is not"):
            call(x, cp, bad, v, 4, b)
    with pytest.raises(ValueError, match=r"out of range \[0, 3\)"):  # the same pair, fewer outputs
        call(x, cp, ri, v, 3, b[:3])
    ri[0] = -1  # in place, after a checked call
    with pytest.raises(ValueError, match="row_idx has entries out of range"):
        call(x, cp, ri, v, 4, b)
    with pytest.raises(ValueError, match="col_ptr must be a 1-D int64"):
        call(x, cp.int(), ri, v, 4, b)
    with pytest.raises(ValueError, match="one entry per row index"):
        call(x, cp, ri, v[1:], 4, b)
    with torch.inference_mode():  # inference tensors have no version counter: checked once all the same
        fresh = evsparse.pack(w.cpu(), layout="sparse")  # (ri above shares sp's storage on CPU: corrupted)
        cp_i, ri_i, v_i = fresh.col_ptr.to(DEV), fresh.row_idx.to(DEV), fresh.values.to(DEV)
        assert ri_i.is_inference()
        torch.testing.assert_close(call(x, cp_i, ri_i, v_i, 4, b), x @ w.T + b, rtol=1e-4, atol=1e-4)
        bad = ri_i.clone()
        bad[-1] = 4
        with pytest.raises(ValueError, match=r"row_idx has entries out of range \[0, 4\)"):
            call(x, cp_i, bad, v_i, 4, b)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_ops_run_on_cuda_with_no_code_change():
    x, w, b = problem(5, 1, 256, 96, 0.1, 1.0)
    for layout in ("dense", "sparse"):
        pw = evsparse.pack(w, layout=layout)
        torch.testing.assert_close(evsparse.sparse_linear(x, pw, b), x @ w.T + b, rtol=1e-4, atol=1e-4)
    pw = evsparse.pack(w, layout="sparse")
    pw.values.requires_grad_()
    xg = x.clone().requires_grad_()
    evsparse.sparse_linear(xg, pw, b).sum().backward()
    torch.testing.assert_close(xg.grad, w.sum(0, keepdim=True), rtol=1e-4, atol=1e-4)
    egru = evsparse.nn.EGRU(16, 32).eval()
    xs = torch.randn(5, 1, 16)
    ref, _ = egru.sparsify()(xs)
    got, _ = egru.sparsify().to("cuda")(xs.cuda())
    torch.testing.assert_close(got.cpu(), ref, rtol=1e-4, atol=1e-4)


def test_gpu_report_harness(tmp_path, monkeypatch):
    """evsparse-gpu-bench end to end at tiny sizes (on CPU tensors under the interpreter here; on a GPU
    under -m gpu runs it for real): every method runs, the numbers agree with each other."""
    import json

    from evsparse.bench import gpu as gpu_bench

    built, weights_cls = [], gpu_bench.Weights  # device weights: one per (size, density), shared by its activities
    monkeypatch.setattr(gpu_bench, "Weights", lambda w, device: built.append(w) or weights_cls(w, device))
    out = tmp_path / "gpu-report"
    rc = gpu_bench.main(["--sizes", "24x40", "--activity", "0.25", "0.5", "--density", "1", "0.5", "--egru-hidden", "8",
                         "--steps", "3", "--reps", "1", "--out", str(out), "--quiet"])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert report["meta"]["interpreted"] == (not HAS_CUDA)
    assert [(r["activity"], r["density"]) for r in report["rows"]] == [(0.25, 1.0), (0.5, 1.0), (0.25, 0.5), (0.5, 0.5)]
    assert len(built) == 2 and (built[0] != 0).all() and 0.3 < float((built[1] != 0).float().mean()) < 0.7
    for r in report["rows"]:
        t = r["times_us"]
        assert set(t) == {"evsparse", "evs_dense_gather", "evs_dense_gather two-pass", "evs_sparse_gather",
                          "evs_dense_gather uncapped", "evs_sparse_gather uncapped",
                          "evs_dense_gather deterministic", "evs_sparse_gather deterministic",
                          "cuBLAS F.linear", "cuBLAS x @ W^T", "masked split-K", "torch CSR mv"}
        assert all(v > 0 for v in t.values())
        assert set(r["max_rel_error_vs_cublas"]) == set(t) and max(r["max_rel_error_vs_cublas"].values()) < 1e-4
        assert r["speedup_vs"]["cuBLAS F.linear"] == pytest.approx(t["cuBLAS F.linear"] / t["evsparse"])
        best_dense = min(t["cuBLAS F.linear"], t["cuBLAS x @ W^T"])
        assert r["speedup_vs_best_dense"] == pytest.approx(best_dense / t["evsparse"])
        full = 1 / r["activity"]
        assert r["theoretical_speedup"] == pytest.approx(full) if r["density"] == 1.0 else r["theoretical_speedup"] > full
        cold = r["cold_l2_times_us"]
        assert set(cold) == {"evsparse", "cuBLAS F.linear", "cuBLAS x @ W^T"} and all(v > 0 for v in cold.values())
        assert r["cold_l2_speedup_vs_best_dense"] == pytest.approx(
            min(cold["cuBLAS F.linear"], cold["cuBLAS x @ W^T"]) / cold["evsparse"])
        assert r["cold_l2_speedup_vs_cublas"] == pytest.approx(cold["cuBLAS F.linear"] / cold["evsparse"])
        assert r["cold_l2_copy_fraction"] == pytest.approx(r["copy_fraction"] * t["evsparse"] / cold["evsparse"])
    assert [e["hidden"] for e in report["egru"]] == [8, 8]
    persistent = "evsparse egru_sequence T=3 persistent"  # dense recurrent weight only
    assert [persistent in e["times_us"] for e in report["egru"]] == [True, False]
    assert set(report["meta"]["tuned_configs"]) == {"dense_gather", "dense_gather_partial", "sparse_gather",
                                                    "sparse_gather_partial", "masked_splitk"}
    md = (out / "report.md").read_text()
    assert "| 24x40 | 25% | 100% |" in md and "checked against cuBLAS before timing" in md
    header = next(line for line in md.splitlines() if line.startswith("| size"))
    row = next(line for line in md.splitlines() if line.startswith("| 24x40 | 25% | 100% |"))
    assert "cold-L2 of copy BW" in header and "| vs best dense |" in header and header.count("|") == row.count("|")


def test_gpu_pytest_benchmarks_run_under_the_interpreter(run_benchmarks_once):
    """benchmarks/test_bench_gpu.py (pytest-benchmark, the Triton kernels) at tiny sizes on CPU tensors,
    each case once (--benchmark-disable): the products against their baselines and the EGRU step
    against GRUCell run; the CUDA-graph cases skip without a GPU."""
    stdout = run_benchmarks_once(["benchmarks/test_bench_gpu.py"], env={
        "TRITON_INTERPRET": "1", "EVSPARSE_GPU_BENCH_SIZES": "24x40", "EVSPARSE_GPU_BENCH_HIDDEN": "8"})
    assert "34 passed, 4 skipped" in stdout, stdout[-1000:]


def test_host_overhead_script_runs():
    """scripts/gpu_host_overhead.py (the README's host-time figure) at a tiny size, in its own process:
    it stubs every Triton launch globally."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "gpu_host_overhead.py"
    out = subprocess.run([sys.executable, str(script), "--hidden", "16", "--rounds", "2"], capture_output=True,
                         text=True, timeout=300, env={**os.environ, "TRITON_INTERPRET": "1"})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["dense", "sparse"] and all("egru_step" in line for line in lines)
