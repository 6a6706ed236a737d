"""The examples run (small settings) and print what they claim."""

import importlib.util
from pathlib import Path

import pytest

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


def _s5_denoise_module(name):
    """examples/s5_denoise's ``name`` module, imported as the example imports it (siblings top-level)."""
    import sys

    for sibling in ("speech", "denoiser", "s5_run"):
        sys.modules.pop(sibling, None)
    sys.path.insert(0, str(EXAMPLES / "s5_denoise"))
    try:
        spec = importlib.util.spec_from_file_location(name, EXAMPLES / "s5_denoise" / f"{name.removeprefix('s5_')}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the class is made
        spec.loader.exec_module(module)
        return module
    finally:
        sys.modules.pop(name, None)
        sys.path.remove(str(EXAMPLES / "s5_denoise"))
        for sibling in ("speech", "denoiser"):
            sys.modules.pop(sibling, None)


PTB = Path(__file__).resolve().parents[2] / "shared" / "data" / "ptb"


def test_s5_denoise_noise_and_mixing_are_deterministic():
    """The noise kinds and the mixing (no synthesiser needed): the same seed gives the same arrays, another
    seed other ones; SNR and level land in the N-DNS ranges."""
    import numpy as np

    speech = _s5_denoise_module("speech")
    pool = [np.random.default_rng(i).standard_normal(3000) for i in range(4)]

    def draw(seed):
        rng = np.random.default_rng(seed)
        clean = np.sin(np.arange(16000) / 7.0)
        n, kinds = speech.noise(rng, 16000, pool)
        noisy, clean_s, snr = speech.mix(rng, clean, n)
        return noisy, clean_s, snr, kinds

    a, b, c = draw(5), draw(5), draw(6)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2:] == b[2:]
    assert not np.array_equal(a[0], c[0])
    for seed in range(20):
        noisy, clean, snr, kinds = draw(seed)
        assert -5 <= snr <= 20 and set(kinds) <= set(speech.NOISES) and 1 <= len(kinds) <= 2
        measured = 10 * np.log10(np.mean(clean ** 2) / np.mean((noisy - clean) ** 2))
        assert abs(measured - snr) < 0.01 or np.abs(noisy).max() >= 0.98  # (scaled down only to avoid clipping)
        assert np.abs(noisy).max() < 1.0
    for kind in ("coloured", "transient", "hum"):
        x = getattr(speech, kind)(np.random.default_rng(0), 8000)
        assert x.shape == (8000,) and np.isfinite(x).all() and np.abs(x).max() > 0


def test_s5_denoise_synthesiser_output_counts_once_two_runs_agree():
    """espeak-ng's output is taken only when two runs agree (its breath noise was seen to differ)."""
    speech = _s5_denoise_module("speech")
    runs = iter([b"a", b"b", b"a", b"c"])
    assert speech.agreed(lambda: next(runs)) == b"a"
    runs = iter([b"x", b"x"])
    assert speech.agreed(lambda: next(runs)) == b"x"
    runs = iter([b"1", b"2", b"3"])
    with pytest.raises(RuntimeError, match="3 different outputs"):
        speech.agreed(lambda: next(runs), tries=3)


def test_s5_denoise_speech_is_deterministic_and_held_out(tmp_path):
    """Synthesised twice into separate caches (so the synthesisers run twice), the corpus and its test set
    are identical for a seed; the test speakers and texts are not in training."""
    import numpy as np

    speech = _s5_denoise_module("speech")
    if speech.available():
        pytest.skip(speech.available())
    if not PTB.exists():
        pytest.skip(f"no PTB text at {PTB}")
    a = speech.Corpus("test", PTB, 1, seed=3, cache=tmp_path / "a", babble_per_speaker=1)
    b = speech.Corpus("test", PTB, 1, seed=3, cache=tmp_path / "b", babble_per_speaker=1)
    assert a.labels == b.labels
    for label, x, y in zip(a.labels, a.utterances, b.utterances):  # which voice differed, and by how much
        assert x.shape == y.shape and np.array_equal(x, y), (label, x.shape, y.shape,
                                                              float(np.abs(x - y).max()) if x.shape == y.shape else None)
    ta, tb = a.test_set(9, 16000), b.test_set(9, 16000)
    assert all(np.array_equal(x["noisy"], y["noisy"]) and x["noise"] == y["noise"] for x, y in zip(ta, tb))
    assert {s.name for s in speech.TEST_SPEAKERS}.isdisjoint(s.name for s in speech.TRAIN_SPEAKERS)
    assert len({s.name for s in speech.TRAIN_SPEAKERS}) == len(speech.TRAIN_SPEAKERS)
    c = speech.Corpus("test", PTB, 1, seed=4, cache=tmp_path / "a", babble_per_speaker=1)
    assert c.labels != a.labels
    train_texts = set(speech.ptb_sentences(PTB / "ptb.train.txt", 2000, 0))
    assert not train_texts & {t for _, t in a.labels}
    for u in a.utterances:  # speech at 16 kHz, peak 0.5, seconds long
        assert u.dtype == np.float32 and abs(np.abs(u).max() - 0.5) < 1e-6 and 1.0 < len(u) / 16000 < 15


