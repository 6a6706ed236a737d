"""sparse_linear at 10% x 15% with and without a competing busy process (one `while True` in another
process), hot and paced, 2 threads and 1: the p99 a descheduled worker costs.

    python benchmarks/ab/busy_process.py [INxOUT]   (default 1024x3072)
"""
import time, torch, statistics, subprocess, sys, evsparse
from evsparse.bench.common import cpu_name
inp, out = (int(v) for v in (sys.argv[1] if len(sys.argv) > 1 else "1024x3072").split("x"))
torch.manual_seed(0)
w = torch.randn(out, inp); mask = torch.rand(out, inp) < 0.15
pw = evsparse.pack(w, mask)
xs = [torch.randn(1, inp) * (torch.rand(1, inp) < 0.1) for _ in range(16)]
print(f"# {cpu_name()}, torch {torch.__version__}, {inp}x{out}, (median us, p99 us)")
def run(n, gap):
    ts = []
    with torch.inference_mode():
        for i in range(n):
            t0 = time.perf_counter_ns(); evsparse.sparse_linear(xs[i % 16], pw); ts.append(time.perf_counter_ns() - t0)
            if gap: time.sleep(gap)
    ts.sort()
    return round(statistics.median(ts) / 1e3, 1), round(ts[int(0.99 * len(ts))] / 1e3, 1)
for busy in (False, True):
    p = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    time.sleep(0.3)
    for threads in (2, 1):
        torch.set_num_threads(threads)
        print(f"busy={busy} threads={threads} hot {run(3000, 0)} paced 8ms {run(150, 0.008)}", flush=True)
    if p: p.kill()
