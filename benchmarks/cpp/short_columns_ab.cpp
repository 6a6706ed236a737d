// Short columns: the sparse-gather at the sizes of the streaming models (hidden 192-1024, every input
// active or half of them), one thread, weights in cache, against the dense-gather on the same matrix
// with its zeros and a CSR dot product that gathers x with AVX-512 (possible only when x is dense).
// Per size and density, interleaved blocks, median of 15, in ns per stored nonzero (the dense-gather's
// time divided by the same count, so the columns compare time for the same product):
//   library   : impl::sparse_gather (AVX-512 build: 16 products per SIMD multiply, scalar scatter-adds)
//   before    : the library's loop before this change (2026-12-03), the head prefetch of the next
//               column sized by that column's own length (the loop's trip count varied per column)
//   plain     : a 4x-unrolled scalar scatter, no checks and no prefetch (the loop before the current one)
//   dense     : impl::dense_gather on the [in, out] matrix, zeros included
//   csr-gather: per output row, 16 nonzeros at a time, vgatherdps of x and one FMA
// Build and run (x86-64 with AVX-512): bash benchmarks/cpp/run_short_columns_ab.sh [density] [activity]
#define EVSPARSE_ISA_AVX512 1
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "cpu/gather_impl.h"

using namespace evsparse::cpu;
using I = int16_t;

static void plain_scalar(const float* xv, const int32_t* idx, int64_t na, const int64_t* cp, const I* rows,
                         const float* vals, float* y, int64_t out) {
  for (int64_t o = 0; o < out; ++o) y[o] = 0;
  for (int64_t a = 0; a < na; ++a) {
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

static int64_t before_sparse_gather(const float* xv, const int32_t* idx, int64_t na, const int64_t* col_ptr,
                                    const I* rows, const float* vals, float* y, int64_t n_out) {
  constexpr int64_t kHeadBytes = 1024;
  for (int64_t o = 0; o < n_out; ++o) y[o] = 0;
  int64_t bad = 0;
  for (int64_t a = 0; a < na; ++a) {
    if (a + 1 < na) {
      const int64_t kn = col_ptr[idx[a + 1]], kn1 = col_ptr[idx[a + 1] + 1];
      const char* pv = reinterpret_cast<const char*>(vals + kn);
      const char* pr = reinterpret_cast<const char*>(rows + kn);
      const int64_t vb = std::min<int64_t>(kHeadBytes, (kn1 - kn) * int64_t(sizeof(float)));
      const int64_t rb = std::min<int64_t>(kHeadBytes / 2, (kn1 - kn) * int64_t(sizeof(I)));
      for (int64_t q = 0; q < vb; q += 64) __builtin_prefetch(pv + q);
      for (int64_t q = 0; q < rb; q += 64) __builtin_prefetch(pr + q);
    }
    const int64_t j = idx[a];
    bad += impl::scatter_column<FloatVec, float, I, float>(xv[a], rows, vals, col_ptr[j], col_ptr[j + 1], y, 0, n_out);
  }
  return bad;
}

static void csr_gather(const float* x, const int64_t* rp, const I* cols, const float* vals, float* y, int64_t out) {
  for (int64_t o = 0; o < out; ++o) {
    int64_t k = rp[o];
    const int64_t k1 = rp[o + 1];
    __m512 acc = _mm512_setzero_ps();
    for (; k + 16 <= k1; k += 16) {
      const __m512i ci = _mm512_cvtepi16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(cols + k)));
      acc = _mm512_fmadd_ps(_mm512_loadu_ps(vals + k), _mm512_i32gather_ps(ci, x, 4), acc);
    }
    float s = _mm512_reduce_add_ps(acc);
    for (; k < k1; ++k) s += vals[k] * x[cols[k]];
    y[o] = s;
  }
}

