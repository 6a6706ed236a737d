import time, torch, statistics, sys
from evsparse.nn import EGRU
from evsparse.bench.common import calibrate_egru_thresholds_
torch.manual_seed(0)
H = 256
egru = EGRU(H, H, num_layers=2).eval()
xs = torch.randn(64, 1, H) * (torch.rand(64, 1, H) < 0.1)
calibrate_egru_thresholds_(egru, xs, 0.1)
m = egru.sparsify()
junk = torch.zeros(16 * 1024 * 1024 // 4)  # 16 MB
def run(mode, n=150, gap=0.008):
    with torch.inference_mode():
        s = m.stream(batch_size=1)
        ts = []
        for i in range(n):
            x = xs[i % 64]
            t0 = time.perf_counter_ns(); s.step(x); ts.append(time.perf_counter_ns() - t0)
            end = time.perf_counter() + gap
            if mode == "sleep":
                time.sleep(gap)
            elif mode == "spin":
                while time.perf_counter() < end: pass
            elif mode == "pollute":
                junk.add_(1.0)
                while time.perf_counter() < end: pass
            elif mode == "hot":
                pass
    ts.sort()
    return round(statistics.median(ts) / 1e3, 1), round(ts[int(0.99 * len(ts))] / 1e3, 1)
for threads in (2, 1):
    torch.set_num_threads(threads)
    for mode in ("hot", "spin", "sleep", "pollute"):
        print(threads, "threads", mode, run(mode, n=2000 if mode == "hot" else 150))

def run_touch(n=150, gap=0.008, every=0.001):
    with torch.inference_mode():
        s = m.stream(batch_size=1)
        ts = []
        for i in range(n):
            x = xs[i % 64]
            t0 = time.perf_counter_ns(); s.step(x); ts.append(time.perf_counter_ns() - t0)
            end = time.perf_counter() + gap
            nxt = time.perf_counter()
            while time.perf_counter() < end:
                if time.perf_counter() >= nxt:
                    m.plan_arena.sum(); nxt += every
    ts.sort()
    return round(statistics.median(ts) / 1e3, 1), round(ts[int(0.99 * len(ts))] / 1e3, 1)
torch.set_num_threads(2)
print("2 threads spin + re-read the arena every 1 ms", run_touch())
print("2 threads spin + re-read the arena every 0.2 ms", run_touch(every=0.0002))

def run_warm_code(n=150, gap=0.008, every=0.0005):
    with torch.inference_mode():
        s = m.stream(batch_size=1); s2 = m.stream(batch_size=1); z = torch.zeros(1, H)
        ts = []
        for i in range(n):
            x = xs[i % 64]
            t0 = time.perf_counter_ns(); s.step(x); ts.append(time.perf_counter_ns() - t0)
            end = time.perf_counter() + gap
            nxt = time.perf_counter()
            while time.perf_counter() < end:
                if time.perf_counter() >= nxt:
                    s2.step(z); nxt += every   # the same code path, (almost) no weight rows read
    ts.sort()
    return round(statistics.median(ts) / 1e3, 1), round(ts[int(0.99 * len(ts))] / 1e3, 1)
print("2 threads spin + the same step on a zero input every 0.5 ms", run_warm_code())
print("2 threads spin + the same step on a zero input every 0.1 ms", run_warm_code(every=0.0001))
