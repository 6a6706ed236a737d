// A minimal float-vector abstraction, one definition per instruction set. Each gather_<isa>.cpp
// defines exactly one EVSPARSE_ISA_* macro before including this file, and is compiled with the
// matching -m flags, so one binary carries every variant and picks one at run time.
#pragma once

#include "types.h"

// (Test builds that emulate AVX-512 on SIMDe force-include tests/cpp/avx512_emulation.h before this
// file, from scripts/build_selftest.sh; production code never names a test header.)
#if defined(EVSPARSE_ISA_AVX2) || defined(EVSPARSE_ISA_AVX512)
#include <immintrin.h>
#elif defined(EVSPARSE_ISA_NEON)
#include <arm_neon.h>
#endif

namespace evsparse::cpu {
namespace {  // internal linkage: each ISA translation unit keeps its own copy

// Scalar "vector" of width 1; used for the portable fallback and for float64.
template <class A>
struct ScalarVec {
  using reg = A;
  static constexpr int W = 1;
  static reg zero() { return A(0); }
  static reg set1(A v) { return v; }
  static reg load(const A* p) { return *p; }
  template <class T>
  static reg loadw(const T* p) { return static_cast<A>(to_float(*p)); }
  static void store(A* p, reg v) { *p = v; }
  static reg fma(reg a, reg b, reg c) { return a * b + c; }
  static reg mul(reg a, reg b) { return a * b; }
  static reg add(reg a, reg b) { return a + b; }
  // Keeps the compiler from fusing a multiply into the next add (-ffp-contract=fast): a value it cannot see.
  static reg opaque(reg v) {
    asm volatile("" : "+m"(v));
    return v;
  }
};

#if defined(EVSPARSE_ISA_AVX2) || defined(EVSPARSE_ISA_AVX512)
// Range checks of the sparse-gather's row indices, 16 at a time: true if any unsigned r - o0 >= len
// (len >= 1). Exact while o0 + len <= 2^15 (int16 indices address at most 32768 rows) or 2^31
// (int32). AVX2 for both x86 tables: every AVX-512 CPU has it, and 16 indices fit 256 bits anyway.
inline bool outside16_x86(const int16_t* r, int64_t o0, int64_t len) {
  const __m256i d = _mm256_sub_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(r)),
                                     _mm256_set1_epi16(static_cast<int16_t>(o0)));
  // d - (len - 1), saturating at 0, is nonzero exactly where d > len - 1 (unsigned): one vptest.
  const __m256i over = _mm256_subs_epu16(d, _mm256_set1_epi16(static_cast<int16_t>(len - 1)));
  return !_mm256_testz_si256(over, over);
}
inline bool outside16_x86(const int32_t* r, int64_t o0, int64_t len) {
  const __m256i off = _mm256_set1_epi32(static_cast<int32_t>(o0));
  const __m256i lim = _mm256_set1_epi32(static_cast<int32_t>(len - 1));
  const __m256i d0 = _mm256_sub_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(r)), off);
  const __m256i d1 = _mm256_sub_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(r + 8)), off);
  const __m256i in = _mm256_and_si256(_mm256_cmpeq_epi32(_mm256_min_epu32(d0, lim), d0),
                                      _mm256_cmpeq_epi32(_mm256_min_epu32(d1, lim), d1));
  return _mm256_movemask_epi8(in) != -1;
}
#endif

