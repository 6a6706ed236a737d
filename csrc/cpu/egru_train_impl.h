// The EGRU's training recurrence over a sequence, forward and backward through time (torch-free).
// Included by each gather_<isa>.cpp (float, that ISA's vectors) and by gather_scalar.cpp (double, for
// gradcheck). The input product gi = W_ih x + b_ih of every step is the caller's (one GEMM); these
// kernels do everything after it. Batch rows are independent in the recurrence, so the caller gives
// each thread a range of rows [b0, b1) for the whole sequence: no synchronisation per step.
//
// What is sparse, and used (docs/guide/egru-training.md has the derivation and the measured fractions):
//  forward  gh_t  = R y_{t-1} + b_hh         reads the rows of R^T of the units that fired (activity);
//  backward dR^T += y_{t-1} (x) dgh_t        touches those rows only (activity);
//  backward dy_{t-1} = R^T . dgh_t           is needed only where y_{t-1} has a derivative: units that
//           fired or lie inside the surrogate's support (|c~ - thr| < 1 / support); others are skipped.
// Everything else (the gates' gradients, dgi, dc) is dense: the cell state carries gradient to every unit.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "egru_impl.h"
#include "simd.h"

#ifdef EVSPARSE_TRAIN_PROFILE  // benchmarks/cpp only: per-phase timers
#include <chrono>
inline double g_prof[8];
#define EVSPARSE_PROF_START auto _p0 = std::chrono::steady_clock::now();
#define EVSPARSE_PROF_LAP(k) { auto _p1 = std::chrono::steady_clock::now(); g_prof[k] += std::chrono::duration<double>(_p1 - _p0).count(); _p0 = _p1; }
#else
#define EVSPARSE_PROF_START
#define EVSPARSE_PROF_LAP(k)
#endif

