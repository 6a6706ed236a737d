"""torch.ops.evsparse.dropconnect / evsparse.functional.dropconnect: F.dropout's distribution from a
counter-based hash, its gradient, reproducibility, and bad input."""

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck

from evsparse.functional import dropconnect

OP = torch.ops.evsparse.dropconnect.default


def seed(v: int) -> torch.Tensor:
    return torch.tensor(v, dtype=torch.int64)


@pytest.mark.parametrize("p", [0.1, 0.3, 0.7])
def test_keeps_each_element_with_probability_one_minus_p_and_scales_like_dropout(p):
    w = torch.ones(1000, 1000)
    out = dropconnect(w, p)
    kept = out != 0
    # 1e6 draws: the kept fraction's standard deviation is <= 5e-4, so 5e-3 is 10 of them.
    assert abs(kept.float().mean().item() - (1 - p)) < 5e-3
    torch.testing.assert_close(out[kept], torch.full((int(kept.sum()),), 1 / (1 - p)))
    # F.dropout's scaling, element for element, where both keep.
    ref = F.dropout(w, p, training=True)
    both = kept & (ref != 0)
    torch.testing.assert_close(out[both], ref[both])


def test_masks_look_independent_across_elements_rows_columns_and_calls():
    w = torch.ones(2000, 500)
    m1, m2 = (dropconnect(w, 0.5) != 0).float(), (dropconnect(w, 0.5) != 0).float()

    def corr(a, b):
        a, b = a.flatten() - a.mean(), b.flatten() - b.mean()
        return (a @ b / (a.norm() * b.norm())).item()

    assert abs(corr(m1, m2)) < 0.01  # two calls: fresh masks
    assert abs(corr(m1[:, 1:], m1[:, :-1])) < 0.01  # neighbours within a row
    assert abs(corr(m1[1:], m1[:-1])) < 0.01  # neighbours within a column
    # Every row and column keeps about half: 500 (2000) draws, sd 0.022 (0.011); 6 sd.
    assert (m1.mean(1) - 0.5).abs().max() < 6 * 0.0224
    assert (m1.mean(0) - 0.5).abs().max() < 6 * 0.0112


def test_reproducible_from_torch_manual_seed_and_different_for_other_seeds():
    w = torch.randn(64, 48)
    torch.manual_seed(3)
    a = dropconnect(w, 0.4)
    torch.manual_seed(3)
    b = dropconnect(w, 0.4)
    torch.manual_seed(4)
    c = dropconnect(w, 0.4)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(OP(w, 0.4, seed(1)), OP(w, 0.4, seed(1 << 32)))  # the seed's high half counts too


def test_same_bits_for_every_isa_and_thread_count(isa, threads):
    w = torch.randn(300, 257)  # a tail in every ISA's vectors, several thread pieces
    ref = OP(w, 0.3, seed(11))
    for n in (1, 2):
        threads(n)
        assert torch.equal(OP(w, 0.3, seed(11)), ref)


def test_gradient_is_the_same_mask_and_scale():
    w = torch.randn(40, 30, requires_grad=True)
    g = torch.randn(40, 30)
    out = OP(w, 0.5, seed(7))
    out.backward(g)
    mask = out.detach() != 0
    torch.testing.assert_close(w.grad, torch.where(mask, g * 2.0, torch.zeros(())))


def test_gradcheck_and_double_backward_float64():
    w = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    s = seed(9)
    assert gradcheck(lambda t: OP(t, 0.3, s), (w,))
    assert gradgradcheck(lambda t: OP(t, 0.3, s), (w,))


def test_edge_probabilities_shapes_and_layouts():
    w = torch.randn(33, 17)
    assert dropconnect(w, 0.0) is w  # nothing dropped: the weight itself, as F.dropout(p=0) in value
    assert dropconnect(w, 0.5, training=False) is w
    assert torch.equal(OP(w, 0.0, seed(1)), w)
    assert torch.equal(OP(w, 1.0, seed(1)), torch.zeros_like(w))
    wt = w.t()  # strided: the same draws as its contiguous copy
    assert torch.equal(OP(wt, 0.3, seed(2)), OP(wt.contiguous(), 0.3, seed(2)))
    assert OP(torch.empty(0, 5), 0.3, seed(2)).shape == (0, 5)
    x = torch.randn(5, 4, 3, dtype=torch.float64)
    assert OP(x, 0.3, seed(2)).dtype == torch.float64 and OP(x, 0.3, seed(2)).shape == x.shape


@pytest.mark.parametrize("args, match", [
    ((torch.randn(3, 3), -0.1, seed(0)), "p must be in"),
    ((torch.randn(3, 3), 1.5, seed(0)), "p must be in"),
    ((torch.randn(3, 3), float("nan"), seed(0)), "p must be in"),
    ((torch.ones(3, 3, dtype=torch.int32), 0.3, seed(0)), "float32 or float64"),
    ((torch.randn(3, 3), 0.3, torch.tensor(1.0)), "seed must be"),
    ((torch.randn(3, 3), 0.3, torch.tensor([1, 2])), "seed must be"),
])
def test_bad_input_is_a_value_error(args, match):
    with pytest.raises(ValueError, match=match):
        OP(*args)
    if match == "p must be in" and args[1] == args[1]:  # (NaN compares unequal: F.dropout's own check differs)
        with pytest.raises(ValueError, match="p must be in"):
            dropconnect(args[0], args[1])


def test_compile_fullgraph_draws_a_fresh_mask_per_call():
    w = torch.ones(200, 100)
    f = torch.compile(lambda t: dropconnect(t, 0.25), fullgraph=True)
    a, b = f(w), f(w)
    assert abs((a != 0).float().mean().item() - 0.75) < 0.02
    assert not torch.equal(a, b)
