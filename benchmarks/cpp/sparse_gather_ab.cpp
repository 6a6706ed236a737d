// A/B of the sparse-gather inner loop, one thread, 2048 inputs x 6144 outputs at 15% weight density,
// 205 active inputs (10%): the library's AVX2 kernel against the plain 4x-unrolled scalar scatter it
// replaced (kept here as the baseline), and against itself without the per-index range checks (what
// the bounds safety costs). Interleaved blocks, median of 15; three cache regimes:
//   hot  : one activity pattern (its columns stay in L1/L2);
//   L3   : 64 patterns over one matrix (11 MB of CSC: fits this machine's L3);
//   cold : 64 patterns over 10 copies of the matrix (110 MB: mostly DRAM, as in evsparse-bench,
//          whose interleaved dense baseline flushes the cache).
// Build and run: bash benchmarks/cpp/run_sparse_gather_ab.sh
#define EVSPARSE_ISA_AVX2 1
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

#include "cpu/gather_impl.h"

using namespace evsparse::cpu;
using I = int16_t;

// The loop before the change: scalar y[r] += s * w, four per iteration, 3 cache lines of prefetch
// two columns ahead.
static void plain_scalar(const float* xv, const int32_t* idx, int64_t na, const int64_t* cp, const I* rows,
                         const float* vals, float* y, int64_t out) {
  for (int64_t o = 0; o < out; ++o) y[o] = 0;
  for (int64_t a = 0; a < na; ++a) {
    if (a + 2 < na) {
      const int64_t kn = cp[idx[a + 2]];
      __builtin_prefetch(rows + kn);
      __builtin_prefetch(vals + kn);
      __builtin_prefetch(reinterpret_cast<const char*>(vals + kn) + 64);
    }
    const float s = xv[a];
    int64_t k = cp[idx[a]];
    const int64_t k1 = cp[idx[a] + 1];
    for (; k + 4 <= k1; k += 4) {
      y[rows[k]] += s * vals[k];
      y[rows[k + 1]] += s * vals[k + 1];
      y[rows[k + 2]] += s * vals[k + 2];
      y[rows[k + 3]] += s * vals[k + 3];
    }
    for (; k < k1; ++k) y[rows[k]] += s * vals[k];
  }
}

int main() {
  const int64_t out = 6144, in = 2048, na = 205;
  const int NP = 64, NM = 10;
  std::mt19937 g(1);
  std::uniform_real_distribution<float> u(0, 1);
  std::vector<int64_t> cp(in + 1, 0);
  std::vector<I> rows0;
  std::vector<float> vals0;
  for (int64_t j = 0; j < in; ++j) {
    for (int64_t o = 0; o < out; ++o) {
      if (u(g) < 0.15f) { rows0.push_back(I(o)); vals0.push_back(u(g) - 0.5f); }
    }
    cp[j + 1] = int64_t(rows0.size());
  }
  std::vector<std::vector<I>> rows(NM, rows0);
  std::vector<std::vector<float>> vals(NM, vals0);
  std::vector<std::vector<int32_t>> idx(NP);
  for (auto& v : idx) {
    std::vector<int32_t> p(in);
    for (int i = 0; i < in; ++i) p[i] = i;
    std::shuffle(p.begin(), p.end(), g);
    v.assign(p.begin(), p.begin() + na);
    std::sort(v.begin(), v.end());
  }
  std::vector<float> xv(na, 0.7f), ya(out), yb(out);
  const auto lib = [&](int p, int m) {
    impl::sparse_gather<FloatVec, float, I, float>(xv.data(), idx[p].data(), na, cp.data(), rows[m].data(),
                                                  vals[m].data(), nullptr, yb.data(), 0, out, out);
  };
  std::vector<float> yc(out);
  const auto unchecked = [&](int p, int m) {
    impl::sparse_gather<FloatVec, float, I, float, false>(xv.data(), idx[p].data(), na, cp.data(), rows[m].data(),
                                                         vals[m].data(), nullptr, yc.data(), 0, out, out);
  };
  const auto old = [&](int p, int m) {
    plain_scalar(xv.data(), idx[p].data(), na, cp.data(), rows[m].data(), vals[m].data(), ya.data(), out);
  };
  old(0, 0);
  lib(0, 0);
  float err = 0;
  for (int64_t o = 0; o < out; ++o) err = std::max(err, std::fabs(ya[o] - yb[o]));
  std::printf("max |old - new| = %.1e\n", err);
  const char* names[3] = {"hot", "L3", "cold"};
  for (int mode = 0; mode < 3; ++mode) {
    std::vector<double> ta, tb, tc;
    for (int rep = 0; rep < 15; ++rep) {
      for (int w = 0; w < 3; ++w) {
        const int N = 100;
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < N; ++i) {
          const int c = i + rep * 37;
          const int p = mode == 0 ? 0 : c % NP, m = mode == 2 ? (c / NP + c) % NM : 0;
          if (w == 0) old(p, m); else if (w == 1) lib(p, m); else unchecked(p, m);
        }
        const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / N;
        (w == 0 ? ta : w == 1 ? tb : tc).push_back(us);
      }
    }
    std::sort(ta.begin(), ta.end());
    std::sort(tb.begin(), tb.end());
    std::sort(tc.begin(), tc.end());
    std::printf("%-5s plain scalar %7.1f us   library %7.1f us   speedup %.2fx   without index checks %7.1f us"
                "   checks cost %+.1f%%\n", names[mode], ta[7], tb[7], ta[7] / tb[7], tc[7], (tb[7] / tc[7] - 1) * 100);
  }
  return 0;
}
