#!/usr/bin/env bash
# Builds and runs the short-column A/B (benchmarks/cpp/short_columns_ab.cpp); x86-64 with AVX-512.
# Arguments: weight density (default 0.1), input activity (default 1.0).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin="$(mktemp -d)/short_columns_ab"
g++ -O3 -std=c++17 -mavx512f -mavx512bw -mavx512vl -mfma -mf16c -fno-trapping-math -fno-math-errno -Icsrc \
  benchmarks/cpp/short_columns_ab.cpp -o "$bin"
"$bin" "$@"
