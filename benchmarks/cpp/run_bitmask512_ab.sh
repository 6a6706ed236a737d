#!/usr/bin/env bash
# Builds and runs the AVX-512 sparse-format A/B (benchmarks/cpp/bitmask512_ab.cpp); needs an AVX-512 CPU.
#   bash benchmarks/cpp/run_bitmask512_ab.sh [out in density activity]   (default 6144 2048 0.15 0.1)
set -euo pipefail
cd "$(dirname "$0")/../.."
bin="$(mktemp -d)/bitmask512_ab"
g++ -O3 -std=c++17 -mavx512f -mfma -mf16c -mpopcnt -fno-trapping-math -fno-math-errno -Icsrc \
  benchmarks/cpp/bitmask512_ab.cpp -o "$bin"
"$bin" "$@"
