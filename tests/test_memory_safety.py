"""No packed data, however corrupted, crashes the process or silently changes the answer.

The kernels range-check every index they read; the library re-validates packed data on load and when
an index tensor changes. Crash-prone cases run in subprocesses: a segfault fails the test instead of
killing pytest.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import evsparse
from evsparse.nn import EGRU, SparseLinear, SparseLinearRNN

from conftest import SUPPORTED_ISAS

HERE = Path(__file__).resolve().parent
ops = torch.ops.evsparse


def run_python(code: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Runs ``code`` in a fresh interpreter; fails the test on a crash (signal) or a non-zero exit."""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=HERE, capture_output=True, text=True,
                         timeout=timeout, env={**os.environ, **(env or {})})
    if out.returncode < 0:
        pytest.fail(f"the process died of signal {-out.returncode}:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out


@pytest.mark.parametrize("isa", SUPPORTED_ISAS)
def test_fuzz_corrupted_structures(isa):
    """1,500 random corruptions per instruction set (indices anywhere in their dtype's range, unsorted
    columns, moved/zeroed/huge column pointers), batch 1/3/40, 1 and 2 threads: each call raises
    ValueError exactly when the kernels' checks must object, else equals a safe scatter-add."""
    out = subprocess.run([sys.executable, str(HERE / "corruption_fuzz.py"), "--cases", "1500", "--seed", "7"],
                         capture_output=True, text=True, timeout=600, env={**os.environ, "EVSPARSE_ISA": isa})
    assert out.returncode >= 0, f"crashed with signal {-out.returncode}: {out.stderr[-2000:]}"
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "refused with ValueError" in out.stdout


def test_reported_crash_is_a_value_error():
    # The reproducer of the bug report: an unsorted column whose last entry is in range.
    run_python("""
        import torch, evsparse, pytest
        cp = torch.tensor([0, 2, 4]); v = torch.tensor([1., 2., 3., 4.])
        ri = torch.tensor([2_000_000_000, 0, 1, 3], dtype=torch.int32)
        with pytest.raises(ValueError, match=r"row_idx\[0\] = 2000000000 is out of range \[0, 4\)"):
            torch.ops.evsparse.sparse_gather_linear(torch.ones(2), cp, ri, v, 4)
        with pytest.raises(ValueError, match="col_ptr must start at 0 and end at nnz=4"):
            torch.ops.evsparse.sparse_gather_linear(torch.ones(2), cp.zero_(), ri, v, 4)
    """)


def _egru_twin(layout="sparse"):
    torch.manual_seed(0)
    egru = EGRU(12, 16, 2).eval()
    return egru.sparsify(layout=layout)


def _linear_rnn_twin():
    torch.manual_seed(0)
    return SparseLinearRNN(10, 8, 10, num_layers=2, complex=True).eval().sparsify(layout="sparse")


def _sparse_linear():
    torch.manual_seed(0)
    lin = torch.nn.Linear(30, 40)
    return SparseLinear.from_module(lin, torch.rand(40, 30) < 0.3, layout="sparse")


MODULES = {"PackedEGRU": (_egru_twin, lambda m: m(torch.randn(4, 1, 12))),
           "PackedLinearRNN": (_linear_rnn_twin, lambda m: m(torch.randn(4, 1, 10))),
           "SparseLinear": (_sparse_linear, lambda m: m(torch.randn(3, 30)))}


def _packed_parts(module, state=None) -> dict:
    """The tensors of one sparse packed weight (the recurrent twins: layer 0's second weight, a view
    of the plan's arena) of ``module`` or of its state dict ``state``: values, col_ptr, row_idx."""
    if isinstance(module, SparseLinear):
        sd = module.state_dict() if state is None else state
        return {"values": sd["weight_values"], "col_ptr": sd["col_ptr"], "row_idx": sd["row_idx"]}
    if state is None:
        pw = module.packed(0)[1]
    else:
        pw = evsparse.plan.layer_views(state["plan_arena"], state["plan_meta"])[0].weights[1]
    return {"values": pw.values, "col_ptr": pw.col_ptr, "row_idx": pw.row_idx}


@pytest.mark.parametrize("name", MODULES)
@pytest.mark.parametrize("edit", ["out_of_range", "unsorted_in_range", "col_ptr_zeroed", "nan_value"])
def test_edited_state_dict_refused_on_weights_only_load(name, edit, tmp_path):
    """A state_dict file whose packed data was edited, loaded with ``weights_only=True``: load_state_dict
    raises ValueError naming the weight (before, it loaded with 'All keys matched' and crashed later)."""
    make, call = MODULES[name]
    module = make()
    sd = {k: v.clone() for k, v in module.state_dict().items()}
    parts = _packed_parts(module, sd)
    ri = parts["row_idx"]
    if edit == "out_of_range":
        ri[0] = 32000
    elif edit == "unsorted_in_range":
        cp = parts["col_ptr"]
        col = int(torch.nonzero(cp[1:] - cp[:-1] >= 2)[0])
        k = int(cp[col])
        ri[k], ri[k + 1] = ri[k + 1].clone(), ri[k].clone()
    elif edit == "col_ptr_zeroed":
        parts["col_ptr"].zero_()
    else:
        parts["values"].view(-1)[0] = float("nan")
    path = tmp_path / "edited.pt"
    torch.save(sd, path)
    loaded = torch.load(path, weights_only=True)
    fresh = make()
    with pytest.raises(ValueError, match="invalid"):
        fresh.load_state_dict(loaded)


def test_bytes_edited_on_disk_refused(tmp_path):
    """The same with the file's bytes changed in place (no torch.save involved)."""
    module = _egru_twin()
    path = tmp_path / "model.pt"
    torch.save(module.state_dict(), path)
    ri = _packed_parts(module)["row_idx"]
    raw = bytearray(path.read_bytes())
    at = raw.find(ri.numpy().tobytes())
    assert at >= 0
    bad = ri.clone()
    bad[0] = 32767
    raw[at:at + bad.numel() * 2] = bad.numpy().tobytes()
    path.write_bytes(raw)
    with pytest.raises(ValueError, match="invalid.*w_hh.*out of range"):
        _egru_twin().load_state_dict(torch.load(path, weights_only=True))


def test_mmap_file_changed_after_loading(tmp_path):
    """Tensors mapped from a file (``mmap=True``) change when the file does, without moving
    ``_version``: the kernels' own range checks refuse the data (ValueError, no crash)."""
    run_python(f"""
        import torch, pytest
        from test_memory_safety import _egru_twin, _packed_parts
        module = _egru_twin()
        path = {str(tmp_path / "model.pt")!r}
        torch.save(module.state_dict(), path)
        ri = _packed_parts(module)["row_idx"].clone()
        target = _egru_twin()
        target.load_state_dict(torch.load(path, weights_only=True, mmap=True), assign=True)
        x = torch.randn(3, 1, 12)
        target(x)
        raw = bytearray(open(path, "rb").read())
        at = raw.find(ri.numpy().tobytes())
        bad = ri.clone(); bad.fill_(30000)
        raw[at:at + bad.numel() * 2] = bad.numpy().tobytes()
        with open(path, "r+b") as f:
            f.write(raw)
        assert int(_packed_parts(target)["row_idx"][0]) == 30000  # the mapping sees the edit
        with pytest.raises(ValueError, match="row_idx holds"):
            for _ in range(3):  # the recurrent product reads the edited column once a unit has fired
                x = torch.randn(3, 1, 12) * 4
                target(x)
                target.step(x[0])
    """)


@pytest.mark.parametrize("name", MODULES)
def test_in_place_edit_after_construction(name):
    """Editing an index buffer in place after the module ran: the next call re-validates (its
    ``_version`` moved) and raises before any kernel reads the data."""
    make, call = MODULES[name]
    module = make()
    call(module)
    with torch.no_grad():
        _packed_parts(module)["row_idx"][0] = 32767
    with pytest.raises(ValueError, match="out of range"):
        call(module)


def test_in_place_edit_of_packed_weight():
    pw = evsparse.pack(torch.randn(20, 10), torch.rand(20, 10) < 0.3, "sparse")
    x = torch.randn(10)
    evsparse.sparse_linear(x, pw)
    pw.row_idx[0] = 25
    with pytest.raises(ValueError, match=r"row_idx\[0\] = 25 is out of range"):
        evsparse.sparse_linear(x, pw)
    pw.row_idx[0] = 0
    pw.col_ptr.zero_()
    with pytest.raises(ValueError, match="col_ptr must start at 0"):
        evsparse.sparse_linear(x, pw)


def test_replaced_index_tensor_of_packed_weight():
    """A replaced (not edited) index tensor is re-validated too: unsorted but in range is refused, as
    the kernels would skip such entries when a slice search is involved."""
    W = torch.zeros(6, 3)
    W[1, 0], W[4, 0], W[2, 2] = 1.0, 2.0, 3.0
    pw = evsparse.pack(W, layout="sparse")
    assert pw.row_idx.tolist() == [1, 4, 2]
    evsparse.sparse_linear(torch.ones(3), pw)
    pw.row_idx = torch.tensor([4, 1, 2], dtype=torch.int16)
    with pytest.raises(ValueError, match="not strictly increasing within column 0"):
        evsparse.sparse_linear(torch.ones(3), pw)


# ---- PackedWeight construction and loading --------------------------------------------------------

def _parts():
    pw = evsparse.pack(torch.randn(6, 5), torch.rand(6, 5) < 0.5, "sparse")
    return pw.values, pw.col_ptr, pw.row_idx


@pytest.mark.parametrize("case, match", [
    (lambda v, c, r: evsparse.PackedWeight("dense", (6, 5), torch.full((5, 6), float("nan"))), "NaN or Inf"),
    (lambda v, c, r: evsparse.PackedWeight("sparse", (6, 5), v.clone().fill_(float("inf")), c, r), "NaN or Inf"),
    (lambda v, c, r: evsparse.PackedWeight("sparse", (6.7, 5.2), v, c, r), "shape must hold integers"),
    (lambda v, c, r: evsparse.PackedWeight("sparse", (True, 5), v, c, r), "shape must hold integers"),
    (lambda v, c, r: evsparse.PackedWeight("sparse", (6, 5), v, c.tolist(), r), "col_ptr must be a tensor"),
    (lambda v, c, r: evsparse.PackedWeight("sparse", (6, 5), v.tolist(), c, r), "values must be a tensor"),
    (lambda v, c, r: evsparse.PackedWeight("bogus", (6, 5), v, c, r), "layout must be 'dense' or 'sparse'"),
    (lambda v, c, r: evsparse.PackedWeight("sparse", (6, 5), v, c, r.to(torch.int64)), "int16 or int32"),
])
def test_packed_weight_refuses(case, match):
    with pytest.raises(ValueError, match=match):
        case(*_parts())


def test_tampered_pickles_refused_by_weights_only_load(tmp_path):
    """A saved PackedWeight whose layout string, shape or values were tampered with is refused by
    ``torch.load(weights_only=True)`` (it used to load and run the data as sparse)."""
    for field, value, match in [("layout", "sparse ", "layout must be"), ("shape", (6.5, 5), "integers"),
                                ("values", torch.full((5, 6), float("nan")), "NaN or Inf")]:
        pw = evsparse.pack(torch.randn(6, 5), layout="dense")
        state = pw.__getstate__()
        state[field] = value
        pw.__getstate__ = lambda state=state: state
        path = tmp_path / f"{field}.pt"
        torch.save(pw, path)
        with pytest.raises(ValueError, match=match):
            torch.load(path, weights_only=True)


def test_meta_packed_weight():
    """A PackedWeight of meta tensors (shape-only tracing) builds, with its shapes checked."""
    meta = dict(device="meta")
    pw = evsparse.PackedWeight("sparse", (4, 3), torch.ones(2, **meta), torch.zeros(4, dtype=torch.int64, **meta),
                               torch.zeros(2, dtype=torch.int16, **meta))
    assert "meta" in repr(pw) and pw.shape == (4, 3)
    with pytest.raises(ValueError, match="col_ptr must have in_features"):
        evsparse.PackedWeight("sparse", (4, 3), torch.ones(2, **meta), torch.zeros(5, dtype=torch.int64, **meta),
                              torch.zeros(2, dtype=torch.int16, **meta))


def test_stack_op_errors_name_the_layer():
    module = _egru_twin()
    args = [a for k in range(2) for a in module._collect_args(k)]
    args[9 + 5] = args[9 + 5].clone().fill_(30000)  # layer 1's recurrent row_idx
    x = torch.randn(1, 12)
    with pytest.raises(ValueError, match=r"egru_stack_step: layer 1: w_hh row_idx\[0\] = 30000 is out of range"):
        ops.egru_stack_step(x, torch.zeros(2, 1, 16), torch.ones(2, 1, 16), args)
    lin = _linear_rnn_twin()
    weights, residual = lin._collect_stack_args()
    weights = list(weights)
    weights[10 + 3] = torch.zeros(3)  # layer 1's b_in with the wrong width
    with pytest.raises(ValueError, match=r"linear_rnn_stack_step: layer 1: b_in must have shape"):
        ops.linear_rnn_stack_step(torch.randn(1, 10), torch.zeros(2, 1, 16), weights, residual)


# ---- scratch memory -------------------------------------------------------------------------------

def test_scratch_returned_after_a_large_call():
    """A call on a large batch used to leave its per-thread scratch (the compacted inputs, 8 bytes per
    input element) allocated for good; now scratch above 1 MiB is freed as the call returns."""
    out = run_python("""
        import torch, evsparse
        torch.set_num_threads(2)
        def rss_mb():
            with open("/proc/self/status") as f:
                return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024
        for layout in ("dense", "sparse"):
            pw = evsparse.pack(torch.randn(8, 40000), torch.rand(8, 40000) < 0.1, layout)
            evsparse.sparse_linear(torch.randn(2, 40000), pw)
            base = rss_mb()
            for _ in range(2):
                x = torch.randn(400, 40000)  # 64 MB; the scratch is 128 MB
                y = evsparse.sparse_linear(x, pw)
                del x, y
            after = rss_mb()
            print(layout, round(base), round(after))
            assert after - base < 40, (layout, base, after)
    """)
    assert "sparse" in out.stdout
