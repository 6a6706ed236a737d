import time, torch, evsparse, json, datetime
from evsparse.nn import EGRU, SparseLinearRNN, SparseLinear
torch.manual_seed(0)
def t(fn, n=20000):
    for _ in range(2000): fn()
    best = []
    for r in range(7):
        t0 = time.perf_counter_ns()
        for _ in range(n): fn()
        best.append((time.perf_counter_ns() - t0) / n / 1e3)
    return round(min(best), 2), round(sorted(best)[3], 2)
res = {"when": f"{datetime.datetime.now():%Y-%m-%d %H:%M}", "cpu": open("/proc/cpuinfo").read().split("model name")[1].split(":")[1].split("\n")[0].strip(), "threads": torch.get_num_threads()}
with torch.inference_mode():
    a = torch.zeros(256)
    res["torch.add 256 floats (dispatcher floor)"] = t(lambda: torch.add(a, a))
    for H in (64, 256):
        m = EGRU(H, H, num_layers=2).eval().sparsify(layout="sparse")
        x = torch.zeros(1, H); st = (torch.zeros(2, 1, H), torch.zeros(2, 1, H))
        s = m.stream(batch_size=1); xu = torch.zeros(H); su = m.stream()
        res[f"EGRU 2x{H} nothing active: PackedEGRU.step"] = t(lambda: m.step(x, st))
        res[f"EGRU 2x{H} nothing active: stream.step"] = t(lambda: s.step(x))
        res[f"EGRU 2x{H} nothing active: stream.step unbatched"] = t(lambda: su.step(xu))
    lin = SparseLinear.from_module(torch.nn.Linear(256, 768), torch.rand(768, 256) < 0.15, layout="sparse")
    pw = lin.packed; x = torch.zeros(1, 256)
    res["sparse_linear 256x768 nothing active: evsparse.sparse_linear"] = t(lambda: evsparse.sparse_linear(x, pw))
    res["sparse_linear 256x768 nothing active: SparseLinear module"] = t(lambda: lin(x))
    op = torch.ops.evsparse.sparse_gather_linear.default._op
    cp, ri, v = pw.col_ptr, pw.row_idx, pw.values
    res["sparse_linear 256x768 nothing active: raw op"] = t(lambda: op(x, cp, ri, v, 768, None))
    for W, dens in ((64, 1.0), (192, 0.1)):
        r = SparseLinearRNN(W, W, W, num_layers=3, complex=True).eval()
        masks = None if dens == 1.0 else {f"weight_{n}_l{k}": torch.rand(*getattr(r, f"weight_{n}_l{k}").shape) < dens for k in range(3) for n in ("in", "out")}
        p = r.sparsify(masks, layout="sparse" if dens < 0.5 else "dense")
        g = torch.Generator().manual_seed(0)
        xs = [torch.randn(1, W, generator=g).relu() * (torch.rand(1, W, generator=g) < 0.2) for _ in range(16)]
        h = torch.zeros(3, 1, p.width); s = p.stream(batch_size=1)
        i = [0]
        def step():
            i[0] = (i[0] + 1) & 15
            return p.step(xs[i[0]], h)
        def stream():
            i[0] = (i[0] + 1) & 15
            return s.step(xs[i[0]])
        res[f"linear RNN 3 layers complex width {W}, weight density {dens}: PackedLinearRNN.step"] = t(step)
        res[f"linear RNN 3 layers complex width {W}, weight density {dens}: stream.step"] = t(stream)
for k, v in res.items(): print(f"{k}: {v}")
import sys
if len(sys.argv) > 1:
    json.dump(res, open(sys.argv[1], "w"), indent=1)
