// Element types of the torch-free kernel core. Helpers are static: ISA-specific translation units
// include them, and an out-of-line copy built with AVX-512 flags must never be shared with others.
// Half-precision weights are carried as raw 16-bit
// patterns (layout-compatible with at::Half / at::BFloat16) and widened to float in registers, as
// are int8 weights.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace evsparse::cpu {

struct f16 {
  uint16_t bits;
};
struct bf16 {
  uint16_t bits;
};

static inline float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// IEEE half -> float in portable code (the SIMD paths use F16C / NEON instructions instead).
static inline float f16_to_float_portable(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return bits_to_float(sign | 0x7f800000u | (mant << 13));  // inf / nan
  if (exp != 0) return bits_to_float(sign | ((exp + 112u) << 23) | (mant << 13));
  if (mant == 0) return bits_to_float(sign);  // signed zero
  // Subnormal half: value = mant * 2^-24, exact in float.
  const float v = std::ldexp(static_cast<float>(mant), -24);
  return sign ? -v : v;
}

static inline float to_float(float v) { return v; }
static inline double to_float(double v) { return v; }
static inline float to_float(bf16 v) { return bits_to_float(uint32_t(v.bits) << 16); }
static inline float to_float(f16 v) { return f16_to_float_portable(v.bits); }
// int8 weights are quantised: the kernels read q, the op layer folds each input column's scale into
// that input's value (packed_product.h), so q widens to float exactly.
static inline float to_float(int8_t v) { return static_cast<float>(v); }

// The block-gather's index of a sparse structure (derived by the op layer from a validated one, never
// user data): blocked[j] says whether column j is made of 16x1 blocks of rows; if so its blocks start
// at rows starts[ptr[j] .. ptr[j + 1]) (multiples of 16, ascending, below n_out).
struct BlockIndex {
  const uint8_t* blocked;  // [in]
  const int64_t* ptr;      // [in + 1]
  const int32_t* starts;   // [ptr[in]]
};

}  // namespace evsparse::cpu
