"""The kernel twins' argument cache can never serve other tensors than the module's current buffers,
and compiling many module variants in one process stays within torch.compile's budget."""

import pytest
import torch

from evsparse.nn import EGRU, SparseLinear, SparseLinearRNN


def _egru_pair():
    torch.manual_seed(1)
    a, b = EGRU(8, 16, 2).eval(), EGRU(8, 16, 2).eval()
    for m in (a, b):
        with torch.no_grad():
            for k in range(2):
                getattr(m, f"thr_l{k}").fill_(0.05)  # many events: the recurrent weights matter
    return a.sparsify(layout="sparse"), b.sparsify(layout="sparse"), torch.randn(5, 1, 8)


def _linear_rnn_pair():
    torch.manual_seed(1)
    mk = lambda: SparseLinearRNN(8, 6, 8, num_layers=2, complex=True).eval().sparsify(layout="sparse")  # noqa: E731
    return mk(), mk(), torch.randn(5, 1, 8).relu()


PAIRS = {"PackedEGRU": _egru_pair, "PackedLinearRNN": _linear_rnn_pair}


def _outputs(module, x):
    y, _ = module(x)
    y_step, _ = module.step(x[0])
    return y, y_step


@pytest.fixture(params=list(PAIRS))
def pair(request):
    a, b, x = PAIRS[request.param]()
    ya, yb = _outputs(a, x), _outputs(b, x)
    assert not torch.equal(ya[0], yb[0])  # the two models differ, so serving the wrong weights shows
    return a, b, x, yb


def test_load_state_dict_assign(pair):
    a, b, x, yb = pair
    a.load_state_dict(b.state_dict(), assign=True)
    for got, want in zip(_outputs(a, x), yb):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_load_state_dict_copy(pair):
    a, b, x, yb = pair
    a.load_state_dict(b.state_dict())
    for got, want in zip(_outputs(a, x), yb):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_reassigned_buffers(pair):
    a, b, x, yb = pair
    for name, buf in b.named_buffers():
        setattr(a, name, buf.clone())
    for got, want in zip(_outputs(a, x), yb):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_functional_call_uses_the_given_buffers_and_leaves_none_behind(pair):
    a, b, x, yb = pair
    ya = _outputs(a, x)
    buffers = {n: t.clone() for n, t in b.named_buffers()}
    y, _ = torch.func.functional_call(a, buffers, (x,))
    torch.testing.assert_close(y, yb[0], rtol=0, atol=0)
    for got, want in zip(_outputs(a, x), ya):  # afterwards, the module's own buffers again
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_apply_rebuilds(request, pair):
    """``.to()`` / ``.float()`` / ``_apply`` replace every buffer: the cache follows them."""
    a, b, x, yb = pair
    a._apply(lambda t: t * 0.5 if t.is_floating_point() else t)  # new values, same structure
    name = request.node.callspec.params["pair"]
    ref = PAIRS[name]()[0]  # never called: nothing cached
    ref.load_state_dict(a.state_dict())
    for got, want in zip(_outputs(a, x), _outputs(ref, x)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_sparse_linear_reassigned_buffer():
    torch.manual_seed(0)
    lin = torch.nn.Linear(10, 12)
    a = SparseLinear.from_module(lin, torch.rand(12, 10) < 0.3, layout="sparse")
    x = torch.randn(10)
    a(x)
    bad = a.row_idx.clone()
    bad[0] = 12  # out of range
    a.row_idx = bad
    with pytest.raises(ValueError, match="out of range"):
        a(x)


def test_compile_budget_per_method():
    """16 fullgraph compiles in one process: four recurrent classes x (forward, step) x (batched,
    unbatched), then new sequence lengths and batch sizes (dynamic after the first change). One shared
    wrapper code object used to cap all of them together at torch.compile's 8 variants."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    egru = EGRU(4, 6, 1).eval()
    rnn = SparseLinearRNN(4, 5, 4, num_layers=1).eval()
    modules = [egru, egru.sparsify(), rnn, rnn.sparsify()]
    compiled = 0
    for module in modules:
        fwd = torch.compile(module, fullgraph=True, backend="eager")
        step = torch.compile(module.step, fullgraph=True, backend="eager")
        with torch.no_grad():
            for call, x in ((fwd, torch.randn(3, 2, 4)), (fwd, torch.randn(3, 4)),
                            (step, torch.randn(2, 4)), (step, torch.randn(4))):
                y_c, _ = call(x)
                y_e, _ = (module(x) if call is fwd else module.step(x))
                torch.testing.assert_close(y_c, y_e)
                compiled += 1
    with torch.no_grad():
        for T, B in ((5, 2), (7, 3), (9, 1)):
            fwd = torch.compile(modules[1], fullgraph=True, backend="eager")
            fwd(torch.randn(T, B, 4))
            compiled += 1
    assert compiled >= 12


def _sparse_linear_pair(layout):
    torch.manual_seed(2)
    mask = torch.rand(12, 10) < 0.4
    return [SparseLinear.from_module(torch.nn.Linear(10, 12), mask, layout=layout) for _ in range(2)]


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_sparse_linear_fast_path_follows_replaced_tensors(layout):
    """SparseLinear gathers its op's arguments once; a replaced parameter or buffer (assign=True load,
    setattr, functional_call) must never leave it running on the old tensors."""
    a, b = _sparse_linear_pair(layout)
    x = torch.randn(3, 10)
    ya, yb = a(x), b(x)
    assert not torch.equal(ya, yb)
    a.load_state_dict(b.state_dict(), assign=True)
    torch.testing.assert_close(a(x), yb, rtol=0, atol=0)
    a.weight_values = torch.nn.Parameter(a.weight_values.detach() * 2)
    torch.testing.assert_close(a(x), torch.nn.functional.linear(x, b.packed.to_dense() * 2, b.bias),
                               rtol=1e-5, atol=1e-5)
    c, _ = _sparse_linear_pair(layout)
    params = {n: t.detach().clone() for n, t in b.named_parameters()} | {n: t.clone() for n, t in b.named_buffers()}
    torch.testing.assert_close(torch.func.functional_call(c, params, (x,)), yb, rtol=0, atol=0)
    torch.testing.assert_close(c(x), ya, rtol=0, atol=0)  # afterwards its own tensors again