int main(int argc, char** argv) {
  const double dens = argc > 1 ? std::atof(argv[1]) : 0.1;
  const double act = argc > 2 ? std::atof(argv[2]) : 1.0;
  const int64_t shapes[][2] = {{192, 384}, {384, 192}, {256, 768}, {768, 256}, {1024, 1024}, {6144, 2048}};
  std::printf("density %.2f, activity %.2f; ns per stored nonzero of the active columns\n", dens, act);
  for (const auto& sh : shapes) {
    const int64_t out = sh[0], in = sh[1];
    std::mt19937 g(1);
    std::uniform_real_distribution<float> u(0, 1);
    std::vector<int64_t> cp(in + 1, 0);
    std::vector<I> rows;
    std::vector<float> vals, dense(in * out, 0.f);  // dense: [in, out], the dense layout's rows
    for (int64_t j = 0; j < in; ++j) {
      for (int64_t o = 0; o < out; ++o) {
        if (u(g) < dens) {
          const float v = u(g) - 0.5f;
          rows.push_back(I(o));
          vals.push_back(v);
          dense[j * out + o] = v;
        }
      }
      cp[j + 1] = int64_t(rows.size());
    }
    std::vector<int64_t> rp(out + 1, 0);  // the same matrix as CSR
    std::vector<I> cols(rows.size());
    std::vector<float> cv(rows.size());
    for (const I r : rows) rp[r + 1]++;
    for (int64_t o = 0; o < out; ++o) rp[o + 1] += rp[o];
    std::vector<int64_t> pos(rp.begin(), rp.end() - 1);
    for (int64_t j = 0; j < in; ++j) {
      for (int64_t k = cp[j]; k < cp[j + 1]; ++k) {
        const int64_t q = pos[rows[k]]++;
        cols[q] = I(j);
        cv[q] = vals[k];
      }
    }
    std::vector<int32_t> idx;
    std::vector<float> xv, x(in, 0.f);
    double touched = 0;
    for (int i = 0; i < in; ++i) {
      if (u(g) < act) {
        idx.push_back(i);
        xv.push_back(u(g) + 0.1f);
        x[i] = xv.back();
        touched += double(cp[i + 1] - cp[i]);
      }
    }
    const int64_t na = int64_t(idx.size());
    std::vector<float> y0(out), y1(out), y2(out), y3(out), y4(out);
    const auto lib = [&] {
      impl::sparse_gather<FloatVec, float, I, float>(xv.data(), idx.data(), na, cp.data(), rows.data(), vals.data(),
                                                     nullptr, y0.data(), 0, out, out);
    };
    const auto before = [&] {
      before_sparse_gather(xv.data(), idx.data(), na, cp.data(), rows.data(), vals.data(), y4.data(), out);
    };
    const auto plain = [&] { plain_scalar(xv.data(), idx.data(), na, cp.data(), rows.data(), vals.data(), y1.data(), out); };
    const auto dn = [&] {
      impl::dense_gather<FloatVec, float, float>(xv.data(), idx.data(), na, dense.data(), out, nullptr, y2.data(), 0, out);
    };
    const auto cg = [&] { csr_gather(x.data(), rp.data(), cols.data(), cv.data(), y3.data(), out); };
    lib(); before(); plain(); dn(); cg();
    float err = 0;
    for (int64_t o = 0; o < out; ++o) {
      err = std::max({err, std::fabs(y0[o] - y1[o]), std::fabs(y0[o] - y2[o]), std::fabs(y0[o] - y3[o]),
                      std::fabs(y0[o] - y4[o])});
    }
    std::vector<double> t[5];
    const int N = int(std::max<double>(20, 2e6 / (touched + 1)));
    for (int rep = 0; rep < 15; ++rep) {
      for (int w = 0; w < 5; ++w) {
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < N; ++i) {
          if (w == 0) lib(); else if (w == 1) before(); else if (w == 2) plain(); else if (w == 3) dn(); else cg();
        }
        t[w].push_back(std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count() / N);
      }
    }
    for (auto& v : t) std::sort(v.begin(), v.end());
    const double n = touched > 0 ? touched : 1;
    std::printf("%5ldx%-5ld nnz touched %8.0f (%5.1f per column)  library %8.0f ns = %.2f ns/nnz  before %.2f  "
                "plain %.2f  dense %.2f (%.3f ns/MAC)  csr-gather %.2f   max |diff| %.0e\n",
                long(out), long(in), touched, touched / double(std::max<int64_t>(na, 1)), t[0][7], t[0][7] / n,
                t[1][7] / n, t[2][7] / n, t[3][7] / n, t[3][7] / (double(na) * double(out) + 1), t[4][7] / n, err);
  }
  return 0;
}
