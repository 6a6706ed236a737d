// A/B of a bitmask sparse format against the library's CSC sparse-gather (issue #25, deliverable 1),
// one thread, AVX2: W [out, in] stored per input column as 64-row words of a bitmask (bit r = row r
// stored) plus the column's values in row order (the CSC values themselves), so a block of 8 rows is
// expanded in registers (vpermps by a 256-entry index table, lanes not in the mask zeroed by
// vblendvps) and added with one FMA instead of 8 scalar scatter-adds. Two loop orders:
//   bm-panel: per 64-row output panel (8 accumulators in registers), every active column in turn:
//             the output is loaded and stored once per panel;
//   bm-col  : per pair of active columns, every panel: streams each column once, output in L1.
// Offsets within a word come from popcounts of the word's low bits, so no dependency chain runs
// through the groups. Measured 2026-12-02 on the 2-core AMD EPYC (AVX2, no AVX-512), 2048 inputs x
// 6144 outputs, 10% active: at 15% density CSC 145-154 us, bm-panel 359-365 us (0.40x), bm-col
// 219-229 us (0.64-0.69x); at 30% density bm-col 1.02-1.18x, bm-panel 0.73-0.78x. At 15% density a
// group of 8 rows holds 1.2 nonzeros, and its ~10 instructions cost more than 1.2 scalar scatter-adds
// (~6 instructions each, ~2 cycles per nonzero): the format pays on AVX2 only above ~30% density, where
// the dense-gather already wins. With AVX-512's vexpandps (one instruction: masked load + expand +
// zero) and 16-row groups (2.4 nonzeros each) the balance differs; that is measured on an AVX-512
// machine, not here. Build and run:  bash benchmarks/cpp/run_bitmask_ab.sh [out in density activity]
#define EVSPARSE_ISA_AVX2 1
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>
#include <cstring>
#include "cpu/gather_impl.h"
using namespace evsparse::cpu;
using I = int16_t;

// perm table: for byte b, lane i -> rank of bit i in b, sign bit set if present
alignas(64) static int32_t tbl[256][8];
static void init_tbl() {
  for (int b = 0; b < 256; ++b) { int r = 0; for (int i = 0; i < 8; ++i) { if (b >> i & 1) { tbl[b][i] = r | int32_t(0x80000000u); ++r; } else tbl[b][i] = 0; } }
}
// bitmask panel kernel: words[j*nw + p] rows 64p..64p+63 of column j; vals in CSC order (padded by 8)
static void bm_panel(const float* xv, const int32_t* idx, int64_t na, const int64_t* cp, const uint64_t* words,
                     int64_t nw, const float* vals, float* y, int64_t out, std::vector<const float*>& cur) {
  for (int64_t a = 0; a < na; ++a) cur[a] = vals + cp[idx[a]];
  const int64_t full = out / 64;
  for (int64_t p = 0; p < full; ++p) {
    __m256 acc[8];
    for (int k = 0; k < 8; ++k) acc[k] = _mm256_setzero_ps();
    for (int64_t a = 0; a < na; ++a) {
      const float* v = cur[a];
      const uint64_t m = words[int64_t(idx[a]) * nw + p];
      const __m256 s = _mm256_set1_ps(xv[a]);
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) {
        const unsigned b = unsigned(m >> (8 * k)) & 0xffu;
        const int off = k == 0 ? 0 : __builtin_popcountll(m << (64 - 8 * k));
        const __m256i t = _mm256_load_si256(reinterpret_cast<const __m256i*>(tbl[b]));
        const __m256 e = _mm256_blendv_ps(_mm256_setzero_ps(), _mm256_permutevar8x32_ps(_mm256_loadu_ps(v + off), t), _mm256_castsi256_ps(t));
        acc[k] = _mm256_fmadd_ps(s, e, acc[k]);
      }
      cur[a] = v + __builtin_popcountll(m);
    }
    for (int k = 0; k < 8; ++k) _mm256_storeu_ps(y + 64 * p + 8 * k, acc[k]);
  }
}
// column streaming variant: y in L1, per column all groups
static void bm_col(const float* xv, const int32_t* idx, int64_t na, const int64_t* cp, const uint64_t* words,
                   int64_t nw, const float* vals, float* y, int64_t out) {
  for (int64_t o = 0; o < out; ++o) y[o] = 0;
  int64_t a = 0;
  for (; a + 2 <= na; a += 2) {
    const float* v0 = vals + cp[idx[a]]; const float* v1 = vals + cp[idx[a+1]];
    const uint64_t* w0 = words + int64_t(idx[a]) * nw; const uint64_t* w1 = words + int64_t(idx[a+1]) * nw;
    const __m256 s0 = _mm256_set1_ps(xv[a]), s1 = _mm256_set1_ps(xv[a+1]);
    for (int64_t p = 0; p < nw; ++p) {
      const uint64_t m0 = w0[p], m1 = w1[p];
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) {
        const unsigned b0 = unsigned(m0 >> (8 * k)) & 0xffu, b1 = unsigned(m1 >> (8 * k)) & 0xffu;
        const __m256i t0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(tbl[b0]));
        const __m256i t1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(tbl[b1]));
        const int o0 = k == 0 ? 0 : __builtin_popcountll(m0 << (64 - 8 * k)), o1 = k == 0 ? 0 : __builtin_popcountll(m1 << (64 - 8 * k));
        const __m256 e0 = _mm256_blendv_ps(_mm256_setzero_ps(), _mm256_permutevar8x32_ps(_mm256_loadu_ps(v0 + o0), t0), _mm256_castsi256_ps(t0));
        const __m256 e1 = _mm256_blendv_ps(_mm256_setzero_ps(), _mm256_permutevar8x32_ps(_mm256_loadu_ps(v1 + o1), t1), _mm256_castsi256_ps(t1));
        float* yo = y + 64 * p + 8 * k;
        _mm256_storeu_ps(yo, _mm256_fmadd_ps(s1, e1, _mm256_fmadd_ps(s0, e0, _mm256_loadu_ps(yo))));
      }
      v0 += __builtin_popcountll(m0); v1 += __builtin_popcountll(m1);
    }
  }
}

