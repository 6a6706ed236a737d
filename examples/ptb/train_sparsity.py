"""How sparse the fused training op's products are while a PTB checkpoint trains: per EGRU layer, on
training batches in training mode (dropout and DropConnect on, as the optimiser sees them), the
activity (the fraction of units that fired: what the forward recurrent product and dR read) and the
fraction of recurrent-input gradients dy_{t-1} the backward must form (fired, or inside the
surrogate's support; docs/guide/egru-training.md).

    python examples/ptb/train_sparsity.py --data ../shared/data/ptb --checkpoint runs/small.pt --batches 20
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data import Corpus, batches, batchify, data_dir  # noqa: E402
from model import build  # noqa: E402

from evsparse.bench.egru_train import fused_forward, sparsity_counts  # noqa: E402
from evsparse.functional import dropconnect  # noqa: E402


@torch.no_grad()
def layer_sparsity(layer, x: torch.Tensor, state) -> tuple[dict, torch.Tensor, tuple]:
    """One EGRU layer (one of the model's single-layer EGRUs) over ``x`` [T, B, in] as training runs it
    (DropConnect on): its counts, its output and its last state."""
    w_hh = layer.layer_params(0)[1]
    if layer.dropconnect > 0:
        w_hh = dropconnect(w_hh, layer.dropconnect)  # as EGRU.forward draws it
    ys, c, saved = fused_forward(layer, x, state, w_hh)
    return sparsity_counts(layer, ys, saved), ys, (c[None], ys[-1][None])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--bptt", type=int, default=35)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    ckpt = torch.load(args.checkpoint, weights_only=False)
    corpus = Corpus(data_dir(args.data))
    model = build(ckpt["vocab_size"], ckpt["config"])
    model.load_state_dict(ckpt["model"])
    model.train()
    train = batchify(corpus.train, args.batch_size)
    totals = [{"units": 0, "fired": 0, "dy_needed": 0} for _ in model.layers]
    states = [None] * len(model.layers)
    for n, (_, x, _) in enumerate(batches(train, args.bptt)):
        if n == args.batches:
            break
        h = model.drop(model.embedding(x))
        for k, layer in enumerate(model.layers):
            counts, h, states[k] = layer_sparsity(layer, h, states[k])
            h = model.drop(h)
            for key, v in counts.items():
                totals[k][key] += v
    result = {"checkpoint": args.checkpoint, "batches": args.batches, "batch_size": args.batch_size, "bptt": args.bptt,
              "layers": [{"activity": t["fired"] / t["units"], "dy_needed": t["dy_needed"] / t["units"]}
                         for t in totals]}
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
