"""The block-gather: sparse weights whose columns are runs of 16x1 blocks of rows (what
``evsparse.prune``'s ``block=16`` leaves) multiply with one vector operation per block. The op layer
derives which columns are blocked when it validates the structure; the result must equal the dense
reference, and bit for bit the scatter's (both round s * w, then add), on every ISA, for the product op,
the recurrent ops and the plans; a structure edited without a version bump is refused."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import evsparse
from evsparse import prune
from evsparse.nn import EGRU, SparseLinear


def block_mask(out, inp, density, gen, partial_cols=0):
    """A [out, in] mask of whole 16x1 blocks (the last one shorter when out % 16 != 0); partial_cols
    columns get one extra unstructured entry, so they are not blocked."""
    nb = -(-out // 16)
    keep = torch.rand(nb, inp, generator=gen) < density
    mask = keep.repeat_interleave(16, 0)[:out].clone()
    for j in range(min(partial_cols, inp)):
        free = (~mask[:, j]).nonzero().flatten()
        if free.numel():
            mask[free[0], j] = True
    return mask


def assert_whole_blocks(mask, label=None):
    """Every 16-row group of every column of a [out, in] mask is all kept or all pruned."""
    for b in range(0, mask.shape[0], 16):
        blk = mask[b:b + 16]
        assert bool((blk.all(0) | (~blk).all(0)).all()), (label, b)


@pytest.fixture
def block_path():
    """Turns the block path on (the default fraction) or off (2) for one test, restoring it after."""
    default = evsparse.get_block_min_fraction()

    def set_path(on: bool):
        evsparse.set_block_min_fraction(default if on else 2.0)

    yield set_path
    evsparse.set_block_min_fraction(default)


@settings(max_examples=40, deadline=None)
@given(out=st.sampled_from([1, 15, 16, 17, 33, 100, 256, 1000]), inp=st.sampled_from([1, 7, 64, 300]),
       density=st.sampled_from([0.0, 0.1, 0.5, 1.0]), activity=st.sampled_from([0.05, 0.3, 1.0]),
       batch=st.sampled_from([1, 2, 7]), dtype=st.sampled_from([torch.float32, torch.float16, torch.bfloat16]),
       partial=st.sampled_from([0, 2]), with_bias=st.booleans(), seed=st.integers(0, 10**6))
def test_matches_the_dense_reference(isa, threads, out, inp, density, activity, batch, dtype, partial, with_bias, seed):
    threads(2)
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(out, inp, generator=gen).to(dtype).float()  # representable in dtype
    mask = block_mask(out, inp, density, gen, partial)
    x = torch.randn(batch, inp, generator=gen) * (torch.rand(batch, inp, generator=gen) < activity)
    bias = torch.randn(out, generator=gen) if with_bias else None
    pw = evsparse.pack(w, mask, layout="sparse", weight_dtype=dtype)
    ref = torch.nn.functional.linear(x, w * mask, bias)
    torch.testing.assert_close(evsparse.sparse_linear(x, pw, bias), ref, rtol=1e-4, atol=1e-4)


def test_path_switch_after_blocks_served(isa, block_path):
    """Where the block path serves, the bitmask is not derived; turning the block path off afterwards
    (the same weight, a validated structure already cached) derives it then, and every path still
    gives the dense reference. Dense enough (30%) for the bitmask on AVX-512."""
    gen = torch.Generator().manual_seed(12)
    w = torch.randn(200, 64, generator=gen)
    mask = block_mask(200, 64, 0.3, gen)
    x = torch.randn(3, 64, generator=gen) * (torch.rand(3, 64, generator=gen) < 0.5)
    ref = torch.nn.functional.linear(x, w * mask)
    pw = evsparse.pack(w, mask, layout="sparse")
    blocks = evsparse.sparse_linear(x, pw)  # blocks serve: validated, blocks derived, no bitmask
    block_path(False)
    other = evsparse.sparse_linear(x, pw)  # the bitmask (AVX-512) or the scatter: derived on this call
    block_path(True)
    again = evsparse.sparse_linear(x, pw)
    for y in (blocks, other, again):
        torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-4)
    assert torch.equal(blocks, again)


@pytest.mark.parametrize("out", [16, 40, 300])
def test_bitwise_equal_to_the_scatter(isa, threads, block_path, out):
    """The same weights with the block path on and off (the scatter): the same bits, for blocked
    columns, unblocked ones, the partial last block and every weight dtype, one thread and two; and
    the block path does serve them: an edit it checks (a block's last row) is refused only with it on."""
    gen = torch.Generator().manual_seed(out)
    w = torch.randn(out, 90, generator=gen)
    mask = block_mask(out, 90, 0.4, gen, partial_cols=10)
    x = torch.randn(3, 90, generator=gen) * (torch.rand(3, 90, generator=gen) < 0.5)
    bias = torch.randn(out, generator=gen)
    bitmask = evsparse.get_bitmask_min_density()
    evsparse.set_bitmask_min_density(2.0)  # off: the scatter, not the bitmask (which rounds otherwise)
    try:
        _compare_on_off(x, w, mask, bias, threads, block_path)
    finally:
        evsparse.set_bitmask_min_density(bitmask)


def _compare_on_off(x, w, mask, bias, threads, block_path):
    for n in (1, 2):
        threads(n)
        for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.int8):
            pw = evsparse.pack(w, mask, layout="sparse", weight_dtype=dtype)
            block_path(True)
            on = evsparse.sparse_linear(x, pw, bias)
            block_path(False)
            off = evsparse.sparse_linear(x, pw, bias)
            assert torch.equal(on, off), (n, dtype)


