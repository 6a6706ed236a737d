"""The S5 section of ``evsparse-bench``: the sparse linear RNN paper's denoiser shape (257 STFT bins ->
``S5Stack`` of 3 blocks at width scale k -> 257) per 8 ms frame at batch 1, hot loop and paced at one
call per 8 ms, side by side: the plan on the kernels (dense layout; 90% ERK-pruned in the automatic
layout, float32 and int8 weights, and pruned in 16x1 blocks, which the block path multiplies) against
a lean dense PyTorch step of the same folded model (what a user would write without evsparse) and the
training module's ``step``. Effective MACs per frame
(:mod:`evsparse.macs`, measured on the stream) and stored weight bytes beside each.

The models are randomly initialised (relufied, their BatchNorm statistics taken on the stream), not
trained: their activity is what it is (printed); ``examples/s5_denoise`` measures trained ones.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .. import macs, prune
from ..nn.s5 import S5Stack, fold_block, width_scale as width
from ..timing import time_paced
from .common import markdown_section, record_stream, section_parser, time_interleaved, write_section_report
from .paced import DEFAULT_INTERVAL_MS

DEFAULT_K = [0.5, 1.0]
STREAM = 32  # recorded (frame, state) pairs the timed calls rotate through
PLAN_DENSE, PLAN_SPARSE, PLAN_INT8 = "plan, dense", "plan, 90% ERK", "plan, 90% ERK, int8"
PLAN_BLOCKS = "plan, 90% ERK, 16x1 blocks"
TORCH_LEAN, TORCH_MODULE = "PyTorch dense (lean)", "PyTorch S5Stack.step"


def torch_dense_step(model: S5Stack) -> Callable:
    """A lean dense PyTorch step of ``model`` in eval mode (float32, BatchNorm/ZOH folded as the plan
    folds them, ``F.linear`` products, pruned zeros multiplied): ``y, state = step(x [B, in], state
    [L, B, P])``."""
    S = model.state_size // 2
    with torch.no_grad():
        f32 = lambda t: t.detach().float().contiguous()  # noqa: E731
        blocks = [({k: f32(v) for k, v in fold_block(b).items()}, f32(b.glu_weight), f32(b.glu_bias))
                  for b in model.blocks]
        enc = (f32(model.encoder_weight), f32(model.encoder_bias))
        dec = None if model.decoder_weight is None else (f32(model.decoder_weight), f32(model.decoder_bias))
    relu = model.relufied

    def step(x: torch.Tensor, state: torch.Tensor):
        z = F.linear(x, *enc)
        z = torch.relu(z) if relu else z
        states = []
        for k, (f, w2, b2) in enumerate(blocks):
            h = state[k]
            bu = F.linear(z, f["B"], f["b_in"])
            re = f["lambda_re"] * h[:, :S] - f["lambda_im"] * h[:, S:] + bu[:, :S]
            im = f["lambda_re"] * h[:, S:] + f["lambda_im"] * h[:, :S] + bu[:, S:]
            states.append(torch.cat([re, im], -1))
            if relu:
                keep = re > 0
                re, im = re * keep, im * keep
            y = F.linear(torch.cat([re, im], -1), f["C"]) + f["d_scale"] * z + f["d_shift"]
            x1 = torch.relu(y) if relu else F.gelu(y)
            z = x1 * torch.sigmoid(F.linear(x1, w2, b2)) + z
            z = torch.relu(z) if relu else z
        return (z if dec is None else F.linear(z, *dec)), torch.stack(states)

    return step


def masked_copy(model: S5Stack, masks: dict, k: float) -> S5Stack:
    """A copy of the report's ``model`` (257 -> 3 blocks at width ``k`` -> 257, eval mode, relufied as it
    is) with ``masks`` applied."""
    copy = S5Stack(257, num_layers=3, output_size=257, relufied=model.relufied, **width(k)).eval()
    copy.load_state_dict(model.state_dict())
    prune.apply_masks(copy, masks)
    return copy


def s5_stream(steps: int, generator: torch.Generator) -> torch.Tensor:
    """[steps, 1, 257] magnitude-like frames (dense, non-negative, slowly varying)."""
    base = torch.rand(1, 1, 257, generator=generator)
    return (base + 0.5 * torch.rand(steps, 1, 257, generator=generator)).abs()


def build_s5_methods(k: float, sparsity: float = 0.9, seed: int = 0):
    """The timed methods at width ``k`` and their MAC/memory report: ``(methods, info)``."""
    torch.manual_seed(seed)
    model = S5Stack(257, num_layers=3, output_size=257, relufied=True, **width(k))
    g = torch.Generator().manual_seed(seed)
    xs = s5_stream(256, g)
    with torch.no_grad():  # BatchNorm statistics of the stream, as training would leave them
        model.train()
        for blk in model.blocks:
            blk.norm.momentum = None
        model(xs)
    model.eval()
    masks = prune.erk_magnitude(model, sparsity)
    pruned = masked_copy(model, masks, k)
    block_masks = prune.erk_magnitude(model, sparsity, block=16)
    blocked = masked_copy(model, block_masks, k)
    plans = {PLAN_DENSE: model.sparsify(layout="dense"), PLAN_SPARSE: pruned.sparsify(masks),
             PLAN_INT8: pruned.sparsify(masks, weight_dtype=torch.int8), PLAN_BLOCKS: blocked.sparsify(block_masks)}
    pool = record_stream(plans[PLAN_SPARSE], xs[:STREAM])
    lean = torch_dense_step(model)
    methods = {name: (lambda a, p=p: p.step(a[0], a[1]), pool) for name, p in plans.items()}
    methods[TORCH_LEAN] = (lambda a: lean(a[0], a[1]), pool)
    methods[TORCH_MODULE] = (lambda a: model.step(a[0], a[1]), pool)
    dense_report = macs.count(model, xs[:STREAM * 4])
    sparse_report = macs.count(pruned, xs[:STREAM * 4], masks)
    block_report = macs.count(blocked, xs[:STREAM * 4], block_masks)
    info = {"k": k, "d_model": model.d_model, "state_size": model.state_size,
            "activity": pruned.activity(), "dense_macs": dense_report.totals["dense"],
            "effective_macs_dense_model": dense_report.totals["combined"],
            "effective_macs_sparse_model": sparse_report.totals["combined"],
            "effective_macs_block_model": block_report.totals["combined"],
            "weight_bytes": {name: p.weight_bytes() for name, p in plans.items()}}
    return methods, info


def s5_section(ks, reps: int, interval_ms: float = DEFAULT_INTERVAL_MS, paced_samples: int = 200) -> list[dict]:
    rows = []
    for k in ks:
        methods, info = build_s5_methods(k)
        hot = time_interleaved(methods, reps)
        paced = time_paced(methods, interval_ms * 1e-3, paced_samples) if paced_samples > 0 else {}
        info["hot_us"] = {n: v * 1e6 for n, v in hot.items()}
        info["paced_us"] = {n: [v[0] * 1e6, v[1] * 1e6] for n, v in paced.items()}
        info["interval_ms"] = interval_ms
        rows.append(info)
    return rows


def to_markdown(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    names = list(rows[0]["hot_us"])
    lines = markdown_section(
        "S5 denoiser step, batch 1 (257 -> 3 relufied blocks -> 257; us per 8 ms frame)",
        "Untrained models (random init); activity: the fraction of nonzero outputs of each block. Effective MACs = nonzero input x nonzero "
        "weight per product, measured on the stream (`evsparse.macs`), for the dense, the 90% ERK-pruned and the "
        "16x1-block-pruned model; "
        "KB: stored weights. Hot: interleaved loop; paced: one call per "
        f"{rows[0]['interval_ms']:g} ms, median (p99).",
        ["k (H, P)", "activity", "dense MACs", "effective: dense / 90% / blocks", "KB: dense / 90% / int8"]
        + [f"{n}: hot" for n in names] + [f"{n}: paced" for n in names])
    for r in rows:
        wb = r["weight_bytes"]
        acts = ", ".join(f"{a:.0%}" for a in r["activity"][1:])
        paced = [f"{r['paced_us'][n][0]:.0f} ({r['paced_us'][n][1]:.0f})" if n in r["paced_us"] else "-"
                 for n in names]
        lines.append(f"| {r['k']:g} ({r['d_model']}, {r['state_size']}) | {acts} | {r['dense_macs'] / 1e3:.0f}K | "
                     f"{r['effective_macs_dense_model'] / 1e3:.0f}K / {r['effective_macs_sparse_model'] / 1e3:.0f}K / "
                     f"{r['effective_macs_block_model'] / 1e3:.0f}K | "
                     f"{wb[PLAN_DENSE] / 1e3:.0f} / {wb[PLAN_SPARSE] / 1e3:.0f} / {wb[PLAN_INT8] / 1e3:.0f} | "
                     + " | ".join(f"{r['hot_us'][n]:.1f}" for n in names) + " | " + " | ".join(paced) + " |")
    return lines


def main(argv=None) -> int:
    ap = section_parser("python -m evsparse.bench.s5", __doc__, "bench-out-s5")
    ap.add_argument("--k", type=float, nargs="+", default=DEFAULT_K, help="width scales (H = 192 k, P = 256 k)")
    ap.add_argument("--interval-ms", type=float, default=DEFAULT_INTERVAL_MS)
    ap.add_argument("--paced-samples", type=int, default=200)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = s5_section(args.k, args.reps, args.interval_ms, args.paced_samples)
    return write_section_report(args, "S5 denoiser step", "s5", rows, to_markdown(rows))


if __name__ == "__main__":
    raise SystemExit(main())
