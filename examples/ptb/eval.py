"""Evaluate a PTB checkpoint (dense or pruned): test perplexity with the dense training module and on
the sparse kernels (they must agree), per-layer activity, MACs per token, and measured tokens per
second at batch 1 (kernels vs the dense model).

    python examples/ptb/eval.py --data ../shared/data/ptb --checkpoint runs/small-s80.pt --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data import Corpus, data_dir  # noqa: E402
from model import build  # noqa: E402

from evsparse import macs  # noqa: E402


@torch.inference_mode()
def perplexity_batch1(model, tokens: torch.Tensor, chunk: int = 1000) -> float:
    """One stream (batch 1) through the whole text, state carried between chunks."""
    state, total = model.init_state(), 0.0
    for i in range(0, tokens.numel() - 1, chunk):
        x = tokens[i : min(i + chunk, tokens.numel() - 1)].unsqueeze(1)
        y = tokens[i + 1 : i + 1 + x.shape[0]]
        logits, state = model(x, state)
        total += F.cross_entropy(logits[:, 0], y, reduction="sum").item()
    return math.exp(total / (tokens.numel() - 1))


@torch.inference_mode()
def stream_seconds_per_token(model, tokens: torch.Tensor, recurrent_only: bool) -> float:
    """Token-by-token at batch 1, as a deployed model runs."""
    layers = model.layers
    state = [None] * len(layers)
    t0 = time.perf_counter()
    for tok in tokens:
        x = model.embedding(tok.view(1))
        for k, layer in enumerate(layers):
            x, state[k] = layer.step(x, state[k])
        if not recurrent_only:
            model.decoder(x)
    return (time.perf_counter() - t0) / tokens.numel()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--max-test-tokens", type=int, default=None, help="evaluate on the first N test tokens")
    ap.add_argument("--stream-tokens", type=int, default=1000, help="tokens for the batch-1 speed measurement")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--layout", choices=("auto", "dense", "sparse", "timed"), default="auto",
                    help="weight layouts on the kernels; timed: the fastest per layer here, on validation tokens")
    ap.add_argument("--timing-tokens", type=int, default=200, help="validation tokens that --layout timed runs")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    corpus = Corpus(data_dir(args.data))
    ckpt = torch.load(args.checkpoint, weights_only=False)
    model = build(ckpt["vocab_size"], ckpt["config"]).eval()
    model.load_state_dict(ckpt["model"])
    masks = ckpt.get("masks") or {}
    example = corpus.valid[: args.timing_tokens] if args.layout == "timed" else None
    sparse = model.sparsify(masks, args.layout, example).eval()
    test = corpus.test[: args.max_test_tokens] if args.max_test_tokens else corpus.test

    ppl_dense = perplexity_batch1(model, test)
    ppl_sparse = perplexity_batch1(sparse, test)
    activity = sparse.activity()
    sample = test[: min(2000, test.numel())].unsqueeze(1)
    report = macs.count(model, sample, weight_masks=masks or None)
    stream = test[: args.stream_tokens]
    timing = {}
    for name, recurrent_only in (("recurrent layers", True), ("whole model", False)):
        d = stream_seconds_per_token(model, stream, recurrent_only)
        s = stream_seconds_per_token(sparse, stream, recurrent_only)
        timing[name] = {"dense_tokens_per_s": 1 / d, "kernels_tokens_per_s": 1 / s, "speedup": d / s}
    result = {
        "checkpoint": args.checkpoint, "sparsity": ckpt.get("sparsity", 0.0), "test_tokens": int(test.numel()),
        "test_ppl_dense_model": ppl_dense, "test_ppl_kernels": ppl_sparse, "activity": activity,
        "macs_per_token": report.totals, "macs_other": report.other, "batch1_speed": timing,
        "threads": torch.get_num_threads(), "layout": args.layout, "layouts": sparse.layouts,
    }
    print(report)
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
