"""Streaming speech denoising with a SparseLinearRNN: train, prune, fine-tune, measure.

    python examples/linear_rnn/run.py --out examples/linear_rnn/results            # ~25 min on 2 cores
    python examples/linear_rnn/run.py --config tiny --train-steps 20 --finetune-steps 5 --out /tmp/lrnn

1. Trains the dense model on freshly generated mixtures (negative SI-SNR of the masked, resynthesised
   waveform, plus an L1 activity penalty on the ReLU outputs).
2. For each sparsity: global magnitude pruning of the recurrent layers' weights
   (:func:`evsparse.prune.global_magnitude`), masks kept through fine-tuning.
3. Evaluates every model on a fixed seeded test set: SI-SNR improvement (dense masked model and the
   same model on the kernels, ``rnn.sparsify()``), MACs per 16 ms frame (:func:`evsparse.macs.count`,
   activities measured on the test set) and per-frame latency at batch 1 of the recurrent stack on the
   kernels against a plain dense PyTorch step, timed side by side.
Writes ``results.json`` and ``results.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model import CONFIGS, build  # noqa: E402
from signals import HOP, SAMPLE_RATE, mixtures, si_snr  # noqa: E402

from evsparse import macs, prune  # noqa: E402
from evsparse.timing import time_interleaved  # noqa: E402
from evsparse.bench.common import record_stream  # noqa: E402
from evsparse.bench.linear_rnn import torch_dense_step  # noqa: E402
from evsparse.bench.paced import time_paced  # noqa: E402

FRAME_S = HOP / SAMPLE_RATE  # one model step per hop: 16 ms, the pace of a live stream


def train(model, steps: int, args, masks=None, desc="train", seed=0) -> list[float]:
    """Adam with a cosine learning rate; returns the SI-SNR (dB) of each logged step."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    handle = prune.keep_applied(opt, model, masks) if masks else None
    log, t0 = [], time.time()
    model.train()
    for step in range(steps):
        noisy, clean = mixtures(gen, args.batch, args.seconds)
        quality = si_snr(model(noisy), clean).mean()
        loss = -quality + args.activity_penalty * model.rnn.activity_loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        sched.step()
        if step % 25 == 0 or step == steps - 1:
            log.append(quality.item())
            print(f"{desc} step {step:5d}  SI-SNR {quality.item():6.2f} dB  activity "
                  f"{[round(a, 3) for a in model.rnn.activity()]}  {time.time() - t0:6.0f} s", flush=True)
    if handle is not None:
        handle.remove()
    model.eval()
    return log


@torch.no_grad()
def evaluate(model, test, masks=None) -> dict:
    noisy, clean = test
    model.eval()
    base = si_snr(noisy, clean)
    dense_out = model(noisy)
    rnn_masks = prune.masks_for(model.rnn, masks, "rnn.") if masks else None
    packed = model.rnn.sparsify(rnn_masks)
    kernel_out = model(noisy, rnn=packed)
    packed8 = model.rnn.sparsify(rnn_masks, weight_dtype=torch.int8)  # int8 weights, one scale per input
    int8_out = model(noisy, rnn=packed8)
    _, feats = model.inputs(noisy)
    report = macs.count(model.rnn, feats, rnn_masks)
    return {
        "si_snr_noisy_dB": float(base.mean()),
        "si_snri_dB": float((si_snr(dense_out, clean) - base).mean()),
        "si_snri_kernels_dB": float((si_snr(kernel_out, clean) - base).mean()),
        "max_abs_diff_kernels_vs_dense": float((kernel_out - dense_out).abs().max()),
        "si_snri_int8_dB": float((si_snr(int8_out, clean) - base).mean()),
        "max_abs_diff_int8_vs_kernels": float((int8_out - kernel_out).abs().max()),
        "rel_diff_int8_vs_kernels": float((int8_out - kernel_out).norm() / kernel_out.norm()),
        "activity": model.rnn.activity(),
        "macs_per_frame": report.totals,
        "macs_table": str(report),
        "layouts": packed.layouts,
        "layouts_int8": packed8.layouts,
    }, (packed, packed8), feats


def latency(model, packed, feats, reps: int, paced_samples: int) -> dict:
    """us per 16 ms frame at batch 1 of the recurrent stack: kernels (float32 and int8 weights) vs plain
    dense PyTorch, on a recorded stream of real (frame, state) pairs; hot (interleaved blocks, medians)
    and paced (one call per 16 ms frame, as a live stream: median and p99)."""
    packed32, packed8 = packed
    dense = torch_dense_step(model.rnn)
    pool = record_stream(packed32, [feats[0, t:t + 1].contiguous() for t in range(min(64, feats.shape[1]))])
    methods = {"kernels": (lambda a: packed32.step(a[0], a[1]), pool),
               "kernels int8": (lambda a: packed8.step(a[0], a[1]), pool),
               "dense": (lambda a: dense(a[0], a[1]), pool)}
    t = time_interleaved(methods, reps)
    res = {"kernels_us": t["kernels"] * 1e6, "kernels_int8_us": t["kernels int8"] * 1e6, "dense_us": t["dense"] * 1e6,
           "speedup": t["dense"] / t["kernels"], "frame_ms": FRAME_S * 1e3}
    if paced_samples > 0:
        paced = time_paced(methods, FRAME_S, paced_samples)
        for name, (median, p99) in paced.items():
            key = name.replace(" ", "_")
            res[f"paced_{key}_us"], res[f"paced_{key}_p99_us"] = median * 1e6, p99 * 1e6
        res["realtime_factor_paced"] = paced["kernels"][0] / FRAME_S  # share of the frame the step takes
    return res


