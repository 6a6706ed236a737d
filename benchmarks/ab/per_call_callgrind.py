# Instructions per call for the wheel-change A/B (docs/benchmarks/results.md "Per-call cost across the wheel change"):
#   PYTHONPATH=<site of a build> valgrind --tool=callgrind python per_call_callgrind.py N THREADS {product,small,step}
# run with two N and take the difference over the extra calls; OPENBLAS_NUM_THREADS=1 (and OMP_WAIT_POLICY=PASSIVE
# for 2 threads) keep other threads from spinning.
import sys, torch, evsparse
torch.manual_seed(0)
n, threads, case = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
torch.set_num_threads(threads)
if case == "product":
    w = torch.randn(6144, 2048); pw = evsparse.pack(w, torch.rand(6144, 2048) < 0.15, "sparse")
    x = torch.randn(2048) * (torch.rand(2048) < 0.1)
    f = lambda: evsparse.sparse_linear(x, pw)
elif case == "small":
    w = torch.randn(768, 256); pw = evsparse.pack(w, torch.rand(768, 256) < 0.15, "sparse")
    x = torch.randn(256) * (torch.rand(256) < 0.1)
    f = lambda: evsparse.sparse_linear(x, pw)
else:
    from evsparse.nn import EGRU
    m = EGRU(256, 256, 2).eval()
    with torch.no_grad():
        for k in range(2): getattr(m, f"thr_l{k}").fill_(0.5)
    s = m.sparsify({f"weight_{a}_l{k}": torch.rand(768, 256) < 0.15 for k in range(2) for a in ("ih", "hh")}, layout="sparse")
    xe = torch.randn(1, 256) * (torch.rand(1, 256) < 0.1); st = (torch.zeros(2, 1, 256), (torch.rand(2, 1, 256) < 0.1).float())
    f = lambda: s.step(xe, st)
with torch.no_grad():
    for _ in range(5): f()
    for _ in range(n): f()