def test_s5_denoise_pipeline(tmp_path):
    """Tiny settings end to end: dense, dense retrained and sparse training, evaluation on the kernels
    (equal to the module), int8, MACs, memory, latency (all models side by side), table and JSON; the
    sparse family unstructured and in 16x1 blocks (--block 1 16)."""
    import json

    import torch

    from evsparse.layout import block_fraction

    speech = _s5_denoise_module("speech")
    if speech.available():
        pytest.skip(speech.available())
    run = _s5_denoise_module("s5_run")
    run.main(["--out", str(tmp_path), "--ptb", str(PTB), "--config", "tiny", "--dense-k", "0.125", "--sparse-k",
              "0.125", "--test-per-speaker", "1", "--test-seconds", "1", "--reps", "2", "--paced-samples", "3",
              "--block", "1", "16"])
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert [(r["model"], r["family"], r["k"]) for r in rows] == [
        ("dense-k0.125", "dense", 0.125), ("dense-x2-k0.125", "dense, retrained", 0.125),
        ("sparse-k0.125", "sparse", 0.125), ("sparse-b16-k0.125", "sparse", 0.125)]
    assert [r["block"] for r in rows] == [1, 1, 1, 16]
    blocked = torch.load(tmp_path / "ckpt" / "sparse-b16-k0.125.pt", weights_only=True)
    assert blocked["block"] == 16 and blocked["masks"]
    for name, m in blocked["masks"].items():  # whole 16x1 blocks (a complex pair's two parts alike)
        m = m[..., 0] if m.dim() == 3 else m
        assert block_fraction(m.float()) == 1.0 or not m.any(), name
    for r in rows:
        assert abs(r["si_snri_kernels_dB"] - r["si_snri_dB"]) < 1e-3 and r["max_abs_diff_kernels_vs_module"] < 1e-3
        assert abs(r["si_snri_int8_dB"] - r["si_snri_kernels_dB"]) < 1.0
        m = r["macs_per_frame"]
        assert 0 < m["effective"] <= m["dense"]
        assert all(v["hot_us"] > 0 and v["paced_us"] > 0 for v in r["latency"].values())
    dense, sparse = rows[0], rows[2]
    assert abs(sparse["weight_sparsity"] - 0.9) < 0.02 and dense["weight_sparsity"] == 0
    assert sparse["macs_per_frame"]["effective"] < 0.2 * dense["macs_per_frame"]["effective"]
    assert sparse["memory_bytes"]["kernels fp32 (stored)"] < 0.4 * dense["memory_bytes"]["kernels fp32 (stored)"]
    assert "| sparse-k0.125 |" in (tmp_path / "results.md").read_text()


def test_s5_denoise_iso_accuracy_interpolates_in_log_scale():
    """The table's iso-accuracy figures: a sparse model between two dense ones gets the dense cost
    interpolated in log scale at its SI-SNRi; outside the range it is compared with the nearest."""
    import math

    run = _s5_denoise_module("s5_run")

    def row(name, family, q, macs, kb, us):
        return {"model": name, "family": family, "si_snri_kernels_dB": q, "macs_per_frame": {"effective": macs},
                "memory_bytes": {"kernels fp32 (stored)": kb * 1e3},
                "latency": {"kernels fp32": {"paced_us": us, "hot_us": us / 4}}}

    rows = [row("d1", "dense, retrained", 3.0, 100e3, 400, 200.0), row("d2", "dense, retrained", 4.0, 400e3, 1600, 400.0),
            row("d0", "dense", 9.0, 1.0, 1, 1.0),  # the short-trained family is not the reference
            row("s1", "sparse", 3.5, 20e3, 100, 250.0), row("s2", "sparse", 4.5, 50e3, 200, 300.0)]
    mid, above = run.iso_accuracy(rows)
    assert mid["macs"]["dense"] == pytest.approx(200e3) and mid["macs"]["ratio"] == pytest.approx(10.0)
    assert mid["bytes"]["dense"] == pytest.approx(800e3) and mid["paced_us"]["dense"] == pytest.approx(math.sqrt(2) * 200)
    assert above["macs"] is None and above["note"].startswith("+0.50 dB vs d2") and "macs 8.00x" in above["note"]


def test_block_pruning(capsys):
    _load("block_pruning").main(["--in-features", "256", "--out-features", "512", "--reps", "3", "--steps", "4",
                                 "--hidden", "48"])
    out = capsys.readouterr().out
    assert "block 16x1: density" in out and "stream == training module" in out
    for line in out.splitlines():
        if "max |evsparse - F.linear(masked)|" in line:
            assert float(line.rsplit(" ", 1)[1]) < 1e-4, line
    assert float(out.split("max diff ")[1].split(";")[0]) < 1e-4
