"""Compiles every Triton kernel of evsparse for NVIDIA GPUs without one: Triton's CUDA backend and its
bundled ptxas run on any host, so the path from Python to cubin (type errors, loop-carried values,
unsupported constructs: what the interpreter never sees) is checked here, and ptxas reports each
configuration's registers and spills (tiles that spill are worth pruning from the autotuning lists).

    python scripts/triton_compile_check.py                  # fixed tiles, sm_90, no ptxas report
    python scripts/triton_compile_check.py --all-configs --ptxas --arch 80 90 --out DIR

Runs without TRITON_INTERPRET (under it @triton.jit builds interpreter functions, which cannot be
compiled); exits 1 if anything fails to compile.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if os.environ.get("TRITON_INTERPRET", "0") == "1":
    sys.exit("run without TRITON_INTERPRET=1: interpreted kernels cannot be compiled")

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from evsparse.gpu import kernels, recurrent  # noqa: E402
from evsparse.gpu import sparse_linear as launch  # noqa: E402

P32, I32 = "*fp32", "*i32"
PRODUCT_INTS = {"n_in": "i32", "n_out": "i32", "act_bucket": "i32"}


def _products():
    """(kernel, signature without constexprs, [(constexprs, num_warps)], label) per product kernel and
    weight dtype; the tile lists are the launchers' own (fixed tile first, then the autotuning list)."""
    def tiles(tuned):
        out = []
        for c in [tuned.fixed] + tuned.configs:
            if (dict(c.kwargs), c.num_warps) not in out:
                out.append((dict(c.kwargs), c.num_warps))
        return out

    specs = []
    for wdt in ("fp32", "fp16", "bf16"):
        w = "*" + wdt
        dense = {"x_ptr": P32, "idx_ptr": I32, "count_ptr": I32, "w_ptr": w, "out_ptr": P32, **PRODUCT_INTS}
        for atomic, tuned in ((True, launch.DENSE_GATHER), (False, launch.DENSE_GATHER_PARTIAL)):
            specs.append((kernels.dense_gather_kernel, dense, [({"ATOMIC": atomic, **c}, nw) for c, nw in tiles(tuned)],
                          f"w {wdt}, {'atomic' if atomic else 'two-pass'}"))
        for rdt in ("i16", "i32"):
            csc = {"x_ptr": P32, "idx_ptr": I32, "count_ptr": I32, "col_ptr": "*i64", "row_ptr": "*" + rdt,
                   "val_ptr": w}
            specs.append((kernels.sparse_gather_kernel,
                          {**csc, "y_ptr": P32, "n_in": "i32", "n_out": "i32", "nnz": "i32", "mean_nnz": "i32",
                           "act_bucket": "i32"},
                          tiles(launch.SPARSE_GATHER), f"values {wdt}, rows {rdt}"))
            specs.append((kernels.sparse_gather_partial_kernel,
                          {**csc, "part_ptr": P32, "n_in": "i32", "n_out": "i32", "nnz": "i32", "splits": "i32",
                           "act_bucket": "i32"},
                          tiles(launch.SPARSE_GATHER_PARTIAL), f"values {wdt}, rows {rdt}"))
    specs.append((kernels.masked_splitk_kernel, {"x_ptr": P32, "w_ptr": P32, "y_ptr": P32, **PRODUCT_INTS},
                  tiles(launch.MASKED_SPLITK), "w fp32"))
    return specs