namespace evsparse::cpu {
namespace {  // internal linkage, see simd.h
namespace impl {

// Float: the vectorisable approximations the inference kernels use (rel. error ~2e-7); double: libm,
// so that gradcheck's finite differences see a smooth function. The sigmoid through tanh, not exp:
// exp binds exp@GLIBC_2.29, beyond the manylinux_2_28 policy (tests/test_compile_and_nn.py).
template <class A>
inline A train_sigmoid(A x) {
  if constexpr (std::is_same_v<A, double>) {
    return 0.5 + 0.5 * std::tanh(0.5 * x);
  } else {
    return sigmoid_approx(x);
  }
}
template <class A>
inline A train_tanh(A x) {
  if constexpr (std::is_same_v<A, double>) {
    return std::tanh(x);
  } else {
    return tanh_approx(x);
  }
}
template <class A>
inline A clamp01(A v) {
  return v < A(0) ? A(0) : (v > A(1) ? A(1) : v);
}

// Scratch rows of n values, each starting on a 64-byte boundary (row stride padded to 16 values): the
// vector loads and stores of the products then never split a cache line. A std::vector's own storage
// is only 16-byte aligned, which measured 2x slower on the dR^T sums (AVX-512, Xeon, 2026-12-03).
template <class A>
struct AlignedRows {
  int64_t ld = 0;
  std::vector<A> storage;
  A* base = nullptr;
  AlignedRows(int64_t rows, int64_t n) : ld((n + 15) / 16 * 16), storage(static_cast<size_t>(rows * ld + 64 / sizeof(A))) {
    const auto addr = reinterpret_cast<uintptr_t>(storage.data());
    base = storage.data() + ((64 - addr % 64) % 64) / sizeof(A);
  }
  A* row(int64_t r) { return base + r * ld; }
};

// y[0, n) += s * x[0, n)
template <class V, class A>
inline void train_axpy(A* __restrict y, const A* __restrict x, A s, int64_t n) {
  int64_t i = 0;
  if constexpr (V::W > 1 && std::is_same_v<A, float>) {
    const auto vs = V::set1(s);
    for (; i + 2 * V::W <= n; i += 2 * V::W) {
      V::store(y + i, V::fma(vs, V::load(x + i), V::load(y + i)));
      V::store(y + i + V::W, V::fma(vs, V::load(x + i + V::W), V::load(y + i + V::W)));
    }
    for (; i + V::W <= n; i += V::W) V::store(y + i, V::fma(vs, V::load(x + i), V::load(y + i)));
  }
  for (; i < n; ++i) y[i] += s * x[i];
}

// y[0, n) += sum_k s[k] * x[k][off, off + n): a block of y stays in registers while every x adds into it.
// Eight accumulators per block: each is a chain of dependent FMAs over k, and eight cover the FMA
// latency at two FMAs per cycle (four ran at half that on AVX2).
template <class V, class A>
inline void train_axpy_rows(A* __restrict y, const A* const* x, const A* s, int64_t k, int64_t n, int64_t off = 0) {
  int64_t i = 0;
  if constexpr (V::W > 1 && std::is_same_v<A, float>) {
    constexpr int NA = 8;
    for (; i + NA * V::W <= n; i += NA * V::W) {
      typename V::reg a[NA];
      for (int u = 0; u < NA; ++u) a[u] = V::load(y + i + u * V::W);
      for (int64_t q = 0; q < k; ++q) {
        const auto vs = V::set1(s[q]);
        const A* xq = x[q] + off + i;
        for (int u = 0; u < NA; ++u) a[u] = V::fma(vs, V::load(xq + u * V::W), a[u]);
      }
      for (int u = 0; u < NA; ++u) V::store(y + i + u * V::W, a[u]);
    }
    for (; i + V::W <= n; i += V::W) {
      auto a0 = V::load(y + i);
      for (int64_t q = 0; q < k; ++q) a0 = V::fma(V::set1(s[q]), V::load(x[q] + off + i), a0);
      V::store(y + i, a0);
    }
  }
  for (int64_t q = 0; q < k; ++q) {
    for (int64_t m = i; m < n; ++m) y[m] += s[q] * x[q][off + m];
  }
}

// dst[c, r] = sum over p < parts of src[p][r, c] for the output rows c in [c0, c1): the transpose of
// src [rows, cols] (row-major, parts of part_stride values each) summed over its parts, in 16 x 16
// tiles so that both sides are read and written by cache lines. The op layer's R^T for the forward,
// and the backward's per-thread dR^T parts summed into dR (torch's transposing copy of the same 1.7 MB
// took ~1 ms; 2026-12-03 Xeon).
template <class A>
void train_transpose_sum(const A* src, int64_t parts, int64_t part_stride, int64_t rows, int64_t cols, A* dst,
                         int64_t c0, int64_t c1) {
  constexpr int64_t kTile = 16;
  for (int64_t cb = c0; cb < c1; cb += kTile) {
    const int64_t ce = std::min(c1, cb + kTile);
    for (int64_t rb = 0; rb < rows; rb += kTile) {
      const int64_t re = std::min(rows, rb + kTile);
      for (int64_t c = cb; c < ce; ++c) {
        A* d = dst + c * rows;
        for (int64_t r = rb; r < re; ++r) {
          A v = src[r * cols + c];
          for (int64_t p = 1; p < parts; ++p) v += src[p * part_stride + r * cols + c];
          d[r] = v;
        }
      }
    }
  }
}

// Per (t, b) the forward keeps 5 blocks of H: z, r, g, hg = (R y_{t-1} + b_hh)_g, c~.
constexpr int64_t kSavedBlocks = 5;

// gh[b] = b_hh + sum over units j with y[b, j] != 0 of y[b, j] * rt[j, :], for the nb rows of y (gh's row
// stride ld_gh). Unit-major, so a row of rt is read once per step and reused from L1 by every batch row
// that needs it. (Groups of 4 units summed in registers per row, as dense_gather does, and per row a
// list of its units summed in registers per column chunk, were both measured no faster: at training's
// activities a row rarely has two of a group's units active, and the product is bound by reading rt.)
template <class V, class A>
void train_recurrent_product(const A* y, int64_t ld_y, int64_t nb, const A* rt, const A* b_hh, int64_t H, A* gh,
                             int64_t ld_gh) {
  const int64_t G = 3 * H;
  for (int64_t b = 0; b < nb; ++b) {
    A* g = gh + b * ld_gh;
    for (int64_t i = 0; i < G; ++i) g[i] = b_hh[i];
  }
  for (int64_t j = 0; j < H; ++j) {
    for (int64_t b = 0; b < nb; ++b) {
      const A v = y[b * ld_y + j];
      if (v != A(0)) train_axpy<V>(gh + b * ld_gh, rt + j * G, v, G);
    }
  }
}

// One row's cell update, keeping what the backward needs; a function of its own with restrict
// pointers so that the compiler vectorises it (inlined into the step loop it did not).
template <class A>
void train_cell_forward(const A* __restrict gi, const A* __restrict gh, const A* __restrict thr, A* __restrict c,
                        A* __restrict y, A* __restrict events, A* __restrict sv, int64_t H) {
  A* __restrict sz = sv;
  A* __restrict sr = sv + H;
  A* __restrict sg = sv + 2 * H;
  A* __restrict shg = sv + 3 * H;
  A* __restrict sct = sv + 4 * H;
  for (int64_t h = 0; h < H; ++h) {
    const A z = train_sigmoid(gi[h] + gh[h]);
    const A r = train_sigmoid(gi[H + h] + gh[H + h]);
    const A hg = gh[2 * H + h];
    const A g = train_tanh(gi[2 * H + h] + r * hg);
    const A ct = z * c[h] + (A(1) - z) * g;
    const A th = clamp01(thr[h]);
    const A o = (ct - th) > A(0) ? A(1) : A(0);  // Heaviside, 0 at equality
    y[h] = o * ct;
    c[h] = ct - o * th;
    events[h] += o;
    sz[h] = z;
    sr[h] = r;
    sg[h] = g;
    shg[h] = hg;
    sct[h] = ct;
  }
}

// Forward over T steps for batch rows [b0, b1). gi [T, B, 3H]; c0, y0 [B, H]; rt = R^T [H, 3H];
// b_hh [3H]; thr [H]. Writes ys [T, B, H] (events), c [B, H] (the last cell state), events [B, H]
// (per unit, how many steps it fired) and saved [T, B, 5H].
template <class V, class A>
void egru_train_forward(const A* gi, const A* c0, const A* y0, const A* rt, const A* b_hh, const A* thr, int64_t T,
                        int64_t B, int64_t H, int64_t b0, int64_t b1, A* ys, A* c, A* events, A* saved) {
  const int64_t nb = b1 - b0, G = 3 * H, S = kSavedBlocks * H;
  if (nb <= 0) return;
  AlignedRows<A> gh_rows(nb, G);
  A* gh = gh_rows.base;
  for (int64_t b = b0; b < b1; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      c[b * H + h] = c0[b * H + h];
      events[b * H + h] = A(0);
    }
  }
  for (int64_t t = 0; t < T; ++t) {
    EVSPARSE_PROF_START
    const A* y_prev = t == 0 ? y0 + b0 * H : ys + ((t - 1) * B + b0) * H;
    train_recurrent_product<V>(y_prev, H, nb, rt, b_hh, H, gh, gh_rows.ld);
    EVSPARSE_PROF_LAP(5)
    for (int64_t b = b0; b < b1; ++b) {
      train_cell_forward(gi + (t * B + b) * G, gh + (b - b0) * gh_rows.ld, thr, c + b * H, ys + (t * B + b) * H,
                         events + b * H, saved + (t * B + b) * S, H);
    }
    EVSPARSE_PROF_LAP(6)
  }
}

// MB rows x NJ vectors of units of dy = dgh W over i in [i0, i1): acc[m][n] += dgh[m, i] * W[i, j0 + n * V::W ...],
// a GEMM micro-kernel: per i, NJ loaded vectors of W's row and MB broadcasts feed MB * NJ FMAs, and
// nothing is reduced across lanes. Starts from zero (first) or from the block already in out (row
// stride H), and stores it back there.
template <class V, int MB, int NJ>
inline void train_recurrent_grad_block(const float* dgh, int64_t ldd, const float* w, int64_t H, int64_t j0, int64_t i0,
                                       int64_t i1, bool first, float* out) {
  typename V::reg acc[MB][NJ];
  for (int m = 0; m < MB; ++m) {
    for (int n = 0; n < NJ; ++n) acc[m][n] = first ? V::zero() : V::load(out + m * H + j0 + n * V::W);
  }
  const float* wj = w + i0 * H + j0;
  for (int64_t i = i0; i < i1; ++i, wj += H) {
    typename V::reg wv[NJ];
    for (int n = 0; n < NJ; ++n) wv[n] = V::load(wj + n * V::W);
    for (int m = 0; m < MB; ++m) {
      const auto s = V::set1(dgh[m * ldd + i]);
      for (int n = 0; n < NJ; ++n) acc[m][n] = V::fma(s, wv[n], acc[m][n]);
    }
  }
  for (int m = 0; m < MB; ++m) {
    for (int n = 0; n < NJ; ++n) V::store(out + m * H + j0 + n * V::W, acc[m][n]);
  }
}

// out[q] = a . x[q][0, n) for four rows x[0..3]: the loads of a shared, four accumulators (float SIMD).
template <class V>
inline void train_dot4(const float* __restrict a, const float* const* x, int64_t n, float* out) {
  typename V::reg acc[4] = {V::zero(), V::zero(), V::zero(), V::zero()};
  int64_t i = 0;
  for (; i + V::W <= n; i += V::W) {
    const auto va = V::load(a + i);
    for (int q = 0; q < 4; ++q) acc[q] = V::fma(va, V::load(x[q] + i), acc[q]);
  }
  for (int q = 0; q < 4; ++q) {
    alignas(64) float lanes[V::W];
    V::store(lanes, acc[q]);
    float sum = 0.f;
    for (int l = 0; l < V::W; ++l) sum += lanes[l];
    for (int64_t k = i; k < n; ++k) sum += a[k] * x[q][k];
    out[q] = sum;
  }
}

// Below this fraction of needed dy entries (a narrow surrogate, support > 1), the needed entries are
// formed one by one as dot products with rows of R^T instead of the whole product as a GEMM. The dot
// products read a row of R^T from L2 per entry and ran at about a third of the GEMM's rate (Xeon,
// AVX-512, H = 384, 16 rows, 2026-12-03: 16 against 50 GMAC/s; dy 3.25 ms at 21% needed and 4.38 ms at
// 31%, against 4.9-5.2 ms for the GEMM at any fraction), hence the crossover near a third.
constexpr double kSparseDyMaxNeeded = 0.3;

// out[b, j] = need[b, j] ? dgh[b, :] . W[:, j] : 0 for the nb rows of dgh [nb, 3H] (row stride ldd), with W = w_hh [3H, H]
// as the module holds it (row i: what every unit's output adds to pre-activation i). In the backward
// nearly every entry is needed (the surrogate's support covers almost every unit in training:
// docs/guide/egru-training.md), so it is formed densely, block by block, as a GEMM: a block of MB rows x
// NJ * V::W units in registers while i runs over 3H, the W panel of a block of units reused from cache
// by every block of rows. Only a block with no needed entry is skipped; the others are masked after.
// Returns how many entries were needed.
template <class V, class A>
int64_t train_recurrent_grad(const A* dgh, int64_t ldd, int64_t nb, const A* w, const A* rt, int64_t H,
                             const uint8_t* need, A* out, int32_t* units_scratch) {
  const int64_t G = 3 * H;
  int64_t needed = 0;
  for (int64_t k = 0; k < nb * H; ++k) needed += need[k];
  if constexpr (V::W > 1 && std::is_same_v<A, float>) {
    if (needed < kSparseDyMaxNeeded * double(nb * H)) {  // few needed: dot products with R^T's rows
      for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* nd = need + b * H;
        float* o = out + b * H;
        int64_t k = 0;
        for (int64_t j = 0; j < H; ++j) {  // branch-free list of the needed units
          units_scratch[k] = int32_t(j);
          k += nd[j] != 0;
          o[j] = 0.f;
        }
        const float* d = dgh + b * ldd;
        int64_t q = 0;
        for (; q + 4 <= k; q += 4) {
          const float* x[4] = {rt + int64_t(units_scratch[q]) * G, rt + int64_t(units_scratch[q + 1]) * G,
                               rt + int64_t(units_scratch[q + 2]) * G, rt + int64_t(units_scratch[q + 3]) * G};
          float r[4];
          train_dot4<V>(d, x, G, r);
          for (int u = 0; u < 4; ++u) o[units_scratch[q + u]] = r[u];
        }
        for (; q < k; ++q) {
          const float* x[4] = {rt + int64_t(units_scratch[q]) * G, rt, rt, rt};
          float r[4];
          train_dot4<V>(d, x, G, r);  // (three lanes of work wasted on one unit's tail: rare)
          o[units_scratch[q]] = r[0];
        }
      }
      return needed;
    }
  }
  int64_t j_done = 0;  // units [0, j_done) are formed by the vector blocks
  if constexpr (V::W > 1 && std::is_same_v<A, float>) {
    // Register budget: MB * NJ accumulators (at least 12, to cover the FMA latency at two FMAs per
    // cycle), NJ loaded vectors and a broadcast: 6 x 2 of AVX2's 16 registers, 6 x 4 of the 32 of
    // AVX-512 and NEON.
    constexpr int MB = 6, NJ = V::W == 8 ? 2 : 4;
    constexpr int64_t JB = NJ * V::W;
    const auto any_needed = [&](int64_t b, int64_t rows, int64_t j0, int64_t cols) {
      for (int64_t m = 0; m < rows; ++m) {
        for (int64_t q = 0; q < cols; ++q) {
          if (need[(b + m) * H + j0 + q]) return true;
        }
      }
      return false;
    };
    // Rows in blocks of MB, the rest in blocks of 4, 2, 1.
    const auto rows_at = [&](int64_t b) -> int64_t {
      const int64_t left = nb - b;
      return left >= MB ? MB : (left >= 4 ? 4 : (left >= 2 ? 2 : 1));
    };
    // i in chunks of KC, so that the chunk of a block of units' W panel (KC rows x JB floats, 32 KB on
    // AVX-512) stays in L1 while every block of rows runs over it.
    constexpr int64_t KC = 128;
    std::vector<uint8_t> skip_buf(static_cast<size_t>(nb));
    uint8_t* skip = skip_buf.data();
    const auto units = [&](auto nj_tag, int64_t j0) {
      constexpr int nj = decltype(nj_tag)::value;
      for (int64_t b = 0; b < nb; b += rows_at(b)) {  // a block with no needed entry: zeroed once, skipped
        skip[b] = !any_needed(b, rows_at(b), j0, nj * V::W);
        if (skip[b]) {
          for (int64_t m = 0; m < rows_at(b); ++m) {
            for (int64_t q = 0; q < nj * V::W; ++q) out[(b + m) * H + j0 + q] = A(0);
          }
        }
      }
      for (int64_t i0 = 0; i0 < G; i0 += KC) {
        const int64_t i1 = std::min(G, i0 + KC);
        for (int64_t b = 0; b < nb; b += rows_at(b)) {
          if (skip[b]) continue;
          const float* d = dgh + b * ldd;
          float* o = out + b * H;
          switch (rows_at(b)) {
            case MB: train_recurrent_grad_block<V, MB, nj>(d, ldd, w, H, j0, i0, i1, i0 == 0, o); break;
            case 4: train_recurrent_grad_block<V, 4, nj>(d, ldd, w, H, j0, i0, i1, i0 == 0, o); break;
            case 2: train_recurrent_grad_block<V, 2, nj>(d, ldd, w, H, j0, i0, i1, i0 == 0, o); break;
            default: train_recurrent_grad_block<V, 1, nj>(d, ldd, w, H, j0, i0, i1, i0 == 0, o); break;
          }
        }
      }
    };
    for (; j_done + JB <= H; j_done += JB) units(std::integral_constant<int, NJ>{}, j_done);
    for (; j_done + V::W <= H; j_done += V::W) units(std::integral_constant<int, 1>{}, j_done);
  }
  // The remaining units (all of them for double): plain loops, i outer so that W is read by rows.
  if (j_done < H) {
    for (int64_t b = 0; b < nb; ++b) {
      A* o = out + b * H;
      for (int64_t j = j_done; j < H; ++j) o[j] = A(0);
      for (int64_t i = 0; i < G; ++i) {
        const A s = dgh[b * ldd + i];
        const A* wi = w + i * H;
        for (int64_t j = j_done; j < H; ++j) o[j] += s * wi[j];
      }
    }
  }
  for (int64_t k = 0; k < nb * H; ++k) {
    if (!need[k]) out[k] = A(0);
  }
  return needed;
}

// One row's cell backward at one step: from the saved gates, c_{t-1}, the gradient reaching y_t
// (gy from the output + dyr through R from step t+1) and dc (reaching c_t; updated to reach c_{t-1}),
// writes the pre-activation gradients dgi = [daz, dar, dag] and dgh = [daz, dar, dag * r] and adds
// the threshold's. Restrict pointers in a function of its own, so that it vectorises.
template <class A>
void train_cell_backward(const A* __restrict sv, const A* __restrict c_prev, const A* __restrict thr,
                         const A* __restrict gy, const A* __restrict dyr, const A* __restrict gev, A dampening,
                         A support, A* __restrict dc, A* __restrict dgi, A* __restrict dgh, A* __restrict g_thr,
                         int64_t H) {
  const A* __restrict sz = sv;
  const A* __restrict sr = sv + H;
  const A* __restrict sg = sv + 2 * H;
  const A* __restrict shg = sv + 3 * H;
  const A* __restrict sct = sv + 4 * H;
  for (int64_t h = 0; h < H; ++h) {
    const A z = sz[h], r = sr[h], g = sg[h], hg = shg[h], ct = sct[h];
    const A th = clamp01(thr[h]);
    const A v = ct - th;
    const A o = v > A(0) ? A(1) : A(0);
    const A sup = A(1) - support * (v < A(0) ? -v : v);
    const A p = dampening * (sup > A(0) ? sup : A(0));  // the surrogate d o / d v
    const A dy = gy[h] + dyr[h];
    const A dcn = dc[h];
    const A dv = (dy * ct - dcn * th + gev[h]) * p;  // through the event o, from y = o c~, c = c~ - o thr, events
    const A dct = dy * o + dcn + dv;
    const A in_range = (thr[h] >= A(0) && thr[h] <= A(1)) ? A(1) : A(0);  // clamp's gradient
    g_thr[h] += (-dv - dcn * o) * in_range;
    const A dz = dct * (c_prev[h] - g);
    const A dag = dct * (A(1) - z) * (A(1) - g * g);
    const A dar = dag * hg * r * (A(1) - r);
    const A daz = dz * z * (A(1) - z);
    dgi[h] = daz;
    dgi[H + h] = dar;
    dgi[2 * H + h] = dag;
    dgh[h] = daz;
    dgh[H + h] = dar;
    dgh[2 * H + h] = dag * r;
    dc[h] = dct * z;
  }
}

// Backward through time for batch rows [b0, b1). Inputs: the output gradients g_ys [T, B, H], g_c [B, H]
// (of the last cell state), g_events [B, H]; the forward's c0, y0, thr, saved, w = w_hh [3H, H] (as the
// module holds it: the dense dy = dgh W reads it by rows) and rt = its transpose R^T [H, 3H] (the sparse
// dy reads one row per needed unit); the surrogate's
// dampening and support. Writes g_gi [T, B, 3H], g_c0 and g_y0 [B, H] for these rows, and ADDS this
// range's shares to g_rt [H, 3H] (the gradient of R^T), g_b_hh [3H] and g_thr [H] (the caller gives each
// thread its own, zeroed, and sums them). Returns how many (row, unit, step) recurrent-input gradients
// it computed (dy_{t-1}: the backward's sparsity, against T * nb * H).
template <class V, class A>
int64_t egru_train_backward(const A* g_ys, const A* g_c, const A* g_events, const A* c0, const A* y0, const A* w,
                            const A* rt, const A* thr, const A* saved, A dampening, A support, int64_t T, int64_t B, int64_t H,
                            int64_t b0, int64_t b1, A* g_gi, A* g_c0, A* g_y0, A* g_rt, A* g_b_hh, A* g_thr) {
  const int64_t nb = b1 - b0, G = 3 * H, S = kSavedBlocks * H;
  if (nb <= 0) return 0;
  // dR^T is accumulated every `slots` steps, not every step: the steps' dgh and y_{t-1} wait in slots
  // (about 1 MB at most, cache-resident), so each row of g_rt is loaded and stored once per `slots`
  // steps instead of once per step (per step that traffic, nearly all of g_rt, was the phase's cost).
  const int64_t slots = std::clamp<int64_t>((int64_t(1) << 20) / std::max<int64_t>(1, nb * G * int64_t(sizeof(A))),
                                            1, 8);
  AlignedRows<A> dgh_rows(slots * nb, G);  // slot q's rows: q * nb + bi
  const int64_t ldd = dgh_rows.ld;
  std::vector<A> dc_buf(static_cast<size_t>(nb * H)),
      dy_buf(static_cast<size_t>(nb * H), A(0)), yprev_buf(static_cast<size_t>(slots * nb * H));
  std::vector<uint8_t> need_buf(static_cast<size_t>(nb * H));
  A *dc = dc_buf.data(), *dy_rec = dy_buf.data();
  uint8_t* need = need_buf.data();
  std::vector<const A*> rows_p(static_cast<size_t>(slots * nb * H));
  std::vector<A> rows_v(static_cast<size_t>(slots * nb * H));
  std::vector<int64_t> unit_start(static_cast<size_t>(H + 1));
  std::vector<int32_t> units_scratch(static_cast<size_t>(H));
  for (int64_t b = 0; b < nb; ++b) {
    for (int64_t h = 0; h < H; ++h) dc[b * H + h] = g_c[(b0 + b) * H + h];
  }
  int64_t computed = 0;
  for (int64_t t = T - 1; t >= 0; --t) {
    EVSPARSE_PROF_START
    const int64_t slot = (T - 1 - t) % slots;
    A* dgh = dgh_rows.row(slot * nb);
    A* yprev = yprev_buf.data() + slot * nb * H;
    // 1. The cell's gradients, elementwise per row (dense: dc reaches every unit).
    for (int64_t bi = 0; bi < nb; ++bi) {
      const int64_t b = b0 + bi;
      // c_{t-1}: from c~_{t-1} exactly as the forward formed it, or c0.
      A* cp = yprev + bi * H;  // (scratch until step 2 overwrites it)
      if (t > 0) {
        const A* ctp = saved + ((t - 1) * B + b) * S + 4 * H;
        for (int64_t h = 0; h < H; ++h) {
          const A th = clamp01(thr[h]);
          cp[h] = ctp[h] - ((ctp[h] - th) > A(0) ? A(1) : A(0)) * th;
        }
      } else {
        for (int64_t h = 0; h < H; ++h) cp[h] = c0[b * H + h];
      }
      train_cell_backward(saved + (t * B + b) * S, cp, thr, g_ys + (t * B + b) * H, dy_rec + bi * H,
                          g_events + b * H, dampening, support, dc + bi * H, g_gi + (t * B + b) * G, dgh + bi * ldd,
                          g_thr, H);
      for (int64_t i = 0; i < G; ++i) g_b_hh[i] += dgh[bi * ldd + i];
    }
    EVSPARSE_PROF_LAP(0)
    // 2. y_{t-1} and where its gradient is needed (fired, or inside the surrogate's support).
    for (int64_t bi = 0; bi < nb; ++bi) {
      const int64_t b = b0 + bi;
      A* yp = yprev + bi * H;
      uint8_t* nd = need + bi * H;
      if (t > 0) {
        const A* sv_prev = saved + ((t - 1) * B + b) * S;
        for (int64_t h = 0; h < H; ++h) {
          const A ctp = sv_prev[4 * H + h];
          const A v = ctp - clamp01(thr[h]);
          const bool fired = v > A(0);
          yp[h] = fired ? ctp : A(0);
          nd[h] = static_cast<uint8_t>(fired || (dampening != A(0) && support * (v < A(0) ? -v : v) < A(1)));
        }
      } else {
        for (int64_t h = 0; h < H; ++h) {
          yp[h] = y0[b * H + h];
          nd[h] = 1;  // the gradient of the initial state y0, every unit
        }
      }
    }
    EVSPARSE_PROF_LAP(1)
    // 3. dR^T += y_{t-1} (x) dgh_t over the slots' steps, once the slots are full (or the sequence ends):
    // the rows of the units active at t-1 only. First, per unit, the list of the (step, row) pairs
    // where it fired; then g_rt in column chunks small enough that the chunk of every listed dgh row
    // stays in L1 while each unit sums its rows into it in registers (each dgh element read feeds one
    // FMA, so from L2 the phase would run at L2's bandwidth).
    if (slot == slots - 1 || t == 0) {
      int64_t k = 0;
      for (int64_t j = 0; j < H; ++j) {
        unit_start[j] = k;
        for (int64_t q = 0; q <= slot; ++q) {
          const A* yq = yprev_buf.data() + q * nb * H;
          const A* dq = dgh_rows.row(q * nb);
          for (int64_t bi = 0; bi < nb; ++bi) {  // branch-free: which units fired is unpredictable
            const A v = yq[bi * H + j];
            rows_v[k] = v;
            rows_p[k] = dq + bi * ldd;
            k += v != A(0);
          }
        }
      }
      unit_start[H] = k;
      EVSPARSE_PROF_LAP(4)
      constexpr int64_t kL1Bytes = 32 << 10;
      const int64_t rows_in_window = (slot + 1) * nb, vec = 8 * std::max<int64_t>(V::W, 1);
      const int64_t chunk = std::max<int64_t>(vec, kL1Bytes / (rows_in_window * int64_t(sizeof(A))) / vec * vec);
      for (int64_t i0 = 0; i0 < G; i0 += chunk) {
        const int64_t n = std::min(chunk, G - i0);
        for (int64_t j = 0; j < H; ++j) {
          const int64_t k0 = unit_start[j], k1 = unit_start[j + 1];
          if (k1 > k0) train_axpy_rows<V>(g_rt + j * G + i0, rows_p.data() + k0, rows_v.data() + k0, k1 - k0, n, i0);
        }
      }
    }
    EVSPARSE_PROF_LAP(2)
    // 4. dy_{t-1} = dgh_t W where needed; zero elsewhere (its gradient would be multiplied by 0).
    computed += train_recurrent_grad<V>(dgh, ldd, nb, w, rt, H, need, dy_rec, units_scratch.data());
    EVSPARSE_PROF_LAP(3)
  }
  for (int64_t bi = 0; bi < nb; ++bi) {
    const int64_t b = b0 + bi;
    for (int64_t h = 0; h < H; ++h) {
      g_c0[b * H + h] = dc[bi * H + h];
      g_y0[b * H + h] = dy_rec[bi * H + h];
    }
  }
  return computed;
}

}  // namespace impl
}  // namespace
}  // namespace evsparse::cpu
