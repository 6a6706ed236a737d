"""Per-call cost of a do-nothing op on the Stable ABI vs the libtorch C++ API (build.sh first)."""
import torch, time
torch.ops.load_library("./libstable_ops.so"); torch.ops.load_library("./liblegacy_ops.so")
x = torch.ones(3); a=torch.ones(5)
def t(f, *args, n=100000):
    best=1e9
    for _ in range(5):
        s=time.perf_counter()
        for _ in range(n): f(*args)
        best=min(best,(time.perf_counter()-s)/n*1e6)
    return best
for mode in ("grad", "no_grad", "inference"):
    ctx = {"grad": torch.enable_grad, "no_grad": torch.no_grad, "inference": torch.inference_mode}[mode]
    with ctx():
        print(mode, "ident stable %.2f legacy %.2f" % (t(torch.ops.sttest.ident.default, x), t(torch.ops.lgtest.ident.default, x)),
          "many stable %.2f legacy %.2f" % (t(torch.ops.sttest.many.default, x,a,a,None,a,a,None,a,a,a), t(torch.ops.lgtest.many.default, x,a,a,None,a,a,None,a,a,a)))
