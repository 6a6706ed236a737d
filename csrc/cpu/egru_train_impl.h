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

// y[0, n) += sum_k s[k] * x[k][0, n): a block of y stays in registers while every x adds into it.
template <class V, class A>
inline void train_axpy_rows(A* __restrict y, const A* const* x, const A* s, int64_t k, int64_t n) {
  int64_t i = 0;
  if constexpr (V::W > 1 && std::is_same_v<A, float>) {
    for (; i + 4 * V::W <= n; i += 4 * V::W) {
      auto a0 = V::load(y + i), a1 = V::load(y + i + V::W), a2 = V::load(y + i + 2 * V::W),
           a3 = V::load(y + i + 3 * V::W);
      for (int64_t q = 0; q < k; ++q) {
        const auto vs = V::set1(s[q]);
        const A* xq = x[q] + i;
        a0 = V::fma(vs, V::load(xq), a0);
        a1 = V::fma(vs, V::load(xq + V::W), a1);
        a2 = V::fma(vs, V::load(xq + 2 * V::W), a2);
        a3 = V::fma(vs, V::load(xq + 3 * V::W), a3);
      }
      V::store(y + i, a0);
      V::store(y + i + V::W, a1);
      V::store(y + i + 2 * V::W, a2);
      V::store(y + i + 3 * V::W, a3);
    }
  }
  for (int64_t q = 0; q < k; ++q) {
    for (int64_t m = i; m < n; ++m) y[m] += s[q] * x[q][m];
  }
}

