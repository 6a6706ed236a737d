"""What an idle gap before a call costs on this machine, for evsparse and for plain PyTorch alike
(docs/benchmarks/results.md, "Paced calls and the gap before them"): the median time of one call after
the calling thread spun for a gap of 0 .. 8 ms (spinning, not sleeping: no thread or vCPU goes idle).
The calls: a 2-layer H=256 EGRU stream step at 10% activity, `torch.mv` on 768x256, `torch.add` on 256
floats. If even `torch.add` slows down as the gap grows, what the gap costs is the machine's (other
tenants evicting this core's caches), not a property of the kernels.

    python benchmarks/ab/gap_probe.py [threads]
"""
import statistics
import sys
import time

import torch

from evsparse.bench.common import calibrate_egru_thresholds_, cpu_name
from evsparse.nn import EGRU

GAPS = (0, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 8e-3)


def spin(gap: float) -> None:
    end = time.perf_counter() + gap
    while time.perf_counter() < end:
        pass


def main() -> None:
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    torch.manual_seed(0)
    H = 256
    egru = EGRU(H, H, num_layers=2).eval()
    xs = torch.randn(64, 1, H) * (torch.rand(64, 1, H) < 0.1)
    calibrate_egru_thresholds_(egru, xs, 0.1)
    m = egru.sparsify()
    w, v = torch.randn(768, 256), torch.randn(256)
    torch.set_num_threads(threads)
    print(f"# {cpu_name()}, {threads} threads, torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M')}; "
          "median us of one call after a spin of each gap")
    with torch.inference_mode():
        s = m.stream(batch_size=1)
        calls = {"EGRU 2x256 stream.step": lambda i: s.step(xs[i % 64]), "torch.mv 768x256": lambda i: torch.mv(w, v),
                 "torch.add 256 floats": lambda i: torch.add(v, v)}
        print("| call | " + " | ".join(f"{g * 1e6:g} us" for g in GAPS) + " |")
        print("|---|" + "---|" * len(GAPS))
        for name, f in calls.items():
            row = []
            for gap in GAPS:
                ts = []
                for i in range(200 if gap < 1e-3 else 80):
                    if gap:
                        spin(gap)
                    t0 = time.perf_counter_ns()
                    f(i)
                    ts.append(time.perf_counter_ns() - t0)
                row.append(f"{statistics.median(ts) / 1e3:.1f}")
            print(f"| {name} | " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
