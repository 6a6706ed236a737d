"""Cost of a Python autograd formula (torch.library.register_autograd) on a no-grad call."""
import torch, time
torch.ops.load_library("./libstable_ops.so")
x = torch.ones(3)
op = torch.ops.sttest.ident.default
def t(f, n=100000):
    best=1e9
    for _ in range(5):
        s=time.perf_counter()
        for _ in range(n): f()
        best=min(best,(time.perf_counter()-s)/n*1e6)
    return best
print("plain", t(lambda: op(x)))
torch.library.register_autograd("sttest::ident", lambda ctx, g: g)
with torch.no_grad():
    print("registered, no_grad", t(lambda: op(x)))
    G = torch._C._AutoDispatchBelowAutograd
    def f():
        with G(): return op(x)
    print("registered, no_grad, below-autograd guard", t(f))
with torch.inference_mode():
    print("registered, inference", t(lambda: op(x)))
print("registered, grad on, no requires_grad", t(lambda: op(x)))
