"""The sparse linear RNN paper's experiment (Pierro et al., 2025) scaled to a 2-core CPU: a dense (GELU) and a
sparse (relufied, 90% ERK iterative magnitude pruning) family of S5 denoisers over width scales k, trained
here on synthesised real speech in noise (speech.py), then measured: SI-SNR / SI-SNRi on held-out speakers
and texts, effective MACs per 8 ms frame (evsparse.macs.count), stored weight memory, and microseconds per
frame on the kernels (hot loop and paced at 8 ms) against a dense PyTorch step.

    python examples/s5_denoise/run.py --out examples/s5_denoise/results

Phases: every model not yet in ``--out/ckpt`` is trained (dense first: each sparse model starts from the
dense checkpoint of its width, as the paper's recipe does), then everything is evaluated and timed, and
``results.{json,md,png}`` are written. Re-running skips the trained models.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import denoiser as D  # noqa: E402
import speech  # noqa: E402

import evsparse  # noqa: E402
from evsparse import macs, prune  # noqa: E402
from evsparse.bench.common import cpu_name  # noqa: E402

CONFIGS = {  # name -> (train steps, retrain steps, batch, seconds per clip, train utterances per speaker)
    "default": (600, 600, 16, 2.0, 24),
    "tiny": (3, 3, 2, 0.5, 1),
}


def optimizer(model: D.Denoiser, lr: float) -> torch.optim.Optimizer:
    """The reference's split: Adam at ``lr`` for the S5 parameters and BatchNorm, AdamW at 4 ``lr`` with
    weight decay 0.04 for the encoder, decoder and GLU."""
    ssm, other = [], []
    for name, p in model.net.named_parameters():
        (ssm if (".s5." in name or ".norm." in name) else other).append(p)
    return torch.optim.AdamW([{"params": ssm, "lr": lr, "weight_decay": 0.0},
                              {"params": other, "lr": 4 * lr, "weight_decay": 0.04}])


def train(model: D.Denoiser, corpus: speech.Corpus, steps: int, args, seed: int, pruner_sparsity: float = 0.0,
          log=print, block: int = 1) -> dict:
    """Warmup (5%) + cosine; with ``pruner_sparsity`` an ERK IterativePruner on the cubic schedule from 5%
    to 75% of the steps (masks every ``steps // 24`` steps), the rest at the final sparsity; ``block=16``
    prunes whole 16x1 blocks (the kernels' block path)."""
    batch, seconds = CONFIGS[args.config][2:4]
    opt = optimizer(model, args.lr)
    base = [g["lr"] for g in opt.param_groups]
    warm = max(1, steps // 20)
    pruner = None
    if pruner_sparsity:
        pruner = prune.IterativePruner(model.net, opt, pruner_sparsity, start_step=max(1, steps // 20),
                                       end_step=max(2, int(0.75 * steps)), every=max(1, steps // 24),
                                       allocation="erk", block=block)
    rng = np.random.default_rng(seed)
    samples = int(seconds * speech.SAMPLE_RATE)
    model.train()
    history, t0 = [], time.time()
    for step in range(1, steps + 1):
        f = step / warm if step <= warm else 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))
        for g, b in zip(opt.param_groups, base):
            g["lr"] = b * f
        noisy, clean = (torch.from_numpy(a) for a in corpus.batch(rng, batch, samples))
        loss, s = D.loss(model, noisy, clean)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if pruner is not None:
            pruner.step(step)
        history.append(float(s.mean()))
        if step % 50 == 0 or step == steps:
            log(f"  step {step}/{steps}: SI-SNR {np.mean(history[-50:]):.2f} dB"
                + (f", sparsity {pruner.sparsity:.2f}" if pruner else "") + f" ({time.time() - t0:.0f} s)")
    if pruner is not None:
        pruner.remove()
    return {"masks": pruner.masks if pruner else {}, "train_seconds": time.time() - t0,
            "final_train_si_snr": float(np.mean(history[-50:]))}


FAMILIES = ("dense", "dense, retrained", "sparse")  # the iso-accuracy reference is the equal-budget "dense, retrained"


def models_to_train(args) -> list[tuple[str, float, str]]:
    """(name, k, family): "dense" (GELU, trained from scratch), "dense, retrained" (the same checkpoint
    trained as long again without pruning: the sparse models' training budget; skipped with
    ``--no-retrained-dense``) and "sparse" (relufied and pruned to 90% ERK while retrained from the dense
    checkpoint, the paper's recipe; one per ``--block``: ``sparse-k2`` unstructured, ``sparse-b16-k2`` in
    16x1 blocks)."""
    retrained = [] if args.no_retrained_dense else [(f"dense-x2-k{k:g}", k, "dense, retrained") for k in args.dense_k]
    return ([(f"dense-k{k:g}", k, "dense") for k in args.dense_k] + retrained
            + [(sparse_name(k, b), k, "sparse") for b in args.block for k in args.sparse_k])


def sparse_name(k: float, block: int) -> str:
    return f"sparse-k{k:g}" if block == 1 else f"sparse-b{block}-k{k:g}"


def block_of(name: str) -> int:
    """The pruning block of a sparse model's name (sparse_name's inverse): 1 or 16."""
    return int(name.split("-")[1][1:]) if name.startswith("sparse-b") else 1


def train_phase(args, log) -> None:
    ckpt = args.out / "ckpt"
    ckpt.mkdir(parents=True, exist_ok=True)
    steps, resteps, _, _, per_speaker = CONFIGS[args.config]
    corpus = None
    todo = [m for m in models_to_train(args) if not (ckpt / f"{m[0]}.pt").exists()]
    for k in sorted({k for _, k, _ in todo}):  # every retrained model starts from its width's dense checkpoint
        if (ckpt / f"dense-k{k:g}.pt").exists():
            continue
        corpus = corpus or speech.Corpus("train", args.ptb, per_speaker, args.seed, args.cache)
        log(f"train dense k={k:g} ({corpus.seconds / 60:.1f} min of training speech)")
        torch.manual_seed(args.seed)
        model = D.Denoiser(k, relufied=False)
        info = train(model, corpus, steps, args, args.seed + 10, log=log)
        torch.save({"state": model.state_dict(), "k": k, "relufied": False, "masks": {}, **info},
                   ckpt / f"dense-k{k:g}.pt")
    for name, k, family in todo:
        if family == "dense":  # trained above
            continue
        corpus = corpus or speech.Corpus("train", args.ptb, per_speaker, args.seed, args.cache)
        sparse = family == "sparse"
        block = block_of(name)
        log(f"retrain {'relufied + 90% ERK pruned' if sparse else 'dense (GELU), no pruning'}"
            f"{' in 16x1 blocks' if block > 1 else ''} k={k:g} from dense-k{k:g}")
        model = D.Denoiser(k, relufied=sparse)
        model.load_state_dict(torch.load(ckpt / f"dense-k{k:g}.pt", weights_only=True)["state"])
        info = train(model, corpus, resteps, args, args.seed + 20, pruner_sparsity=args.sparsity if sparse else 0.0,
                     log=log, block=block)
        torch.save({"state": model.state_dict(), "k": k, "relufied": sparse, "block": block, **info},
                   ckpt / f"{name}.pt")


def load(path: Path) -> tuple[D.Denoiser, dict, dict]:
    ck = torch.load(path, weights_only=True)
    model = D.Denoiser(ck["k"], relufied=ck["relufied"])
    model.load_state_dict(ck["state"])
    return model.eval(), ck.get("masks", {}), ck


@torch.no_grad()
def quality(model: D.Denoiser, packed, noisy: torch.Tensor, spec: torch.Tensor, feats: torch.Tensor,
            clean: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Mean SI-SNR (dB) of the cleaned test clips: the module's when ``packed`` is None, else with the mask
    computed by ``packed`` (the plan on the kernels, one sequence op over the batch) from the clips'
    ``spec`` and ``feats`` (``Denoiser.features``)."""
    if packed is None:
        wave, _ = model(noisy)
    else:
        mask, _ = packed(feats)
        wave, _ = D.Denoiser.resynthesise(spec, mask, noisy.shape[-1])
    return float(D.si_snr(wave, clean).mean()), wave


def latency_methods(model: D.Denoiser, plans: dict, feats: torch.Tensor) -> dict:
    """The timed calls of one model: a step of each plan and of the lean dense PyTorch step of the
    same model, at batch 1, on (frame, state) pairs recorded from a test clip."""
    from evsparse.bench.common import record_stream
    from evsparse.bench.s5 import torch_dense_step

    pool = record_stream(next(iter(plans.values())), [feats[0, t:t + 1].contiguous() for t in range(64)])
    lean = torch_dense_step(model.net)
    methods = {name: (lambda a, p=p: p.step(a[0], a[1]), pool) for name, p in plans.items()}
    methods["PyTorch dense"] = (lambda a: lean(a[0], a[1]), pool)
    return methods


def time_all(methods: dict, args) -> dict:
    """Every model's methods timed together, side by side: one interleaved hot-loop run and one paced
    run (a call per 8 ms, the methods taking turns). ``{model: {method: {hot_us, paced_us, paced_p99_us}}}``."""
    from evsparse.bench.paced import time_paced
    from evsparse.timing import time_interleaved

    flat = {(m, n): fn for m, ms in methods.items() for n, fn in ms.items()}
    hot = time_interleaved(flat, args.reps)
    paced = time_paced(flat, 8e-3, args.paced_samples) if args.paced_samples else {}
    out: dict = {m: {} for m in methods}
    for (m, n) in flat:
        out[m][n] = {"hot_us": hot[(m, n)] * 1e6, "paced_us": paced[(m, n)][0] * 1e6 if paced else None,
                     "paced_p99_us": paced[(m, n)][1] * 1e6 if paced else None}
    return out


def eval_phase(args, log) -> None:
    ckpt = args.out / "ckpt"
    test = speech.Corpus("test", args.ptb, args.test_per_speaker, args.seed + 1000, args.cache)
    clips = test.test_set(args.seed + 2000, int(args.test_seconds * speech.SAMPLE_RATE))
    noisy = torch.from_numpy(np.stack([c["noisy"] for c in clips]))
    clean = torch.from_numpy(np.stack([c["clean"] for c in clips]))
    base = float(D.si_snr(noisy, clean).mean())
    spec, feats = D.Denoiser.features(noisy)  # the front end has no parameters: once for every model
    feats = feats.contiguous()
    log(f"test set: {len(clips)} clips x {args.test_seconds:g} s, {len(test.speakers)} held-out speakers, "
        f"held-out texts; noisy SI-SNR {base:.2f} dB")
    rows, methods = [], {}
    for name, k, family in models_to_train(args):
        sparse = family == "sparse"
        model, masks, ck = load(ckpt / f"{name}.pt")
        net = model.net
        fp32 = net.sparsify(masks)
        int8 = net.sparsify(masks, weight_dtype=torch.int8)
        s_mod, w_mod = quality(model, None, noisy, spec, feats, clean)
        s_ker, w_ker = quality(model, fp32, noisy, spec, feats, clean)
        s_i8, _ = quality(model, int8, noisy, spec, feats, clean)
        report = macs.count(net, feats[:8].contiguous(), masks or None)
        tot = report.totals
        methods[name] = latency_methods(model, {"kernels fp32": fp32, "kernels int8": int8}, feats)
        row = {"model": name, "family": family, "k": k, "block": block_of(name), "d_model": net.d_model,
               "state_size": net.state_size, "relufied": net.relufied,
               "weight_sparsity": prune.sparsity_of(net) if sparse else 0.0,
               "si_snr_dB": s_mod, "si_snri_dB": s_mod - base, "si_snri_kernels_dB": s_ker - base,
               "si_snri_int8_dB": s_i8 - base, "max_abs_diff_kernels_vs_module": float((w_ker - w_mod).abs().max()),
               "macs_per_frame": {"dense": tot["dense"], "effective": tot["combined"],
                                  "weight_only": tot["weight_sparse"], "activity_only": tot["activity_sparse"]},
               "block_activity": [r.input_activity for r in report.layers if r.kind in ("S5.B", "dec")],
               "state_activity": [r.input_activity for r in report.layers if r.kind == "S5.C"],
               "memory_bytes": {"fp32 dense (all parameters)": report.memory["dense fp32 bytes"],
                                "kernels fp32 (stored)": fp32.weight_bytes(), "kernels int8 (stored)": int8.weight_bytes(),
                                "int8, sparse layout (smallest)": net.sparsify(masks, layout="sparse",
                                                                              weight_dtype=torch.int8).weight_bytes()},
               "layouts": fp32.layouts, "latency": None, "train_seconds": ck.get("train_seconds"),
               "final_train_si_snr_dB": ck.get("final_train_si_snr")}
        rows.append(row)
        log(f"{name}: SI-SNRi {row['si_snri_dB']:.2f} dB (kernels {row['si_snri_kernels_dB']:.2f}, int8 "
            f"{row['si_snri_int8_dB']:.2f}), effective MACs {tot['combined'] / 1e3:.0f}K of {tot['dense'] / 1e3:.0f}K")
    log(f"timing {sum(len(m) for m in methods.values())} methods side by side (hot, then paced at 8 ms)")
    for row, lat in zip(rows, time_all(methods, args).values()):
        row["latency"] = lat
        log(f"{row['model']}: kernels hot {lat['kernels fp32']['hot_us']:.1f} us, paced "
            f"{lat['kernels fp32']['paced_us'] or 0:.1f} us; PyTorch dense hot {lat['PyTorch dense']['hot_us']:.1f} us")
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpu_name(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "evsparse": evsparse.__version__, "isa": evsparse.build_info()["isa_active"],
            "config": args.config, "test_clips": len(clips), "test_seconds": args.test_seconds,
            "noisy_si_snr_dB": base, "test_speakers": [s.name for s in test.speakers],
            "train_speakers": [s.name for s in speech.TRAIN_SPEAKERS], "sparsity": args.sparsity,
            "steps": CONFIGS[args.config][:2], "batch": CONFIGS[args.config][2], "clip_seconds": CONFIGS[args.config][3]}
    (args.out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows, "iso_accuracy": iso_accuracy(rows)},
                                                      indent=1))
    (args.out / "results.md").write_text(to_markdown(rows, meta))
    if plot(rows, meta, args.out / "results.png"):
        log(f"wrote {args.out / 'results.png'}")
    log(f"wrote {args.out / 'results.md'}, {args.out / 'results.json'}")


def to_markdown(rows: list[dict], meta: dict) -> str:
    lines = [f"# S5 denoisers: dense vs sparse families ({meta['date']}, {meta['cpu']}, {meta['threads']} threads, "
             f"torch {meta['torch']}, ISA {meta['isa']})", "",
             f"Test: {meta['test_clips']} clips x {meta['test_seconds']:g} s, held-out speakers and texts, noisy "
             f"SI-SNR {meta['noisy_si_snr_dB']:.2f} dB. Effective MACs per 8 ms frame (nonzero input x nonzero "
             "weight, measured on test clips; encoder and decoder included). Memory: stored weights of the plan. "
             "Latency: one frame at batch 1, us, hot loop / paced at 8 ms median (p99); real-time factor = paced "
             "kernels / 8 ms.", "",
             "| model | k (H, P) | weight sparsity | SI-SNRi dB (module / kernels / int8) | block activity | dense MACs "
             "| effective MACs | memory KB (fp32 dense / kernels fp32 / int8 / int8 sparse) | kernels fp32 hot / paced (p99) "
             "| kernels int8 hot / paced (p99) | PyTorch dense hot / paced (p99) | RTF |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m, mem, lat = r["macs_per_frame"], r["memory_bytes"], r["latency"]

        def t(name):
            x = lat[name]
            return f"{x['hot_us']:.1f} / {x['paced_us'] or 0:.0f} ({x['paced_p99_us'] or 0:.0f})"
        acts = ", ".join(f"{a:.0%}" for a in r["block_activity"])
        lines.append(f"| {r['model']} | {r['k']:g} ({r['d_model']}, {r['state_size']}) | {r['weight_sparsity']:.0%} | "
                     f"{r['si_snri_dB']:.2f} / {r['si_snri_kernels_dB']:.2f} / {r['si_snri_int8_dB']:.2f} | {acts} | "
                     f"{m['dense'] / 1e3:.0f}K | {m['effective'] / 1e3:.0f}K | "
                     f"{mem['fp32 dense (all parameters)'] / 1e3:.0f} / {mem['kernels fp32 (stored)'] / 1e3:.0f} / "
                     f"{mem['kernels int8 (stored)'] / 1e3:.0f} / {mem['int8, sparse layout (smallest)'] / 1e3:.0f} | "
                     f"{t('kernels fp32')} | {t('kernels int8')} | "
                     f"{t('PyTorch dense')} | {(lat['kernels fp32']['paced_us'] or 0) / 8000:.4f} |")
    lines += ["", "Iso-accuracy: what the dense family trained as long as the sparse one (\"dense, retrained\": "
              "600 + 600 steps) needs for each sparse model's SI-SNRi (kernels), interpolated in log scale between "
              "the two dense models that bracket it; ratio = dense / sparse.", "",
              "| sparse model | SI-SNRi dB | effective MACs K: dense / sparse (ratio) | stored KB: dense / sparse (ratio) "
              "| paced us: dense / sparse (ratio) |", "|---|---|---|---|---|"]
    for e in iso_accuracy(rows):
        def cell(d, scale=1.0, fmt=".0f"):
            return f"{d['dense'] / scale:{fmt}} / {d['sparse'] / scale:{fmt}} ({d['ratio']:.2f}x)"
        if e["macs"] is None:  # outside the dense family's range: the nearest dense model instead
            lines.append(f"| {e['model']} | {e['si_snri_dB']:.2f} | {e['note']} (ratios: that model / this one) | | |")
            continue
        lines.append(f"| {e['model']} | {e['si_snri_dB']:.2f} | {cell(e['macs'], 1e3)} | {cell(e['bytes'], 1e3)} | "
                     f"{cell(e['paced_us'], 1, '.1f')} |")
    return "\n".join(lines) + "\n"


def iso_accuracy(rows: list[dict], reference: str = "dense, retrained") -> list[dict]:
    """For each sparse model, what the ``reference`` dense family (default: the one trained as long as
    the sparse models) needs for the same SI-SNRi (on the kernels):
    effective MACs, stored bytes and paced microseconds, interpolated piecewise linearly in log scale
    between the two models of the dense family's MAC frontier that bracket it (None outside the
    frontier's range, and a note comparing with its nearest end)."""
    dense = [r for r in rows if r["family"] == reference] or [r for r in rows if r["family"] == "dense"]
    keys = {"macs": lambda r: r["macs_per_frame"]["effective"],
            "bytes": lambda r: r["memory_bytes"]["kernels fp32 (stored)"],
            "paced_us": lambda r: r["latency"]["kernels fp32"]["paced_us"] or r["latency"]["kernels fp32"]["hot_us"]}
    out = []
    for r in (r for r in rows if r["family"] == "sparse"):
        q = r["si_snri_kernels_dB"]
        entry = {"model": r["model"], "si_snri_dB": q, "note": ""}
        pair = None
        if dense:
            # The dense family's frontier for the MACs: a model that a cheaper one beats is no
            # candidate (e.g. an undertrained wide model).
            front = [d for d in sorted(dense, key=keys["macs"])
                     if all(d["si_snri_kernels_dB"] > c["si_snri_kernels_dB"] for c in dense
                            if keys["macs"](c) < keys["macs"](d))]
            pair = next(((a, b) for a, b in zip(front, front[1:])
                         if a["si_snri_kernels_dB"] <= q <= b["si_snri_kernels_dB"]), None)
            if pair is None:  # outside the frontier's range: against its nearest end instead
                near = front[-1] if q > front[-1]["si_snri_kernels_dB"] else front[0]
                dq = q - near["si_snri_kernels_dB"]
                entry["note"] = f"{dq:+.2f} dB vs {near['model']}: " + ", ".join(
                    f"{name} {get(near) / get(r):.2f}x" for name, get in keys.items())
        for name, get in keys.items():
            if pair is None:
                entry[name] = None
                continue
            a, b = pair
            span = b["si_snri_kernels_dB"] - a["si_snri_kernels_dB"]
            f = 0.0 if span <= 0 else (q - a["si_snri_kernels_dB"]) / span
            dense_value = math.exp((1 - f) * math.log(get(a)) + f * math.log(get(b)))
            entry[name] = {"dense": dense_value, "sparse": get(r), "ratio": dense_value / get(r)}
        out.append(entry)
    return out


def plot(rows: list[dict], meta: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.3))
    labels = {"dense": "dense, GELU (600 steps)", "dense, retrained": "dense, GELU (1200 steps)",
              "sparse": "sparse, 90% ERK, ReLU (600 + 600 steps)"}
    for fam, marker in (("dense", "o"), ("dense, retrained", "^"), ("sparse", "s")):
        rs = sorted((r for r in rows if r["family"] == fam), key=lambda r: r["k"])
        if not rs:
            continue
        y = [r["si_snri_kernels_dB"] for r in rs]
        for ax, x in zip(axes, ([r["macs_per_frame"]["effective"] for r in rs],
                                [r["memory_bytes"]["kernels fp32 (stored)"] / 1e6 for r in rs],
                                [r["latency"]["kernels fp32"]["paced_us"] or r["latency"]["kernels fp32"]["hot_us"]
                                 for r in rs])):
            ax.plot(x, y, marker=marker, label=labels[fam], alpha=0.6 if fam == "dense" else 1.0)
            for xi, yi, r in zip(x, y, rs):
                ax.annotate(f"k={r['k']:g}", (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")
    for ax, label in zip(axes, ("effective MACs per 8 ms frame", "stored weights (MB, fp32 plan)",
                                "us per frame on the kernels (paced at 8 ms, median)")):
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("SI-SNRi (dB), held-out test set")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"S5 denoisers trained here ({meta['cpu']}, {meta['date']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--ptb", type=Path, default=HERE.parents[1].parent / "shared" / "data" / "ptb",
                    help="directory with ptb.{train,test}.txt (the texts spoken)")
    ap.add_argument("--cache", type=Path, default=None, help="cache of synthesised utterances (default --out/speech)")
    ap.add_argument("--config", choices=sorted(CONFIGS), default="default")
    ap.add_argument("--dense-k", type=float, nargs="*", default=[0.25, 0.5, 1.0, 2.0])
    ap.add_argument("--sparse-k", type=float, nargs="*", default=[0.5, 1.0, 2.0])
    ap.add_argument("--sparsity", type=float, default=0.9)
    ap.add_argument("--block", type=int, nargs="+", choices=[1, 16], default=[1],
                    help="pruning block(s) of the sparse family: 1 (unstructured), 16 (16x1 blocks); one model each")
    ap.add_argument("--no-retrained-dense", action="store_true",
                    help="skip the 'dense, retrained' family (iso-accuracy then uses the dense family)")
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--test-per-speaker", type=int, default=12)
    ap.add_argument("--test-seconds", type=float, default=4.0)
    ap.add_argument("--reps", type=int, default=9, help="interleaved timing rounds (hot loop)")
    ap.add_argument("--paced-samples", type=int, default=300, help="paced calls per method (one per 8 ms)")
    ap.add_argument("--phase", choices=["all", "train", "eval", "report"], default="all",
                    help="report: rewrite results.md/png from results.json")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.cache = args.cache or args.out / "speech"
    args.out.mkdir(parents=True, exist_ok=True)
    logf = open(args.out / "run.log", "a")

    def log(msg: str) -> None:
        print(msg, flush=True)
        logf.write(msg + "\n")
        logf.flush()

    log(f"# {time.strftime('%Y-%m-%d %H:%M')} {cpu_name()}, {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}, evsparse {evsparse.__version__}, config {args.config}")
    if args.phase in ("all", "train"):
        train_phase(args, log)
    if args.phase in ("all", "eval"):
        eval_phase(args, log)
    if args.phase == "report":
        saved = json.loads((args.out / "results.json").read_text())
        saved["iso_accuracy"] = iso_accuracy(saved["rows"])
        (args.out / "results.json").write_text(json.dumps(saved, indent=1))
        (args.out / "results.md").write_text(to_markdown(saved["rows"], saved["meta"]))
        plot(saved["rows"], saved["meta"], args.out / "results.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
