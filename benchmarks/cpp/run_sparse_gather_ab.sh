#!/usr/bin/env bash
# Builds and runs the sparse-gather inner-loop A/B (benchmarks/cpp/sparse_gather_ab.cpp); x86-64 with AVX2.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin="$(mktemp -d)/sparse_gather_ab"
g++ -O3 -std=c++17 -mavx2 -mfma -mf16c -fno-trapping-math -fno-math-errno -Icsrc benchmarks/cpp/sparse_gather_ab.cpp -o "$bin"
"$bin"
