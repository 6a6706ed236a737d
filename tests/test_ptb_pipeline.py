"""The PTB example pipeline (train -> prune + fine-tune -> eval) on a tiny synthetic corpus: runs end to
end, the masks hold, and the perplexity on the sparse kernels equals the dense masked model's."""

import importlib.util
import random
import sys
from pathlib import Path

import pytest
import torch

PTB = Path(__file__).resolve().parents[1] / "examples" / "ptb"


def _load(name):
    sys.path.insert(0, str(PTB))
    try:
        spec = importlib.util.spec_from_file_location(f"ptb_{name}", PTB / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(PTB))


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    rng = random.Random(0)
    words = [f"w{i}" for i in range(40)]
    d = tmp_path_factory.mktemp("ptb")
    for split, n in (("train", 300), ("valid", 40), ("test", 40)):
        lines = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) for _ in range(n)]
        if split == "train":
            lines.append(" ".join(words))  # every word in the training vocabulary
        (d / f"ptb.{split}.txt").write_text("\n".join(lines) + "\n")
    return d


def _assert_masks_hold(ckpt):
    """Every weight a pruning mask removed is exactly zero in the saved model."""
    for name, mask in ckpt["masks"].items():
        assert bool((ckpt["model"][name][~mask] == 0).all()), name


def test_pipeline_end_to_end(corpus_dir, tmp_path):
    common = ["--data", str(corpus_dir), "--batch-size", "4", "--bptt", "10", "--quiet"]
    _load("train").main(common + ["--config", "tiny", "--epochs", "1", "--save", str(tmp_path / "dense.pt")])
    assert (tmp_path / "dense.pt").exists() and (tmp_path / "dense.last.pt").exists()
    _load("train").main(common + ["--config", "tiny", "--epochs", "2", "--save", str(tmp_path / "dense.pt"),
                                  "--resume", str(tmp_path / "dense.last.pt")])
    assert torch.load(tmp_path / "dense.last.pt", weights_only=False)["epoch"] == 2
    sparsity = _load("train_sparsity").main(["--data", str(corpus_dir), "--checkpoint", str(tmp_path / "dense.pt"),
                                             "--batches", "3", "--batch-size", "4", "--bptt", "10"])
    assert len(sparsity["layers"]) == 2
    for layer in sparsity["layers"]:  # fired units lie inside the support too
        assert 0 < layer["activity"] <= layer["dy_needed"] <= 1
    _load("prune_finetune").main(common + ["--checkpoint", str(tmp_path / "dense.pt"), "--sparsity", "0.7",
                                           "--epochs", "1", "--save", str(tmp_path / "s70.pt")])
    ckpt = torch.load(tmp_path / "s70.pt", weights_only=False)
    _assert_masks_hold(ckpt)
    kept = sum(int(m.sum()) for m in ckpt["masks"].values()) / sum(m.numel() for m in ckpt["masks"].values())
    assert kept == pytest.approx(0.3, abs=1e-3)
    result = _load("eval").main(["--data", str(corpus_dir), "--checkpoint", str(tmp_path / "s70.pt"),
                                 "--stream-tokens", "20", "--speed-block", "8", "--json", str(tmp_path / "r.json")])
    assert result["test_ppl_kernels"] == pytest.approx(result["test_ppl_dense_model"], rel=1e-5)
    assert result["macs_per_token"]["weight_sparse"] == pytest.approx(0.3 * result["macs_per_token"]["dense"], rel=0.2)
    assert (tmp_path / "r.json").exists()
    whole, decoder = result["macs_whole_model"], result["macs_other"]["other nn.Linear, zero inputs skipped"]
    dec_dense = 16 * ckpt["vocab_size"]
    assert 0 < decoder < dec_dense  # the decoder (16 x vocab) reads only the top layer's events
    assert whole["dense"] == result["macs_per_token"]["dense"] + dec_dense
    assert whole["kernels"] == result["macs_per_token"]["combined"] + decoder
    for speed in result["batch1_speed"].values():  # 20 tokens in turns of 8: blocks of 8, 8, 4
        assert speed["blocks"] == 3 and speed["block_tokens"] == 8
        for key in ("speedup", "speedup_vs_gru"):
            assert speed[f"{key}_range"][0] <= speed[key] <= speed[f"{key}_range"][1]
        assert speed["gru_tokens_per_s"] > 0
    assert result["layout"] == "auto" and len(result["layouts"]) == 2
    assert result["test_ppl_kernels_int8"] is None
    q = _load("eval").main(["--data", str(corpus_dir), "--checkpoint", str(tmp_path / "s70.pt"), "--stream-tokens",
                            "16", "--speed-block", "8", "--int8", "--paced-tokens", "3", "--paced-interval-ms", "1"])
    assert q["test_ppl_kernels_int8"] == pytest.approx(q["test_ppl_kernels"], rel=0.05)  # int8: close, not equal
    for speed in q["batch1_speed"].values():
        assert speed["kernels_int8_tokens_per_s"] > 0 and speed["int8_over_float32"] > 0
        assert set(speed["paced"]) == {"kernels", "dense", "gru", "kernels_int8"} and speed["paced_interval_ms"] == 1
        assert all(0 < v["median_us"] <= v["p99_us"] for v in speed["paced"].values())
    timed = _load("eval").main(["--data", str(corpus_dir), "--checkpoint", str(tmp_path / "s70.pt"),
                                "--stream-tokens", "20", "--layout", "timed", "--timing-tokens", "30"])
    assert timed["test_ppl_kernels"] == pytest.approx(result["test_ppl_dense_model"], rel=1e-5)
    assert timed["layout"] == "timed" and all(len(pair) == 2 for pair in timed["layouts"])


