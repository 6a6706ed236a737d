"""The bitmask-gather: on AVX-512, float32 sparse weights of at least the bitmask threshold (17.5% by default,
evsparse.set_bitmask_min_density) take the
bitmask of their structure (derived when the structure is validated) instead of the scatter. Against
the dense reference, across ISA switches, and with the structure edited after the masks were derived.
(test_sparse_linear.py's hypothesis tests run it too, under the avx512 ISA.)"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import evsparse

from conftest import SUPPORTED_ISAS
from test_memory_safety import run_python

pytestmark = pytest.mark.skipif("avx512" not in SUPPORTED_ISAS, reason="needs an AVX-512 CPU")


@pytest.fixture
def avx512():
    previous = evsparse.get_isa()
    evsparse.set_isa("avx512")
    yield
    evsparse.set_isa(previous)


def problem(out, inp, density, activity, batch, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(out, inp, generator=g)
    mask = torch.rand(out, inp, generator=g) < density
    x = torch.randn(batch, inp, generator=g) * (torch.rand(batch, inp, generator=g) < activity)
    return w * mask, mask, x


@settings(max_examples=60, deadline=None)
@given(out=st.sampled_from([1, 15, 16, 17, 100, 257, 1000]), inp=st.sampled_from([1, 7, 64, 300]),
       density=st.sampled_from([0.18, 0.2, 0.5, 1.0]), activity=st.sampled_from([0.05, 0.3, 1.0]),
       batch=st.sampled_from([1, 3]), with_bias=st.booleans(), seed=st.integers(0, 10**6))
def test_matches_dense_reference(avx512, threads, out, inp, density, activity, batch, with_bias, seed):
    threads(2)
    wm, mask, x = problem(out, inp, density, activity, batch, seed)
    bias = torch.randn(out) if with_bias else None
    pw = evsparse.pack(wm, mask, layout="sparse")
    ref = torch.nn.functional.linear(x, wm, bias)
    torch.testing.assert_close(evsparse.sparse_linear(x, pw, bias), ref, rtol=1e-4, atol=1e-4)


@pytest.fixture
def threshold():
    """Sets the bitmask threshold for one test and restores the default after it."""
    default = evsparse.get_bitmask_min_density()
    yield evsparse.set_bitmask_min_density
    evsparse.set_bitmask_min_density(default)


@settings(max_examples=40, deadline=None)
@given(out=st.sampled_from([1, 16, 17, 257, 1000]), inp=st.sampled_from([1, 7, 300]),
       density=st.sampled_from([0.0, 0.01, 0.05, 0.1]), activity=st.sampled_from([0.05, 1.0]),
       batch=st.sampled_from([1, 3]), seed=st.integers(0, 10**6))
def test_low_densities_through_the_bitmask_match_the_reference(avx512, threads, threshold, out, inp, density,
                                                                activity, batch, seed):
    """With the threshold at 0 every float32 sparse weight takes the bitmask, however sparse (empty
    columns, empty masks), and still equals the dense reference."""
    threshold(0.0)
    threads(2)
    wm, mask, x = problem(out, inp, density, activity, batch, seed)
    pw = evsparse.pack(wm, mask, layout="sparse")
    torch.testing.assert_close(evsparse.sparse_linear(x, pw), torch.nn.functional.linear(x, wm), rtol=1e-4, atol=1e-4)


def test_the_threshold_reaches_the_kernels(avx512, threshold):
    """The bitmask forms s * w + y in one FMA, the scatter rounds s * w first, so below and above a
    weight's density the same call gives results equal to rounding but not bit for bit: equal bits
    would mean the threshold never chose the path."""
    wm, mask, x = problem(3000, 200, 0.3, 1.0, 1, 5)
    pw = evsparse.pack(wm, mask, layout="sparse")
    density = pw.nnz / (3000 * 200)
    ys = {}
    for d in (0.0, density, density + 1e-4, 2.0):  # bitmask, bitmask (at the density), scatter, scatter
        threshold(d)
        ys[d] = evsparse.sparse_linear(x, pw)
    assert torch.equal(ys[0.0], ys[density]) and torch.equal(ys[density + 1e-4], ys[2.0])
    torch.testing.assert_close(ys[0.0], ys[2.0], rtol=1e-5, atol=1e-4)
    assert not torch.equal(ys[0.0], ys[2.0])


def test_large_out_int32_rows_nan_inf_and_every_isa_agree(avx512):
    wm, mask, x = problem(40000, 24, 0.3, 0.5, 3, 1)  # out > 32767: int32 row indices
    pw = evsparse.pack(wm, mask, layout="sparse")
    assert pw.row_idx.dtype == torch.int32
    x[0, 3], x[1, 5] = float("nan"), float("inf")
    x[1, 3] = 1.0
    ref = torch.nn.functional.linear(x, wm)
    ys = {}
    for isa in SUPPORTED_ISAS:  # the scatter elsewhere, the bitmask on avx512, on the same packed weight
        evsparse.set_isa(isa)
        ys[isa] = evsparse.sparse_linear(x, pw)
        torch.testing.assert_close(ys[isa], ref, rtol=1e-4, atol=1e-3, equal_nan=True)
    evsparse.set_isa("avx512")
    torch.testing.assert_close(evsparse.sparse_linear(x, pw), ys["avx512"], equal_nan=True)


def test_in_place_edit_after_the_masks_are_derived_is_followed(avx512):
    """An edit that moves the version re-validates the structure and derives its masks again: the
    result follows the new structure."""
    wm, mask, x = problem(50, 40, 0.4, 1.0, 2, 2)
    pw = evsparse.pack(wm, mask, layout="sparse")
    evsparse.sparse_linear(x, pw)  # masks derived
    with torch.no_grad():
        j = int(torch.argmax(pw.col_ptr[1:] - pw.col_ptr[:-1]))  # a column with stored rows
        k0, k1 = int(pw.col_ptr[j]), int(pw.col_ptr[j + 1])
        free = sorted(set(range(50)) - set(pw.row_idx[k0:k1].tolist()))
        assert free  # a row of this column that is not stored: move its first entry there
        rows = sorted(pw.row_idx[k0 + 1:k1].tolist() + [free[0]])
        pw.row_idx[k0:k1] = torch.tensor(rows, dtype=pw.row_idx.dtype)
    dense = torch.zeros(50, 40)
    cp, ri, v = pw.col_ptr.tolist(), pw.row_idx.tolist(), pw.values
    for c in range(40):
        for k in range(cp[c], cp[c + 1]):
            dense[ri[k], c] = v[k]
    torch.testing.assert_close(evsparse.sparse_linear(x, pw), x @ dense.T, rtol=1e-5, atol=1e-5)


def test_col_ptr_edit_after_the_masks_are_derived_is_refused(avx512):
    wm, mask, x = problem(64, 30, 0.5, 1.0, 1, 3)
    pw = evsparse.pack(wm, mask, layout="sparse")
    evsparse.sparse_linear(x, pw)
    with torch.no_grad():
        pw.col_ptr[5] += 1  # still monotone, now inconsistent with its rows
    with pytest.raises(ValueError, match="row_idx is not strictly increasing|col_ptr"):
        evsparse.sparse_linear(x, pw)


def test_row_idx_edited_on_disk_under_mmap_is_refused(tmp_path):
    """Edited without a version bump (a memory-mapped file changed on disk): the masks describe the
    structure as validated, so the per-call check of each active column's first and last row refuses
    the changed data (ValueError, no crash, no answer from the stale masks)."""
    run_python(f"""
        import torch, pytest, evsparse
        from evsparse.nn import SparseLinear
        evsparse.set_isa("avx512")
        torch.manual_seed(0)
        lin = torch.nn.Linear(48, 200)
        mask = torch.rand(200, 48) < 0.4
        m = SparseLinear.from_module(lin, mask, layout="sparse")
        path = {str(tmp_path / "lin.pt")!r}
        torch.save(m.state_dict(), path)
        target = SparseLinear.from_module(lin, mask, layout="sparse")
        target.load_state_dict(torch.load(path, weights_only=True, mmap=True), assign=True)
        x = torch.randn(2, 48)
        target(x)  # validated, masks derived
        ri = dict(target.named_buffers())["row_idx"].clone()
        raw = bytearray(open(path, "rb").read())
        at = raw.find(ri.numpy().tobytes())
        bad = ri.clone()
        bad[0] = (int(ri[0]) + 1) % 200 if int(ri[1]) != (int(ri[0]) + 1) % 200 else 199
        raw[at:at + bad.numel() * 2] = bad.numpy().tobytes()
        with open(path, "r+b") as f:
            f.write(raw)
        assert int(dict(target.named_buffers())["row_idx"][0]) == int(bad[0])  # the mapping sees the edit
        with pytest.raises(ValueError, match="row_idx changed at column 0"):
            target(torch.ones(2, 48))
    """)
