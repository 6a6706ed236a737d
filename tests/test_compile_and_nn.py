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
    assert "scalar" in info["isa_compiled"] and info["parallel_backend"] == "torch"
    # built against the same torch minor version (a wheel's library may come from another patch release)
    assert info["torch_version"].split(".")[:2] == torch.__version__.split("+")[0].split(".")[:2]
    assert info["compiler"] and info["arch"] in ("x86_64", "aarch64", "other")


def test_library_path_is_the_operators_library():
    """The ops live in one plain libtorch library per torch minor version, named for it; the package has
    no Python extension module (one wheel serves every CPython) and brings no OpenMP runtime of its own
    (work runs on torch's thread pool)."""
    import shutil
    import subprocess
    from pathlib import Path

    path = Path(evsparse.library_path())
    minor = ".".join(torch.__version__.split("+")[0].split(".")[:2])
    assert path.is_file() and path.name == f"libevsparse_ops_torch{minor}.so"
    assert path.parent == Path(evsparse.__file__).parent
    assert not list(path.parent.glob("*.cpython-*")) and not list(path.parent.glob("*.abi3.so"))
    if shutil.which("readelf") is None:
        pytest.skip("readelf (binutils) is not installed: the link structure is not checked")
    needed = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True, check=True).stdout
    assert "[libtorch_cpu.so]" in needed and "[libc10.so]" in needed
    assert "libpython" not in needed and "libgomp" not in needed and "libomp" not in needed


def test_the_library_needs_nothing_newer_than_manylinux_2_28():
    """glibc <= 2.28 and GCC 8's libstdc++ (GLIBCXX <= 3.4.25, CXXABI <= 1.3.11), the manylinux_2_28 policy:
    csrc/compat keeps libstdc++'s headers from binding __libc_single_threaded@GLIBC_2.32."""
    import re
    import shutil
    import subprocess

    if shutil.which("readelf") is None:
        pytest.skip("readelf (binutils) is not installed")
    syms = subprocess.run(["readelf", "-W", "--dyn-syms", evsparse.library_path()], capture_output=True, text=True,
                          check=True).stdout
    limits = {"GLIBC": (2, 28), "GLIBCXX": (3, 4, 25), "CXXABI": (1, 3, 11)}
    seen = set(re.findall(r"@(GLIBC|GLIBCXX|CXXABI)_([0-9.]+)", syms))
    assert any(kind == "GLIBC" for kind, _ in seen)  # the parse found the versions
    too_new = sorted(f"{k}_{v}" for k, v in seen if tuple(int(n) for n in v.split(".")) > limits[k])
    assert not too_new, too_new


def test_an_unsupported_torch_gets_a_clear_import_error(monkeypatch):
    """A torch minor version the install has no operator library for is named, with the ones it has."""
    from evsparse import _library

    monkeypatch.setattr(torch, "__version__", "2.99.0+cpu")
    with pytest.raises(ImportError, match=r"no operator library for torch 2\.99\.0\+cpu .*torch 2\.1\d"):
        _library.path()
