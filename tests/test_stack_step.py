"""The stack-step ops (``egru_stack_step``, ``linear_rnn_stack_step``): one step of every layer of a
model in one call, which the inference modules' ``step`` uses. Each must equal the one-layer step ops
applied layer by layer, bitwise on the CPU (the same kernels run), for mixed layouts, and refuse bad
arguments with a ValueError. The Triton versions (evsparse.gpu.recurrent) run on CPU tensors under
``TRITON_INTERPRET=1`` against the C++ op."""

import os

import pytest
import torch

from evsparse.nn import EGRU, SparseLinearRNN

OPS = torch.ops.evsparse


def _egru_stack(layouts, H=11, n_in=7, seed=0):
    torch.manual_seed(seed)
    egru = EGRU(n_in, H, num_layers=len(layouts), thr_mean=0.1).eval()
    masks = {f"weight_hh_l{k}": torch.rand(3 * H, H) < 0.3 for k in range(len(layouts))}
    return egru.sparsify(masks, layout=layouts)


def _lrnn_stack(layouts, seed=0, complex_=True):
    torch.manual_seed(seed)
    rnn = SparseLinearRNN(7, 5, 9, num_layers=len(layouts), complex=complex_).eval()  # layer 0 not residual
    masks = {f"weight_in_l{k}": torch.rand(rnn.width, 7 if k == 0 else 9) < 0.4 for k in range(len(layouts))}
    return rnn.sparsify(masks, layout=layouts)


def _egru_by_layers(sp, x, c, y):
    cs, ys, inp = [], [], x
    for k in range(sp.num_layers):
        ck, inp = OPS.egru_step(inp, c[k], y[k], *sp._args(k))
        cs.append(ck)
        ys.append(inp)
    return inp, torch.stack(cs), torch.stack(ys)


def _lrnn_by_layers(rnn, x, h):
    hs, inp = [], x
    for k in range(rnn.num_layers):
        inp, hk = OPS.linear_rnn_step(inp, h[k], *rnn._args(k))
        hs.append(hk)
    return inp, torch.stack(hs)


LAYOUT_STACKS = [[("dense", "dense")], [("sparse", "dense"), ("dense", "sparse"), ("sparse", "sparse")]]


@pytest.mark.parametrize("layouts", LAYOUT_STACKS)
@pytest.mark.parametrize("B", [1, 3])
def test_egru_stack_step_equals_layer_by_layer(layouts, B):
    sp = _egru_stack(layouts)
    L, H = len(layouts), 11
    x = torch.randn(B, 7) * (torch.rand(B, 7) < 0.5)
    c, y = torch.randn(L, B, H), torch.relu(torch.randn(L, B, H) - 0.5)
    got = OPS.egru_stack_step(x, c, y, *sp._stack_args())
    want = _egru_by_layers(sp, x, c, y)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and torch.equal(g, w)
    assert got[0].data_ptr() != got[2].data_ptr()  # the top output has its own storage


@pytest.mark.parametrize("layouts", LAYOUT_STACKS)
@pytest.mark.parametrize("complex_", [False, True])
def test_linear_rnn_stack_step_equals_layer_by_layer(layouts, complex_):
    rnn = _lrnn_stack(layouts, complex_=complex_)
    assert rnn.residual[0] is False and all(rnn.residual[1:])  # both kinds of layer in the stack
    x = torch.relu(torch.randn(2, 7))
    h = torch.randn(len(layouts), 2, rnn.width)
    got = OPS.linear_rnn_stack_step(x, h, *rnn._stack_args())
    want = _lrnn_by_layers(rnn, x, h)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and torch.equal(g, w)


def test_module_steps_run_on_the_stack_op_and_match_the_sequence():
    sp, rnn = _egru_stack(LAYOUT_STACKS[1]), _lrnn_stack(LAYOUT_STACKS[1])
    xs = torch.relu(torch.randn(6, 2, 7))
    for module in (sp, rnn):
        with torch.inference_mode():
            ys, last = module(xs)
            state = None
            for t in range(xs.shape[0]):
                y_t, state = module.step(xs[t], state)
                torch.testing.assert_close(y_t, ys[t], rtol=1e-6, atol=1e-6)
        for got, want in zip(state if isinstance(state, tuple) else (state,), last if isinstance(last, tuple) else
                             (last,), strict=True):
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def _bad_egru_calls(sp, x, c, y):
    layers = sp._stack_args()[0]
    dropped_thr = layers[:-1] + [None]
    return [
        ("x must be 2-D", (x[0], c, y, layers)),
        ("c must have shape \\[num_layers >= 1, 2, width\\]", (x, c[:, :1].contiguous(), y, layers)),
        ("c'? must be contiguous", (x, c.transpose(0, 1).contiguous().transpose(0, 1), y, layers)),
        ("y must be float32", (x, c, y.double(), layers)),
        ("layers must hold 9 entries per layer", (x, c, y, layers[:-1])),
        ("entry 17 \\(layer 1, argument 8\\) is required", (x, c, y, dropped_thr)),
        ("on .* but x is on|must have the same number of layers|must have shape", (x, c, y[:1], layers)),
    ]


