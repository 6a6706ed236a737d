"""Launch configurations of the Triton product kernels: autotuned on a GPU, keyed by the sizes and an
activity bucket; one fixed configuration under ``TRITON_INTERPRET=1`` (where autotuning would time the
interpreter).

The best tile depends on how many inputs are active (few active inputs: small ``BLOCK_K`` and wide
output tiles keep enough programs busy; many: larger ``BLOCK_K`` amortises the index loads), but that
count lives on the device and reading it would cost a host synchronisation per call. So the key uses
the activity *seen earlier* at the same input width: every :data:`OBSERVE_EVERY`-th call copies its
device counter to pinned host memory asynchronously, and later calls read it once its copy event has
completed. Nothing ever waits. The first calls, and calls inside CUDA-graph capture (where nothing is
observed), use the last bucket known, :data:`DEFAULT_BUCKET` before any.

Environment: ``EVSPARSE_GPU_AUTOTUNE=0`` turns autotuning off on a GPU (fixed configuration);
``=1`` turns it on under the interpreter too (the tests do, with a wall-clock timer, to check that
tuning runs leave the results right).
"""

from __future__ import annotations

import os
import time
from typing import Optional, Sequence

import torch
import triton

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
AUTOTUNE = os.environ.get("EVSPARSE_GPU_AUTOTUNE", "0" if INTERPRET else "1") == "1"

# Upper edges of the activity buckets 0, 1, 2 (fraction of inputs active); bucket 3 is above.
BUCKET_EDGES = (0.04, 0.15, 0.4)
DEFAULT_BUCKET = 1  # event-RNN activity (5-15%) until something has been observed
OBSERVE_EVERY = 16


def activity_bucket(active: int, n_in: int) -> int:
    """The bucket of ``active`` nonzero inputs out of ``n_in``."""
    frac = active / max(n_in, 1)
    return sum(frac > edge for edge in BUCKET_EDGES)


class ActivityHints:
    """Last known activity bucket per input width, learnt from device counters without a sync."""

    def __init__(self):
        self._bucket: dict[int, int] = {}
        self._pending: dict[int, tuple] = {}  # n_in -> (host counts, copy event or None)
        self._pinned: dict[int, torch.Tensor] = {}  # n_in -> reusable pinned buffer
        self._calls: dict[int, int] = {}

    def bucket(self, n_in: int) -> int:
        """The bucket to key this call on. Frozen during CUDA-graph capture: the capture then reuses
        the configuration its warm-up calls were tuned for (tuning cannot run inside a capture)."""
        pending = self._pending.get(n_in)
        if pending is not None and (pending[1] is None or (not torch.cuda.is_current_stream_capturing()
                                                           and pending[1].query())):
            host = pending[0]
            self._bucket[n_in] = activity_bucket(int(host.max()), n_in)
            del self._pending[n_in]
        return self._bucket.get(n_in, DEFAULT_BUCKET)

    def observe(self, n_in: int, count: torch.Tensor) -> None:
        """Notes the device counter(s) ``count`` (int32, any shape) of a call with ``n_in`` inputs:
        every :data:`OBSERVE_EVERY`-th call, and never during CUDA-graph capture."""
        calls = self._calls.get(n_in, 0)
        self._calls[n_in] = calls + 1
        if calls % OBSERVE_EVERY or n_in in self._pending or count.numel() == 0:
            return
        if count.device.type != "cuda":  # interpreter: the counter is host memory already
            self._pending[n_in] = (count.detach().clone(), None)
            return
        if torch.cuda.is_current_stream_capturing():
            return
        host = self._pinned.get(n_in)
        if host is None or host.shape != count.shape:  # free to reuse: nothing of n_in is pending
            host = self._pinned[n_in] = torch.empty(count.shape, dtype=count.dtype, pin_memory=True)
        host.copy_(count, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        self._pending[n_in] = (host, event)


HINTS = ActivityHints()


def _wall_clock_bench(fn, quantiles=None):
    """Autotune timer for the interpreter (Triton's own needs a GPU driver)."""
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    best = min(times)
    return [best, best, best] if quantiles else best


class TunedKernel:
    """A Triton kernel launched with a fixed configuration, or autotuned over ``configs`` keyed by
    ``key`` (kernel argument names). ``restore`` names the outputs the kernel accumulates into: the
    autotuner puts them back after each timing run, so tuning never changes a result."""

    def __init__(self, kernel, fixed: triton.Config, configs: Sequence[triton.Config], key: Sequence[str],
                 restore: Sequence[str] = ()):
        self.kernel = kernel
        self.fixed = fixed
        self.configs = list(configs)  # the candidates, also when not autotuning (tests, compile check)
        self.tuned = None
        if AUTOTUNE:
            extra = {"do_bench": _wall_clock_bench} if INTERPRET else {"warmup": 5, "rep": 25}
            self.tuned = triton.autotune(configs=self.configs, key=list(key), restore_value=list(restore),
                                         **extra)(kernel)

    def __call__(self, grid, *args, **kwargs) -> None:
        """``grid(meta)`` -> grid tuple, as Triton takes it; meta holds the chosen block sizes."""
        if self.tuned is not None:
            self.tuned[grid](*args, **kwargs)
            return
        meta = dict(self.fixed.kwargs)
        self.kernel[grid(meta)](*args, **kwargs, **meta, num_warps=self.fixed.num_warps,
                                num_stages=self.fixed.num_stages)

    def chosen(self) -> Optional[dict]:
        """The autotuner's choices so far: {key tuple: config string} (None when not autotuning)."""
        if self.tuned is None:
            return None
        return {k: str(c) for k, c in self.tuned.cache.items()}


def product_configs(block_ks: Sequence[int], block_ns: Sequence[int], warps: Sequence[int]) -> list[triton.Config]:
    return [triton.Config({"BLOCK_K": k, "BLOCK_N": n}, num_warps=w) for k in block_ks for n in block_ns
            for w in warps]
