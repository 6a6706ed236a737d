// A/B of AVX-512 sparse formats against the library's CSC sparse-gather (issue #25, deliverable 1),
// one thread: W [out, in] at a given density, a fraction of the inputs active, y = W x.
//   csc    : the library's kernel (impl::sparse_gather, AVX-512 table): SIMD products, scalar
//            scatter-adds, int16 rows + fp32 values (6 bytes per nonzero).
//   csc4   : the same with the row indices read four per 64-bit load (fewer loads per nonzero).
//   gs     : the same CSC, gather-add-scatter 16 nonzeros at a time (rows are distinct within a column,
//            so no conflicts).
//   bitmask: per input column one 16-bit mask per 16-row block plus the values in row order (the CSC
//            values; masks take 1 bit per weight, where rows take 2 bytes per nonzero). Per
//            block one vexpandps and one FMA; bm-xr8 expands 16 loaded values in registers (needs 16
//            floats of padding) and bmk4/bmk8 expand from memory with the mask loaded straight into a
//            mask register, 8 or 4 active columns sharing one load/store of the output block.
// hot: the same active inputs every call; L3: inputs rotate (the columns come from L3, as in the
// report); cold: the matrices rotate too (10 copies, 75 MB at 2048 x 6144: mostly DRAM).
//
// Measured 2026-12-03 on the Intel Xeon (AVX-512, 2.6 GHz TSC, ~3.7 GHz core), 10% active, us:
//   6144 x 2048, 15%: hot   csc 66.0  bm-xr8 1.02x  bmk8 0.97x | L3 csc 86.6  bmk8 1.18x | cold csc 129.5  bmk8 1.45x
//   3072 x 1024, 15%: hot   csc 17.1  bmk8 1.05x             | L3 csc 18.9  bmk8 1.14x | cold csc 29.8   bmk8 1.32x
//   6144 x 2048, 30%: hot   csc 140.5 bm-xr8 2.00x bmk8 1.96x | L3 csc 166.7 bmk8 1.91x | cold csc 230.6  bmk8 2.18x
//   6144 x 2048,  5%: hot   csc 25.3  bmk8 0.37x             | L3 csc 29.8  bmk8 0.42x | cold csc 50.8   bmk8 0.61x
//   csc4 0.74-1.04x and gs 0.65-1.09x everywhere: no gain. An output-panel order (4-16 blocks in
//   registers while every active column adds to them) measured 0.64-0.81x hot at 15%, and was dropped.
// Why: the bitmask costs the same per 16-row block whatever the density (~65-70 us for the 78.7K
// blocks of 6144 x 2048 at 10%: ~3 core cycles per block, the expand's port), the CSC ~1.4 cycles per
// nonzero (load ports: index, product, y); at 15% a block holds 2.4 nonzeros, so the two tie warm and
// the bitmask wins by its fewer bytes only when the data comes from further away. At 30% it is 2x.
// Build and run:  bash benchmarks/cpp/run_avx512_ab.sh bitmask512 [out in density activity]   (default 6144 2048 0.15 0.1)
#define EVSPARSE_ISA_AVX512 1
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>
#include "cpu/gather_impl.h"
using namespace evsparse::cpu;
using I = int16_t;

static void gs(const float* xv, const int32_t* idx, int64_t na, const int64_t* cp, const I* rows, const float* vals,
               float* y, int64_t out) {
  for (int64_t o = 0; o < out; ++o) y[o] = 0;
  for (int64_t a = 0; a < na; ++a) {
    const __m512 s = _mm512_set1_ps(xv[a]);
    int64_t k = cp[idx[a]];
    const int64_t k1 = cp[idx[a] + 1];
    for (; k + 16 <= k1; k += 16) {
      const __m512i r = _mm512_cvtepi16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows + k)));
      const __m512 g = _mm512_i32gather_ps(r, y, 4);
      _mm512_i32scatter_ps(y, r, _mm512_fmadd_ps(s, _mm512_loadu_ps(vals + k), g), 4);
    }
    for (; k < k1; ++k) y[rows[k]] += xv[a] * vals[k];
  }
}

