import time, torch, statistics, subprocess, sys, evsparse
torch.manual_seed(0)
w = torch.randn(3072, 1024); mask = torch.rand(3072, 1024) < 0.15
pw = evsparse.pack(w, mask)
xs = [torch.randn(1, 1024) * (torch.rand(1, 1024) < 0.1) for _ in range(16)]
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
