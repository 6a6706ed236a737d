// Test builds only (scripts/test_avx512_emulated.sh): lets the AVX-512 kernels run on a CPU without
// AVX-512 by mapping the _mm512_* intrinsics to SIMDe's portable versions (Debian: libsimde-dev),
// which run on AVX2 underneath. This checks the kernels' logic (vector width, tails, slices, half
// widening), not the hardware instructions themselves. Never part of the distributed build.
#pragma once

#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>

// SIMDe 0.7.4 has no 512-bit forms of these four (the int8 ones are at the end): widen each 256-bit half with the native AVX2/F16C
// instruction and reassemble through memory.
static inline __m512 evsparse_emu_mm512_cvtph_ps(__m256i h) {
  alignas(64) float f[16];
  _mm256_store_ps(f, _mm256_cvtph_ps(_mm256_castsi256_si128(h)));
  _mm256_store_ps(f + 8, _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1)));
  return _mm512_load_ps(f);
}
static inline __m512i evsparse_emu_mm512_cvtepu16_epi32(__m256i h) {
  alignas(64) int32_t v[16];
  _mm256_store_si256(reinterpret_cast<__m256i*>(v), _mm256_cvtepu16_epi32(_mm256_castsi256_si128(h)));
  _mm256_store_si256(reinterpret_cast<__m256i*>(v + 8), _mm256_cvtepu16_epi32(_mm256_extracti128_si256(h, 1)));
  return _mm512_load_si512(v);
}
#define _mm512_cvtph_ps(h) evsparse_emu_mm512_cvtph_ps(h)
#define _mm512_cvtepu16_epi32(h) evsparse_emu_mm512_cvtepu16_epi32(h)
static inline __m512i evsparse_emu_mm512_cvtepi8_epi32(__m128i b) {
  alignas(64) int32_t v[16];
  _mm256_store_si256(reinterpret_cast<__m256i*>(v), _mm256_cvtepi8_epi32(b));
  _mm256_store_si256(reinterpret_cast<__m256i*>(v + 8), _mm256_cvtepi8_epi32(_mm_srli_si128(b, 8)));
  return _mm512_load_si512(v);
}
static inline __m512 evsparse_emu_mm512_cvtepi32_ps(__m512i w) {
  alignas(64) int32_t v[16];
  alignas(64) float f[16];
  _mm512_store_si512(v, w);
  for (int i = 0; i < 16; ++i) f[i] = static_cast<float>(v[i]);
  return _mm512_load_ps(f);
}
#define _mm512_cvtepi8_epi32(b) evsparse_emu_mm512_cvtepi8_epi32(b)
#define _mm512_cvtepi32_ps(w) evsparse_emu_mm512_cvtepi32_ps(w)

// Nor the masked loads and stores the bitmask-gather uses (a mask is a plain integer here): element by
// element through memory, reading and writing only the lanes the mask selects, as the instructions do.
static inline __m512 evsparse_emu_mm512_maskz_expandloadu_ps(unsigned k, const void* p) {
  alignas(64) float f[16];
  const float* s = static_cast<const float*>(p);
  int n = 0;
  for (int i = 0; i < 16; ++i) f[i] = (k >> i & 1u) ? s[n++] : 0.f;
  return _mm512_load_ps(f);
}
static inline __m512 evsparse_emu_mm512_maskz_loadu_ps(unsigned k, const void* p) {
  alignas(64) float f[16];
  const float* s = static_cast<const float*>(p);
  for (int i = 0; i < 16; ++i) f[i] = (k >> i & 1u) ? s[i] : 0.f;
  return _mm512_load_ps(f);
}
static inline void evsparse_emu_mm512_mask_storeu_ps(void* p, unsigned k, __m512 v) {
  alignas(64) float f[16];
  _mm512_store_ps(f, v);
  float* d = static_cast<float*>(p);
  for (int i = 0; i < 16; ++i) {
    if (k >> i & 1u) d[i] = f[i];
  }
}
#define _mm512_maskz_expandloadu_ps(k, p) evsparse_emu_mm512_maskz_expandloadu_ps(k, p)
#define _mm512_maskz_loadu_ps(k, p) evsparse_emu_mm512_maskz_loadu_ps(k, p)
#define _mm512_mask_storeu_ps(p, k, v) evsparse_emu_mm512_mask_storeu_ps(p, k, v)
