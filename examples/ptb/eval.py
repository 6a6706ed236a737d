"""Evaluate a PTB checkpoint (dense or pruned): test perplexity with the dense training module and on
the sparse kernels (they must agree), per-layer activity, MACs per token, and measured tokens per
second at batch 1: the kernels against the dense model and against a lean dense reference
(``torch.nn.GRU`` layers of the same sizes, the decoder on a pre-transposed weight), taking turns on
the same tokens.

    python examples/ptb/eval.py --data ../shared/data/ptb --checkpoint runs/small-s80.pt --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data import Corpus, data_dir  # noqa: E402
from model import build  # noqa: E402

from evsparse import macs  # noqa: E402
from evsparse.bench.paced import time_paced  # noqa: E402


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


class _Stream:
    """A model fed token by token at batch 1, as a deployed model runs, its state carried on:
    embedding, each layer's ``step(x, state) -> (y, state)``, then (unless ``recurrent_only``) the
    decoder."""

    def __init__(self, embedding, steps: list, decoder, recurrent_only: bool):
        self.embedding, self.steps = embedding, steps
        self.decoder = None if recurrent_only else decoder
        self.state = [None] * len(steps)

    @torch.inference_mode()
    def seconds_per_token(self, tokens: torch.Tensor) -> float:
        steps, state = self.steps, self.state
        t0 = time.perf_counter()
        for tok in tokens:
            x = self.embedding(tok.view(1))
            for k, step in enumerate(steps):
                x, state[k] = step(x, state[k])
            if self.decoder is not None:
                self.decoder(x)
        return (time.perf_counter() - t0) / tokens.numel()


def gru_steps(model) -> list:
    """The lean dense reference's layers: one ``torch.nn.GRU`` per EGRU layer, same sizes (random
    weights; PyTorch's fused dense GRU cell, the fastest a dense EGRU-sized step runs in plain PyTorch)."""
    steps = []
    for layer in model.layers:
        gru = torch.nn.GRU(layer.input_size, layer.hidden_size).eval().requires_grad_(False)

        def step(x, h, gru=gru):
            y, h = gru(x.unsqueeze(0), h)
            return y[0], h

        steps.append(step)
    return steps


def lean_dense_decoder(decoder: torch.nn.Linear):
    """The decoder as ``bias + x @ W^T`` with ``W^T`` stored transposed ([in, out]): at batch 1 this ran
    about 3x faster than ``F.linear`` on ``[out, in]`` on the project's AMD VM (MKL's GEMV path)."""
    w_t, bias = decoder.weight.detach().t().contiguous(), decoder.bias.detach()
    return lambda x: torch.addmm(bias, x, w_t)


def paced_latency(streams: dict, tokens: torch.Tensor, interval_s: float) -> dict:
    """Per stream, the latency of one token fed one per ``interval_s`` (``evsparse-bench``'s paced
    timing: the streams take turns tick by tick, so none warms the machine for another): median and
    p99 microseconds, and the real-time factor (median latency / interval)."""
    pool = [tok.view(1) for tok in tokens]
    paced = time_paced({name: (s.seconds_per_token, pool) for name, s in streams.items()}, interval_s, len(pool))
    return {name: {"median_us": med * 1e6, "p99_us": p99 * 1e6, "realtime_factor": med / interval_s}
            for name, (med, p99) in paced.items()}


