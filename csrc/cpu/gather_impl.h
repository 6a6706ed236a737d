// Kernel bodies shared by every instruction set. Included by each gather_<isa>.cpp after it picks its
// ISA macro; everything here has internal linkage, so each copy keeps its own ISA's code.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "simd.h"

namespace evsparse::cpu {
namespace {  // internal linkage, see simd.h
namespace impl {

template <class A>
inline void init_slice(const A* bias, A* y, int64_t o0, int64_t o1) {
  // Plain loops, not std::copy/fill: their shared instantiations could be linked from another ISA.
  if (bias != nullptr) {
    for (int64_t o = o0; o < o1; ++o) y[o] = bias[o];
  } else {
    for (int64_t o = o0; o < o1; ++o) y[o] = A(0);
  }
}

// y[0, n) += s * r[0, n), r widened to A.
template <class V, class A, class W>
inline void axpy1(A* y, const W* r, A s, int64_t n) {
  int64_t i = 0;
  if constexpr (V::W > 1) {
    const auto vs = V::set1(s);
    for (; i + V::W <= n; i += V::W) V::store(y + i, V::fma(vs, V::loadw(r + i), V::load(y + i)));
  }
  for (; i < n; ++i) y[i] += s * static_cast<A>(widen(r[i]));
}

// Dense-gather: stream the rows of the active inputs. Four rows are fused per pass so the output
// slice (resident in L1) is loaded and stored once per four weight rows.
template <class V, class A, class W>
void dense_gather(const A* xv, const int32_t* idx, int64_t na, const W* wt, int64_t ld,
                  const A* bias, A* y, int64_t o0, int64_t o1) {
  init_slice(bias, y, o0, o1);
  const int64_t n = o1 - o0;
  A* yo = y + o0;
  int64_t a = 0;
  for (; a + 4 <= na; a += 4) {
    const W* r0 = wt + int64_t(idx[a]) * ld + o0;
    const W* r1 = wt + int64_t(idx[a + 1]) * ld + o0;
    const W* r2 = wt + int64_t(idx[a + 2]) * ld + o0;
    const W* r3 = wt + int64_t(idx[a + 3]) * ld + o0;
    const A s0 = xv[a], s1 = xv[a + 1], s2 = xv[a + 2], s3 = xv[a + 3];
    int64_t i = 0;
    if constexpr (V::W > 1) {
      const auto v0 = V::set1(s0), v1 = V::set1(s1), v2 = V::set1(s2), v3 = V::set1(s3);
      for (; i + 2 * V::W <= n; i += 2 * V::W) {
        auto p = V::load(yo + i);
        auto q = V::load(yo + i + V::W);
        p = V::fma(v0, V::loadw(r0 + i), p);
        q = V::fma(v0, V::loadw(r0 + i + V::W), q);
        p = V::fma(v1, V::loadw(r1 + i), p);
        q = V::fma(v1, V::loadw(r1 + i + V::W), q);
        p = V::fma(v2, V::loadw(r2 + i), p);
        q = V::fma(v2, V::loadw(r2 + i + V::W), q);
        p = V::fma(v3, V::loadw(r3 + i), p);
        q = V::fma(v3, V::loadw(r3 + i + V::W), q);
        V::store(yo + i, p);
        V::store(yo + i + V::W, q);
      }
    }
    for (; i < n; ++i) {
      yo[i] += s0 * static_cast<A>(widen(r0[i])) + s1 * static_cast<A>(widen(r1[i])) +
               s2 * static_cast<A>(widen(r2[i])) + s3 * static_cast<A>(widen(r3[i]));
    }
  }
  for (; a < na; ++a) axpy1<V>(yo, wt + int64_t(idx[a]) * ld + o0, xv[a], n);
}

// A non-finite input multiplies the implicit (pruned) zeros of its column too: x * 0 = NaN there,
// exactly as F.linear on the dense matrix gives. Rare, so a plain merge walk.
template <class A, class I, class W>
void scatter_nonfinite_column(A s, const I* rows, const W* vals, int64_t k0, int64_t k1, A* y,
                              int64_t o0, int64_t o1) {
  const A nan_term = s * A(0);
  int64_t k = k0;
  for (int64_t o = o0; o < o1; ++o) {
    if (k < k1 && int64_t(rows[k]) == o) {
      y[o] += s * static_cast<A>(widen(vals[k]));
      ++k;
    } else {
      y[o] += nan_term;
    }
  }
}

// Sparse-gather: for each active input, scatter its stored nonzeros into the output slice. When the
// slice is not the whole output, binary-search the column's sorted row indices for the slice (the
// op layer avoids that at batch 1 by splitting columns, not outputs, across threads).
template <class A, class I, class W>
void sparse_gather(const A* xv, const int32_t* idx, int64_t na, const int64_t* col_ptr,
                   const I* __restrict rows, const W* __restrict vals, const A* bias, A* __restrict y,
                   int64_t o0, int64_t o1) {
  init_slice(bias, y, o0, o1);
  const auto less = [](I r, int64_t v) { return int64_t(r) < v; };
  constexpr int64_t kPrefetchAhead = 2;  // columns: start their first cache lines early
  for (int64_t a = 0; a < na; ++a) {
    if (a + kPrefetchAhead < na) {
      const int64_t kn = col_ptr[idx[a + kPrefetchAhead]];
      __builtin_prefetch(rows + kn);
      __builtin_prefetch(vals + kn);
      __builtin_prefetch(reinterpret_cast<const char*>(vals + kn) + 64);
    }
    const int64_t j = idx[a];
    int64_t k0 = col_ptr[j], k1 = col_ptr[j + 1];
    // O(1) checks first: a column entirely inside the slice needs no search.
    if (k0 < k1 && int64_t(rows[k0]) < o0) k0 = std::lower_bound(rows + k0, rows + k1, o0, less) - rows;
    if (k0 < k1 && int64_t(rows[k1 - 1]) >= o1) k1 = std::lower_bound(rows + k0, rows + k1, o1, less) - rows;
    const A s = xv[a];
    if (!std::isfinite(s)) {
      scatter_nonfinite_column(s, rows, vals, k0, k1, y, o0, o1);
      continue;
    }
    int64_t k = k0;
    for (; k + 4 <= k1; k += 4) {
      const I r0 = rows[k], r1 = rows[k + 1], r2 = rows[k + 2], r3 = rows[k + 3];
      const A w0 = static_cast<A>(widen(vals[k])), w1 = static_cast<A>(widen(vals[k + 1]));
      const A w2 = static_cast<A>(widen(vals[k + 2])), w3 = static_cast<A>(widen(vals[k + 3]));
      y[r0] += s * w0;
      y[r1] += s * w1;
      y[r2] += s * w2;
      y[r3] += s * w3;
    }
    for (; k < k1; ++k) y[rows[k]] += s * static_cast<A>(widen(vals[k]));
  }
}

}  // namespace impl
}  // namespace
}  // namespace evsparse::cpu
