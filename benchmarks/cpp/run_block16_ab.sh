#!/usr/bin/env bash
# Builds and runs the 16x1 block A/B (benchmarks/cpp/block16_ab.cpp); needs an AVX-512 CPU.
#   bash benchmarks/cpp/run_block16_ab.sh out in density activity [copies]   (e.g. 6144 2048 0.15 0.1)
set -euo pipefail
cd "$(dirname "$0")/../.."
bin="$(mktemp -d)/block16_ab"
g++ -O3 -std=c++17 -mavx512f -mavx512bw -mavx512vl -mfma -mf16c -mpopcnt -fno-trapping-math -fno-math-errno -Icsrc \
  benchmarks/cpp/block16_ab.cpp -o "$bin"
"$bin" "$@"