// CSC with the row indices read four at a time (one 64-bit load, shifts in general registers): the
// scatter loop then needs 2.25 loads per nonzero (product, y, a quarter index) instead of 3, the load
// ports being its limit on this core.
static void csc4(const float* xv, const int32_t* idx, int64_t na, const int64_t* cp, const I* rows, const float* vals,
                 float* y, int64_t out) {
  for (int64_t o = 0; o < out; ++o) y[o] = 0;
  for (int64_t a = 0; a < na; ++a) {
    const __m512 s = _mm512_set1_ps(xv[a]);
    int64_t k = cp[idx[a]];
    const int64_t k1 = cp[idx[a] + 1];
    alignas(64) float prod[16];
    for (; k + 16 <= k1; k += 16) {
      __builtin_prefetch(vals + k + 256);
      __builtin_prefetch(rows + k + 256);
      _mm512_store_ps(prod, _mm512_mul_ps(s, _mm512_loadu_ps(vals + k)));
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q) {
        uint64_t r4;
        std::memcpy(&r4, rows + k + 4 * q, 8);
        y[uint16_t(r4)] += prod[4 * q];
        y[uint16_t(r4 >> 16)] += prod[4 * q + 1];
        y[uint16_t(r4 >> 32)] += prod[4 * q + 2];
        y[uint16_t(r4 >> 48)] += prod[4 * q + 3];
      }
    }
    for (; k < k1; ++k) y[rows[k]] += xv[a] * vals[k];
  }
}

// popcount of a 16-bit mask as a 32-bit popcnt: on a uint16 operand the compiler emits popcntw, whose
// 16-bit destination merges into the old register value and chains every popcount in the loop.
static inline int pc16(uint32_t x) {
  int r;
  asm("popcntl %1, %0" : "=r"(r) : "r"(x));
  return r;
}

// G columns per pass over the output blocks; kReg: expand in registers instead of from memory.
template <int G, bool kReg>
static inline void bm_group(const float* const* v, const uint16_t* const* m, const float* s, float* y, int64_t nb,
                            int64_t out) {
  const float* p[G];
  __m512 vs[G];
  for (int c = 0; c < G; ++c) { p[c] = v[c]; vs[c] = _mm512_set1_ps(s[c]); }
  const int64_t full = out / 16;
  for (int64_t b = 0; b < full; ++b) {
    __m512 acc = _mm512_loadu_ps(y + 16 * b);
#pragma GCC unroll 8
    for (int c = 0; c < G; ++c) {
      const __mmask16 k = m[c][b];
      const __m512 e = kReg ? _mm512_maskz_expand_ps(k, _mm512_loadu_ps(p[c])) : _mm512_maskz_expandloadu_ps(k, p[c]);
      acc = _mm512_fmadd_ps(vs[c], e, acc);
      p[c] += pc16(k);
    }
    _mm512_storeu_ps(y + 16 * b, acc);
  }
  if (full < nb) {  // tail block: rows past out are never set in the masks
    const __mmask16 tail = __mmask16((1u << (out % 16)) - 1);
    __m512 acc = _mm512_maskz_loadu_ps(tail, y + 16 * full);
    for (int c = 0; c < G; ++c) acc = _mm512_fmadd_ps(vs[c], _mm512_maskz_expandloadu_ps(m[c][full], p[c]), acc);
    _mm512_mask_storeu_ps(y + 16 * full, tail, acc);
  }
}

// The mask straight from memory into a mask register: through a GPR (what the compiler emits) the
// kmovw k, r32 costs a port-5 uop, the port the expand needs.
static inline __mmask16 kload(const uint16_t* p) {
  __mmask16 k;
  asm("kmovw %1, %0" : "=Yk"(k) : "m"(*p));
  return k;
}

