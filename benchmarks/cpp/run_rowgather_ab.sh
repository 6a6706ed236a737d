#!/usr/bin/env bash
# Builds and runs the row-gather A/B (benchmarks/cpp/rowgather_ab.cpp); needs an AVX-512 CPU.
#   bash benchmarks/cpp/run_rowgather_ab.sh out in density [activity]   (e.g. 384 192 0.1)
set -euo pipefail
cd "$(dirname "$0")/../.."
bin="$(mktemp -d)/rowgather_ab"
g++ -O3 -std=c++17 -mavx512f -mavx512bw -mavx512vl -mfma -mf16c -mpopcnt -fno-trapping-math -fno-math-errno -Icsrc \
  benchmarks/cpp/rowgather_ab.cpp -o "$bin"
"$bin" "$@"
