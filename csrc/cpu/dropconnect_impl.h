// DropConnect's mask, drawn per element from a counter-based hash of (seed, element index) instead of
// a stateful generator: any thread can draw any range, and the backward redraws exactly the forward's
// mask from the seed alone (nothing is stored). torch's bernoulli_ draws ~8 ns per element on one
// thread (3.7 ms for PTB-small's 1152 x 384 recurrent weight, 2026-12-03 Xeon); this is a few integer
// operations per element that the compiler vectorises. Included by gather_table.inc (float, every ISA)
// and gather_scalar.cpp (double).
#pragma once

#include <algorithm>
#include <cstdint>

namespace evsparse::cpu {
namespace {  // internal linkage, see simd.h
namespace impl {

// A 32-bit integer hash with low bias ("lowbias32", C. Wellons): a bijection whose output bits each
// depend on every input bit.
inline uint32_t dropconnect_mix(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}

// out[i] = keep(i) ? in[i] * scale : 0 for i in [i0, i1), where element i is kept when its 32-bit draw
// is below keep_below (the keep probability times 2^32). The draw keys two rounds of the hash with the
// seed's two halves, and the index's high half (tensors beyond 2^32 elements) with the second.
template <class A>
void dropconnect(const A* in, A* out, int64_t i0, int64_t i1, uint64_t seed, uint32_t keep_below, A scale) {
  const uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
  int64_t i = i0;
  while (i < i1) {
    const uint64_t hi = uint64_t(i) >> 32;
    const uint32_t k1h = hi == 0 ? k1 : k1 ^ dropconnect_mix(uint32_t(hi) + 0x632be5abu);
    const int64_t end = std::min<int64_t>(i1, int64_t((hi + 1) << 32));
    const uint32_t base = uint32_t(i);
    const int64_t n = end - i;
    const A* src = in + i;
    A* dst = out + i;
    for (int64_t q = 0; q < n; ++q) {
      const uint32_t draw = dropconnect_mix(dropconnect_mix(base + uint32_t(q) + k0) ^ k1h);
      dst[q] = draw < keep_below ? src[q] * scale : A(0);
    }
    i = end;
  }
}

}  // namespace impl
}  // namespace
}  // namespace evsparse::cpu