def test_timed_sparsify_times_each_layer_on_its_own_input(monkeypatch):
    """Layer k is timed on the embeddings run through the dense layers before it, and a list of
    per-layer pairs (``.layouts``) rebuilds the choice."""
    model_mod = _load("model")
    torch.manual_seed(0)
    model = model_mod.build(50, "tiny").eval()
    tokens = torch.randint(0, 50, (12,))
    seen = []
    original = model_mod.EGRU.sparsify

    def spy(layer, masks=None, layout="auto", example_input=None, weight_dtype=None):
        seen.append(None if example_input is None else example_input.clone())
        return original(layer, masks, layout, example_input, weight_dtype)

    monkeypatch.setattr(model_mod.EGRU, "sparsify", spy)
    sparse = model.sparsify(layout="timed", example_tokens=tokens)
    with torch.no_grad():
        first = model.embedding(tokens)
        second = model.layers[0](first)[0]
    torch.testing.assert_close(seen[0], first, rtol=0, atol=0)
    torch.testing.assert_close(seen[1], second, rtol=0, atol=0)
    rebuilt = model.sparsify(layout=sparse.layouts)
    assert rebuilt.layouts == sparse.layouts
    with torch.inference_mode():
        torch.testing.assert_close(rebuilt(tokens.unsqueeze(1))[0], model(tokens.unsqueeze(1))[0],
                                   rtol=1e-4, atol=1e-5)


def test_cosine_schedule_resumes_where_it_stopped(corpus_dir, tmp_path):
    """--lr-schedule cosine decays per batch to 0 at --epochs; a run stopped by --max-minutes inside an
    epoch does not count it, and --resume runs it again and continues the decay (the schedule's state
    is in the checkpoint) to 0 at the planned end; --no-fused trains on the loop."""
    base = ["--data", str(corpus_dir), "--batch-size", "4", "--bptt", "10", "--quiet",
            "--lr-schedule", "cosine", "--lr", "0.01"]
    common = base + ["--config", "tiny"]
    train = _load("train")
    train.main(common + ["--epochs", "3", "--save", str(tmp_path / "a.pt")])
    full = torch.load(tmp_path / "a.last.pt", weights_only=False)
    assert [h["epoch"] for h in full["history"]] == [1, 2, 3] and all(h["complete"] for h in full["history"])
    assert full["history"][-1]["lr"] == pytest.approx(0.0, abs=1e-12)
    lrs = [h["lr"] for h in full["history"]]
    assert lrs[0] > lrs[1] > lrs[2]
    split = ["--save", str(tmp_path / "c.pt")]
    train.main(common + ["--epochs", "3"] + split + ["--max-minutes", "1e-9"])  # stops after its first epoch
    first = torch.load(tmp_path / "c.last.pt", weights_only=False)
    assert first["epoch"] == 0 and first["history"] == []  # cut short after one batch: not counted
    train.main(common + ["--epochs", "3"] + split + ["--resume", str(tmp_path / "c.last.pt")])
    resumed = torch.load(tmp_path / "c.last.pt", weights_only=False)
    assert resumed["epoch"] == 3 and resumed["history"][-1]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert resumed["schedule"]["last_epoch"] >= full["schedule"]["last_epoch"]
    train.main(common + ["--epochs", "1", "--no-fused", "--save", str(tmp_path / "d.pt")])
    assert torch.load(tmp_path / "d.last.pt", weights_only=False)["epoch"] == 1
    # prune_finetune decays the same way over its own epochs, the masks held throughout
    _load("prune_finetune").main(base + ["--epochs", "2", "--checkpoint", str(tmp_path / "a.pt"),
                                         "--sparsity", "0.6", "--save", str(tmp_path / "p.pt")])
    pruned = torch.load(tmp_path / "p.pt", weights_only=False)
    lrs = [h["lr"] for h in pruned["history"]]
    assert 0.0 < lrs[0] < 0.01 and lrs[1] == pytest.approx(0.0, abs=1e-12)
    _assert_masks_hold(pruned)