def test_knob():
    default = evsparse.get_block_min_fraction()
    assert default == pytest.approx(0.5) and evsparse.build_info()["block_min_fraction"] == pytest.approx(0.5)
    try:
        evsparse.set_block_min_fraction(0.9)
        assert evsparse.get_block_min_fraction() == pytest.approx(0.9)
        for bad in (-1.0, float("nan")):
            with pytest.raises(ValueError, match="must be >= 0"):
                evsparse.set_block_min_fraction(bad)
    finally:
        evsparse.set_block_min_fraction(default)


def test_int8_weights(isa):
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(200, 64, generator=gen)
    mask = block_mask(200, 64, 0.3, gen)
    x = torch.randn(2, 64, generator=gen) * (torch.rand(2, 64, generator=gen) < 0.5)
    pw = evsparse.pack(w, mask, layout="sparse", weight_dtype=torch.int8)
    deq = pw.to_dense()  # the dequantised matrix the int8 product must equal to rounding
    torch.testing.assert_close(evsparse.sparse_linear(x, pw), x @ deq.T, rtol=1e-5, atol=1e-4)


def test_nan_and_inf_inputs_as_f_linear(isa):
    """A non-finite input multiplies its column's implicit zeros too (NaN there), as F.linear does on
    the dense matrix: its column takes the scatter's non-finite path."""
    gen = torch.Generator().manual_seed(2)
    w = torch.randn(70, 20, generator=gen)
    mask = block_mask(70, 20, 0.5, gen)
    x = torch.randn(2, 20, generator=gen)
    x[0, 3], x[1, 7] = float("nan"), float("inf")
    pw = evsparse.pack(w, mask, layout="sparse")
    torch.testing.assert_close(evsparse.sparse_linear(x, pw), torch.nn.functional.linear(x, w * mask), equal_nan=True)


def test_autograd_through_a_blocked_weight():
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(48, 30, generator=gen)
    mask = block_mask(48, 30, 0.5, gen)
    x = (torch.randn(2, 30, generator=gen) * (torch.rand(2, 30, generator=gen) < 0.5)).requires_grad_()
    pw = evsparse.pack(w, mask, layout="sparse")
    pw.values.requires_grad_()
    evsparse.sparse_linear(x, pw).pow(2).sum().backward()
    wd = (w * mask).requires_grad_()
    xd = x.detach().clone().requires_grad_()
    torch.nn.functional.linear(xd, wd).pow(2).sum().backward()
    torch.testing.assert_close(x.grad, xd.grad)
    torch.testing.assert_close(pw.values.grad, wd.grad.T[mask.T])  # CSC order: by column, then row


