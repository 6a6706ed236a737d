"""torch.nn.GRU's unbatched form on every recurrent module: a sequence [T, in] and a step input [in],
with the state [num_layers, width]; each must equal the same data run as a batch of one."""

import pytest
import torch

from evsparse.nn import EGRU, SparseLinearRNN


def _modules(batch_first: bool):
    torch.manual_seed(0)
    egru = EGRU(6, 10, num_layers=2, batch_first=batch_first, thr_mean=0.1).eval()
    lrnn = SparseLinearRNN(6, 5, 6, num_layers=2, complex=True, batch_first=batch_first).eval()
    # (module, width of each state tensor, output width); the EGRU state is a tuple (c, y)
    return [(egru, 10, 10), (egru.sparsify(), 10, 10), (lrnn, 10, 6), (lrnn.sparsify(), 10, 6)]


def _tensors(state):
    return state if isinstance(state, tuple) else (state,)


def _unbatch(state):
    return tuple(t.squeeze(1) for t in state) if isinstance(state, tuple) else state.squeeze(1)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("T", [0, 1, 7])
def test_unbatched_sequence_equals_a_batch_of_one(batch_first, T):
    x = torch.relu(torch.randn(T, 6) + 0.3)
    for module, width, out in _modules(batch_first):
        with torch.inference_mode():
            y, state = module(x)
            y1, state1 = module(x.unsqueeze(0 if batch_first else 1))  # the batched form, B = 1
            assert y.shape == (T, out)
            torch.testing.assert_close(y, y1.squeeze(0 if batch_first else 1), rtol=0, atol=0)
            assert type(state) is type(state1)
            for got, want in zip(_tensors(state), _tensors(_unbatch(state1)), strict=True):
                assert got.shape == (2, width)
                torch.testing.assert_close(got, want, rtol=0, atol=0)
            # The state carries over: a second chunk from the unbatched state equals the batched run.
            y2, _ = module(x, state)
            y2b, _ = module(x.unsqueeze(0 if batch_first else 1), state1)
            torch.testing.assert_close(y2, y2b.squeeze(0 if batch_first else 1), rtol=0, atol=0)


@pytest.mark.parametrize("batch_first", [False, True])
def test_unbatched_steps_equal_the_sequence(batch_first):
    x = torch.relu(torch.randn(5, 6) + 0.3)
    for module, width, _ in _modules(batch_first):
        with torch.inference_mode():
            y, last = module(x)
            state = None
            for t in range(x.shape[0]):
                y_t, state = module.step(x[t], state)
                assert y_t.shape == y[t].shape
                torch.testing.assert_close(y_t, y[t], rtol=1e-5, atol=1e-6)
            for got, want in zip(_tensors(state), _tensors(last), strict=True):
                assert got.shape == (2, width)
                torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_unbatched_input_with_a_batched_state_is_refused():
    for module, width, _ in _modules(False):
        batched = torch.zeros(2, 1, width)
        bad_width = torch.zeros(2, width + 1)
        for state in ((batched, batched), batched, (bad_width, bad_width), bad_width):
            if isinstance(state, tuple) != ("EGRU" in type(module).__name__):
                continue  # the state form of the other family
            with pytest.raises(ValueError, match="unbatched"):
                module(torch.zeros(3, 6), state)
            with pytest.raises(ValueError, match="unbatched"):
                module.step(torch.zeros(6), state)


def test_unbatched_input_with_the_other_family_state_form_is_refused():
    # An EGRU given one tensor, or a linear RNN given a tuple: the message names the unbatched form.
    for module, width, _ in _modules(False):
        egru = "EGRU" in type(module).__name__
        good = torch.zeros(2, width)
        wrong_forms = (good, (good,), (good, good, good)) if egru else ((good, good), [good])
        for state in wrong_forms:
            want = r"tuple \(c, y\), each \[2, 10\]" if egru else r"one tensor \[2, 10\]"
            with pytest.raises(ValueError, match=rf"unbatched.*{want}"):
                module(torch.zeros(3, 6), state)
            with pytest.raises(ValueError, match=rf"unbatched.*{want}"):
                module.step(torch.zeros(6), state)


def test_wrong_input_rank_names_both_forms():
    for module, _, _ in _modules(False):
        with pytest.raises(ValueError, match=r"3-D .*2-D \[T, input_size\] \(unbatched\)"):
            module(torch.zeros(2, 3, 4, 6))
        with pytest.raises(ValueError, match=r"x_t must be .*\[(6|input_size)\]"):
            module.step(torch.zeros(1, 1, 6))


def test_unbatched_training_forward_backpropagates():
    egru = EGRU(6, 10, thr_mean=0.0)
    x = torch.randn(4, 6, requires_grad=True)
    y, _ = egru(x)
    (y.sum() + egru.activity_loss()).backward()
    assert x.grad is not None and x.grad.shape == x.shape
    assert egru.weight_hh_l0.grad is not None


def test_timed_sparsify_takes_an_unbatched_example():
    torch.manual_seed(0)
    x = torch.relu(torch.randn(8, 6) + 0.3)
    for module in (EGRU(6, 10, thr_mean=0.1).eval(), SparseLinearRNN(6, 5, 6).eval()):
        packed = module.sparsify(layout="timed", example_input=x)
        assert all(choice is not None for choice in packed.layout_choices)
        with torch.inference_mode():
            torch.testing.assert_close(packed(x)[0], module(x)[0], rtol=1e-5, atol=1e-6)


def test_unbatched_forward_exports_and_compiles():
    torch.manual_seed(0)
    sparse = EGRU(6, 10, num_layers=2, thr_mean=0.1).eval().sparsify()
    x = torch.relu(torch.randn(7, 6) + 0.3)
    with torch.inference_mode():
        want = sparse(x)[0]
    exported = torch.export.export(sparse, (x,))
    torch.testing.assert_close(exported.module()(x)[0], want, rtol=0, atol=0)
    compiled = torch.compile(sparse, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x)[0], want, rtol=0, atol=0)
