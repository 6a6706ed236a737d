"""The torch-free kernel core on its own: builds tests/cpp/kernel_selftest.cpp with the same per-ISA
flags as the extension and runs it (every ISA this CPU supports against a naive reference). On x86-64
with an aarch64 cross-compiler and qemu, scripts/test_aarch64.sh runs the same test for NEON."""

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