@pytest.mark.parametrize("where", ["column end", "column start"])
def test_structure_edited_without_a_version_bump_is_refused(block_path, where):
    """Inference tensors have no version counter (like a memory-mapped file edited on disk): the
    derived block index would describe the old structure, so per active column the kernel checks its
    entry count and its first and last row against the index, and refuses changed data with a
    ValueError (as the bitmask path checks each column's ends)."""
    gen = torch.Generator().manual_seed(4)
    w = torch.randn(64, 10, generator=gen)
    mask = torch.zeros(64, 10, dtype=torch.bool)
    mask[16:48, :] = True  # two whole blocks per column
    with torch.inference_mode():
        pw = evsparse.pack(w, mask, layout="sparse")
        x = torch.ones(1, 10)
        torch.testing.assert_close(evsparse.sparse_linear(x, pw), x @ (w * mask).T)
        k0, k1 = int(pw.col_ptr[2]), int(pw.col_ptr[3])
        if where == "column end":
            pw.row_idx[k1 - 1] = 46  # still in range: a range check alone would not object
        else:
            pw.row_idx[k0] = 17  # misaligned, in range
        with pytest.raises(ValueError, match="corrupted packed weight"):
            evsparse.sparse_linear(x, pw)
        # The scatter range-checks each index it scatters through; this edit stays in range, so with the
        # block path off the call runs: the refusal above came from the block path's own checks.
        # (the bitmask, which AVX-512 would take at this density, checks each column's first and last row)
        block_path(False)
        bitmask = evsparse.get_bitmask_min_density()
        evsparse.set_bitmask_min_density(2.0)
        try:
            evsparse.sparse_linear(x, pw)
        finally:
            evsparse.set_bitmask_min_density(bitmask)


def test_edit_with_a_version_bump_rederives():
    """An in-place edit that moves the version re-validates and derives again: a weight that stops
    being blocked takes the scatter and is still right."""
    gen = torch.Generator().manual_seed(5)
    w = torch.randn(64, 12, generator=gen)
    mask = block_mask(64, 12, 0.6, gen)
    pw = evsparse.pack(w, mask, layout="sparse")
    x = torch.randn(1, 12, generator=gen)
    evsparse.sparse_linear(x, pw)
    counts = pw.col_ptr[1:] - pw.col_ptr[:-1]
    j = int(((counts > 0) & (counts < 64)).nonzero()[0])  # a column with stored rows and a free one
    k0, k1 = int(pw.col_ptr[j]), int(pw.col_ptr[j + 1])
    rows = pw.row_idx[k0:k1].tolist()
    free = sorted(set(range(64)) - set(rows))
    new = sorted(rows[1:] + [free[0]])  # its first block loses a row: the column is no longer blocked
    with torch.no_grad():
        pw.row_idx[k0:k1] = torch.tensor(new, dtype=pw.row_idx.dtype)
    dense = torch.zeros(64, 12)
    cp, ri = pw.col_ptr.tolist(), pw.row_idx.tolist()
    for c in range(12):
        for k in range(cp[c], cp[c + 1]):
            dense[ri[k], c] = pw.values[k]
    torch.testing.assert_close(evsparse.sparse_linear(x, pw), x @ dense.T, rtol=1e-5, atol=1e-5)