int main(int argc, char** argv) {
  const int64_t out = argc > 1 ? atoi(argv[1]) : 6144, in = argc > 2 ? atoi(argv[2]) : 2048;
  const float dens = argc > 3 ? atof(argv[3]) : 0.15f, act = argc > 4 ? atof(argv[4]) : 0.1f;
  const int64_t na = int64_t(in * act);
  init_tbl();
  const int NP = 64, NM = 10;
  const int64_t nw = (out + 63) / 64;
  std::mt19937 g(1);
  std::uniform_real_distribution<float> u(0, 1);
  std::vector<int64_t> cp(in + 1, 0);
  std::vector<I> rows0; std::vector<float> vals0; std::vector<uint64_t> words0(in * nw, 0);
  for (int64_t j = 0; j < in; ++j) {
    for (int64_t o = 0; o < out; ++o) if (u(g) < dens) { rows0.push_back(I(o)); vals0.push_back(u(g) - 0.5f); words0[j * nw + o / 64] |= 1ull << (o % 64); }
    cp[j + 1] = int64_t(rows0.size());
  }
  for (int i = 0; i < 16; ++i) vals0.push_back(0);
  std::vector<std::vector<I>> rows(NM, rows0);
  std::vector<std::vector<float>> vals(NM, vals0);
  std::vector<std::vector<uint64_t>> words(NM, words0);
  std::vector<std::vector<int32_t>> idx(NP);
  for (auto& v : idx) { std::vector<int32_t> p(in); for (int i = 0; i < in; ++i) p[i] = i; std::shuffle(p.begin(), p.end(), g); v.assign(p.begin(), p.begin() + na); std::sort(v.begin(), v.end()); }
  std::vector<float> xv(na, 0.7f), ya(out), yb(out), yc(out);
  std::vector<const float*> cur(na);
  const auto lib = [&](int p, int m) { impl::sparse_gather<FloatVec, float, I, float>(xv.data(), idx[p].data(), na, cp.data(), rows[m].data(), vals[m].data(), nullptr, ya.data(), 0, out, out); };
  const auto pan = [&](int p, int m) { bm_panel(xv.data(), idx[p].data(), na, cp.data(), words[m].data(), nw, vals[m].data(), yb.data(), out, cur); };
  const auto col = [&](int p, int m) { bm_col(xv.data(), idx[p].data(), na, cp.data(), words[m].data(), nw, vals[m].data(), yc.data(), out); };
  lib(0, 0); pan(0, 0); col(0, 0);
  float e1 = 0, e2 = 0;
  for (int64_t o = 0; o < out; ++o) { e1 = std::max(e1, std::fabs(ya[o] - yb[o])); e2 = std::max(e2, std::fabs(ya[o] - yc[o])); }
  std::printf("%ldx%ld dens %.2f act %.2f nnz touched %.0f: err panel %.1e col %.1e\n", out, in, dens, act, na * out * dens, e1, e2);
  const char* names[3] = {"hot", "L3", "cold"};
  for (int mode = 0; mode < 3; ++mode) {
    std::vector<double> t[3];
    for (int rep = 0; rep < 15; ++rep) for (int w = 0; w < 3; ++w) {
      const int N = 50; const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < N; ++i) { const int c = i + rep * 37; const int p = mode == 0 ? 0 : c % NP, m = mode == 2 ? (c / NP + c) % NM : 0; if (w == 0) lib(p, m); else if (w == 1) pan(p, m); else col(p, m); }
      t[w].push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / N);
    }
    for (auto& v : t) std::sort(v.begin(), v.end());
    std::printf("%-5s csc %7.1f us  bm-panel %7.1f (%.2fx)  bm-col %7.1f (%.2fx)\n", names[mode], t[0][7], t[1][7], t[0][7] / t[1][7], t[2][7], t[0][7] / t[2][7]);
  }
}
