"""The sparse layout's thread split: sparse_linear one thread against two, hot loop, at 3K-189K touched
nonzeros (the split threshold kMinParallelSparseNnz in csrc/ops/op_utils.h; below it both rows run on
one thread). Min of 3 medians of 1500 calls.

    python benchmarks/ab/thread_crossover_sparse.py
"""
import time, torch, statistics, evsparse
torch.manual_seed(0)
def med(fn, n):
    ts = []
    for i in range(n):
        t0 = time.perf_counter_ns(); fn(i); ts.append(time.perf_counter_ns() - t0)
    ts.sort(); return statistics.median(ts) / 1e3
with torch.inference_mode():
    for (inp, out, act, dens) in [(256, 768, 0.1, 0.15), (256, 768, 1.0, 0.15), (512, 1536, 0.1, 0.15), (1024, 3072, 0.05, 0.15), (1024, 3072, 0.1, 0.15), (1024, 3072, 0.2, 0.15), (1024, 3072, 0.1, 0.3), (2048, 6144, 0.05, 0.15), (2048, 6144, 0.1, 0.15)]:
        w = torch.randn(out, inp); mask = torch.rand(out, inp) < dens
        pw = evsparse.pack(w, mask, layout="sparse")
        xs = [torch.randn(1, inp) * (torch.rand(1, inp) < act) for _ in range(16)]
        nnz = inp * act * out * dens
        r = {}
        for rep in range(3):
            for th in (1, 2):
                torch.set_num_threads(th)
                f = lambda i: evsparse.sparse_linear(xs[i % 16], pw)
                med(f, 200)
                r.setdefault(th, []).append(med(f, 1500))
        t1, t2 = min(r[1]), min(r[2])
        print(f"{inp}x{out} act {act} dens {dens}: ~{nnz/1e3:.0f}K nnz  1 thread {t1:.1f} us  2 threads {t2:.1f} us  gain {t1/t2:.2f}x", flush=True)
