"""Timing and pruning helpers shared by the sections of ``evsparse-bench``."""

from __future__ import annotations

import platform
import time
import warnings
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..timing import time_interleaved  # noqa: F401  (the harness times with the library's helper)


def copy_bandwidth(mb: int = 256, reps: int = 5, device: str | torch.device = "cpu",
                   sync: Optional[Callable[[], None]] = None) -> float:
    """Copy bandwidth of ``device``'s memory in GB/s (bytes read + written; on the CPU torch's threaded
    copy), the practical ceiling for a bandwidth-bound kernel. ``sync`` as in :func:`time_interleaved`."""
    sync = sync or (lambda: None)
    src = torch.ones(mb * 2**20 // 4, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = float("inf")
    for _ in range(reps):
        sync()
        t0 = time.perf_counter()
        dst.copy_(src)
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2 * src.numel() * 4 / best / 1e9


@torch.no_grad()
def magnitude_prune_(module: nn.Module, density: float) -> Optional[dict]:
    """Keeps the largest-magnitude fraction ``density`` of each ``weight*`` parameter (per tensor),
    zeroing the rest in place; returns the masks (None at density 1)."""
    if density >= 1.0:
        return None
    masks = {}
    for name, p in module.named_parameters():
        if name.startswith("weight"):
            k = max(1, round(density * p.numel()))
            masks[name] = p.abs() >= p.abs().flatten().kthvalue(p.numel() - k + 1).values
            p.mul_(masks[name])
    return masks


@torch.no_grad()
def calibrate_egru_thresholds_(egru: nn.Module, xs: torch.Tensor, activity: float) -> None:
    """Each layer's threshold (one for all its units) bisected, bottom layer first, so that about
    ``activity`` of that layer's outputs on ``xs`` are events (more threshold, fewer events): a stand-in
    for a model trained with the activity penalty. A layer's activity does not depend on the layers
    above it, so each is calibrated on the already calibrated layers below."""
    for k in range(egru.num_layers):
        thr = egru.get_parameter(f"thr_l{k}")
        lo, hi = 0.0, 1.0
        for _ in range(14):
            mid = (lo + hi) / 2
            thr.fill_(mid)
            egru(xs)
            lo, hi = (mid, hi) if egru.activity()[k] > activity else (lo, mid)
        thr.fill_(hi)


def random_block_mask(n_out: int, n_in: int, density: float, generator: Optional[torch.Generator] = None,
                      block: int = 16) -> torch.Tensor:
    """A ``[n_out, n_in]`` bool mask of whole ``block``x1 blocks, each kept with probability ``density``
    (the last block of a column shorter when ``block`` does not divide ``n_out``): the structure
    ``evsparse.prune``'s ``block=16`` leaves, drawn at random."""
    keep = torch.rand(-(-n_out // block), n_in, generator=generator) < density
    return keep.repeat_interleave(block, 0)[:n_out]


class KnobSwitch:
    """Lets methods timed side by side (``time_interleaved``) each run under its own setting of a
    process-wide knob (the ISA, a path threshold): ``sw = KnobSwitch(evsparse.set_isa)``, then
    ``sw.wrap("avx2", fn)``. The knob is applied only when the setting changes, once per timing block,
    since setting it is an op call itself."""

    def __init__(self, apply: Callable[[object], None]):
        self.apply = apply
        self.current = object()

    def wrap(self, setting, fn: Callable) -> Callable:
        def call(x):
            if self.current != setting:
                self.apply(setting)
                self.current = setting
            return fn(x)

        return call


def sparse_inputs(n_in: int, activity: float, generator: torch.Generator, count: int) -> list[torch.Tensor]:
    """``count`` inputs of ``n_in`` features with exactly ``round(activity * n_in)`` (at least one)
    nonzero Gaussian entries at random places: a product's input pool, whose active set changes from
    call to call as an RNN's does."""
    k = max(1, round(activity * n_in))
    xs = []
    for _ in range(count):
        x = torch.zeros(n_in)
        x[torch.randperm(n_in, generator=generator)[:k]] = torch.randn(k, generator=generator)
        xs.append(x)
    return xs


def linear_rnn_stream(steps: int, width: int, activity: float, generator: torch.Generator) -> torch.Tensor:
    """A [steps, 1, width] input stream for the linear RNN sections with about ``activity`` of it
    nonzero: ReLU'd Gaussians (half of them zero already) kept with probability 2 * ``activity``."""
    return torch.relu(torch.randn(steps, 1, width, generator=generator)) * (
        torch.rand(steps, 1, width, generator=generator) < activity / 0.5)


@torch.no_grad()
def calibrate_linear_rnn_activity_(rnn: nn.Module, x: torch.Tensor, activity: float) -> None:
    """The linear RNN's counterpart of :func:`calibrate_egru_thresholds_`: shifts each layer's output
    bias so each unit is active (ReLU input > 0) on about ``activity`` of the steps of ``x``: a stand-in
    for the activity a trained model with an activity penalty has."""
    inp = x
    for k in range(rnn.num_layers):
        w_in, b_in, w_out, b_out, _, _ = rnn.layer_params(k)
        h = rnn._recurrence(k, F.linear(inp, w_in, b_in) * rnn.input_gain(k), inp.new_zeros(inp.shape[1], rnn.width))
        v = F.linear(h, w_out, b_out) + (inp if rnn.residual[k] else 0)
        shift = torch.quantile(v.reshape(-1, v.shape[-1]), 1.0 - activity, dim=0)
        b_out.sub_(shift)
        inp = torch.relu(v - shift)


def record_stream(packed: nn.Module, frames) -> list:
    """The (x_t, state before step t) pairs of streaming ``frames`` (each [1, in]) through ``packed``
    (a plan module with one state tensor [num_layers, B, width]: PackedLinearRNN, PackedS5Stack) from a
    zero state: inputs for timing single steps on real activity patterns."""
    pool, state = [], torch.zeros(packed.num_layers, 1, packed.width)
    with torch.no_grad():
        for x in frames:
            pool.append((x, state))
            _, state = packed.step(x, state)
    return pool


def markdown_section(title: str, intro: str, columns: list[str]) -> list[str]:
    """A report section's opening lines: heading, intro paragraph and table header (its separator row
    derived from the columns)."""
    return ["", f"## {title}", "", intro, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def csr_baseline(w: torch.Tensor) -> torch.Tensor:
    """``w`` as a torch.sparse CSR tensor for the baseline, without torch's "beta state" warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        return w.to_sparse_csr()


def cpu_name() -> str:
    """The CPU model, as a report names it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def section_parser(prog: str, doc: str, out: str):
    """The argument parser of a section run on its own (``paced.main()``, ``stack.main()``): its
    own arguments are added by the caller; --reps, --threads and --out are common."""
    import argparse

    ap = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path(out))
    return ap


def write_section_report(args, title: str, key: str, rows: list, lines: list[str]) -> int:
    """Writes a section run on its own to ``args.out``/report.{md,json} (headed by the date, CPU,
    threads, torch and kernels) and prints the markdown."""
    import datetime
    import json

    import evsparse

    head = (f"{datetime.datetime.now():%Y-%m-%d %H:%M} · {cpu_name()} · {torch.get_num_threads()} threads · "
            f"torch {torch.__version__} · kernels: {evsparse.build_info()['isa_active']}")
    md = "\n".join([f"# {title}", "", head, *lines]) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.md").write_text(md)
    (args.out / "report.json").write_text(json.dumps({"meta": head, key: rows}, indent=1))
    print(md)
    return 0
