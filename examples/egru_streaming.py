"""Train a small EGRU on a toy task (recall the sign of a pulse seen a few steps earlier) with an
activity penalty, then run it as a stream on the fused sparse kernels (functional steps, and an in-place
stream) and check it matches.

    python examples/egru_streaming.py --steps 300
"""

import argparse
import time

import torch
from torch import nn

from evsparse.nn import EGRU


def batch(n, T=20, delay=5):
    x = torch.zeros(T, n, 2)
    sign = torch.randint(0, 2, (n,)) * 2 - 1
    x[0, :, 0] = sign.float()
    x[:, :, 1] = torch.randn(T, n) * 0.1  # distractor noise
    target = torch.zeros(T, n)
    target[delay:] = sign.float()
    return x, target


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--activity-weight", type=float, default=0.002)
    args = ap.parse_args(argv)

    torch.manual_seed(0)
    egru = EGRU(2, args.hidden, thr_mean=0.05, dropconnect=0.1)
    head = nn.Linear(args.hidden, 1)
    opt = torch.optim.AdamW(list(egru.parameters()) + list(head.parameters()), lr=1e-2)
    for step in range(args.steps):
        x, target = batch(32)
        y, _ = egru(x)
        loss = nn.functional.mse_loss(head(y).squeeze(-1), target) + args.activity_weight * egru.activity_loss()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step:4d}  loss {loss.item():.4f}  activity {egru.activity()[0]:.3f}")

    egru.eval()
    sparse = egru.sparsify()
    x, target = batch(1)
    with torch.inference_mode():
        y_ref, _ = egru(x)
        state, outs = None, []
        t0 = time.perf_counter()
        for t in range(x.shape[0]):  # streaming, one fused op per step
            y_t, state = sparse.step(x[t], state)
            outs.append(y_t)
        per_step = (time.perf_counter() - t0) / x.shape[0]
        # The same stream with the state kept in place (no allocation per step): what a real-time loop uses.
        stream = sparse.stream(batch_size=1)
        in_place = []
        t0 = time.perf_counter()
        for t in range(x.shape[0]):
            in_place.append(stream.step(x[t]).clone())  # the stream's buffer is overwritten next step
        per_step_in_place = (time.perf_counter() - t0) / x.shape[0]
    y_stream = torch.stack(outs)
    assert torch.equal(torch.stack(in_place), y_stream)
    print(f"stream == training module: max diff {float((y_stream - y_ref).abs().max()):.1e}; "
          f"{per_step * 1e6:.1f} us per step ({per_step_in_place * 1e6:.1f} us in place); "
          f"activity {float((y_stream != 0).float().mean()):.3f}")


if __name__ == "__main__":
    main()
