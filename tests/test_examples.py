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


def test_linear_rnn_denoiser_pipeline(tmp_path, capsys):
    import json
    import sys

    # The example imports its siblings as top-level "model"/"signals" (as examples/ptb does): keep
    # them out of sys.modules before and after, so neither example sees the other's modules.
    for name in ("model", "signals"):
        sys.modules.pop(name, None)
    sys.path.insert(0, str(EXAMPLES / "linear_rnn"))
    try:
        spec = importlib.util.spec_from_file_location("lrnn_run", EXAMPLES / "linear_rnn" / "run.py")
        run = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(run)
        run.main(["--config", "tiny", "--train-steps", "3", "--finetune-steps", "2", "--sparsities", "0.8",
                  "--batch", "2", "--seconds", "0.5", "--test-clips", "2", "--test-seconds", "0.5", "--reps", "2", "--paced-samples", "2",
                  "--out", str(tmp_path)])
    finally:
        sys.path.remove(str(EXAMPLES / "linear_rnn"))
        for name in ("model", "signals"):
            sys.modules.pop(name, None)
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert [r["sparsity"] for r in rows] == [0.0, 0.8]
    for r in rows:  # the kernels give the dense masked model's quality
        assert abs(r["si_snri_dB"] - r["si_snri_kernels_dB"]) < 1e-3
        assert r["rel_diff_int8_vs_kernels"] < 0.05 and abs(r["si_snri_int8_dB"] - r["si_snri_kernels_dB"]) < 0.5
        assert 0 < r["latency"]["paced_kernels_us"] <= r["latency"]["paced_kernels_p99_us"]
        assert r["macs_per_frame"]["combined"] <= r["macs_per_frame"]["dense"]
    assert abs(rows[1]["measured_weight_sparsity"] - 0.8) < 0.01
    assert "| 80% |" in (tmp_path / "results.md").read_text()


def test_int8_weights(capsys):
    _load("int8_weights").main(["--in-features", "256", "--out-features", "512", "--hidden", "32", "--steps", "5",
                                "--reps", "3"])
    out = capsys.readouterr().out
    rel = float(out.split("relative (L2) ")[1].split(";")[0])
    assert rel < 0.02  # int8 per-column quantisation: under 2% on random weights
    mb32 = float(out.split("weights ")[1].split(" MB")[0])
    mb8 = float(out.split("MB -> ")[1].split(" MB")[0])
    assert mb8 < 0.6 * mb32  # 1 byte per value instead of 4 (the int16 row indices stay)
    assert "EGRU H=32" in out and "events agree on" in out
