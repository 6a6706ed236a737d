"""The PyTorch 2 stack on every op and module: torch.library.opcheck (schema, autograd registration,
fake kernel, AOT dispatch), torch.compile(fullgraph=True) and torch.export of the inference modules.
A host sync in a forward (a float() of a tensor) would break the full graph and stop the export."""

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

import evsparse
from evsparse.nn import EGRU, SparseLinear, SparseLinearRNN

OPS = torch.ops.evsparse
HAS_CUDA = torch.cuda.is_available()
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not HAS_CUDA, reason="needs a GPU")])]
if HAS_CUDA:
    pytest.importorskip("triton")


def _linear_cases(device):
    """float64 on the CPU (gradcheck grade); float32 on CUDA, which has no float64 kernels."""
    torch.manual_seed(0)
    dt = torch.float64 if device == "cpu" else torch.float32
    w = torch.randn(7, 11, dtype=dt) * (torch.rand(7, 11) < 0.4)
    x = (torch.randn(3, 11, dtype=dt) * (torch.rand(3, 11) < 0.5)).to(device)
    b, g = torch.randn(7, dtype=dt, device=device), torch.randn(3, 7, dtype=dt, device=device)
    d, s = evsparse.pack(w, layout="dense").to(device), evsparse.pack(w, layout="sparse").to(device)
    leaf = lambda t: t.clone().requires_grad_()  # noqa: E731
    return {
        "gather_linear": (OPS.gather_linear, (leaf(x), leaf(d.values), leaf(b))),
        "gather_linear 1-D, no bias": (OPS.gather_linear, (leaf(x[0]), leaf(d.values), None)),
        "sparse_gather_linear": (OPS.sparse_gather_linear, (leaf(x), s.col_ptr, s.row_idx, leaf(s.values), 7, leaf(b))),
        "sparse_gather_linear 1-D, no bias": (OPS.sparse_gather_linear, (leaf(x[1]), s.col_ptr, s.row_idx,
                                                                        leaf(s.values), 7, None)),
        "gather_linear_grad_weight": (OPS.gather_linear_grad_weight, (g, x)),
        "sparse_gather_linear_grad_values": (OPS.sparse_gather_linear_grad_values, (g, x, s.col_ptr, s.row_idx)),
        "sparse_gather_linear_grad_input": (OPS.sparse_gather_linear_grad_input, (g, s.col_ptr, s.row_idx, s.values)),
    }


def _recurrent_cases(device):
    torch.manual_seed(1)
    cases = {}
    for layout in ("dense", "sparse"):
        egru = EGRU(6, 9, thr_mean=0.1).eval().sparsify(layout=layout).to(device)
        c, y = torch.randn(2, 9, device=device), torch.relu(torch.randn(2, 9, device=device))
        xs = torch.randn(4, 2, 6, device=device)
        cases[f"egru_step {layout}"] = (OPS.egru_step, (xs[0], c, y, *egru._args(0)))
        cases[f"egru_sequence {layout}"] = (OPS.egru_sequence, (xs, c, y, *egru._args(0)))
        rnn = SparseLinearRNN(6, 5, 6, complex=True).eval().sparsify(layout=layout).to(device)
        h = torch.randn(2, 10, device=device)
        cases[f"linear_rnn_step {layout}"] = (OPS.linear_rnn_step, (xs[0].relu(), h, *rnn._args(0)))
        cases[f"linear_rnn_sequence {layout}"] = (OPS.linear_rnn_sequence, (xs.relu(), h, *rnn._args(0)))
        stack = EGRU(6, 9, num_layers=2, thr_mean=0.1).eval().sparsify(layout=layout).to(device)
        cs, ys = torch.randn(2, 2, 9, device=device), torch.relu(torch.randn(2, 2, 9, device=device))
        cases[f"egru_stack_step {layout}"] = (OPS.egru_stack_step, (xs[0], cs, ys, *stack._stack_args()))
        rnn_stack = SparseLinearRNN(6, 5, 7, num_layers=2).eval().sparsify(layout=layout).to(device)
        hs = torch.randn(2, 2, 5, device=device)
        cases[f"linear_rnn_stack_step {layout}"] = (OPS.linear_rnn_stack_step,
                                                    (xs[0].relu(), hs, *rnn_stack._stack_args()))
    return cases