def _others():
    """The kernels with one tile: compaction, reduction and the recurrent ones, each constexpr branch."""
    gate = {k: P32 for k in ("gi_ptr", "gh_ptr", "c_ptr", "thr_ptr", "c_out_ptr", "y_out_ptr")}
    scan = {k: P32 for k in ("a_re_ptr", "a_im_ptr", "h0_ptr", "u_ptr", "h_ptr")}
    tile = dict(recurrent.PERSISTENT_TILE)
    warps = tile.pop("num_warps")
    specs = [
        (kernels.compact_active_kernel, {"x_ptr": P32, "idx_ptr": I32, "count_ptr": I32, "n_in": "i32"},
         [({"BLOCK": launch.COMPACT_BLOCK}, 4)], "x fp32"),
        (kernels.compact_active_kernel, {"x_ptr": "*bf16", "idx_ptr": I32, "count_ptr": I32, "n_in": "i32"},
         [({"BLOCK": launch.COMPACT_BLOCK}, 4)], "x bf16"),
        (kernels.compact_ordered_kernel, {"x_ptr": P32, "idx_ptr": I32, "count_ptr": I32, "n_in": "i32"},
         [({"BLOCK": launch.COMPACT_BLOCK}, 4)], "x fp32"),
        (kernels.reduce_splits_kernel, {"part_ptr": P32, "y_ptr": P32, "n_out": "i32", "splits": "i32"},
         [({"BLOCK": launch._SPLIT_BLOCK_N}, 4)], ""),
        (kernels.egru_sequence_persistent_kernel,
         {"gi_ptr": P32, "w_ptr": P32, "b_hh_ptr": P32, "thr_ptr": P32, "c_ptr": P32, "ys_ptr": P32, "gh_ptr": P32,
          "idx_ptr": I32, "T": "i32", "B": "i32", "H": "i32"}, [(tile, warps)], "w fp32"),
    ]
    for compact in (False, True):
        specs.append((kernels.egru_gate_kernel, {**gate, "idx_ptr": I32, "count_ptr": I32, "H": "i32"},
                      [({"COMPACT": compact, "BLOCK": recurrent.GATE_BLOCK}, 4)], f"COMPACT={compact}"))
    for complex_ in (False, True):
        specs.append((kernels.diagonal_scan_kernel, {**scan, "T": "i32", "B": "i32", "S": "i32", "W": "i32"},
                      [({"COMPLEX": complex_, "BLOCK": recurrent.SCAN_BLOCK}, 4)], f"COMPLEX={complex_}"))
    return specs


def _ptxas(ptx: str, arch: int) -> dict:
    exe = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "k.ptx"
        src.write_text(ptx)
        gpu = f"sm_{arch}a" if arch >= 90 else f"sm_{arch}"
        out = subprocess.run([str(exe), "-v", "--gpu-name", gpu, str(src), "-o", str(Path(d) / "k.cubin")],
                             capture_output=True, text=True).stderr
    regs = re.search(r"Used (\d+) registers", out)
    spills = re.search(r"(\d+) bytes spill stores", out)
    return {"registers": int(regs.group(1)) if regs else None, "spill_bytes": int(spills.group(1)) if spills else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", nargs="+", type=int, default=[90], help="compute capabilities, e.g. 80 90")
    ap.add_argument("--all-configs", action="store_true", help="every autotuning candidate, not only the fixed tile")
    ap.add_argument("--ptxas", action="store_true", help="also report registers and spills (ptxas -v)")
    ap.add_argument("--out", type=Path, help="write report.md and report.json here")
    args = ap.parse_args(argv)

    rows, failures = [], 0
    t0 = time.perf_counter()
    for arch in args.arch:
        for fn, sig, tiles, label in _products() + _others():
            for constexprs, warps in (tiles if args.all_configs else tiles[:1]):
                full_sig = {**sig, **{k: "constexpr" for k in constexprs}}
                row = {"arch": arch, "kernel": fn.__name__, "variant": label, "tile": constexprs, "num_warps": warps}
                try:
                    compiled = triton.compile(ASTSource(fn=fn, signature=full_sig, constexprs=constexprs),
                                              target=GPUTarget("cuda", arch, 32), options={"num_warps": warps})
                    row["ok"] = True
                    if args.ptxas:
                        row.update(_ptxas(compiled.asm["ptx"], arch))
                except Exception as e:  # reported per kernel: one failure must not hide the others
                    failures += 1
                    row["ok"] = False
                    row["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[-1][:300] if str(e).strip() else ''}"
                rows.append(row)
                status = "ok" if row["ok"] else "FAILED " + row["error"]
                extra = f" regs {row.get('registers')} spill {row.get('spill_bytes')}B" if args.ptxas and row["ok"] else ""
                print(f"sm_{arch} {fn.__name__} [{label}] {constexprs} w{warps}: {status}{extra}", flush=True)
    print(f"{len(rows) - failures}/{len(rows)} compiled in {time.perf_counter() - t0:.0f} s")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        meta = {"triton": triton.__version__, "date": time.strftime("%Y-%m-%d"), "host": "no GPU: compile only"}
        (args.out / "report.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
        md = ["# Triton kernels compiled for NVIDIA targets (no GPU: compile only)\n",
              f"{meta['date']} · triton {meta['triton']} · ptxas -v from Triton's CUDA backend\n",
              "| arch | kernel | variant | tile | warps | ok | registers | spill bytes |", "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            md.append(f"| sm_{r['arch']} | {r['kernel']} | {r['variant']} | "
                      + ", ".join(f"{k}={v}" for k, v in r["tile"].items())
                      + f" | {r['num_warps']} | {'yes' if r['ok'] else 'NO: ' + r['error']} | "
                      f"{r.get('registers', '')} | {r.get('spill_bytes', '')} |")
        (args.out / "report.md").write_text("\n".join(md) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