def to_markdown(rows: list[dict], meta: dict) -> str:
    lines = [f"# Sparse linear RNN denoiser — {meta['date']}, {meta['machine']}", "",
             f"Config `{meta['config']}` ({meta['train_steps']} training steps, {meta['finetune_steps']} fine-tuning "
             f"steps per sparsity, batch {meta['batch']} x {meta['seconds']} s). Test set: {meta['test_clips']} clips "
             f"x {meta['test_seconds']} s, SNR -5..10 dB, input SI-SNR {rows[0]['si_snr_noisy_dB']:.2f} dB. "
             "MACs per 16 ms frame of the recurrent stack (decoder excluded), activities measured on the test set; "
             "latency per frame at batch 1, recurrent stack: hot (median of interleaved blocks) and paced (one "
             "call per 16 ms frame, the methods in turn: median and p99); real-time factor = paced kernel "
             "latency / 16 ms. int8: the same model sparsified with weight_dtype=torch.int8.", "",
             "| weight sparsity | SI-SNRi dB (dense masked) | SI-SNRi dB (kernels) | SI-SNRi dB (int8 kernels) | "
             "activity per layer | dense MACs | weight-sparse | activity-sparse | combined | theoretical | kernels us | "
             "int8 kernels us | dense PyTorch us | measured | paced kernels us (p99) | paced int8 us (p99) | "
             "paced dense us (p99) | real-time factor (paced) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m = r["macs_per_frame"]
        lat = r["latency"]
        paced = " | ".join(f"{lat[f'paced_{k}_us']:.1f} ({lat[f'paced_{k}_p99_us']:.0f})" if f"paced_{k}_us" in lat
                           else "-" for k in ("kernels", "kernels_int8", "dense"))
        rtf = f"{lat['realtime_factor_paced']:.4f}" if "realtime_factor_paced" in lat else "-"
        lines.append(f"| {r['sparsity']:.0%} | {r['si_snri_dB']:.2f} | {r['si_snri_kernels_dB']:.2f} | "
                     f"{r['si_snri_int8_dB']:.2f} | "
                     f"{', '.join(f'{a:.1%}' for a in r['activity'])} | {m['dense'] / 1e3:.0f}K | "
                     f"{m['weight_sparse'] / 1e3:.0f}K | {m['activity_sparse'] / 1e3:.0f}K | {m['combined'] / 1e3:.0f}K | "
                     f"{m['dense'] / m['combined']:.1f}x | {lat['kernels_us']:.1f} | {lat['kernels_int8_us']:.1f} | "
                     f"{lat['dense_us']:.1f} | {lat['speedup']:.1f}x | {paced} | {rtf} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", choices=sorted(CONFIGS), default="small")
    ap.add_argument("--complex", action="store_true", help="complex-diagonal recurrence")
    ap.add_argument("--train-steps", type=int, default=1500)
    ap.add_argument("--finetune-steps", type=int, default=300)
    ap.add_argument("--sparsities", type=float, nargs="*", default=[0.5, 0.8, 0.9])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=2.0, help="length of each training clip")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--activity-penalty", type=float, default=1.0)
    ap.add_argument("--test-clips", type=int, default=64)
    ap.add_argument("--test-seconds", type=float, default=4.0)
    ap.add_argument("--reps", type=int, default=9, help="interleaved timing rounds")
    ap.add_argument("--paced-samples", type=int, default=200,
                    help="paced calls per method, one per 16 ms frame (0: hot loop only)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    test = mixtures(torch.Generator().manual_seed(1234), args.test_clips, args.test_seconds)

    model = build(args.config, args.complex)
    history = {"dense": train(model, args.train_steps, args, seed=args.seed)}
    rows = []
    for sparsity in [0.0] + list(args.sparsities):
        m, masks = model, None
        if sparsity > 0:
            m = copy.deepcopy(model)
            masks = prune.global_magnitude(m, sparsity)
            prune.apply_masks(m, masks)
            history[f"s{sparsity}"] = train(m, args.finetune_steps, args, masks, desc=f"fine-tune {sparsity:.0%}",
                                             seed=args.seed + 1 + len(rows))
        res, packed, feats = evaluate(m, test, masks)
        res["sparsity"] = sparsity
        res["measured_weight_sparsity"] = prune.sparsity_of(m.rnn)
        res["latency"] = latency(m, packed, feats, args.reps, args.paced_samples)
        print(f"sparsity {sparsity:.0%}: SI-SNRi {res['si_snri_dB']:.2f} dB (kernels {res['si_snri_kernels_dB']:.2f}, "
              f"int8 {res['si_snri_int8_dB']:.2f}), "
              f"combined MACs {res['macs_per_frame']['combined'] / 1e3:.0f}K, kernels {res['latency']['kernels_us']:.1f} us "
              f"vs dense {res['latency']['dense_us']:.1f} us", flush=True)
        rows.append(res)
    import platform

    meta = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, "
            f"torch {torch.__version__}", "config": args.config, "complex": args.complex,
            "train_steps": args.train_steps, "finetune_steps": args.finetune_steps, "batch": args.batch,
            "seconds": args.seconds, "test_clips": args.test_clips, "test_seconds": args.test_seconds,
            "activity_penalty": args.activity_penalty}
    (args.out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows, "history": history}, indent=1))
    md = to_markdown(rows, meta)
    (args.out / "results.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