CASE_NAMES = sorted(_linear_cases("cpu")) + sorted(_recurrent_cases("cpu"))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", CASE_NAMES)
def test_opcheck(name, device):
    op, args = {**_linear_cases(device), **_recurrent_cases(device)}[name]
    results = torch.library.opcheck(op, args, raise_exception=False)
    assert set(results) == {"test_schema", "test_autograd_registration", "test_faketensor",
                            "test_aot_dispatch_dynamic"}
    assert all(v == "SUCCESS" for v in results.values()), results


class _HostSyncRecorder(TorchFunctionMode):
    """Records the Python-level calls that copy a tensor's value to the host."""

    SYNCS = {"__float__", "__int__", "__bool__", "__index__", "item", "tolist", "numpy", "nonzero"}

    def __init__(self):
        super().__init__()
        self.syncs = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in self.SYNCS:
            self.syncs.append(name)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("device", DEVICES)
def test_forward_and_step_have_no_host_sync(device):
    """A sync per forward stalls a GPU pipeline and fails inside CUDA-graph capture. On the CPU the
    Python-level value reads are recorded; on a GPU PyTorch's sync debug mode raises on any sync (after
    a warm-up call: the packed structure is validated on the host once per index tensor)."""
    torch.manual_seed(4)
    xs = torch.randn(5, 2, 6, device=device)
    egru, rnn = EGRU(6, 9, num_layers=2, thr_mean=0.1).to(device), SparseLinearRNN(6, 5, 6, num_layers=2).to(device)
    modules = {"EGRU": egru, "SparseLinearRNN": rnn}
    for layout in ("dense", "sparse"):
        modules[f"PackedEGRU {layout}"] = egru.eval().sparsify(layout=layout).to(device)
        modules[f"PackedLinearRNN {layout}"] = rnn.eval().sparsify(layout=layout).to(device)
    egru.train(), rnn.train()
    for name, mod in modules.items():
        mod(xs), mod.step(xs[0])  # warm-up
        with _HostSyncRecorder() as rec:
            if device == "cuda":
                torch.cuda.set_sync_debug_mode("error")
            try:
                mod(xs), mod.step(xs[0])
            finally:
                if device == "cuda":
                    torch.cuda.set_sync_debug_mode("default")
        assert rec.syncs == [], (name, rec.syncs)
        assert len(mod.activity()) == 2, name  # the log is read afterwards, with its one sync


def _sequence_modules(layout):
    torch.manual_seed(2)
    egru = EGRU(6, 9, num_layers=2, thr_mean=0.1).eval()
    rnn = SparseLinearRNN(6, 5, 6, num_layers=2).eval()
    return {"PackedEGRU": egru.sparsify(layout=layout), "PackedLinearRNN": rnn.sparsify(layout=layout)}


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_export_inference_modules(layout):
    """Each exported program equals its module, at the traced length and (dynamic T) another one. The
    packed weights are the program's buffers (state_dict), not tensor constants baked into the graph."""
    xs, xs_long = torch.randn(5, 1, 6), torch.randn(9, 1, 6)
    for name, mod in _sequence_modules(layout).items():
        mod(xs)  # fills the modules' argument caches: export must not trace those stale copies
        ep = torch.export.export(mod, (xs,), dynamic_shapes=({0: torch.export.Dim("T", min=1, max=1024)},))
        for x in (xs, xs_long):
            got, want = ep.module()(x), mod(x)
            torch.testing.assert_close(got, want, rtol=0, atol=0, msg=name)
        assert not ep.constants, name
        assert set(ep.state_dict) == {n for n, _ in mod.named_buffers()}, name
        ops = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
        assert any(o.startswith("evsparse.") for o in ops), (name, ops)

    lin = nn.Linear(6, 4)
    sl = SparseLinear.from_module(lin, mask=torch.rand_like(lin.weight) < 0.5, layout=layout)
    ep = torch.export.export(sl, (xs[0],))
    torch.testing.assert_close(ep.module()(xs[1]), sl(xs[1]), rtol=0, atol=0)