def test_block_pruned_egru_plan_and_per_layer_ops_agree(isa):
    """A block-pruned EGRU on the kernels: its plan step equals the dense masked model's step, and the
    plan and the per-layer ops (both on the block-gather) agree bit for bit."""
    torch.manual_seed(0)
    m = EGRU(48, 64, num_layers=2).eval()
    with torch.no_grad():
        for k in range(2):
            getattr(m, f"thr_l{k}").fill_(0.3)
    masks = prune.global_magnitude(m, 0.7, block=16)
    prune.apply_masks(m, masks)
    s = m.sparsify(masks, layout="sparse")
    xs = torch.randn(6, 1, 48) * (torch.rand(6, 1, 48) < 0.5)
    with torch.no_grad():
        ref, _ = m(xs)
        out_plan, _ = s(xs)
        st = None
        steps = []
        for t in range(6):
            y, st = s.step(xs[t], st)
            steps.append(y)
    torch.testing.assert_close(out_plan, ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(torch.stack(steps), out_plan, rtol=0, atol=0)


def test_sparse_linear_module_with_block_pruned_weights():
    gen = torch.Generator().manual_seed(6)
    lin = torch.nn.Linear(40, 100)
    mask = block_mask(100, 40, 0.3, gen)
    m = SparseLinear.from_module(lin, mask, layout="sparse")
    x = torch.randn(3, 40, generator=gen) * (torch.rand(3, 40, generator=gen) < 0.4)
    torch.testing.assert_close(m(x), torch.nn.functional.linear(x, lin.weight.detach() * mask, lin.bias.detach()))


class TestBlockPruning:
    def model(self):
        torch.manual_seed(0)
        return EGRU(40, 50, num_layers=2)

    @pytest.mark.parametrize("pruner", [prune.global_magnitude, prune.erk_magnitude])
    def test_masks_are_whole_16x1_blocks_at_the_sparsity(self, pruner):
        masks = pruner(self.model(), 0.8, block=16)
        total = sum(v.numel() for v in masks.values())
        kept = sum(int(v.sum()) for v in masks.values())
        assert abs((1 - kept / total) - 0.8) < 16 / total * len(masks)  # whole blocks: within a block per matrix
        for name, v in masks.items():
            assert_whole_blocks(v, name)

    def test_blocks_ranked_by_l2_norm(self):
        m = torch.nn.Module()
        w = torch.zeros(32, 2)
        w[:16, 0] = 1.0    # norm 4
        w[16:, 0] = 0.5    # norm 2
        w[:16, 1] = 3.0    # norm 12 (one big block)
        w[16:, 1] = 0.9    # norm 3.6
        m.weight = torch.nn.Parameter(w)
        masks = prune.global_magnitude(m, 0.5, include=lambda *a: a[2] == "weight", block=16)
        kept = masks["weight"]
        assert kept[:16, 0].all() and kept[:16, 1].all() and not kept[16:].any()

    def test_refuses_other_blocks_and_non_matrices(self):
        with pytest.raises(ValueError, match="block must be one of"):
            prune.global_magnitude(self.model(), 0.5, block=8)
        m = torch.nn.Module()
        m.weight = torch.nn.Parameter(torch.randn(4, 4, 4))  # 3-D and not an S5 complex pair
        with pytest.raises(ValueError, match="2-D"):
            prune.global_magnitude(m, 0.5, include=lambda *a: True, block=16)

    @pytest.mark.parametrize("pruner", [prune.global_magnitude, prune.erk_magnitude])
    def test_s5_complex_pairs_prune_in_blocks_and_pack_as_blocks(self, pruner):
        """An S5 stack's B and C ([out, in, 2] complex pairs) are blocked over their complex magnitudes,
        both parts alike; packed, every product's weight (B's real and imaginary rows, C's columns, the
        GLU, encoder and decoder) is all 16x1 blocks, and the plan equals the masked module."""
        from evsparse.layout import block_fraction
        from evsparse.nn.s5 import S5Stack

        torch.manual_seed(0)
        m = S5Stack(40, d_model=32, state_size=64, num_layers=2, output_size=24, relufied=True, blocks=2).eval()
        masks = pruner(m, 0.85, block=16)
        total = sum(v.numel() for v in masks.values())
        kept = sum(int(v.sum()) for v in masks.values())
        assert abs((1 - kept / total) - 0.85) < 32 / total * len(masks)  # (a pair's block holds 32 weights)
        pairs = [n for n in masks if masks[n].dim() == 3]
        assert pairs and all(n.endswith((".B", ".C")) for n in pairs)
        for name, v in masks.items():
            if v.dim() == 3:
                assert bool((v[..., 0] == v[..., 1]).all()), name
                v = v[..., 0]
            assert_whole_blocks(v, name)
        prune.apply_masks(m, masks)
        packed = m.sparsify(masks, layout="sparse")
        dense = [w.to_dense() for v in packed._layer_views() for w in v.weights if w is not None]
        assert len(dense) == 1 + 3 * 2 + 1  # encoder, B, C and GLU per block, decoder
        # (global_magnitude may prune a whole matrix away: nothing left to block)
        assert all(block_fraction(d) == 1.0 or not d.any() for d in dense), [block_fraction(d) for d in dense]
        x = torch.rand(8, 1, 40)
        with torch.inference_mode():
            ref, _ = m(x)
            s = packed.stream(batch_size=1)
            out = torch.stack([s.step(x[t]).clone() for t in range(8)])
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)

    def test_iterative_pruner_keeps_blocks(self):
        model = self.model()
        opt = torch.optim.SGD(model.parameters(), lr=0.0)
        pr = prune.IterativePruner(model, opt, 0.75, start_step=0, end_step=2, block=16)
        for step in range(3):
            pr.step(step)
        for name, v in pr.masks.items():
            assert_whole_blocks(v, name)