def interleaved_speed(model, sparse, tokens: torch.Tensor, recurrent_only: bool, block: int, sparse8=None,
                      paced_tokens: int = 0, interval_s: float = 0.008) -> dict:
    """The kernels, the dense training module and the lean dense reference (``nn.GRU`` layers, the
    decoder on a pre-transposed weight) stream the same tokens,
    taking turns every ``block`` tokens (the order rotates), so that the VM's noise falls on all of
    them: tokens/s from the median block, each speedup the median of the per-block ratios."""
    streams = {
        "kernels": _Stream(sparse.embedding, [layer.step for layer in sparse.layers], sparse.decoder, recurrent_only),
        "dense": _Stream(model.embedding, [layer.step for layer in model.layers], model.decoder, recurrent_only),
        "gru": _Stream(model.embedding, gru_steps(model), lean_dense_decoder(model.decoder), recurrent_only),
    }
    if sparse8 is not None:
        streams["kernels_int8"] = _Stream(sparse8.embedding, [layer.step for layer in sparse8.layers], sparse8.decoder,
                                          recurrent_only)
    names = list(streams)
    warm = tokens[: min(block, tokens.numel())]
    for s in streams.values():  # first calls (allocations, lazy init) out of the timing
        s.seconds_per_token(warm)
    times = {name: [] for name in names}
    for i, start in enumerate(range(0, tokens.numel(), block)):
        chunk = tokens[start : start + block]
        for name in names[i % len(names) :] + names[: i % len(names)]:
            times[name].append(streams[name].seconds_per_token(chunk))
    result = {f"{name}_tokens_per_s": 1 / statistics.median(times[name]) for name in names}
    for base, key in (("dense", "speedup"), ("gru", "speedup_vs_gru")):
        ratios = [b / k for b, k in zip(times[base], times["kernels"])]
        result[key] = statistics.median(ratios)
        result[f"{key}_range"] = [min(ratios), max(ratios)]
    if sparse8 is not None:
        ratios = [k / k8 for k, k8 in zip(times["kernels"], times["kernels_int8"])]
        result["int8_over_float32"] = statistics.median(ratios)
    if paced_tokens > 0:  # a live stream: one token per interval (fresh states: the latency, not the text)
        paced_streams = {name: _Stream(s.embedding, s.steps, s.decoder, recurrent_only) for name, s in streams.items()}
        result["paced"] = paced_latency(paced_streams, tokens[:paced_tokens], interval_s)
        result["paced_interval_ms"] = interval_s * 1e3
    return {**result, "blocks": len(times["kernels"]), "block_tokens": block}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--max-test-tokens", type=int, default=None, help="evaluate on the first N test tokens")
    ap.add_argument("--stream-tokens", type=int, default=1000, help="tokens for the batch-1 speed measurement")
    ap.add_argument("--speed-block", type=int, default=50,
                    help="the three timed models take turns every this many tokens of the speed measurement")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--layout", choices=("auto", "dense", "sparse", "timed"), default="auto",
                    help="weight layouts on the kernels; timed: the fastest per layer here, on validation tokens")
    ap.add_argument("--timing-tokens", type=int, default=200, help="validation tokens that --layout timed runs")
    ap.add_argument("--int8", action="store_true",
                    help="also the kernels with int8 weights (weight_dtype=torch.int8): perplexity and speed")
    ap.add_argument("--paced-tokens", type=int, default=0,
                    help="also feed this many tokens one per --paced-interval-ms, as a live stream (latency)")
    ap.add_argument("--paced-interval-ms", type=float, default=8.0)
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    if args.speed_block < 1 or args.stream_tokens < 1:
        ap.error("--speed-block and --stream-tokens must be at least 1")
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

    sparse8 = model.sparsify(masks, sparse.layouts if args.layout == "timed" else args.layout,
                             weight_dtype=torch.int8).eval() if args.int8 else None
    ppl_dense = perplexity_batch1(model, test)
    ppl_sparse = perplexity_batch1(sparse, test)
    ppl_int8 = perplexity_batch1(sparse8, test) if sparse8 is not None else None
    activity = sparse.activity()
    sample = test[: min(2000, test.numel())].unsqueeze(1)
    report = macs.count(model, sample, weight_masks=masks or None)
    stream = test[: args.stream_tokens]
    timing = {}
    for name, recurrent_only in (("recurrent layers", True), ("whole model", False)):
        timing[name] = interleaved_speed(model, sparse, stream, recurrent_only, args.speed_block, sparse8,
                                         args.paced_tokens, args.paced_interval_ms * 1e-3)
    result = {
        "checkpoint": args.checkpoint, "sparsity": ckpt.get("sparsity", 0.0), "test_tokens": int(test.numel()),
        "test_ppl_dense_model": ppl_dense, "test_ppl_kernels": ppl_sparse, "test_ppl_kernels_int8": ppl_int8,
        "activity": activity,
        "macs_per_token": report.totals, "macs_other": report.other,
        "macs_whole_model": {  # recurrent products plus the decoder (embedding lookups and biases aside)
            "dense": report.totals["dense"] + report.other["other nn.Linear (e.g. decoder)"],
            "kernels": report.totals["combined"] + report.other["other nn.Linear, zero inputs skipped"]},
        "batch1_speed": timing,
        "threads": torch.get_num_threads(), "layout": args.layout, "layouts": sparse.layouts,
    }
    print(report)
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
