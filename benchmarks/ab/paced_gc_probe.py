"""Does Python's garbage collector make the paced tail? The PTB model on the kernels (whole model:
embedding, EGRU layers, decoder) fed one token per 8 ms, with the collector on and off, alternating.

    python benchmarks/ab/paced_gc_probe.py --data ../shared/data/ptb --checkpoint runs/small-s80.pt
"""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

import torch

PTB = Path(__file__).resolve().parents[2] / "examples" / "ptb"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--tokens", type=int, default=300)
    ap.add_argument("--trials", type=int, default=2)
    ap.add_argument("--interval-ms", type=float, default=8.0)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(PTB))
    import eval as ptb_eval  # noqa: E402  (examples/ptb/eval.py)
    from data import Corpus, data_dir  # noqa: E402
    from model import build  # noqa: E402

    corpus = Corpus(data_dir(args.data))
    ckpt = torch.load(args.checkpoint, weights_only=False)
    model = build(ckpt["vocab_size"], ckpt["config"]).eval()
    model.load_state_dict(ckpt["model"])
    sparse = model.sparsify(ckpt.get("masks") or {}).eval()
    tokens = corpus.test[: args.tokens]
    for _ in range(args.trials):
        for on in (True, False):
            (gc.enable if on else gc.disable)()
            stream = ptb_eval._Stream(sparse.embedding, [layer.step for layer in sparse.layers], sparse.decoder, False)
            stream.seconds_per_token(tokens[:20])
            r = ptb_eval.paced_latency({"kernels": stream}, tokens, args.interval_ms * 1e-3)["kernels"]
            print(f"gc {'on ' if on else 'off'}: median {r['median_us']:.0f} us, p99 {r['p99_us']:.0f} us", flush=True)
    gc.enable()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
