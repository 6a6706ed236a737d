#!/usr/bin/env bash
# Builds and runs the EGRU training kernels' per-phase timing (benchmarks/cpp/egru_train_phases.cpp);
# x86-64 with AVX2. Arguments go to the program: T B H thr.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin="$(mktemp -d)/egru_train_phases"
g++ -O3 -std=c++17 -mavx2 -mfma -mf16c -fno-trapping-math -fno-math-errno -Icsrc benchmarks/cpp/egru_train_phases.cpp -o "$bin"
"$bin" "$@"
