#!/usr/bin/env bash
# Runs the kernel self-test with the AVX-512 kernels built on SIMDe (over AVX2): checks their logic on
# a CPU without AVX-512. Needs an x86-64 CPU with AVX2 and SIMDe headers (apt-get install libsimde-dev).
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$(mktemp -d)/kernel_selftest_avx512_emulated"
EVSPARSE_EMULATE_AVX512=1 bash scripts/build_selftest.sh "$bin"
"$bin"
