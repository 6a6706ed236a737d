#!/usr/bin/env bash
# Builds the torch-free kernel self-test (tests/cpp/kernel_selftest.cpp) with the same per-ISA flags
# as CMakeLists.txt.   scripts/build_selftest.sh OUT [CXX]   (CXX default: g++; its target picks the ISAs)
# With EVSPARSE_EMULATE_AVX512=1 (x86-64 only) the AVX-512 kernels are built on SIMDe over AVX2 instead
# (tests/cpp/avx512_emulation.h), so their logic runs on a CPU without AVX-512.
set -euo pipefail
cd "$(dirname "$0")/.."
out="$1"; cxx="${2:-g++}"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
common=(-O3 -std=c++17 -Icsrc -Wall -fno-trapping-math -fno-math-errno)
emulate=()
[ "${EVSPARSE_EMULATE_AVX512:-0}" = 1 ] && emulate=(-DEVSPARSE_EMULATE_AVX512 -Itests/cpp)
srcs=(csrc/cpu/dispatch.cpp csrc/cpu/gather_scalar.cpp tests/cpp/kernel_selftest.cpp)
objs=()
for s in "${srcs[@]}"; do o="$tmp/$(basename "$s").o"; "$cxx" "${common[@]}" "${emulate[@]}" -c "$s" -o "$o"; objs+=("$o"); done
machine="$("$cxx" -dumpmachine)"
case "$machine" in
  x86_64*)
    "$cxx" "${common[@]}" -mavx2 -mfma -mf16c -c csrc/cpu/gather_avx2.cpp -o "$tmp/avx2.o"
    if [ ${#emulate[@]} -gt 0 ]; then
      "$cxx" "${common[@]}" "${emulate[@]}" -include tests/cpp/avx512_emulation.h -mavx2 -mfma -mf16c -Wno-psabi \
        -c csrc/cpu/gather_avx512.cpp -o "$tmp/avx512.o"
    else
      "$cxx" "${common[@]}" -mavx512f -mfma -mf16c -Wno-maybe-uninitialized -c csrc/cpu/gather_avx512.cpp -o "$tmp/avx512.o"
    fi
    objs+=("$tmp/avx2.o" "$tmp/avx512.o") ;;
  aarch64*)
    "$cxx" "${common[@]}" -c csrc/cpu/gather_neon.cpp -o "$tmp/neon.o"; objs+=("$tmp/neon.o") ;;
esac
"$cxx" "${objs[@]}" -o "$out"
