// Row-gather formats against the library's CSC scatter for a dense (or dense-ish) input (issue #24's
// width-192 linear RNN, whose output product reads the dense state; issue #25's full-activity points):
// W [out, in] at a density, a fraction of the inputs nonzero, y = W x, one thread, weights warm.
//   csc : the library's kernel (impl::sparse_gather, AVX-512 table): skips inactive inputs, then scatters
//         each active column's nonzeros (3 loads and a store per nonzero).
//   sell: SELL-16 with AVX-512 gathers of x (vgatherdps), x read whole (no activity skipping).
//   csr : row-major, scalar dot products over each row's stored weights, x read whole.
// Measured 2026-12-03 on the AMD EPYC (Zen 4, AVX-512), two runs (results/cpu-2026-12-03-zen4/), all
// inputs active, us (ratio over csc):
//    384 x 192, 10%: csc 3.6-5.0 (0.48-0.67 ns per nonzero)  sell 0.86-0.97x  csr 1.19-1.20x
//    192 x 384, 10%: csc 4.6-5.0                             sell 1.25-1.35x  csr 1.21-1.79x
//    768 x 256, 15%: csc 11.8-13.0 (0.40-0.44 ns)            sell 0.82-0.85x  csr 1.14-1.21x
//   3072 x 1024, 15%: csc 192-201 (0.41-0.43 ns)             sell 0.79-0.80x  csr 0.96-0.97x
//    384 x 192, 30%: csc 8.9-12.9                            sell 0.89-1.02x  csr 1.20-1.28x
//   with half or fewer inputs active the CSC wins outright (50%: sell 0.37-0.42x, csr 0.54-0.56x).
// So the scatter already runs at ~1.5-2.5 cycles per nonzero on this core and a gather of x costs about
// as much per element; a CSR copy would gain 1.2x (once 1.8x) at full activity only, for twice the
// stored weight. Not adopted. See docs/benchmarks/results.md (the Zen 4 section).
// Build and run:  bash benchmarks/cpp/run_avx512_ab.sh rowgather out in density [activity]
#define EVSPARSE_ISA_AVX512 1
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>
#include "cpu/gather_impl.h"
using namespace evsparse::cpu;
using I = int16_t;
// SELL-16: slices of 16 rows, each as wide as its longest row (zero padding); entry k of the slice's row l
// at [k * 16 + l]. y[16 rows] accumulates vals * gather(x, cols) with no reduction and no scatter.
struct Sell { std::vector<int64_t> sp; std::vector<int32_t> w; std::vector<I> cols; std::vector<float> vals; };
static Sell build(const std::vector<int64_t>& cp, const std::vector<I>& rows, const std::vector<float>& v, int64_t out, int64_t in) {
  std::vector<std::vector<std::pair<int,int>>> r(out);
  for (int64_t j = 0; j < in; ++j) for (int64_t k = cp[j]; k < cp[j+1]; ++k) r[rows[k]].push_back({int(j), int(k)});
  Sell s; int64_t ns = (out + 15) / 16; s.sp.push_back(0);
  for (int64_t q = 0; q < ns; ++q) {
    int w = 0; for (int l = 0; l < 16 && q*16+l < out; ++l) w = std::max<int>(w, r[q*16+l].size());
    s.w.push_back(w);
    for (int k = 0; k < w; ++k) for (int l = 0; l < 16; ++l) {
      int64_t o = q*16+l; bool ok = o < out && k < (int)r[o].size();
      s.cols.push_back(ok ? r[o][k].first : 0); s.vals.push_back(ok ? v[r[o][k].second] : 0.f);
    }
    s.sp.push_back(s.cols.size());
  }
  return s;
}
static void sell(const Sell& s, const float* x, float* y, int64_t out) {
  int64_t ns = s.w.size();
  for (int64_t q = 0; q < ns; ++q) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    const I* c = s.cols.data() + s.sp[q]; const float* v = s.vals.data() + s.sp[q];
    int w = s.w[q], k = 0;
    for (; k + 2 <= w; k += 2) {
      __m512i i0 = _mm512_cvtepi16_epi32(_mm256_loadu_si256((const __m256i*)(c + 16*k)));
      __m512i i1 = _mm512_cvtepi16_epi32(_mm256_loadu_si256((const __m256i*)(c + 16*k+16)));
      a0 = _mm512_fmadd_ps(_mm512_loadu_ps(v + 16*k), _mm512_i32gather_ps(i0, x, 4), a0);
      a1 = _mm512_fmadd_ps(_mm512_loadu_ps(v + 16*k+16), _mm512_i32gather_ps(i1, x, 4), a1);
    }
    for (; k < w; ++k) {
      __m512i i0 = _mm512_cvtepi16_epi32(_mm256_loadu_si256((const __m256i*)(c + 16*k)));
      a0 = _mm512_fmadd_ps(_mm512_loadu_ps(v + 16*k), _mm512_i32gather_ps(i0, x, 4), a0);
    }
    a0 = _mm512_add_ps(a0, a1);
    int64_t n = std::min<int64_t>(16, out - q*16);
    _mm512_mask_storeu_ps(y + q*16, (__mmask16)((1u<<n)-1), a0);
  }
}
// CSR: a row's stored weights times the inputs they read, two accumulators.
static void csr(const std::vector<int64_t>& rp, const std::vector<I>& cc, const std::vector<float>& vv, const float* x, float* y, int64_t out) {
  for (int64_t o = 0; o < out; ++o) {
    float a0 = 0, a1 = 0; int64_t k = rp[o], k1 = rp[o+1];
    for (; k + 2 <= k1; k += 2) { a0 += vv[k] * x[cc[k]]; a1 += vv[k+1] * x[cc[k+1]]; }
    if (k < k1) a0 += vv[k] * x[cc[k]];
    y[o] = a0 + a1;
  }
}
int main(int argc, char** argv) {
  int64_t out = atoi(argv[1]), in = atoi(argv[2]); double dens = atof(argv[3]), act = argc > 4 ? atof(argv[4]) : 1.0;
  std::mt19937 g(1); std::uniform_real_distribution<float> u(0, 1);
  std::vector<int64_t> cp(in + 1, 0); std::vector<I> rows; std::vector<float> vals;
  for (int64_t j = 0; j < in; ++j) { for (int64_t o = 0; o < out; ++o) if (u(g) < dens) { rows.push_back(o); vals.push_back(u(g) - .5f); } cp[j+1] = rows.size(); }
  std::vector<int64_t> rp(out + 1, 0); std::vector<I> cc; std::vector<float> vv;
  { std::vector<std::vector<std::pair<int,float>>> r(out); for (int64_t j = 0; j < in; ++j) for (int64_t k = cp[j]; k < cp[j+1]; ++k) r[rows[k]].push_back({int(j), vals[k]});
    for (int64_t o = 0; o < out; ++o) { for (auto& e : r[o]) { cc.push_back(e.first); vv.push_back(e.second); } rp[o+1] = cc.size(); } }
  Sell s = build(cp, rows, vals, out, in);
  std::vector<float> x(in); std::vector<int32_t> ix(in); std::vector<float> xv(in); int64_t na = 0;
  for (int64_t j = 0; j < in; ++j) { x[j] = u(g) < act ? u(g) : 0.f; if (x[j] != 0) { ix[na] = j; xv[na++] = x[j]; } }
  std::vector<float> y0(out), y1(out), y3(out);
  auto T = [&](auto f) { for (int i = 0; i < 2000; ++i) f(); double best = 1e9; for (int r = 0; r < 7; ++r) { auto t0 = std::chrono::steady_clock::now(); for (int i = 0; i < 5000; ++i) f(); best = std::min(best, std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / 5000); } return best; };
  double tc = T([&] { impl::sparse_gather<FloatVec, float, I, float>(xv.data(), ix.data(), na, cp.data(), rows.data(), vals.data(), nullptr, y0.data(), 0, out, out); });
  double ts = T([&] { sell(s, x.data(), y1.data(), out); });
  double tr = T([&] { csr(rp, cc, vv, x.data(), y3.data(), out); });
  double e1 = 0, e3 = 0; for (int64_t o = 0; o < out; ++o) { e1 = std::max<double>(e1, fabs(y0[o]-y1[o])); e3 = std::max<double>(e3, fabs(y0[o]-y3[o])); }
  printf("%ldx%ld dens %.2f act %.2f nnz %zu touched %.0f pad %.2f | csc %.2f us (%.2f ns/nnz) sell %.2f (%.2fx) csr %.2f (%.2fx) err %.1e %.1e\n",
    out, in, dens, act, rows.size(), rows.size()*double(na)/in, double(s.cols.size())/rows.size(), tc, tc*1e3/(rows.size()*double(na)/in), ts, tc/ts, tr, tc/tr, e1, e3);
}
