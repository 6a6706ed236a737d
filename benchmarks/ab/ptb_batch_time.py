"""Whole-model training time per batch of PTB-small (examples/ptb: embedding 256, EGRU 384 and 256,
tied 10K decoder; batch 32, BPTT 35, AdamW, clipping as train.py does), on the fused op against the
Python loop, batches interleaved. Random tokens (the time does not depend on which), thresholds as
initialised. Run:  python benchmarks/ab/ptb_batch_time.py [--batches N]
"""
import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "ptb"))
from model import CONFIGS, EGRULanguageModel  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--batches", type=int, default=20)
args = ap.parse_args()
torch.manual_seed(0)
vocab, B, T = 10000, 32, 35
fused = EGRULanguageModel(vocab, **CONFIGS["small"]).train()
loop = copy.deepcopy(fused)
for layer in loop.layers:
    layer.fused = False
models = {"fused": fused, "loop": loop}
opts = {n: torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.1) for n, m in models.items()}
tokens = torch.randint(0, vocab, (T + 1, B))


def step(name):
    m, opt = models[name], opts[name]
    logits, _ = m(tokens[:-1])
    loss = F.cross_entropy(logits.view(-1, vocab), tokens[1:].reshape(-1))
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(m.parameters(), 0.25)
    opt.step()


times = {n: [] for n in models}
for i in range(args.batches + 2):
    for n in models:
        t0 = time.perf_counter()
        step(n)
        if i >= 2:  # two warm-up batches
            times[n].append(time.perf_counter() - t0)
cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
med = {n: statistics.median(v) * 1e3 for n, v in times.items()}
print(f"# {cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}, median of {args.batches} batches")
# PTB's training split is 929,589 tokens (<eos> included): 830 batches of 32 x 35 per epoch.
print(f"fused {med['fused']:.1f} ms per batch, loop {med['loop']:.1f} ms: {med['loop'] / med['fused']:.2f}x; "
      f"an epoch of 830 batches {med['fused'] * 830 / 6e4:.1f} vs {med['loop'] * 830 / 6e4:.1f} min")
