"""Every Triton kernel compiles to a cubin for the H100 (sm_90) and the A100 (sm_80), on any host:
Triton's CUDA backend and its ptxas need no GPU. The interpreter runs the kernels' logic
(test_triton*.py) but never compiles them, so type errors, loop-carried type changes and constructs
that only the compiler rejects would otherwise first show on a GPU."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "triton_compile_check.py"


def _has_cuda_backend() -> bool:
    try:
        from triton.backends.nvidia import compiler  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _has_cuda_backend(), reason="this Triton build has no CUDA backend")
def test_every_kernel_compiles_for_sm80_and_sm90():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    run = subprocess.run([sys.executable, str(SCRIPT), "--arch", "80", "90"], env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    lines = [ln for ln in run.stdout.splitlines() if ln.startswith("sm_")]
    for kernel in ("compact_active_kernel", "compact_ordered_kernel", "dense_gather_kernel",
                   "reduce_splits_kernel", "sparse_gather_kernel",
                   "sparse_gather_partial_kernel", "masked_splitk_kernel", "egru_gate_kernel",
                   "egru_sequence_persistent_kernel", "diagonal_scan_kernel"):
        for arch in ("sm_80", "sm_90"):
            assert any(ln.startswith(f"{arch} {kernel} ") and ln.endswith(": ok") for ln in lines), (arch, kernel)
    for variant in ("atomic]", "two-pass]"):  # the dense-gather kernel's two reductions
        assert any(ln.startswith("sm_90 dense_gather_kernel ") and variant in ln for ln in lines), variant
    assert not any("FAILED" in ln for ln in lines)