// sum_i a[i] * b[i]
template <class V, class A>
inline A train_dot(const A* __restrict a, const A* __restrict b, int64_t n) {
  int64_t i = 0;
  A acc = A(0);
  if constexpr (V::W > 1 && std::is_same_v<A, float>) {
    auto p = V::zero(), q = V::zero();
    for (; i + 2 * V::W <= n; i += 2 * V::W) {
      p = V::fma(V::load(a + i), V::load(b + i), p);
      q = V::fma(V::load(a + i + V::W), V::load(b + i + V::W), q);
    }
    for (; i + V::W <= n; i += V::W) p = V::fma(V::load(a + i), V::load(b + i), p);
    float lanes[V::W], lanes2[V::W];
    V::store(lanes, p);
    V::store(lanes2, q);
    for (int k = 0; k < V::W; ++k) acc += lanes[k] + lanes2[k];
  }
  for (; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

// Per (t, b) the forward keeps 5 blocks of H: z, r, g, hg = (R y_{t-1} + b_hh)_g, c~.
constexpr int64_t kSavedBlocks = 5;

// gh[b] = b_hh + sum over units j with y[b, j] != 0 of y[b, j] * rt[j, :], for the nb rows of y.
// Unit-major, so a row of rt is read once per step and reused from L1 by every batch row that needs
// it. (Groups of 4 units summed in registers per row, as dense_gather does, were measured no faster:
// at training's activities a row rarely has two of a group's units active.)
template <class V, class A>
void train_recurrent_product(const A* y, int64_t ld_y, int64_t nb, const A* rt, const A* b_hh, int64_t H, A* gh) {
  const int64_t G = 3 * H;
  for (int64_t b = 0; b < nb; ++b) {
    A* g = gh + b * G;
    for (int64_t i = 0; i < G; ++i) g[i] = b_hh[i];
  }
  for (int64_t j = 0; j < H; ++j) {
    for (int64_t b = 0; b < nb; ++b) {
      const A v = y[b * ld_y + j];
      if (v != A(0)) train_axpy<V>(gh + b * G, rt + j * G, v, G);
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
  std::vector<A> gh_buf(static_cast<size_t>(nb * G));
  A* gh = gh_buf.data();
  for (int64_t b = b0; b < b1; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      c[b * H + h] = c0[b * H + h];
      events[b * H + h] = A(0);
    }
  }
  for (int64_t t = 0; t < T; ++t) {
    const A* y_prev = t == 0 ? y0 + b0 * H : ys + ((t - 1) * B + b0) * H;
    train_recurrent_product<V>(y_prev, H, nb, rt, b_hh, H, gh);
    for (int64_t b = b0; b < b1; ++b) {
      train_cell_forward(gi + (t * B + b) * G, gh + (b - b0) * G, thr, c + b * H, ys + (t * B + b) * H,
                         events + b * H, saved + (t * B + b) * S, H);
    }
  }
}

// out[b, j] = need[b, j] ? dgh[b, :] . rt[j, :] : 0 for the nb rows of dgh [nb, 3H] and the H rows of
// rt. Register-blocked: 4 rows x 2 units of dot products share their loads (8 accumulators + 6 loaded
// vectors fit AVX2's 16 registers), a block none of whose 8 entries is needed is skipped. Returns
// how many entries were needed.
template <class V, class A>
int64_t train_recurrent_grad(const A* dgh, int64_t nb, const A* rt, int64_t H, const uint8_t* need, A* out) {
  const int64_t G = 3 * H;
  int64_t needed = 0;
  for (int64_t k = 0; k < nb * H; ++k) needed += need[k];
  int64_t j = 0;
  if constexpr (V::W > 1 && std::is_same_v<A, float>) {
    constexpr int MB = 4, NJ = 2;
    for (; j + NJ <= H; j += NJ) {
      const A* w0 = rt + j * G;
      const A* w1 = w0 + G;
      int64_t b = 0;
      for (; b + MB <= nb; b += MB) {
        bool any = false;
        for (int m = 0; m < MB; ++m) any |= (need[(b + m) * H + j] | need[(b + m) * H + j + 1]) != 0;
        if (!any) {
          for (int m = 0; m < MB; ++m) out[(b + m) * H + j] = out[(b + m) * H + j + 1] = A(0);
          continue;
        }
        const A* a0 = dgh + b * G;
        const A* a1 = a0 + G;
        const A* a2 = a1 + G;
        const A* a3 = a2 + G;
        auto c00 = V::zero(), c01 = V::zero(), c10 = V::zero(), c11 = V::zero();
        auto c20 = V::zero(), c21 = V::zero(), c30 = V::zero(), c31 = V::zero();
        int64_t i = 0;
        for (; i + V::W <= G; i += V::W) {
          const auto x0 = V::load(w0 + i), x1 = V::load(w1 + i);
          auto r = V::load(a0 + i);
          c00 = V::fma(r, x0, c00);
          c01 = V::fma(r, x1, c01);
          r = V::load(a1 + i);
          c10 = V::fma(r, x0, c10);
          c11 = V::fma(r, x1, c11);
          r = V::load(a2 + i);
          c20 = V::fma(r, x0, c20);
          c21 = V::fma(r, x1, c21);
          r = V::load(a3 + i);
          c30 = V::fma(r, x0, c30);
          c31 = V::fma(r, x1, c31);
        }
        A acc[MB][NJ];
        const typename V::reg cs[MB][NJ] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}};
        const A* as[MB] = {a0, a1, a2, a3};
        const A* ws[NJ] = {w0, w1};
        for (int m = 0; m < MB; ++m) {
          for (int n = 0; n < NJ; ++n) {
            A lanes[V::W];
            V::store(lanes, cs[m][n]);
            A sum = A(0);
            for (int q = 0; q < V::W; ++q) sum += lanes[q];
            for (int64_t k = i; k < G; ++k) sum += as[m][k] * ws[n][k];
            acc[m][n] = sum;
          }
        }
        for (int m = 0; m < MB; ++m) {
          for (int n = 0; n < NJ; ++n) out[(b + m) * H + j + n] = need[(b + m) * H + j + n] ? acc[m][n] : A(0);
        }
      }
      for (; b < nb; ++b) {
        for (int n = 0; n < NJ; ++n) {
          out[b * H + j + n] = need[b * H + j + n] ? train_dot<V>(rt + (j + n) * G, dgh + b * G, G) : A(0);
        }
      }
    }
  }
  for (; j < H; ++j) {
    for (int64_t b = 0; b < nb; ++b) {
      out[b * H + j] = need[b * H + j] ? train_dot<V>(rt + j * G, dgh + b * G, G) : A(0);
    }
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
// (of the last cell state), g_events [B, H]; the forward's c0, y0, rt, thr, saved; the surrogate's
// dampening and support. Writes g_gi [T, B, 3H], g_c0 and g_y0 [B, H] for these rows, and ADDS this
// range's shares to g_rt [H, 3H] (the gradient of R^T), g_b_hh [3H] and g_thr [H] (the caller gives each
// thread its own, zeroed, and sums them). Returns how many (row, unit, step) recurrent-input gradients
// it computed (dy_{t-1}: the backward's sparsity, against T * nb * H).
template <class V, class A>
int64_t egru_train_backward(const A* g_ys, const A* g_c, const A* g_events, const A* c0, const A* y0, const A* rt,
                            const A* thr, const A* saved, A dampening, A support, int64_t T, int64_t B, int64_t H,
                            int64_t b0, int64_t b1, A* g_gi, A* g_c0, A* g_y0, A* g_rt, A* g_b_hh, A* g_thr) {
  const int64_t nb = b1 - b0, G = 3 * H, S = kSavedBlocks * H;
  if (nb <= 0) return 0;
  std::vector<A> dgh_buf(static_cast<size_t>(nb * G)), dc_buf(static_cast<size_t>(nb * H)),
      dy_buf(static_cast<size_t>(nb * H), A(0)), yprev_buf(static_cast<size_t>(nb * H));
  std::vector<uint8_t> need_buf(static_cast<size_t>(nb * H));
  A *dgh = dgh_buf.data(), *dc = dc_buf.data(), *dy_rec = dy_buf.data(), *yprev = yprev_buf.data();
  uint8_t* need = need_buf.data();
  std::vector<const A*> rows_p(static_cast<size_t>(nb));
  std::vector<A> rows_v(static_cast<size_t>(nb));
  for (int64_t b = 0; b < nb; ++b) {
    for (int64_t h = 0; h < H; ++h) dc[b * H + h] = g_c[(b0 + b) * H + h];
  }
  int64_t computed = 0;
  for (int64_t t = T - 1; t >= 0; --t) {
    EVSPARSE_PROF_START
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
                          g_events + b * H, dampening, support, dc + bi * H, g_gi + (t * B + b) * G, dgh + bi * G,
                          g_thr, H);
      for (int64_t i = 0; i < G; ++i) g_b_hh[i] += dgh[bi * G + i];
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
    // 3. dR^T: the rows of the units active at t-1 only. Per unit, the rows that add to it are summed
    // in registers, so each touched row of g_rt is loaded and stored once per step.
    for (int64_t j = 0; j < H; ++j) {
      int64_t k = 0;
      for (int64_t bi = 0; bi < nb; ++bi) {
        const A v = yprev[bi * H + j];
        if (v != A(0)) {
          rows_v[k] = v;
          rows_p[k++] = dgh + bi * G;
        }
      }
      if (k > 0) train_axpy_rows<V>(g_rt + j * G, rows_p.data(), rows_v.data(), k, G);
    }
    EVSPARSE_PROF_LAP(2)
    // 4. dy_{t-1} = R^T dgh_t where needed; zero elsewhere (its gradient would be multiplied by 0).
    computed += train_recurrent_grad<V>(dgh, nb, rt, H, need, dy_rec);
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
