"""The house rules, checked: each op family's argument layout stated once per language and equal on
both sides, no import cycles, the library never importing the benchmark harness, production code never
including a test header, and every renamed name still working (with a DeprecationWarning)."""

import ast
import importlib
import re
from pathlib import Path

import pytest
import torch

import evsparse
from evsparse._contract import EGRU_LAYER_ARGS, LINEAR_RNN_LAYER_ARGS, layer_buffer

ROOT = Path(__file__).resolve().parents[1]
PKG = Path(evsparse.__file__).resolve().parent  # the installed package (also under scripts/test_wheels.sh)
# Deprecated alias modules: they forward to the new homes (harness modules included) for one release.
ALIASES = {"evsparse.layout_timing": "evsparse.layout", "evsparse.layout_bench": "evsparse.bench.layout",
           "evsparse.linear_rnn_bench": "evsparse.bench.linear_rnn", "evsparse.stack_bench": "evsparse.bench.stack",
           "evsparse._bench_common": "evsparse.bench.common", "evsparse.gpu.bench": "evsparse.bench.gpu",
           "evsparse.gpu.launch": "evsparse.gpu.sparse_linear"}


def _schema_args(op):
    return [a.name for a in op.default._schema.arguments]


def test_layer_argument_layout_matches_the_schemas():
    """The Python constant equals the one-layer ops' schemas (C++), after the input and the state."""
    assert tuple(_schema_args(torch.ops.evsparse.egru_step)[3:]) == EGRU_LAYER_ARGS
    assert tuple(_schema_args(torch.ops.evsparse.egru_sequence)[3:]) == EGRU_LAYER_ARGS
    assert tuple(_schema_args(torch.ops.evsparse.linear_rnn_step)[2:-1]) == LINEAR_RNN_LAYER_ARGS
    assert tuple(_schema_args(torch.ops.evsparse.linear_rnn_sequence)[2:-1]) == LINEAR_RNN_LAYER_ARGS


@pytest.mark.parametrize("family", ["egru", "linear_rnn"])
def test_stack_ops_take_the_same_layout(family):
    """The C++ stack ops count and require their per-layer entries as the constant and the one-layer
    schema say: the count in the error message, and None refused exactly where the schema has no
    Optional."""
    torch.manual_seed(0)
    if family == "egru":
        module = evsparse.nn.EGRU(4, 6, 1).sparsify(layout="sparse")
        per_layer, step = EGRU_LAYER_ARGS, torch.ops.evsparse.egru_step
        args = list(module._collect_stack_args()[0])

        def call(layers):
            return torch.ops.evsparse.egru_stack_step(torch.randn(1, 4), torch.zeros(1, 1, 6), torch.zeros(1, 1, 6),
                                                      layers)
    else:
        module = evsparse.nn.SparseLinearRNN(4, 5, 4).sparsify(layout="sparse")
        per_layer, step = LINEAR_RNN_LAYER_ARGS, torch.ops.evsparse.linear_rnn_step
        args, residual = module._collect_stack_args()
        args = list(args)

        def call(layers):
            return torch.ops.evsparse.linear_rnn_stack_step(torch.randn(1, 4), torch.zeros(1, 1, 5), layers, residual)
    assert len(args) == len(per_layer)
    call(args)
    with pytest.raises(ValueError, match=f"must hold {len(per_layer)} entries per layer"):
        call(args + [None])
    optional = {a.name: isinstance(a.type, torch.OptionalType) for a in step.default._schema.arguments}
    for i, name in enumerate(per_layer):
        if optional[name]:
            continue
        broken = list(args)
        broken[i] = None
        with pytest.raises(ValueError, match=f"argument {i}\\) is required"):
            call(broken)


def test_legacy_state_dict_keys_follow_the_contract():
    """A state dict of the per-layer buffer format (keys named by layer_buffer) loads into today's
    plan-holding module and gives the same outputs."""
    module = evsparse.nn.EGRU(4, 6, 2).sparsify(layout="sparse")
    assert set(dict(module.named_buffers())) == {"plan_arena", "plan_meta"}
    legacy = {}
    for k in range(2):
        for arg, t in zip(EGRU_LAYER_ARGS, module._args(k)):
            if t is not None:
                legacy[layer_buffer(arg, k)] = t.clone()
    fresh = evsparse.nn.EGRU(4, 6, 2).sparsify(layout="sparse")
    fresh.load_state_dict(legacy)
    x = torch.randn(5, 1, 4)
    assert torch.equal(fresh(x)[0], module(x)[0])


def _nodes(tree):
    """Every node, imports inside functions included (a cycle "dodged" by a function-level import is
    still a cycle), except inside a module ``__getattr__``: the deprecation shims that forward an old
    name to its new home."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def _imports(path: Path, module: str) -> set[str]:
    """The evsparse modules that ``module`` imports, anywhere in it (see :func:`_nodes`)."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in _nodes(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("evsparse")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            if not base.startswith("evsparse"):
                continue
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return found


def _modules() -> dict[str, Path]:
    out = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        out[name] = path
    return out


def test_no_import_cycles():
    modules = _modules()
    graph = {m: {i for i in _imports(p, m) if i in modules and i != m} for m, p in modules.items()}
    # A package's __init__ importing its submodules is not a cycle through them.
    for m in graph:
        graph[m] = {i for i in graph[m] if not m.startswith(i + ".")}
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for n in graph[m]:
            if state.get(n) == 1:
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(n):] + [n]))
            if n not in state:
                visit(n, stack + [n])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])


def test_library_never_imports_the_harness():
    for module, path in _modules().items():
        if module.startswith("evsparse.bench") or module in ALIASES:
            continue
        bad = {i for i in _imports(path, module) if i.startswith("evsparse.bench")}
        assert not bad, f"{module} imports the benchmark harness: {sorted(bad)}"


def test_production_code_includes_no_test_header():
    for path in list((ROOT / "csrc").rglob("*.[ch]*")):
        for line in path.read_text().splitlines():
            if re.match(r'\s*#\s*include\s*"', line):
                assert "tests/" not in line and "emulation" not in line, f"{path}: {line}"


@pytest.mark.parametrize("old, new", sorted(ALIASES.items()))
def test_deprecated_module_aliases(old, new):
    if "gpu" in old or "gpu" in new:
        pytest.importorskip("triton")
    import sys

    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated"):
        mod = importlib.import_module(old)
    assert mod is importlib.import_module(new)


def test_deprecated_names():
    from evsparse.nn import PackedEGRU, SparseLinear

    with pytest.warns(DeprecationWarning, match="SparseEGRU is deprecated"):
        from evsparse.nn import SparseEGRU
    assert SparseEGRU is PackedEGRU
    egru = evsparse.nn.EGRU(4, 6, 1)
    with pytest.warns(DeprecationWarning, match="PackedEGRU.from_egru is deprecated"):
        assert isinstance(PackedEGRU.from_egru(egru), PackedEGRU)
    with pytest.warns(DeprecationWarning, match="SparseLinear.from_linear is deprecated"):
        assert isinstance(SparseLinear.from_linear(torch.nn.Linear(3, 4)), SparseLinear)
    for name in ("pack", "masked_weight", "LAYOUTS", "AUTO_SPARSE_MAX_DENSITY"):
        with pytest.warns(DeprecationWarning, match=f"evsparse.packed.{name} is deprecated"):
            assert getattr(evsparse.packed, name) is getattr(evsparse.layout, name)