def test_egru_stack_step_rejects_bad_arguments():
    sp = _egru_stack(LAYOUT_STACKS[1][:2])
    x, c, y = torch.randn(2, 7), torch.zeros(2, 2, 11), torch.zeros(2, 2, 11)
    for pattern, args in _bad_egru_calls(sp, x, c, y):
        with pytest.raises(ValueError, match=pattern):
            OPS.egru_stack_step(*args)
    wider = _egru_stack([("dense", "dense")] * 2, H=12)
    with pytest.raises(ValueError, match="hidden size 12|must have shape"):  # state width 11, weights for 12
        OPS.egru_stack_step(x, c, y, wider._stack_args()[0])


def test_linear_rnn_stack_step_rejects_bad_arguments():
    rnn = _lrnn_stack(LAYOUT_STACKS[1][:2])
    layers, residual = rnn._stack_args()
    x, h = torch.relu(torch.randn(2, 7)), torch.zeros(2, 2, rnn.width)
    with pytest.raises(ValueError, match="residual must hold one flag per layer"):
        OPS.linear_rnn_stack_step(x, h, layers, residual[:1])
    with pytest.raises(ValueError, match="layers must hold 10 entries per layer"):
        OPS.linear_rnn_stack_step(x, h, layers + [None], residual)
    with pytest.raises(ValueError, match="argument 0\\) is required"):
        OPS.linear_rnn_stack_step(x, h, [None] + layers[1:], residual)
    with pytest.raises(ValueError, match="h must have shape"):
        OPS.linear_rnn_stack_step(x, h[0], layers, residual)
    with pytest.raises(ValueError, match="in_features == out_features"):  # layer 0 (7 -> 9) cannot be residual
        OPS.linear_rnn_stack_step(x, h, layers, [True, True])


# ---- the Triton versions, on CPU tensors under the interpreter (on CUDA tensors with a GPU) ----

HAS_CUDA = torch.cuda.is_available()
DEV = "cuda" if HAS_CUDA else "cpu"


if not HAS_CUDA:  # as in test_triton_recurrent.py: Triton reads it when the kernels are defined
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture
def triton_recurrent():
    pytest.importorskip("triton")
    from evsparse.gpu import recurrent
    return recurrent


def _dev(args):
    return [a.to(DEV) if isinstance(a, torch.Tensor) else a for a in args]


@pytest.mark.parametrize("layouts", LAYOUT_STACKS)
def test_triton_stack_steps_match_the_cpu_ops(triton_recurrent, layouts):
    sp = _egru_stack(layouts)
    L = len(layouts)
    x = torch.randn(2, 7) * (torch.rand(2, 7) < 0.5)
    c, y = torch.randn(L, 2, 11), torch.relu(torch.randn(L, 2, 11) - 0.5)
    want = OPS.egru_stack_step(x, c, y, *sp._stack_args())
    got = triton_recurrent.egru_stack_step(x.to(DEV), c.to(DEV), y.to(DEV), _dev(sp._stack_args()[0]))
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g.cpu(), w, rtol=1e-4, atol=1e-5)
    rnn = _lrnn_stack(layouts)
    layers, residual = rnn._stack_args()
    h = torch.randn(L, 2, rnn.width)
    want = OPS.linear_rnn_stack_step(x.relu(), h, layers, residual)
    got = triton_recurrent.linear_rnn_stack_step(x.relu().to(DEV), h.to(DEV), _dev(layers), residual)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g.cpu(), w, rtol=1e-4, atol=1e-5)


def test_triton_stack_steps_reject_what_the_cpu_ops_reject(triton_recurrent):
    sp = _egru_stack(LAYOUT_STACKS[1][:2])
    x, c, y = torch.randn(2, 7), torch.zeros(2, 2, 11), torch.zeros(2, 2, 11)
    for pattern, args in _bad_egru_calls(sp, x, c, y):
        with pytest.raises(ValueError, match=pattern):
            triton_recurrent.egru_stack_step(*args)
    rnn = _lrnn_stack(LAYOUT_STACKS[1][:2])
    layers, residual = rnn._stack_args()
    h = torch.zeros(2, 2, rnn.width)
    with pytest.raises(ValueError, match="residual must hold one flag per layer"):
        triton_recurrent.linear_rnn_stack_step(x, h, layers, residual[:1])
    with pytest.raises(ValueError, match="layers must hold 10 entries per layer"):
        triton_recurrent.linear_rnn_stack_step(x, h, layers + [None], residual)