#if defined(EVSPARSE_ISA_AVX2) || defined(EVSPARSE_ISA_AVX512)
// 8 floats in a 256-bit register: the AVX2 build's vector, and the AVX-512 build's where vector work
// sits among scalar float adds (FloatVec::Narrow below).
struct Vec256 {
  using reg = __m256;
  static constexpr int W = 8;
  static reg zero() { return _mm256_setzero_ps(); }
  static reg set1(float v) { return _mm256_set1_ps(v); }
  static reg load(const float* p) { return _mm256_loadu_ps(p); }
  static reg loadw(const float* p) { return _mm256_loadu_ps(p); }
  static reg loadw(const f16* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static reg loadw(const bf16* p) {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
  }
  static reg loadw(const int8_t* p) {  // 8 bytes: exactly the W weights asked for
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
  }
  static void store(float* p, reg v) { _mm256_storeu_ps(p, v); }
  static reg fma(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  static reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
  static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  static reg opaque(reg v) {
    asm volatile("" : "+x"(v));
    return v;
  }
  template <class I>
  static bool outside16(const I* r, int64_t o0, int64_t len) { return outside16_x86(r, o0, len); }
};
#endif

#if defined(EVSPARSE_ISA_AVX2)
using FloatVec = Vec256;
inline float widen(f16 v) { return _cvtsh_ss(v.bits); }

#elif defined(EVSPARSE_ISA_AVX512)
struct FloatVec {
  using reg = __m512;
  static constexpr int W = 16;
  static reg zero() { return _mm512_setzero_ps(); }
  static reg set1(float v) { return _mm512_set1_ps(v); }
  static reg load(const float* p) { return _mm512_loadu_ps(p); }
  static reg loadw(const float* p) { return _mm512_loadu_ps(p); }
  static reg loadw(const f16* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static reg loadw(const bf16* p) {
    const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
  }
  static reg loadw(const int8_t* p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
  }
  static void store(float* p, reg v) { _mm512_storeu_ps(p, v); }
  static reg fma(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
  static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  // While 512-bit instructions are in flight, Intel cores shut port 1's vector unit, which also runs
  // scalar float adds: the sparse-gather's scatter (a SIMD product per 16 scalar adds) ran at 0.85-0.96x
  // of the AVX2 build on the Xeon, and at 0.96-1.06x once its products used 256-bit vectors
  // (benchmarks/results/cpu-2026-12-04-xeon/isa_ab*.txt).
  using Narrow = Vec256;
  static reg opaque(reg v) {
#if defined(EVSPARSE_EMULATE_AVX512)
    asm volatile("" : "+m"(v));
#else
    asm volatile("" : "+v"(v));
#endif
    return v;
  }
  template <class I>
  static bool outside16(const I* r, int64_t o0, int64_t len) { return outside16_x86(r, o0, len); }
};
inline float widen(f16 v) { return _cvtsh_ss(v.bits); }

#elif defined(EVSPARSE_ISA_NEON)
struct FloatVec {
  using reg = float32x4_t;
  static constexpr int W = 4;
  static reg zero() { return vdupq_n_f32(0.f); }
  static reg set1(float v) { return vdupq_n_f32(v); }
  static reg load(const float* p) { return vld1q_f32(p); }
  static reg loadw(const float* p) { return vld1q_f32(p); }
  static reg loadw(const f16* p) {
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(reinterpret_cast<const uint16_t*>(p))));
  }
  static reg loadw(const bf16* p) {
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(reinterpret_cast<const uint16_t*>(p)), 16));
  }
  static reg loadw(const int8_t* p) {  // 4 bytes, no more: an 8-byte vld1 could read past the end
    int32_t b;
    std::memcpy(&b, p, sizeof b);
    const int16x8_t w = vmovl_s8(vreinterpret_s8_s32(vdup_n_s32(b)));
    return vcvtq_f32_s32(vmovl_s16(vget_low_s16(w)));
  }
  static void store(float* p, reg v) { vst1q_f32(p, v); }
  static reg fma(reg a, reg b, reg c) { return vfmaq_f32(c, a, b); }
  static reg mul(reg a, reg b) { return vmulq_f32(a, b); }
  static reg add(reg a, reg b) { return vaddq_f32(a, b); }
  static reg opaque(reg v) {
    asm volatile("" : "+w"(v));
    return v;
  }
  // See outside16_x86: the largest unsigned r - o0 of 16 indices against len - 1.
  static bool outside16(const int16_t* r, int64_t o0, int64_t len) {
    const uint16x8_t off = vdupq_n_u16(static_cast<uint16_t>(o0));
    const uint16x8_t d0 = vsubq_u16(vreinterpretq_u16_s16(vld1q_s16(r)), off);
    const uint16x8_t d1 = vsubq_u16(vreinterpretq_u16_s16(vld1q_s16(r + 8)), off);
    return vmaxvq_u16(vmaxq_u16(d0, d1)) > static_cast<uint16_t>(len - 1);
  }
  static bool outside16(const int32_t* r, int64_t o0, int64_t len) {
    const uint32x4_t off = vdupq_n_u32(static_cast<uint32_t>(o0));
    uint32x4_t m = vsubq_u32(vreinterpretq_u32_s32(vld1q_s32(r)), off);
    for (int q = 4; q < 16; q += 4) m = vmaxq_u32(m, vsubq_u32(vreinterpretq_u32_s32(vld1q_s32(r + q)), off));
    return vmaxvq_u32(m) > static_cast<uint32_t>(len - 1);
  }
};
inline float widen(f16 v) {
  __fp16 h;
  std::memcpy(&h, &v.bits, sizeof h);
  return static_cast<float>(h);
}

#else
using FloatVec = ScalarVec<float>;
inline float widen(f16 v) { return to_float(v); }
#endif

inline float widen(float v) { return v; }
inline double widen(double v) { return v; }
inline float widen(bf16 v) { return to_float(v); }
inline float widen(int8_t v) { return to_float(v); }

}  // namespace
}  // namespace evsparse::cpu
