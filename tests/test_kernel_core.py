"""The torch-free kernel core on its own: builds tests/cpp/kernel_selftest.cpp with the same per-ISA
flags as the extension and runs it (every ISA this CPU supports against a naive reference). On x86-64
with an aarch64 cross-compiler and qemu, scripts/test_aarch64.sh runs the same test for NEON; with SIMDe
headers, scripts/test_avx512_emulated.sh runs it for the AVX-512 kernels on a CPU without AVX-512."""

import platform

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_kernel_core_selftest(tmp_path):
    exe = tmp_path / "kernel_selftest"
    subprocess.run(["bash", str(ROOT / "scripts" / "build_selftest.sh"), str(exe)], check=True, cwd=ROOT)
    result = subprocess.run([str(exe)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 failed" in result.stdout and "scalar" in result.stdout


@pytest.mark.skipif(
    shutil.which("aarch64-linux-gnu-g++") is None or shutil.which("qemu-aarch64") is None,
    reason="needs an aarch64 cross-compiler and qemu-user",
)
def test_kernel_core_selftest_aarch64_neon():
    result = subprocess.run(["bash", str(ROOT / "scripts" / "test_aarch64.sh")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "neon" in result.stdout and "0 failed" in result.stdout


def _has_avx2() -> bool:
    try:
        return " avx2 " in Path("/proc/cpuinfo").read_text().replace("\n", " ")
    except OSError:
        return False


@pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64")
    or shutil.which("g++") is None
    or not Path("/usr/include/simde/x86/avx512.h").exists()
    or not _has_avx2(),
    reason="needs x86-64 with AVX2, g++ and SIMDe headers (apt-get install libsimde-dev)",
)
def test_kernel_core_selftest_avx512_emulated():
    """The AVX-512 kernels' logic (width 16, tails, slices, half widening) on SIMDe over AVX2: the
    only way they run on a CPU without AVX-512; a machine with AVX-512 runs them natively above."""
    result = subprocess.run(["bash", str(ROOT / "scripts" / "test_avx512_emulated.sh")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "avx512  bf16/int32   ok" in result.stdout and "0 failed" in result.stdout