// Column order, masks loaded into k from memory, popcounts from a separate load.
template <int G>
static void bmk(const float* xv, const int32_t* idx, int64_t na, const int64_t* cp, const uint16_t* masks, int64_t nb,
                const float* vals, float* y, int64_t out) {
  for (int64_t o = 0; o < out; ++o) y[o] = 0;
  const int64_t full = out / 16;
  int64_t a = 0;
  for (; a + G <= na; a += G) {
    const float* p[G];
    const uint16_t* m[G];
    __m512 vs[G];
    for (int c = 0; c < G; ++c) { p[c] = vals + cp[idx[a + c]]; m[c] = masks + int64_t(idx[a + c]) * nb; vs[c] = _mm512_set1_ps(xv[a + c]); }
    for (int64_t b = 0; b < full; ++b) {
      __m512 acc0 = _mm512_loadu_ps(y + 16 * b), acc1 = _mm512_setzero_ps();
#pragma GCC unroll 8
      for (int c = 0; c < G; ++c) {
        const __m512 e = _mm512_maskz_expandloadu_ps(kload(m[c] + b), p[c]);
        if (c % 2 == 0) acc0 = _mm512_fmadd_ps(vs[c], e, acc0); else acc1 = _mm512_fmadd_ps(vs[c], e, acc1);
        p[c] += pc16(m[c][b]);
      }
      _mm512_storeu_ps(y + 16 * b, _mm512_add_ps(acc0, acc1));
    }
    if (full < nb) {
      const __mmask16 tail = __mmask16((1u << (out % 16)) - 1);
      __m512 acc = _mm512_maskz_loadu_ps(tail, y + 16 * full);
      for (int c = 0; c < G; ++c) acc = _mm512_fmadd_ps(vs[c], _mm512_maskz_expandloadu_ps(m[c][full], p[c]), acc);
      _mm512_mask_storeu_ps(y + 16 * full, tail, acc);
    }
  }
  for (; a < na; ++a) {
    const float* v[1] = {vals + cp[idx[a]]};
    const uint16_t* mm[1] = {masks + int64_t(idx[a]) * nb};
    bm_group<1, false>(v, mm, xv + a, y, nb, out);
  }
}

template <int G, bool kReg>
static void bm(const float* xv, const int32_t* idx, int64_t na, const int64_t* cp, const uint16_t* masks, int64_t nb,
               const float* vals, float* y, int64_t out) {
  for (int64_t o = 0; o < out; ++o) y[o] = 0;
  int64_t a = 0;
  for (; a + G <= na; a += G) {
    const float* v[G];
    const uint16_t* m[G];
    for (int c = 0; c < G; ++c) { v[c] = vals + cp[idx[a + c]]; m[c] = masks + int64_t(idx[a + c]) * nb; }
    bm_group<G, kReg>(v, m, xv + a, y, nb, out);
  }
  for (; a < na; ++a) {
    const float* v[1] = {vals + cp[idx[a]]};
    const uint16_t* m[1] = {masks + int64_t(idx[a]) * nb};
    bm_group<1, kReg>(v, m, xv + a, y, nb, out);
  }
}

