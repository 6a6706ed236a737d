"""The S5 stack (evsparse.nn.S5Stack, the paper's denoiser shape: 257 -> H blocks -> 257) per 8 ms
frame at batch 1 (pytest-benchmark): one ``s5_plan_step`` call on the plan (dense and 90%-ERK-pruned,
float32 and int8, and pruned in 16x1 blocks) against a lean dense PyTorch step of the same folded model
(``evsparse.bench.s5.torch_dense_step``) and the training module's step. The paced (one call per 8 ms)
figures are in ``python -m evsparse.bench.s5`` and the report.

    pytest benchmarks/test_bench_s5.py --benchmark-group-by=param:k
"""

import functools

import pytest
import torch

from evsparse import prune
from evsparse.bench.s5 import masked_copy, torch_dense_step
from evsparse.nn import S5Stack
from evsparse.nn.s5 import width_scale

WIDTHS = [0.5, 1.0]  # the paper's width scale k: H = 192 k, P = 256 k, 16 k init blocks


@functools.lru_cache(maxsize=None)
def _case(k):
    torch.manual_seed(0)
    m = S5Stack(257, num_layers=3, output_size=257, **width_scale(k)).eval()
    masks = prune.erk_magnitude(m, 0.9)
    pruned = masked_copy(m, masks, k)
    block_masks = prune.erk_magnitude(m, 0.9, block=16)
    blocked = masked_copy(m, block_masks, k)
    frames = [torch.rand(257) for _ in range(16)]  # magnitudes: dense input
    return m, pruned, masks, frames, blocked.sparsify(block_masks)


def _step_loop(step, frames, state):
    it = iter(range(1 << 62))

    def run():
        nonlocal state
        _, state = step(frames[next(it) % len(frames)], state)

    return run


@pytest.mark.parametrize("method", ["pytorch-module", "pytorch-lean", "plan-dense", "plan-90%", "plan-90%-int8",
                                    "plan-90%-blocks"])
@pytest.mark.parametrize("k", WIDTHS)
def test_s5_stack_step(benchmark, k, method):
    m, pruned, masks, frames, blocked = _case(k)
    if method == "pytorch-module":
        step, state = m.step, torch.zeros(3, m.state_size)
    elif method == "pytorch-lean":
        lean = torch_dense_step(m)

        def step(x, s):  # unbatched, as the other methods are called
            y, h = lean(x[None], s[:, None])
            return y[0], h[:, 0]
        state = torch.zeros(3, m.state_size)
    elif method == "plan-90%-blocks":
        step, state = blocked.step, torch.zeros(3, m.state_size)
    else:
        model = m.sparsify(layout="dense") if method == "plan-dense" else pruned.sparsify(
            masks, weight_dtype=torch.int8 if method.endswith("int8") else None)
        step, state = model.step, torch.zeros(3, m.state_size)
    with torch.inference_mode():
        benchmark(_step_loop(step, frames, state))
