"""SparseLinear module, torch.compile tracing, fake kernels and build information."""

import pytest
import torch
from torch import nn

import evsparse
from evsparse.nn import SparseLinear


def _linear(seed=0):
    torch.manual_seed(seed)
    return nn.Linear(24, 16)


@pytest.mark.parametrize("layout", ["dense", "sparse", "auto"])
def test_from_linear_equals_masked_linear(layout):
    lin = _linear()
    mask = torch.rand_like(lin.weight) < 0.3
    sl = SparseLinear.from_module(lin, mask=mask, layout=layout)
    x = torch.randn(3, 24) * (torch.rand(3, 24) < 0.5)
    ref = nn.functional.linear(x, lin.weight * mask, lin.bias)
    torch.testing.assert_close(sl(x), ref)
    assert "in_features=24" in repr(sl)


def test_module_trains_and_state_dict_roundtrips():
    lin = _linear(1)
    sl = SparseLinear.from_module(lin, mask=torch.rand_like(lin.weight) < 0.5, layout="sparse")
    names = {n for n, _ in sl.named_parameters()}
    assert names == {"weight_values", "bias"}
    opt = torch.optim.SGD(sl.parameters(), lr=0.1)
    x = torch.randn(4, 24)
    before = sl(x).detach()
    sl(x).square().mean().backward()
    opt.step()
    assert not torch.equal(before, sl(x).detach())
    clone = SparseLinear(sl.packed, sl.bias)
    clone.load_state_dict(sl.state_dict())
    torch.testing.assert_close(clone(x), sl(x))


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_torch_compile_fullgraph(layout):
    lin = _linear(2)
    sl = SparseLinear.from_module(lin, mask=torch.rand_like(lin.weight) < 0.4, layout=layout)
    model = nn.Sequential(sl, nn.ReLU(), nn.Linear(16, 4))
    x = torch.randn(5, 24)
    expected = model(x)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), expected)
    # The backward through the compiled graph uses the gradient ops' fake kernels too.
    compiled(x).sum().backward()
    assert sl.weight_values.grad is not None


def test_fake_kernels_give_shapes():
    from torch._subclasses.fake_tensor import FakeTensorMode

    pw = evsparse.pack(torch.randn(16, 24), layout="sparse")
    with FakeTensorMode() as mode:
        x = mode.from_tensor(torch.randn(3, 24))
        cp, ri, v = (mode.from_tensor(t) for t in (pw.col_ptr, pw.row_idx, pw.values))
        y = torch.ops.evsparse.sparse_gather_linear(x, cp, ri, v, 16)
        assert y.shape == (3, 16)
        wt = mode.from_tensor(torch.randn(24, 16))
        assert torch.ops.evsparse.gather_linear(x, wt).shape == (3, 16)


def test_build_info_reports_the_build():
    info = evsparse.build_info()
    assert info["isa_active"] in info["isa_supported"]
    assert set(info["isa_supported"]) <= set(info["isa_compiled"])
    assert "scalar" in info["isa_compiled"] and info["openmp"] is True
    assert info["torch_version"].startswith(torch.__version__.split("+")[0])
    assert info["compiler"] and info["arch"] in ("x86_64", "aarch64", "other")


def test_library_path_is_the_operators_library():
    """evsparse._C is a thin module over libevsparse_ops, the library a C++ program loads."""
    import shutil
    import subprocess
    from pathlib import Path

    path = Path(evsparse.library_path())
    assert path.is_file() and path.name.startswith("libevsparse_ops.") and path.parent == Path(evsparse._C.__file__).parent
    if shutil.which("readelf") is None:
        pytest.skip("readelf (binutils) is not installed: the link structure is not checked")
    dynamic = lambda f: subprocess.run(["readelf", "-d", f], capture_output=True, text=True, check=True).stdout  # noqa: E731
    assert "[libevsparse_ops.so]" in dynamic(evsparse._C.__file__)
    assert "libpython" not in dynamic(str(path))