int main(int argc, char** argv) {
  const int64_t out = argc > 1 ? atoi(argv[1]) : 6144, in = argc > 2 ? atoi(argv[2]) : 2048;
  const float dens = argc > 3 ? atof(argv[3]) : 0.15f, act = argc > 4 ? atof(argv[4]) : 0.1f;
  const int64_t na = int64_t(in * act);
  const int NP = 64, NM = 10;
  const int64_t nb = (out + 15) / 16;
  std::mt19937 g(1);
  std::uniform_real_distribution<float> u(0, 1);
  std::vector<int64_t> cp(in + 1, 0);
  std::vector<I> rows0;
  std::vector<float> vals0;
  std::vector<uint16_t> masks0(in * nb, 0);
  for (int64_t j = 0; j < in; ++j) {
    for (int64_t o = 0; o < out; ++o)
      if (u(g) < dens) { rows0.push_back(I(o)); vals0.push_back(u(g) - 0.5f); masks0[j * nb + o / 16] |= uint16_t(1u << (o % 16)); }
    cp[j + 1] = int64_t(rows0.size());
  }
  for (int i = 0; i < 16; ++i) vals0.push_back(0);
  std::vector<std::vector<I>> rows(NM, rows0);
  std::vector<std::vector<float>> vals(NM, vals0);
  std::vector<std::vector<uint16_t>> masks(NM, masks0);
  std::vector<int64_t> counts(in);
  for (int64_t j = 0; j < in; ++j) counts[j] = cp[j + 1] - cp[j];
  // The dense-gather's input-major W^T [in, out] (zeros included), the layout `auto` picks above 20%.
  std::vector<float> wt0(in * out, 0.f);
  for (int64_t j = 0; j < in; ++j)
    for (int64_t k = cp[j]; k < cp[j + 1]; ++k) wt0[j * out + rows0[k]] = vals0[k];
  std::vector<std::vector<float>> wt(NM, wt0);
  std::vector<std::vector<int32_t>> idx(NP);
  for (auto& v : idx) {
    std::vector<int32_t> p(in);
    for (int i = 0; i < in; ++i) p[i] = i;
    std::shuffle(p.begin(), p.end(), g);
    v.assign(p.begin(), p.begin() + na);
    std::sort(v.begin(), v.end());
  }
  std::vector<float> xv(na, 0.7f);
  constexpr int NK = 8;
  const char* names[NK] = {"csc", "csc4", "gs", "bm-xr8", "bmk4", "bmk8", "dense", "lib-bm"};
  std::vector<const float*> cur(na);
  std::vector<const uint16_t*> mp(na);
  std::vector<std::vector<float>> ys(NK, std::vector<float>(out));
  const auto run = [&](int w, int p, int m) {
    float* y = ys[w].data();
    const float* x = xv.data();
    const int32_t* ix = idx[p].data();
    switch (w) {
      case 0: impl::sparse_gather<FloatVec, float, I, float>(x, ix, na, cp.data(), rows[m].data(), vals[m].data(), nullptr, y, 0, out, out); break;
      case 1: csc4(x, ix, na, cp.data(), rows[m].data(), vals[m].data(), y, out); break;
      case 2: gs(x, ix, na, cp.data(), rows[m].data(), vals[m].data(), y, out); break;
      case 3: bm<8, true>(x, ix, na, cp.data(), masks[m].data(), nb, vals[m].data(), y, out); break;
      case 4: bmk<4>(x, ix, na, cp.data(), masks[m].data(), nb, vals[m].data(), y, out); break;
      case 5: bmk<8>(x, ix, na, cp.data(), masks[m].data(), nb, vals[m].data(), y, out); break;
      case 6: impl::dense_gather<FloatVec, float, float>(x, ix, na, wt[m].data(), out, nullptr, y, 0, out); break;
      case 7: impl::bitmask_gather<FloatVec, float, I, float>(x, ix, na, cp.data(), rows[m].data(), masks[m].data(),
                                                             counts.data(), nb, vals[m].data(), nullptr, y, out); break;
    }
  };
  for (int w = 0; w < NK; ++w) run(w, 0, 0);
  std::printf("%ldx%ld dens %.2f act %.2f nnz touched %.0f; max err vs csc:", long(out), long(in), dens, act, na * out * dens);
  for (int w = 1; w < NK; ++w) {
    float e = 0;
    for (int64_t o = 0; o < out; ++o) e = std::max(e, std::fabs(ys[0][o] - ys[w][o]));
    std::printf(" %s %.1e", names[w], e);
  }
  std::printf("\n");
  const char* modes[3] = {"hot", "L3", "cold"};
  for (int mode = 0; mode < 3; ++mode) {
    std::vector<double> t[NK];
    for (int rep = 0; rep < 15; ++rep)
      for (int w = 0; w < NK; ++w) {
        const int N = 50;
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < N; ++i) {
          const int c = i + rep * 37;
          run(w, mode == 0 ? 0 : c % NP, mode == 2 ? (c / NP + c) % NM : 0);
        }
        t[w].push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / N);
      }
    for (auto& v : t) std::sort(v.begin(), v.end());
    std::printf("%-5s csc %7.1f us", modes[mode], t[0][7]);
    for (int w = 1; w < NK; ++w) std::printf("  %s %7.1f (%.2fx)", names[w], t[w][7], t[0][7] / t[w][7]);
    std::printf("\n");
  }
}
