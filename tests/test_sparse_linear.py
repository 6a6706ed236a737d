"""sparse_linear against the dense F.linear reference: shapes, activity, density, dtypes, layouts."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import example, given
from hypothesis import strategies as st

import evsparse

from test_memory_safety import run_python
from reference import DTYPE_COMBOS, assert_matches, random_problem

sizes = st.one_of(st.integers(1, 40), st.integers(1, 2048))
fractions = st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0.0, 1.0))


@given(
    out=sizes,
    inp=sizes,
    activity=fractions,
    density=fractions,
    batch=st.sampled_from([None, 1, 2, 7]),
    dtypes=st.sampled_from(DTYPE_COMBOS),
    layout=st.sampled_from(["dense", "sparse", "auto"]),
    with_bias=st.booleans(),
    n_threads=st.sampled_from([1, 2]),
    seed=st.integers(0, 2**31 - 1),
)
# found by CI: a float16 output in the subnormal range (~5e-6), rounded by half its spacing
@example(out=609, inp=3, activity=1.0, density=0.5, batch=None, dtypes=(torch.float16, torch.float16), layout="dense",
         with_bias=False, n_threads=1, seed=877)
def test_matches_dense_reference(isa, threads, out, inp, activity, density, batch, dtypes, layout, with_bias,
                                 n_threads, seed):
    threads(n_threads)
    x_dtype, w_dtype = dtypes
    gen = torch.Generator().manual_seed(seed)
    w, mask, x, bias = random_problem(gen, out, inp, activity, density, batch, x_dtype, w_dtype)
    bias = bias.to(w_dtype) if with_bias else None
    pw = evsparse.pack(w, mask, layout)
    y = evsparse.sparse_linear(x, pw, bias)
    assert_matches(y, x, w, mask, bias)


@pytest.mark.parametrize("layout", ["dense", "sparse"])
@pytest.mark.parametrize("dtypes", DTYPE_COMBOS, ids=lambda d: f"{d[0]}-{d[1]}".replace("torch.", ""))
@pytest.mark.parametrize("pattern", ["none", "all", "one_first", "one_last", "odd"])
def test_edge_patterns(isa, layout, dtypes, pattern):
    x_dtype, w_dtype = dtypes
    out, inp = 131, 97  # odd sizes: exercise every SIMD remainder path
    gen = torch.Generator().manual_seed(1)
    w, mask, x, bias = random_problem(gen, out, inp, 1.0, 0.4, 3, x_dtype, w_dtype)
    keep = torch.zeros(inp, dtype=torch.bool)
    if pattern == "all":
        keep[:] = True
    elif pattern == "one_first":
        keep[0] = True
    elif pattern == "one_last":
        keep[-1] = True
    elif pattern == "odd":
        keep[1::2] = True
    x = x * keep
    bias = bias.to(w_dtype)
    y = evsparse.sparse_linear(x, evsparse.pack(w, mask, layout), bias)
    assert_matches(y, x, w, mask, bias)
    if pattern == "none":  # nothing active: exactly the bias
        assert torch.equal(y, bias.to(x_dtype).expand_as(y))


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_exact_zero_weights_and_empty_columns(isa, layout):
    w = torch.zeros(64, 48)
    w[:, 5] = torch.randn(64)  # one nonzero column; every other column empty
    x = torch.randn(2, 48)
    y = evsparse.sparse_linear(x, evsparse.pack(w, layout=layout))
    assert_matches(y, x, w, None, None)


def test_int32_row_indices_for_large_out(isa):
    out, inp = 40000, 3
    gen = torch.Generator().manual_seed(2)
    w, mask, x, bias = random_problem(gen, out, inp, 1.0, 0.05, 2, torch.float32, torch.float32)
    pw = evsparse.pack(w, mask, "sparse")
    assert pw.index_dtype == torch.int32
    assert_matches(evsparse.sparse_linear(x, pw, bias), x, w, mask, bias)


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_nan_inf_propagate_as_in_f_linear(isa, layout):
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(40, 30, generator=gen)
    mask = torch.rand(40, 30, generator=gen) < 0.5
    mask[:, 7] = False  # an input whose column is empty: Inf * (pruned zero) must still be NaN
    x = torch.zeros(4, 30)
    x[0, 3] = float("nan")
    x[1, 7] = float("inf")
    x[2, 9] = float("-inf")
    x[3, 11] = 2.0
    y = evsparse.sparse_linear(x, evsparse.pack(w, mask, layout))
    ref = F.linear(x, w * mask)
    torch.testing.assert_close(y, ref, equal_nan=True)
    assert bool(torch.isnan(y[0]).all())


def test_nothing_active_is_cheap_and_exact():
    pw = evsparse.pack(torch.randn(256, 128), layout="sparse")
    assert torch.equal(evsparse.sparse_linear(torch.zeros(128), pw), torch.zeros(256))


def test_every_isa_gives_the_same_result():
    """The SIMD variants reorder nothing within a row, so all ISAs must agree to float rounding."""
    gen = torch.Generator().manual_seed(4)
    w, mask, x, bias = random_problem(gen, 300, 200, 0.3, 0.5, 2, torch.float32, torch.float16)
    pw = evsparse.pack(w, mask, "dense")
    previous = evsparse.get_isa()
    try:
        results = {}
        for name in evsparse.build_info()["isa_supported"]:
            evsparse.set_isa(name)
            results[name] = evsparse.sparse_linear(x, pw, bias)
    finally:
        evsparse.set_isa(previous)
    base = results["scalar"]
    for name, y in results.items():
        torch.testing.assert_close(y, base, rtol=1e-5, atol=1e-5, msg=name)
        # ...but not bit for bit: the SIMD kernels chain FMAs where the scalar one sums four products,
        # so equal bits would mean set_isa (an op of the library) never reached the kernel table
        # the operators (in libevsparse_ops) read.
        assert name == "scalar" or not torch.equal(y, base), name


def test_set_isa_rejects_unknown_and_unsupported():
    with pytest.raises(ValueError, match="unknown instruction set"):
        evsparse.set_isa("sse9")
    unsupported = [i for i in ("avx2", "avx512", "neon") if i not in evsparse.build_info()["isa_supported"]]
    if unsupported:
        with pytest.raises(ValueError, match="not supported"):
            evsparse.set_isa(unsupported[0])


def test_bitmask_threshold_knob():
    """set_bitmask_min_density / get_bitmask_min_density / build_info agree; a negative or NaN density is
    refused; EVSPARSE_BITMASK_MIN_DENSITY sets it at import and an unusable value falls back to the
    default (test_bitmask.py checks that the threshold reaches the kernels)."""
    default = evsparse.get_bitmask_min_density()
    assert default == pytest.approx(0.175)
    try:
        evsparse.set_bitmask_min_density(0.3)
        assert evsparse.get_bitmask_min_density() == pytest.approx(0.3)
        assert evsparse.build_info()["bitmask_min_density"] == pytest.approx(0.3)
        for bad in (-0.1, float("nan")):
            with pytest.raises(ValueError, match="must be >= 0"):
                evsparse.set_bitmask_min_density(bad)
        assert evsparse.get_bitmask_min_density() == pytest.approx(0.3)
    finally:
        evsparse.set_bitmask_min_density(default)
    code = "import evsparse; print(evsparse.get_bitmask_min_density())"
    for env, want in (("0.05", 0.05), ("2", 2.0), ("abc", 0.175), ("-1", 0.175), ("", 0.175)):
        out = run_python(code, env={"EVSPARSE_BITMASK_MIN_DENSITY": env})
        assert float(out.stdout.strip()) == pytest.approx(want), env


@pytest.mark.parametrize("layout", ["dense", "sparse"])
@pytest.mark.parametrize("lead", [(2, 3), (4, 1, 2), (0, 3), (3, 0)])
def test_leading_dimensions_like_f_linear(layout, lead):
    """[*, in] as F.linear takes it (a sequence [T, B, in] into a decoder): the leading dimensions are
    flattened into the batch and restored; the module form too."""
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(7, 5, generator=gen)
    mask = torch.rand(7, 5, generator=gen) < 0.5
    bias = torch.randn(7, generator=gen)
    x = torch.randn(*lead, 5, generator=gen) * (torch.rand(*lead, 5, generator=gen) < 0.4)
    pw = evsparse.pack(w, mask, layout)
    want = F.linear(x, w * mask, bias)
    got = evsparse.sparse_linear(x, pw, bias)
    assert got.shape == want.shape == (*lead, 7)
    torch.testing.assert_close(got, want)
    module = evsparse.nn.SparseLinear(pw, bias)
    torch.testing.assert_close(module(x), want)
    with pytest.raises(ValueError, match="in_features=5"):
        evsparse.sparse_linear(torch.randn(*lead, 4), pw)


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_paced_and_hot_calls_agree_bitwise(layout, threads):
    """The streaming thread policy runs a call that follows an idle gap on the calling thread and a run
    of back-to-back calls (from the 32nd, csrc/cpu/threading_policy.h) on the workers, over the same
    pieces of work: results never depend on timing."""
    import time

    threads(2)
    gen = torch.Generator().manual_seed(5)
    w = torch.randn(3072, 1024, generator=gen) * (torch.rand(3072, 1024, generator=gen) < 0.15)
    pw = evsparse.pack(w, layout=layout)
    # ~31% active: above the work the ops split across threads (op_utils.h), in both layouts.
    for x in (torch.relu(torch.randn(1024, generator=gen) - 0.5), torch.randn(2, 1024, generator=gen)):
        hot = [evsparse.sparse_linear(x, pw) for _ in range(40)]  # back to back: the last on the workers
        time.sleep(0.002)
        paced = evsparse.sparse_linear(x, pw)                   # after a gap: calling thread
        for y in hot:
            assert torch.equal(y, paced)
