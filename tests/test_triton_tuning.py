"""Autotuning of the Triton product kernels (evsparse.gpu.tuning): the activity buckets, the hints
learnt from device counters, and that tuning runs (which launch every candidate on the real
arguments) leave the results right."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton")

from evsparse.gpu import tuning  # noqa: E402


def test_activity_buckets():
    assert [tuning.activity_bucket(a, 100) for a in (0, 4, 5, 15, 16, 40, 41, 100)] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert tuning.activity_bucket(0, 0) == 0


def test_hints_learn_the_bucket_from_observed_counters():
    hints = tuning.ActivityHints()
    assert hints.bucket(100) == tuning.DEFAULT_BUCKET  # nothing seen yet
    hints.observe(100, torch.tensor([60, 2], dtype=torch.int32))  # first call: observed (busiest row counts)
    assert hints.bucket(100) == 3
    assert hints.bucket(200) == tuning.DEFAULT_BUCKET  # per input width
    for _ in range(tuning.OBSERVE_EVERY - 1):  # the next calls are not observed
        hints.observe(100, torch.tensor([1], dtype=torch.int32))
    assert hints.bucket(100) == 3
    hints.observe(100, torch.tensor([1], dtype=torch.int32))  # the OBSERVE_EVERY-th next one is
    assert hints.bucket(100) == 0


_AUTOTUNED_RUN = textwrap.dedent("""
    import json, torch, evsparse
    from evsparse.gpu import sparse_linear as launch, tuning
    assert tuning.AUTOTUNE
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    g = torch.Generator().manual_seed(0)
    w = torch.randn(40, 300, generator=g) * (torch.rand(40, 300, generator=g) < 0.5)
    b = torch.randn(40, generator=g)
    dense, sparse = evsparse.pack(w, layout="dense").to(dev), evsparse.pack(w, layout="sparse").to(dev)
    w, b = w.to(dev), b.to(dev)
    worst = 0.0
    for activity in (0.02, 0.3):
        x = (torch.randn(1, 300, generator=g) * (torch.rand(1, 300, generator=g) < activity)).to(dev)
        ref = x @ w.T + b
        for _ in range(tuning.OBSERVE_EVERY + 1):  # enough calls for the hint to see this activity
            ys = [launch.gather_linear(x, dense.values, b), launch.gather_linear(x, dense.values, b, "two_pass"),
                  launch.sparse_gather_linear(x, sparse.col_ptr, sparse.row_idx, sparse.values, 40, b),
                  launch.masked_splitk_linear(x, dense.values, b)]
            worst = max([worst] + [float((y - ref).abs().max()) for y in ys])
    print(json.dumps({"worst": worst, "keys": [list(map(str, k)) for k in launch.DENSE_GATHER.tuned.cache],
                      "sparse_keys": len(launch.SPARSE_GATHER.tuned.cache)}))
""")


def test_autotuned_kernels_stay_correct_and_key_on_the_activity_bucket():
    """Under the interpreter with autotuning forced on (EVSPARSE_GPU_AUTOTUNE=1, timed by the wall
    clock): every candidate runs on the caller's output buffer, so without restoring it the atomics
    would add the product once per timing run."""
    env = dict(os.environ, EVSPARSE_GPU_AUTOTUNE="1")
    if not HAS_CUDA:
        env["TRITON_INTERPRET"] = "1"
    run = subprocess.run([sys.executable, "-c", _AUTOTUNED_RUN], env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["worst"] < 1e-4
    # (in, out, bucket, dtypes...): the default bucket first, then the one observed for 2% activity,
    # then the one for 30%
    buckets = {int(k[2]) for k in out["keys"]}
    assert {0, 2} <= buckets and all(k[:2] == ["300", "40"] for k in out["keys"])
    assert out["sparse_keys"] >= 2


def _candidates():
    """(kernel name, TunedKernel, config) for every candidate. The interpreter ignores num_warps and
    num_stages, so there one config per block shape is enough."""
    from evsparse.gpu import sparse_linear as launch

    params = []
    for name, kernel in launch.TUNED_KERNELS.items():
        seen = set()
        for cfg in kernel.configs:
            shape = tuple(sorted(cfg.kwargs.items()))
            if not HAS_CUDA and shape in seen:
                continue
            seen.add(shape)
            label = "-".join(f"{k}{v}" for k, v in shape) + f"-w{cfg.num_warps}"
            params.append(pytest.param(name, kernel, cfg, id=f"{name}-{label}"))
    return params


@pytest.mark.parametrize("name, kernel, config", _candidates())
def test_every_tuning_candidate_matches_the_dense_reference(monkeypatch, name, kernel, config):
    """Each configuration the autotuner may pick, launched on its own (the tuner only times them and
    keeps one): tiles wider than the sizes, odd sizes that leave ragged edge tiles, two batch rows with
    different activity. On a GPU this is where a tile-specific miscompile would show."""
    from evsparse.gpu import sparse_linear as launch

    monkeypatch.setattr(kernel, "tuned", None)
    monkeypatch.setattr(kernel, "fixed", config)
    dev = "cuda" if HAS_CUDA else "cpu"
    g = torch.Generator().manual_seed(1)
    # Row 2 of x has over 128 active inputs (several blocks even at BLOCK_K=64); a sparse column holds
    # ~280 nonzeros (several blocks even at BLOCK=256, the last one ragged).
    n_in, n_out = (37, 700) if name.startswith("sparse") else (147, 150)
    w = torch.randn(n_out, n_in, generator=g) * (torch.rand(n_out, n_in, generator=g) < 0.4)
    x = torch.randn(2, n_in, generator=g) * (torch.rand(2, n_in, generator=g) < torch.tensor([[0.1], [0.95]]))
    b = torch.randn(n_out, generator=g)
    ref = x @ w.T + b
    x, w, b = x.to(dev), w.to(dev), b.to(dev)
    if name.startswith("sparse"):
        import evsparse

        p = evsparse.pack(w.cpu(), layout="sparse").to(dev)
        y = launch.sparse_gather_linear(x, p.col_ptr, p.row_idx, p.values, n_out, b,
                                        deterministic=name.endswith("partial"))
    elif name == "masked_splitk":
        y = launch.masked_splitk_linear(x, w.t().contiguous(), b)
    else:
        y = launch.gather_linear(x, w.t().contiguous(), b, reduction="two_pass" if name.endswith("partial") else "atomic")
    torch.testing.assert_close(y.cpu(), ref, rtol=1e-4, atol=1e-4)
