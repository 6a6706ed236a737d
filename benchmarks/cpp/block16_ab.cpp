// What vector adds would buy: the CSC scatter against a 16x1 block-CSC (16 consecutive output rows of
// one input column stored or dropped together, as WaveRNN / LPCNet prune), at the same density, one
// thread: per active input column, one FMA per stored block (AVX-512). Not a library format: it needs
// block-structured pruning, a different model from the unstructured masks of the sweep.
// copies > 1 rotates that many independent matrices (beyond the L2).
// Measured 2026-12-03 on the AMD EPYC (Zen 4), us (results/cpu-2026-12-03-zen4/block16_ab.txt):
//   6144 x 2048, 10% x 15%:  csc 78.4 (0.41 ns per nonzero)  blk16 20.9 (0.11 ns per stored weight)  3.8x
//     8 copies:              csc 104.3                       blk16 39.4                              2.6x
//   3072 x 1024, 10% x 15%:  3.5x;  768 x 256: 3.5x (10% active), 6.2x (all active); 384 x 192, 10%, all: 5.5x
// Build and run:  bash benchmarks/cpp/run_avx512_ab.sh block16 out in density activity [copies]
#define EVSPARSE_ISA_AVX512 1
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>
#include "cpu/gather_impl.h"
using namespace evsparse::cpu;
using I = int16_t;
// 16x1 block-CSC: per input column the indices of its stored 16-row blocks and their 16 values each.
static void blk(const float* xv, const int32_t* idx, int64_t na, const int64_t* bp, const int32_t* bi, const float* bv, float* y, int64_t out) {
  for (int64_t o = 0; o < out; ++o) y[o] = 0;
  for (int64_t a = 0; a < na; ++a) {
    const __m512 s = _mm512_set1_ps(xv[a]);
    const int64_t j = idx[a];
    for (int64_t k = bp[j]; k < bp[j + 1]; ++k) {
      float* yy = y + 16 * int64_t(bi[k]);
      _mm512_storeu_ps(yy, _mm512_fmadd_ps(s, _mm512_loadu_ps(bv + 16 * k), _mm512_loadu_ps(yy)));
    }
  }
}
int main(int argc, char** argv) {
  int64_t out = atoi(argv[1]), in = atoi(argv[2]); double dens = atof(argv[3]), act = atof(argv[4]);
  int copies = argc > 5 ? atoi(argv[5]) : 1;
  std::mt19937 g(1); std::uniform_real_distribution<float> u(0, 1);
  int64_t nb = out / 16;
  std::vector<std::vector<int64_t>> cp(copies, std::vector<int64_t>(in + 1, 0)), bp(copies, std::vector<int64_t>(in + 1, 0));
  std::vector<std::vector<I>> rows(copies); std::vector<std::vector<float>> vals(copies), bv(copies); std::vector<std::vector<int32_t>> bi(copies);
  for (int c = 0; c < copies; ++c) for (int64_t j = 0; j < in; ++j) {
    for (int64_t o = 0; o < out; ++o) if (u(g) < dens) { rows[c].push_back(o); vals[c].push_back(u(g) - .5f); }
    cp[c][j + 1] = rows[c].size();
    for (int64_t b = 0; b < nb; ++b) if (u(g) < dens) { bi[c].push_back(b); for (int l = 0; l < 16; ++l) bv[c].push_back(u(g) - .5f); }
    bp[c][j + 1] = bi[c].size();
  }
  std::vector<int32_t> ix; std::vector<float> xv;
  for (int64_t j = 0; j < in; ++j) if (u(g) < act) { ix.push_back(j); xv.push_back(u(g)); }
  std::vector<float> y(out);
  int m = 0;
  auto T = [&](auto f) { for (int i = 0; i < 200; ++i) f(); double best = 1e9; for (int r = 0; r < 7; ++r) { auto t0 = std::chrono::steady_clock::now(); for (int i = 0; i < 500; ++i) { m = (m + 1) % copies; f(); } best = std::min(best, std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / 500); } return best; };
  double tc = T([&] { impl::sparse_gather<FloatVec, float, I, float>(xv.data(), ix.data(), ix.size(), cp[m].data(), rows[m].data(), vals[m].data(), nullptr, y.data(), 0, out, out); });
  double tb = T([&] { blk(xv.data(), ix.data(), ix.size(), bp[m].data(), bi[m].data(), bv[m].data(), y.data(), out); });
  double nnz_c = 0, nnz_b = 0; for (auto j : ix) { nnz_c += cp[0][j+1]-cp[0][j]; nnz_b += 16.0*(bp[0][j+1]-bp[0][j]); }
  printf("%ldx%ld dens %.2f act %.2f copies %d | csc %.1f us (%.2f ns/nnz, %.1f GB/s) | blk16 %.1f us (%.3f ns/nnz, %.1f GB/s) %.1fx\n", out, in, dens, act, copies,
    tc, tc*1e3/nnz_c, nnz_c*6/tc/1e3, tb, tb*1e3/nnz_b, nnz_b*4.125/tb/1e3, tc/tb);
}
