"""Prune a trained PTB model to a target weight sparsity and fine-tune it with the masks kept applied.

    python examples/ptb/prune_finetune.py --data ../shared/data/ptb --checkpoint runs/small.pt \\
        --sparsity 0.8 --epochs 2 --save runs/small-s80.pt

Global magnitude pruning over the EGRU input and recurrent weights (embedding/decoder/biases/thresholds
excluded; single weights, or whole 16x1 blocks with --block 16), ramped on a cubic schedule over the first half of fine-tuning, then held; with
--lr-schedule cosine the learning rate decays per batch from --lr to 0 at the last epoch. The saved
checkpoint has the masks, which eval.py passes to sparsify().
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model import build  # noqa: E402
from train import add_training_args, batches_per_epoch, evaluate, lr_schedule, setup, train_epoch  # noqa: E402

from evsparse import prune  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_training_args(ap)
    ap.add_argument("--checkpoint", required=True, help="dense model from train.py")
    ap.add_argument("--sparsity", type=float, required=True)
    ap.add_argument("--save", required=True)
    ap.add_argument("--block", type=int, default=1, choices=prune.BLOCKS,
                    help="16: prune whole 16x1 blocks (16 output rows of one input column), which the sparse layout "
                         "multiplies one vector operation per block")
    ap.set_defaults(epochs=2, lr=1e-3)
    args = ap.parse_args(argv)
    _, train_data, valid_data = setup(args)
    ckpt = torch.load(args.checkpoint, weights_only=False)
    model = build(ckpt["vocab_size"], ckpt["config"])
    model.load_state_dict(ckpt["model"])
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)

    steps_per_epoch = batches_per_epoch(train_data, args.bptt)
    ramp_end = max(1, (args.epochs * steps_per_epoch) // 2)
    schedule = lr_schedule(opt, args, args.epochs * steps_per_epoch)
    pruner = prune.IterativePruner(model, opt, args.sparsity, start_step=0, end_step=ramp_end,
                                   every=max(1, ramp_end // 20), block=args.block)
    counter = {"step": 0}

    def on_step():
        pruner.step(counter["step"])
        counter["step"] += 1
        if schedule is not None:
            schedule.step()

    pruner.step(0)
    history = []
    deadline = time.time() + 60 * args.max_minutes if args.max_minutes else None
    for epoch in range(1, args.epochs + 1):
        t0 = time.time()
        stats = train_epoch(model, opt, train_data, args, progress=not args.quiet, on_step=on_step, deadline=deadline)
        cut_short = deadline is not None and time.time() > deadline
        if epoch == args.epochs or cut_short:
            pruner.step(ramp_end)  # the final sparsity, also when the time budget cut the ramp short
        stats.update(epoch=epoch, sparsity=prune.sparsity_of(model), valid_ppl=evaluate(model, valid_data, args.bptt),
                     seconds=time.time() - t0, lr=opt.param_groups[0]["lr"])
        history.append(stats)
        print(json.dumps(stats), flush=True)
        if cut_short:
            break
    Path(args.save).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "masks": pruner.masks, "sparsity": args.sparsity,
                "config": ckpt["config"], "vocab_size": ckpt["vocab_size"], "history": history,
                "parent": args.checkpoint, "args": vars(args)}, args.save)


if __name__ == "__main__":
    main()
