#!/usr/bin/env bash
# Builds and runs the bitmask-format A/B (benchmarks/cpp/bitmask_ab.cpp); x86-64 with AVX2.
#   bash benchmarks/cpp/run_bitmask_ab.sh [out in density activity]   (default 6144 2048 0.15 0.1)
set -euo pipefail
cd "$(dirname "$0")/../.."
bin="$(mktemp -d)/bitmask_ab"
g++ -O3 -std=c++17 -mavx2 -mfma -mf16c -mpopcnt -mbmi2 -fno-trapping-math -fno-math-errno -Icsrc \
  benchmarks/cpp/bitmask_ab.cpp -o "$bin"
"$bin" "$@"
