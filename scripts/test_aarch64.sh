#!/usr/bin/env bash
# Cross-compiles the kernel self-test for aarch64 and runs it under qemu: checks the NEON kernels
# from an x86-64 machine.  Needs: apt-get install g++-aarch64-linux-gnu qemu-user
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$(mktemp -d)/kernel_selftest_aarch64"
bash scripts/build_selftest.sh "$bin" aarch64-linux-gnu-g++
qemu-aarch64 -L /usr/aarch64-linux-gnu "$bin"