def test_export_a_step():
    egru = EGRU(6, 9, num_layers=2, thr_mean=0.1).eval().sparsify()

    class Step(nn.Module):
        def __init__(self):
            super().__init__()
            self.egru = egru

        def forward(self, x, c, y):
            return self.egru.step(x, (c, y))

    args = (torch.randn(1, 6), torch.randn(2, 1, 9), torch.relu(torch.randn(2, 1, 9)))
    ep = torch.export.export(Step(), args)
    torch.testing.assert_close(ep.module()(*args), Step()(*args), rtol=0, atol=0)


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_compile_fullgraph_and_activity(layout):
    """torch.compile(fullgraph=True) traces every recurrent module whole (a float() of a tensor would
    be a graph break, an error here), and activity() then reports the compiled call; an export leaves
    it alone."""
    torch.manual_seed(3)
    xs = torch.randn(5, 2, 6)
    modules = {**_sequence_modules(layout), "EGRU": EGRU(6, 9, num_layers=2, thr_mean=0.05),
               "SparseLinearRNN": SparseLinearRNN(6, 5, 6, num_layers=2)}
    for name, mod in modules.items():
        mod(xs[:0])  # an empty eager call: its log says 0 for every layer
        assert mod.activity() == [0.0, 0.0], name
        got, _ = torch.compile(mod, fullgraph=True, backend="aot_eager")(xs)
        activity = mod.activity()
        assert activity[-1] == pytest.approx(float((got != 0).float().mean())) and activity[-1] > 0, name
        if name == "EGRU":
            (got.sum() + mod.activity_loss()).backward()  # the surrogate gradient through the compiled graph
            assert mod.weight_hh_l0.grad is not None
        if not mod.training:  # the inference twins: same result as eager, and exportable
            torch.testing.assert_close(got, mod(xs)[0], rtol=0, atol=0, msg=name)
            mod(xs[:0])
            torch.export.export(mod, (xs,))
            assert mod.activity() == [0.0, 0.0], name


@pytest.fixture(scope="module")
def aoti_package(tmp_path_factory):
    """An exported one-layer PackedEGRU (sparse layout, dynamic T) compiled by AOTInductor (~20 s),
    with the module it came from."""
    import os
    import shutil

    if not any(shutil.which(c) for c in (os.environ.get("CXX", "g++"), "g++", "c++", "clang++")):
        pytest.skip("AOTInductor compiles C++ and no compiler is on PATH (scripts/test_wheels.sh hides it)")
    torch.manual_seed(5)
    sparse = EGRU(8, 16, thr_mean=0.1).eval().sparsify(layout="sparse")
    ep = torch.export.export(sparse, (torch.randn(6, 1, 8),),
                             dynamic_shapes=({0: torch.export.Dim("T", min=1, max=4096)},))
    path = tmp_path_factory.mktemp("aoti") / "egru.pt2"
    return torch._inductor.aoti_compile_and_package(ep, package_path=str(path)), sparse


