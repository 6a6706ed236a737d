"""One thread against two for sparse_linear in a hot loop: where the thread split pays
(kMinParallelSparseNnz / kMinParallelDenseMacs in csrc/ops/op_utils.h; below them both runs use one
thread). Min of 3 medians of 1500 calls. ``--cases sparse``: the sparse layout at 3K-189K touched
nonzeros (the sweep behind the 32K threshold); default: both layouts at the report's sizes.

    python benchmarks/ab/thread_crossover.py [--cases {both,sparse}]
"""
import argparse, time, torch, statistics, evsparse
ap = argparse.ArgumentParser()
ap.add_argument("--cases", choices=("both", "sparse"), default="both")
args = ap.parse_args()
CASES = {  # (in, out, activity, density, layout)
    "both": [(1024, 3072, 0.1, 0.15, "sparse"), (2048, 6144, 0.1, 0.15, "sparse"), (2048, 6144, 0.3, 0.15, "sparse"),
             (2048, 6144, 0.3, 0.5, "sparse"), (1024, 3072, 0.1, 1.0, "dense"), (2048, 6144, 0.1, 1.0, "dense"),
             (2048, 6144, 0.5, 1.0, "dense")],
    "sparse": [(256, 768, 0.1, 0.15, "sparse"), (256, 768, 1.0, 0.15, "sparse"), (512, 1536, 0.1, 0.15, "sparse"),
               (1024, 3072, 0.05, 0.15, "sparse"), (1024, 3072, 0.1, 0.15, "sparse"), (1024, 3072, 0.2, 0.15, "sparse"),
               (1024, 3072, 0.1, 0.3, "sparse"), (2048, 6144, 0.05, 0.15, "sparse"), (2048, 6144, 0.1, 0.15, "sparse")],
}
torch.manual_seed(0)
def med(fn, n):
    ts = []
    for i in range(n):
        t0 = time.perf_counter_ns(); fn(i); ts.append(time.perf_counter_ns() - t0)
    ts.sort(); return statistics.median(ts) / 1e3
with torch.inference_mode():
    for (inp, out, act, dens, lay) in CASES[args.cases]:
        w = torch.randn(out, inp); mask = torch.rand(out, inp) < dens
        pw = evsparse.pack(w, mask, layout=lay)
        xs = [torch.randn(1, inp) * (torch.rand(1, inp) < act) for _ in range(16)]
        macs = inp * act * out * (dens if lay == "sparse" else 1)  # (sparse: the touched nonzeros)
        r = {}
        for rep in range(3):
            for th in (1, 2):
                torch.set_num_threads(th)
                f = lambda i: evsparse.sparse_linear(xs[i % 16], pw)
                med(f, 200)
                r.setdefault(th, []).append(med(f, 1500))
        t1, t2 = min(r[1]), min(r[2])
        print(f"{inp}x{out} act {act} dens {dens} {lay}: ~{macs/1e3:.0f}K MACs  1 thread {t1:.1f} us  2 threads {t2:.1f} us  "
              f"gain {t1/t2:.2f}x", flush=True)