def test_auto_layout_knows_block_structure():
    """layout="auto" keeps block-pruned float weights sparse up to AUTO_SPARSE_MAX_DENSITY_BLOCKS (the
    block path's measured crossover), unstructured ones up to AUTO_SPARSE_MAX_DENSITY; int8 weights have
    their own pair of thresholds (AUTO_SPARSE_MAX_DENSITY_INT8, AUTO_SPARSE_MAX_DENSITY_BLOCKS_INT8)."""
    from evsparse.layout import auto_layout, block_fraction

    gen = torch.Generator().manual_seed(7)
    d = (evsparse.AUTO_SPARSE_MAX_DENSITY + evsparse.AUTO_SPARSE_MAX_DENSITY_BLOCKS) / 2
    blocked = torch.randn(300, 50, generator=gen) * block_mask(300, 50, d, gen)
    unstructured = torch.randn(300, 50, generator=gen) * (torch.rand(300, 50, generator=gen) < d)
    assert block_fraction(blocked) == 1.0 and block_fraction(unstructured) < 0.1
    assert block_fraction(torch.zeros(40, 3)) == 0.0
    assert auto_layout(blocked) == "sparse" and auto_layout(unstructured) == "dense"
    assert evsparse.pack(blocked, blocked != 0).layout == "sparse"
    assert auto_layout(blocked, torch.int8) == "dense"  # (d is above the int8 block threshold)
    d8 = (evsparse.AUTO_SPARSE_MAX_DENSITY_INT8 + evsparse.AUTO_SPARSE_MAX_DENSITY_BLOCKS_INT8) / 2
    blocked8 = torch.randn(300, 50, generator=gen) * block_mask(300, 50, d8, gen)
    unstructured8 = torch.randn(300, 50, generator=gen) * (torch.rand(300, 50, generator=gen) < d8)
    assert auto_layout(blocked8, torch.int8) == "sparse" and auto_layout(unstructured8, torch.int8) == "dense"
    assert evsparse.pack(blocked8, weight_dtype=torch.int8).layout == "sparse"
    dense_blocked = torch.randn(300, 50, generator=gen) * block_mask(300, 50, 0.9, gen)
    assert auto_layout(dense_blocked) == "dense"
    # half the entries in blocked columns is the op layer's threshold too
    mixed = blocked.clone()
    mixed[:, :30] = unstructured[:, :30]
    assert (block_fraction(mixed) >= 0.5) == (auto_layout(mixed) == "sparse")


@settings(max_examples=60, deadline=None)
@given(out=st.sampled_from([1, 15, 16, 17, 33, 100, 257]), inp=st.sampled_from([1, 7, 64]),
       density=st.sampled_from([0.0, 0.1, 0.5, 1.0]), partial=st.sampled_from([0, 1, 5, 64]),
       unstructured=st.booleans(), seed=st.integers(0, 2**16))
def test_block_fraction_agrees_with_the_op_layer(out, inp, density, partial, unstructured, seed):
    """evsparse.layout.block_fraction (a dense matrix, before packing: what layout="auto" decides by)
    equals the fraction the op layer derives from the packed structure (torch.ops.evsparse.csc_block_fraction,
    the derivation that decides whether the block path serves)."""
    from evsparse.layout import block_fraction

    gen = torch.Generator().manual_seed(seed)
    mask = (torch.rand(out, inp, generator=gen) < density) if unstructured else block_mask(out, inp, density, gen, partial)
    w = mask.float()
    pw = evsparse.pack(w, mask, layout="sparse")
    assert torch.ops.evsparse.csc_block_fraction(pw.col_ptr, pw.row_idx, out) == pytest.approx(block_fraction(w), abs=1e-12)


def test_csc_block_fraction_refuses_bad_structures():
    pw = evsparse.pack(torch.ones(32, 3), layout="sparse")
    assert torch.ops.evsparse.csc_block_fraction(pw.col_ptr, pw.row_idx, 32) == 1.0
    bad = pw.row_idx.clone()
    bad[3] = 40
    with pytest.raises(ValueError, match="out of range"):
        torch.ops.evsparse.csc_block_fraction(pw.col_ptr, bad, 32)
    with pytest.raises(ValueError, match="int16 or int32"):
        torch.ops.evsparse.csc_block_fraction(pw.col_ptr, pw.row_idx.long(), 32)
    with pytest.raises(ValueError, match="int64"):
        torch.ops.evsparse.csc_block_fraction(pw.col_ptr.int(), pw.row_idx, 32)
