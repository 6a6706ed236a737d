"""The layout crossover alone (the report's "Layout crossover" section): dense-gather against
sparse-gather over weight density, float32 and int8 weights, all four interleaved per point; what
``AUTO_SPARSE_MAX_DENSITY`` and ``AUTO_SPARSE_MAX_DENSITY_INT8`` are set from.

    python benchmarks/ab/layout_crossover.py [--sizes 256x768 1024x3072 2048x6144] [--out DIR]
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

import torch

import evsparse
from evsparse.bench.cli import crossover_section
from evsparse.bench.common import cpu_name


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", nargs="+", default=["256x768", "1024x3072", "2048x6144"])
    ap.add_argument("--activity", type=float, nargs="+", default=[1.0, 0.1])
    ap.add_argument("--density", type=float, nargs="+", default=[0.3, 0.2, 0.15, 0.1, 0.05])
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    head = (f"{datetime.datetime.now():%Y-%m-%d %H:%M} · {cpu_name()} · {torch.get_num_threads()} threads · "
            f"torch {torch.__version__} · kernels: {evsparse.build_info()['isa_active']}")
    rows = crossover_section(args.sizes, args.activity, args.density, args.reps)
    lines = ["# Layout crossover, float32 and int8", "", head, "",
             "| size | activity | density | f32 dense-gather us | f32 sparse-gather us | f32: sparse faster by | "
             "int8 dense-gather us | int8 sparse-gather us | int8: sparse faster by |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c in rows:
        lines.append(f"| {c['size']} | {c['activity']:.0%} | {c['density']:.0%} | {c['dense_gather_us']:.1f} | "
                     f"{c['sparse_gather_us']:.1f} | {c['sparse_over_dense']:.2f}x | {c['int8_dense_gather_us']:.1f} | "
                     f"{c['int8_sparse_gather_us']:.1f} | {c['int8_sparse_over_dense']:.2f}x |")
    md = "\n".join(lines) + "\n"
    print(md)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "report.md").write_text(md)
        (args.out / "report.json").write_text(json.dumps({"meta": head, "crossover": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
