"""The examples run (small settings) and print what they claim."""

import importlib.util
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sparse_linear_demo(capsys):
    _load("sparse_linear_demo").main(["--in-features", "256", "--out-features", "512", "--reps", "5"])
    out = capsys.readouterr().out
    assert "max |evsparse - F.linear|" in out and "theoretical" in out


def test_egru_streaming(capsys):
    _load("egru_streaming").main(["--steps", "3", "--hidden", "16"])
    out = capsys.readouterr().out
    assert "stream == training module" in out
    diff = float(out.split("max diff ")[1].split(";")[0])
    assert diff < 1e-4
