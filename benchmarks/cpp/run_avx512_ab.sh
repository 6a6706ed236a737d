#!/usr/bin/env bash
# Builds and runs one of the AVX-512 kernel A/Bs of benchmarks/cpp (one thread, no torch) with the library's
# AVX-512 flags (CMakeLists.txt); needs an AVX-512 CPU.
#   bash benchmarks/cpp/run_avx512_ab.sh NAME [args]   NAME: bitmask512 | rowgather | block16 (NAME_ab.cpp;
#   its header comment gives the arguments, e.g. block16 6144 2048 0.15 0.1)
set -euo pipefail
cd "$(dirname "$0")/../.."
name="${1:?usage: run_avx512_ab.sh bitmask512|rowgather|block16 [args]}"; shift
bin="$(mktemp -d)/${name}_ab"
g++ -O3 -std=c++17 -mavx512f -mfma -mf16c -mpopcnt -fno-trapping-math -fno-math-errno -Icsrc \
  "benchmarks/cpp/${name}_ab.cpp" -o "$bin"
"$bin" "$@"
