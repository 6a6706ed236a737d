#!/usr/bin/env bash
# Builds and runs the EGRU training kernels' per-phase timing (benchmarks/cpp/egru_train_phases.cpp);
# x86-64. Arguments go to the program: T B H thr support. EVSPARSE_ISA=avx512 builds the AVX-512 kernels
# (default avx2).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin="$(mktemp -d)/egru_train_phases"
if [ "${EVSPARSE_ISA:-avx2}" = avx512 ]; then
  flags=(-mavx512f -mfma -mf16c -DEVSPARSE_ISA_AVX512=1)
else
  flags=(-mavx2 -mfma -mf16c)
fi
g++ -O3 -std=c++17 "${flags[@]}" -fno-trapping-math -fno-math-errno -Icsrc benchmarks/cpp/egru_train_phases.cpp -o "$bin"
"$bin" "$@"
