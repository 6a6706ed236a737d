"""Train the EGRU language model on word-level Penn Treebank.

    python examples/ptb/train.py --data ../shared/data/ptb --config small --epochs 8 --save runs/small.pt
    python examples/ptb/train.py --data ... --resume runs/small.pt          # continue where it stopped

Truncated BPTT (state carried, gradients cut every --bptt tokens), AdamW (weight decay is the
activity knob), gradient clipping, an optional activity penalty, a checkpoint of the best validation
perplexity each epoch (model, optimizer, epoch, arguments, history).
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
from data import Corpus, batches, batchify, data_dir  # noqa: E402
from model import CONFIGS, build  # noqa: E402


def detach(state):
    return [None if s is None else (s[0].detach(), s[1].detach()) for s in state]


@torch.no_grad()
def evaluate(model, source: torch.Tensor, bptt: int) -> float:
    """Perplexity of the model (in its current mode) on a batchified source."""
    model.eval()
    state, total, count = model.init_state(), 0.0, 0
    for _, x, y in batches(source, bptt):
        logits, state = model(x, state)
        total += F.cross_entropy(logits.view(-1, logits.shape[-1]), y.reshape(-1), reduction="sum").item()
        count += y.numel()
    return math.exp(total / max(count, 1))


def train_epoch(model, opt, source, args, progress=True, on_step=None, deadline=None) -> dict:
    model.train()
    state, total, count, acts, done = model.init_state(), 0.0, 0, [], 0
    n_batches = batches_per_epoch(source, args.bptt)
    bar = None
    if progress:
        try:
            from tqdm import tqdm  # (the bench extra; without it, no progress bar)

            bar = tqdm(total=n_batches, desc="train", unit="batch", leave=False)
        except ImportError:
            bar = None
    for _, x, y in batches(source, args.bptt):
        state = detach(state)
        logits, state = model(x, state)
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), y.reshape(-1))
        full = loss + args.activity_penalty * model.activity_loss() if args.activity_penalty else loss
        opt.zero_grad(set_to_none=True)
        full.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        if on_step is not None:
            on_step()
        done += 1
        total += loss.item() * y.numel()
        count += y.numel()
        acts.append(model.activity())
        if bar is not None:
            bar.update(1)
            bar.set_postfix(ppl=f"{math.exp(total / count):.1f}", act=f"{sum(acts[-1]) / len(acts[-1]):.3f}")
        if deadline is not None and time.time() > deadline:
            break
    if bar is not None:
        bar.close()
    layer_acts = [sum(a[k] for a in acts) / len(acts) for k in range(len(acts[0]))] if acts else []
    return {"train_ppl": math.exp(total / max(count, 1)), "activity": layer_acts, "batches": done}


def last_path(save: str) -> Path:
    p = Path(save)
    return p.with_name(p.stem + ".last" + p.suffix)


def setup(args):
    """Threads, seed and data shared by the training scripts: (corpus, train batches, valid batches)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    corpus = Corpus(data_dir(args.data))
    train = corpus.train[: args.max_train_tokens] if args.max_train_tokens else corpus.train
    return corpus, batchify(train, args.batch_size), batchify(corpus.valid, 10)


def add_training_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--data", default=None, help="folder with ptb.{train,valid,test}.txt (or $EVSPARSE_DATA/ptb)")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--bptt", type=int, default=35)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--weight-decay", type=float, default=0.1, help="AdamW; drives activity down")
    ap.add_argument("--clip", type=float, default=0.25)
    ap.add_argument("--activity-penalty", type=float, default=0.0)
    ap.add_argument("--max-minutes", type=float, default=None,
                    help="stop after this long: no epoch is started that the last one's duration says would not end "
                         "in time; one cut short is not counted (its updates are kept; --resume runs it again)")
    ap.add_argument("--lr-schedule", choices=["constant", "cosine"], default="constant",
                    help="cosine: the learning rate decays per batch from --lr to 0 over --epochs")
    ap.add_argument("--max-train-tokens", type=int, default=None, help="use only the first N training tokens")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--no-fused", action="store_true",
                    help="train the EGRU layers with their Python loop over time (the reference), not the fused op")


def batches_per_epoch(train_data, bptt: int) -> int:
    return max(1, (train_data.shape[0] - 1 + bptt - 1) // bptt)


def lr_schedule(opt, args, total_steps: int):
    """--lr-schedule as a per-batch scheduler (None for constant): cosine decays from --lr to 0 at total_steps."""
    if args.lr_schedule != "cosine":
        return None
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_training_args(ap)
    ap.add_argument("--config", choices=sorted(CONFIGS), default="small")
    ap.add_argument("--save", default="runs/ptb-small.pt")
    ap.add_argument("--resume", default=None, help="checkpoint to continue from (train writes <save>.last.pt)")
    args = ap.parse_args(argv)
    corpus, train_data, valid_data = setup(args)

    model = build(corpus.vocab_size, args.config)
    for layer in model.layers:
        layer.fused = not args.no_fused
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    n_batches = batches_per_epoch(train_data, args.bptt)
    schedule = lr_schedule(opt, args, args.epochs * n_batches)
    start_epoch, history, best = 1, [], float("inf")
    if args.resume:
        ckpt = torch.load(args.resume, weights_only=False)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        if schedule is not None and ckpt.get("schedule") is not None:
            schedule.load_state_dict(ckpt["schedule"])
        start_epoch, history, best = ckpt["epoch"] + 1, ckpt["history"], ckpt["best_valid_ppl"]
    deadline = time.time() + 60 * args.max_minutes if args.max_minutes else None
    Path(args.save).parent.mkdir(parents=True, exist_ok=True)
    for epoch in range(start_epoch, args.epochs + 1):
        if deadline is not None and history and time.time() + history[-1]["seconds"] > deadline:
            print(f"stopped: --max-minutes {args.max_minutes} leaves too little for epoch {epoch}", flush=True)
            break
        t0 = time.time()
        stats = train_epoch(model, opt, train_data, args, progress=not args.quiet, deadline=deadline,
                            on_step=None if schedule is None else schedule.step)
        complete = stats.pop("batches") == n_batches
        valid = evaluate(model, valid_data, args.bptt)
        stats.update(epoch=epoch, valid_ppl=valid, seconds=time.time() - t0, lr=opt.param_groups[0]["lr"],
                     complete=complete)
        print(json.dumps(stats), flush=True)
        if not complete:  # cut short by --max-minutes: not counted, so --resume runs this epoch again
            epoch -= 1
        else:
            history.append(stats)
        best = min(best, valid)
        ckpt = {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch, "history": history,
                "best_valid_ppl": best, "config": args.config, "vocab_size": corpus.vocab_size, "args": vars(args),
                "schedule": None if schedule is None else schedule.state_dict()}
        torch.save(ckpt, last_path(args.save))  # what --resume continues from
        if valid <= best:
            torch.save(ckpt, args.save)
        if deadline is not None and time.time() > deadline:
            print(f"stopped: --max-minutes {args.max_minutes} reached in epoch {stats['epoch']}", flush=True)
            break
    return best


if __name__ == "__main__":
    main()