def test_aot_inductor_package_runs_in_a_fresh_process(aoti_package, tmp_path):
    """export -> AOTInductor package -> load and run in another process: the package calls the
    evsparse ops through the dispatcher, so that process needs only ``import evsparse``."""
    import subprocess
    import sys

    package, sparse = aoti_package
    x = torch.randn(11, 1, 8)
    torch.save({"x": x, "want": sparse(x)}, tmp_path / "io.pt")
    script = ("import sys, torch, evsparse\n"
              "io = torch.load(sys.argv[2])\n"
              "got = torch._inductor.aoti_load_package(sys.argv[1])(io['x'])\n"
              "torch.testing.assert_close(got, io['want'], rtol=0, atol=0)\n"
              "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", script, package, str(tmp_path / "io.pt")], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_cpp_process_runs_an_aoti_package(aoti_package, tmp_path):
    """A C++ program on libtorch alone (tests/cpp/aoti_runner.cpp: no Python in the process) loads
    evsparse.library_path() and runs the package: the same events as the module."""
    import os
    import shutil
    import subprocess
    from pathlib import Path

    from torch.utils import cpp_extension

    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
        pytest.skip(f"no C++ compiler ({cxx})")
    source = Path(__file__).resolve().parent / "cpp" / "aoti_runner.cpp"
    runner = tmp_path / "aoti_runner"
    lib_dir = cpp_extension.library_paths()[0]
    build = subprocess.run([cxx, "-O1", "-std=c++17", f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}",
                            *(f"-I{p}" for p in cpp_extension.include_paths()), str(source), "-o", str(runner),
                            f"-L{lib_dir}", f"-Wl,-rpath,{lib_dir}", "-ltorch", "-ltorch_cpu", "-lc10", "-ldl"],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    package, sparse = aoti_package
    x = torch.randn(13, 1, 8)
    x.numpy().tofile(tmp_path / "in.bin")
    run = subprocess.run([str(runner), evsparse.library_path(), package, str(tmp_path / "in.bin"), "13", "1", "8",
                          str(tmp_path / "out.bin")], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    got = torch.frombuffer(bytearray((tmp_path / "out.bin").read_bytes()), dtype=torch.float32).view(13, 1, 16)
    want = sparse(x)[0]
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert 0 < float((want != 0).float().mean()) < 1


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_inference_modules_capture_in_a_cuda_graph():
    """A whole forward of each inference module replays from a CUDA graph with new inputs and gives the
    eager result (no host sync inside; the structure checks ran in the warm-up calls)."""
    torch.manual_seed(6)
    for layout in ("dense", "sparse"):
        for name, mod in _sequence_modules(layout).items():
            mod = mod.cuda()
            static_x = torch.randn(7, 1, 6, device="cuda")
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):
                    mod(static_x)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out, _ = mod(static_x)
            for _ in range(3):
                x = torch.randn(7, 1, 6, device="cuda")
                static_x.copy_(x)
                graph.replay()
                torch.testing.assert_close(static_out, mod(x)[0], rtol=1e-5, atol=1e-5, msg=f"{name} {layout}")


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_stack_steps_capture_in_a_cuda_graph():
    """A streaming step of each two-layer inference module (one stack-step op) replays from a CUDA graph
    fed its own new state, step after step, and gives the eager steps' outputs."""
    torch.manual_seed(7)
    for layout in ("dense", "sparse"):
        for name, mod in _sequence_modules(layout).items():
            mod = mod.cuda()
            xs = torch.relu(torch.randn(6, 1, 6, device="cuda"))
            static_x = xs[0].clone()
            _, state = mod.step(static_x)
            static_state = tuple(t.clone() for t in state) if isinstance(state, tuple) else state.clone()
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):
                    mod.step(static_x, static_state)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_y, static_new = mod.step(static_x, static_state)
            eager_state = tuple(t.clone() for t in static_state) if isinstance(state, tuple) else static_state.clone()
            for t in range(xs.shape[0]):
                static_x.copy_(xs[t])
                graph.replay()
                want, eager_state = mod.step(xs[t], eager_state)
                torch.testing.assert_close(static_y, want, rtol=1e-5, atol=1e-5, msg=f"{name} {layout} step {t}")
                for dst, src in zip(static_state if isinstance(state, tuple) else (static_state,),
                                    static_new if isinstance(state, tuple) else (static_new,)):
                    dst.copy_(src)  # the graph's next input state is its own output
