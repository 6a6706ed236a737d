"""Dense PyTorch references and tolerances shared by the tests."""

import torch
import torch.nn.functional as F

# (x dtype, weight dtype) combinations the ops accept.
DTYPE_COMBOS = [
    (torch.float32, torch.float32),
    (torch.float32, torch.float16),
    (torch.float32, torch.bfloat16),
    (torch.float64, torch.float64),
    (torch.float16, torch.float16),
    (torch.bfloat16, torch.bfloat16),
]


def random_problem(gen, out, inp, activity, density, batch, x_dtype, w_dtype):
    """Random weight, mask and input with the given fraction of nonzero inputs / kept weights."""
    w = torch.randn(out, inp, generator=gen).to(w_dtype)
    mask = torch.rand(out, inp, generator=gen) < density
    shape = (inp,) if batch is None else (batch, inp)
    x = torch.randn(shape, generator=gen) * (torch.rand(shape, generator=gen) < activity)
    bias = torch.randn(out, generator=gen)
    return w, mask, x.to(x_dtype), bias


def dense_reference(x, w, mask, bias):
    """F.linear in float64 on the exact (already rounded) operands."""
    wm = (w.double() * mask) if mask is not None else w.double()
    b = None if bias is None else bias.double()
    return F.linear(x.double(), wm, b)


def assert_matches(y, x, w, mask, bias):
    """Compares with the float64 reference, with a bound on float32 accumulation error scaled by the
    magnitude of the summed products, plus the output rounding of half-precision outputs: relative for
    normal numbers, and half the subnormal spacing below them (a float16 output near 5e-6 is rounded
    to a multiple of 2**-24, so a relative bound alone is too tight there)."""
    ref = dense_reference(x, w, mask, bias)
    assert y.shape == ref.shape, (y.shape, ref.shape)
    assert y.dtype == x.dtype
    wm = (w.double().abs() * mask) if mask is not None else w.double().abs()
    scale = F.linear(x.double().abs(), wm) + (0 if bias is None else bias.double().abs())
    acc_eps = 1e-12 if (x.dtype == torch.float64) else 2e-6
    out_eps = {torch.float16: 1e-3, torch.bfloat16: 8e-3}.get(x.dtype, 0.0)
    half = x.dtype in (torch.float16, torch.bfloat16)
    out_floor = torch.finfo(x.dtype).smallest_normal * torch.finfo(x.dtype).eps / 2 if half else 0.0
    tol = acc_eps * scale * max(1.0, x.shape[-1] ** 0.5) + out_eps * ref.abs() + out_floor + 1e-30
    err = (y.double() - ref).abs()
    bad = err > tol
    assert not bool(bad.any()), f"max err {float(err.max())} at {bad.nonzero()[:3].tolist()}"
