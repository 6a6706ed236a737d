// Kernel bodies shared by every instruction set. Included by each gather_<isa>.cpp after it picks its
// ISA macro; everything here has internal linkage, so each copy keeps its own ISA's code.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

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
  // Bytes of each of the next group's rows prefetched while this group runs: the hardware prefetcher
  // ramps up afresh on every row, which costs most when the weights come from DRAM (cold caches).
  constexpr int64_t kHeadBytes = 512;
  init_slice(bias, y, o0, o1);
  const int64_t n = o1 - o0;
  A* yo = y + o0;
  int64_t a = 0;
  for (; a + 4 <= na; a += 4) {
    if (a + 8 <= na) {  // the next group's rows: each is a stream starting at a random place (see below)
      for (int q = 4; q < 8; ++q) {
        const char* p = reinterpret_cast<const char*>(wt + int64_t(idx[a + q]) * ld + o0);
        for (int64_t b = 0; b < kHeadBytes && b < n * int64_t(sizeof(W)); b += 64) __builtin_prefetch(p + b);
      }
    }
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
      // One vector more with the same operations: every element of a whole vector is formed the same
      // way wherever a thread's slice (a multiple of kSliceAlign = 16 floats) ends, so that the result
      // does not depend on the split. (With AVX-512's 16 lanes, 2 vectors are 32: a slice of 48 rows left
      // its last 16 to the scalar tail, whose rounding differs; found on the first AVX-512 machine.)
      for (; i + V::W <= n; i += V::W) {
        auto p = V::load(yo + i);
        p = V::fma(v0, V::loadw(r0 + i), p);
        p = V::fma(v1, V::loadw(r1 + i), p);
        p = V::fma(v2, V::loadw(r2 + i), p);
        p = V::fma(v3, V::loadw(r3 + i), p);
        V::store(yo + i, p);
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
// exactly as F.linear on the dense matrix gives. Rare, so a plain merge walk. Returns the number of
// the column's entries it could not place (row indices out of order or outside the slice).
template <class A, class I, class W>
int64_t scatter_nonfinite_column(A s, const I* rows, const W* vals, int64_t k0, int64_t k1, A* y,
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
  return k1 - k;
}

// The vector for SIMD work among scalar float adds: V::Narrow where the ISA has one (simd.h), else V.
template <class V, class = void>
struct narrow_of { using type = V; };
template <class V>
struct narrow_of<V, std::void_t<typename V::Narrow>> { using type = typename V::Narrow; };

// True if any of the 16 indices rows[0, 16) lies outside [o0, o0 + len) (len >= 1): with SIMD where
// the ISA has it (simd.h: ~5 instructions per 16 indices), else one unsigned compare per index.
template <class V, class I>
inline bool outside16(const I* rows, int64_t o0, int64_t len) {
  if constexpr (V::W > 1) {
    return V::outside16(rows, o0, len);
  } else {
    uint32_t bad = 0;  // unsigned arithmetic: a negative index wraps to a huge one, nothing overflows
    for (int64_t h = 0; h < 16; ++h) bad |= uint32_t(uint32_t(int32_t(rows[h])) - uint32_t(o0) >= uint32_t(len));
    return bad != 0;
  }
}

// The sparse-gather's scatter of one column's entries [k0, k1) times s into the slice [o0, o0 + len) of
// y: products formed 16 at a time with SIMD, scalar scatter-adds, range-checked (see sparse_gather).
// Returns the entries it skipped. The products are narrow_of<V> vectors (256-bit on AVX-512). Shared
// with the block-gather's unblocked columns, so the two round every entry the same way (the 16-wide
// products are a multiply, then an add; the tail's expression the compiler may contract into an FMA,
// in both).
template <class V, class A, class I, class W, bool kCheck = true>
inline int64_t scatter_column(A s, const I* __restrict rows, const W* __restrict vals, int64_t k0, int64_t k1,
                              A* __restrict y, int64_t o0, int64_t len) {
  constexpr int64_t kBlock = 16;   // nonzeros per SIMD product block (a multiple of every V::W)
  constexpr int64_t kAhead = 256;  // nonzeros: prefetch distance within a column
  int64_t bad = 0;
  using P = typename narrow_of<V>::type;
  const auto vs = P::set1(s);
  alignas(64) A prod[kBlock];
  int64_t k = k0;
  for (; k + kBlock <= k1; k += kBlock) {
    if (k + kAhead < k1) {
      __builtin_prefetch(vals + k + kAhead);
      __builtin_prefetch(rows + k + kAhead);
    }
    for (int64_t h = 0; h < kBlock; h += P::W) P::store(prod + h, P::mul(vs, P::loadw(vals + k + h)));
    const I* r = rows + k;
    if (kCheck && __builtin_expect(outside16<V>(r, o0, len), 0)) {
      for (int64_t h = 0; h < kBlock; ++h) {
        if (uint64_t(int64_t(r[h]) - o0) < uint64_t(len)) y[r[h]] += prod[h]; else ++bad;
      }
      continue;
    }
    for (int64_t h = 0; h < kBlock; ++h) y[r[h]] += prod[h];
  }
  for (; k < k1; ++k) {
    if (kCheck && __builtin_expect(uint64_t(int64_t(rows[k]) - o0) >= uint64_t(len), 0)) {
      ++bad;
      continue;
    }
    y[rows[k]] += s * static_cast<A>(widen(vals[k]));
  }
  return bad;
}

// Sparse-gather: for each active input, scatter its stored nonzeros into the output slice [o0, o1)
// of an output with n_out rows. When the slice is not the whole output, binary-search the column's
// sorted row indices for the slice (the op layer avoids that at batch 1 by splitting columns, not
// outputs, across threads).
// Per block of 16 nonzeros the products s * w are formed with SIMD (widening half weights on the
// way) and only the scatter-adds stay scalar. Columns are short streams that start at random places,
// so the hardware prefetcher would ramp up afresh in each: the kernel prefetches kAhead nonzeros
// ahead within the column and the head of the next active column. Both measured on the 2-core EPYC
// (README "Sparse-gather inner loop"): 1.2-1.5x over a plain unrolled scalar scatter.
//
// Bounds: the kernel trusts no row index. Every index it scatters through is range-checked against
// the slice (a vectorised check per block of 16, so a valid structure pays one compare per index), and
// a column whose first or last index lies outside [0, n_out) is counted rather than searched. Entries
// that cannot be placed are skipped and counted; the return value is their number, 0 for a valid
// structure, so the caller can report corrupted index data instead of writing outside y. (col_ptr of
// the active columns is checked by the caller, O(active).) Requires n_out < 2^31. kCheck = false
// exists only for benchmarks/cpp/sparse_gather_ab.cpp, which measures what the checks cost.
template <class V, class A, class I, class W, bool kCheck = true>
int64_t sparse_gather(const A* xv, const int32_t* idx, int64_t na, const int64_t* col_ptr,
                      const I* __restrict rows, const W* __restrict vals, const A* bias, A* __restrict y,
                      int64_t o0, int64_t o1, int64_t n_out) {
  init_slice(bias, y, o0, o1);
  const auto less = [](I r, int64_t v) { return int64_t(r) < v; };
  constexpr int64_t kBlock = 16;   // (scatter_column's block of products)
  constexpr int64_t kHeadBytes = 1024;  // bytes of the next column's values (and half that of rows)
  static_assert(kBlock % V::W == 0 && kBlock == 16, "block must hold whole vectors; outside16 checks 16");
  const int64_t len = o1 - o0;
  const bool whole = o0 == 0 && o1 == n_out;
  int64_t bad = 0;
  if (len <= 0) {  // nothing to write: with no outputs at all, every stored entry is out of range
    if (whole) {
      for (int64_t a = 0; a < na; ++a) bad += col_ptr[idx[a] + 1] - col_ptr[idx[a]];
    }
    return bad;
  }
  // The head prefetch takes the same number of lines for every column of a call: the mean length of
  // the columns the active ones span (idx ascending, col_ptr monotone; clamped, so corrupted data only
  // changes what is prefetched, and a prefetch never faults). Sized per column, the two loops' trip
  // counts changed from column to column and mispredicted wherever lengths straddle a line: 5-20% of
  // the call on cache-resident columns of 10-40 entries (benchmarks/cpp/short_columns_ab.cpp). A short
  // column's prefetch may cover some of its neighbour's entries, which costs nothing.
  int64_t head_v = 1, head_r = 1;
  if (na > 1) {
    const int64_t span_cols = int64_t(idx[na - 1]) + 1 - int64_t(idx[0]);
    const int64_t span_nnz = col_ptr[idx[na - 1] + 1] - col_ptr[idx[0]];
    const int64_t mean = span_cols > 0 && span_nnz > 0 ? span_nnz / span_cols : 0;
    head_v = std::clamp<int64_t>((mean * int64_t(sizeof(W)) + 63) / 64, 1, kHeadBytes / 64);
    head_r = std::clamp<int64_t>((mean * int64_t(sizeof(I)) + 63) / 64, 1, kHeadBytes / 128);
  }
  for (int64_t a = 0; a < na; ++a) {
    if (a + 1 < na) {
      const int64_t kn = col_ptr[idx[a + 1]];
      const char* pv = reinterpret_cast<const char*>(vals + kn);
      const char* pr = reinterpret_cast<const char*>(rows + kn);
      for (int64_t q = 0; q < head_v; ++q) __builtin_prefetch(pv + 64 * q);
      for (int64_t q = 0; q < head_r; ++q) __builtin_prefetch(pr + 64 * q);
    }
    const int64_t j = idx[a];
    int64_t k0 = col_ptr[j], k1 = col_ptr[j + 1];
    if (!whole && k0 < k1) {
      // A sorted column's ends bound all of it: ends outside the output mean corrupted data.
      if (int64_t(rows[k0]) < 0 || int64_t(rows[k1 - 1]) >= n_out) {
        bad += k1 - k0;
        continue;
      }
      // O(1) checks first: a column entirely inside the slice needs no search.
      if (int64_t(rows[k0]) < o0) k0 = std::lower_bound(rows + k0, rows + k1, o0, less) - rows;
      if (k0 < k1 && int64_t(rows[k1 - 1]) >= o1) k1 = std::lower_bound(rows + k0, rows + k1, o1, less) - rows;
    }
    const A s = xv[a];
    if (!std::isfinite(s)) {
      bad += scatter_nonfinite_column(s, rows, vals, k0, k1, y, o0, o1);
      continue;
    }
    bad += scatter_column<V, A, I, W, kCheck>(s, rows, vals, k0, k1, y, o0, len);
  }
  return bad;
}

// popcount of a 16-bit mask as a 32-bit popcnt: on a uint16 the compiler emits the 16-bit form, whose
// destination merges into the register's old value, which chains every popcount of a loop (measured:
// the bitmask loop ran 2x slower). The xor breaks older cores' false dependency on the destination.
inline int popcount16(uint32_t m) {
#if defined(__POPCNT__) && defined(__x86_64__)
  int r;
  asm("xorl %0, %0\n\tpopcntl %1, %0" : "=&r"(r) : "r"(m));
  return r;
#else
  return __builtin_popcount(m);
#endif
}

#if defined(EVSPARSE_ISA_AVX512)
// A 16-bit mask straight from memory into a mask register. Through a general register (what the
// compiler emits for a cast) the kmovw takes a slot on the port the expand needs: measured 1.2x
// slower from DRAM (bitmask512_ab.cpp, lib-bm against bmk8). The emulated test build has no mask
// registers, so it casts.
inline __mmask16 load_mask16(const uint16_t* p) {
#if defined(EVSPARSE_EMULATE_AVX512)
  return static_cast<__mmask16>(*p);
#else
  __mmask16 k;
  asm("kmovw %1, %0" : "=Yk"(k) : "m"(*p));
  return k;
#endif
}
#endif

// Bitmask-gather: the sparse layout's float32 product through a bitmask of its structure. Per input
// column, one 16-bit mask per 16-row block of the output (bit r: row 16 b + r is stored; masks [in, nb],
// nb = ceil(n_out / 16)) and the CSC's own values, which are in row order. On AVX-512 a block is one
// masked expanding load (vexpandps: the block's stored values placed in their rows, zeros elsewhere)
// and one FMA, and up to 8 active columns share one load and store of each output block. That costs
// the same per block whatever the density, where the scatter costs per nonzero, so it pays above ~12%
// density (benchmarks/cpp/bitmask512_ab.cpp). Other ISAs walk the mask bits (correct, not fast: the
// op layer uses the bitmask only on AVX-512).
//
// masks and counts (counts[j]: the number of bits set in column j's masks) are derived together from a
// validated structure by the op layer (csc_validation.cpp) and are never user data. Bounds: a column
// whose count is not its col_ptr count (col_ptr changed since) is skipped and counted in the return
// value (0 for a valid structure), so the expanding loads never read past a column's values; mask bits
// past n_out are never stored (masked tail). A non-finite input takes the CSC path (rows) for its
// column, as the sparse-gather does.
template <class V, class A, class I, class W>
int64_t bitmask_gather(const A* xv, const int32_t* idx, int64_t na, const int64_t* col_ptr, const I* rows,
                       const uint16_t* masks, const int64_t* counts, int64_t nb, const W* vals, const A* bias, A* y,
                       int64_t n_out) {
  init_slice(bias, y, 0, n_out);
  int64_t bad = 0;
#if defined(EVSPARSE_ISA_AVX512)
  if constexpr (V::W == 16 && std::is_same_v<A, float> && std::is_same_v<W, float>) {
    constexpr int G = 8;
    const int64_t full = n_out / 16;  // whole blocks
    const float* vp[G];
    const uint16_t* mp[G];
    __m512 vs[G];
    const auto run_group = [&](auto g_tag) {
      constexpr int g = decltype(g_tag)::value;
      // Local copies, so that the pointers live in registers through the block loop.
      const float* p[g];
      const uint16_t* m[g];
      __m512 v[g];
      for (int c = 0; c < g; ++c) {
        p[c] = vp[c];
        m[c] = mp[c];
        v[c] = vs[c];
      }
      for (int64_t b = 0; b < full; ++b) {
        // Two accumulators: the block's FMAs form two chains of g / 2, not one of g.
        __m512 acc0 = _mm512_loadu_ps(y + 16 * b), acc1 = _mm512_setzero_ps();
        for (int c = 0; c < g; ++c) {
          const __m512 e = _mm512_maskz_expandloadu_ps(load_mask16(m[c] + b), p[c]);
          if (c % 2 == 0) {
            acc0 = _mm512_fmadd_ps(v[c], e, acc0);
          } else {
            acc1 = _mm512_fmadd_ps(v[c], e, acc1);
          }
          p[c] += popcount16(m[c][b]);
        }
        _mm512_storeu_ps(y + 16 * b, g > 1 ? _mm512_add_ps(acc0, acc1) : acc0);
      }
      if (full < nb) {  // the last, partial block: rows past n_out are neither loaded nor stored
        const __mmask16 tail = static_cast<__mmask16>((1u << (n_out - 16 * full)) - 1);
        __m512 acc = _mm512_maskz_loadu_ps(tail, y + 16 * full);
        for (int c = 0; c < g; ++c) {
          acc = _mm512_fmadd_ps(v[c], _mm512_maskz_expandloadu_ps(load_mask16(m[c] + full), p[c]), acc);
        }
        _mm512_mask_storeu_ps(y + 16 * full, tail, acc);
      }
    };
    const auto run_n = [&](int n) {  // a group of n <= G columns
      switch (n) {
        case 8: run_group(std::integral_constant<int, 8>{}); break;
        case 7: run_group(std::integral_constant<int, 7>{}); break;
        case 6: run_group(std::integral_constant<int, 6>{}); break;
        case 5: run_group(std::integral_constant<int, 5>{}); break;
        case 4: run_group(std::integral_constant<int, 4>{}); break;
        case 3: run_group(std::integral_constant<int, 3>{}); break;
        case 2: run_group(std::integral_constant<int, 2>{}); break;
        case 1: run_group(std::integral_constant<int, 1>{}); break;
        default: break;
      }
    };
    int n = 0;
    for (int64_t a = 0; a < na; ++a) {
      const int64_t j = idx[a], k0 = col_ptr[j], k1 = col_ptr[j + 1];
      const A s = xv[a];
      if (!std::isfinite(s)) {
        bad += scatter_nonfinite_column(s, rows, vals, k0, k1, y, int64_t(0), n_out);
        continue;
      }
      if (counts[j] != k1 - k0) {
        bad += k1 - k0;
        continue;
      }
      vp[n] = vals + k0;
      mp[n] = masks + j * nb;
      vs[n] = _mm512_set1_ps(s);
      if (++n == G) {
        run_n(G);
        n = 0;
      }
    }
    run_n(n);
    return bad;
  }
#endif
  for (int64_t a = 0; a < na; ++a) {
    const int64_t j = idx[a], k0 = col_ptr[j], k1 = col_ptr[j + 1];
    const A s = xv[a];
    if (!std::isfinite(s)) {
      bad += scatter_nonfinite_column(s, rows, vals, k0, k1, y, int64_t(0), n_out);
      continue;
    }
    if (counts[j] != k1 - k0) {
      bad += k1 - k0;
      continue;
    }
    const uint16_t* m = masks + j * nb;
    const W* v = vals + k0;
    for (int64_t b = 0; b < nb; ++b) {
      for (uint32_t k = m[b]; k != 0; k &= k - 1) {
        const int64_t o = 16 * b + __builtin_ctz(k);
        const A p = s * static_cast<A>(widen(*v++));
        if (o < n_out) {
          y[o] += p;
        } else {
          ++bad;
        }
      }
    }
  }
  return bad;
}

// Block-gather: the sparse layout's product when whole columns of its structure come in 16x1 blocks,
// runs of 16 consecutive output rows starting at a multiple of 16 (what evsparse.prune's block=16
// pruning leaves; the last block of an output whose size is not a multiple of 16 ends at n_out). Per
// block the column's 16 stored values are contiguous in vals (CSC, rows in order), so a block is one
// vector multiply and add per V::W rows, its start read from the block index (4 bytes per block) rather
// than an index, a product and a scattered add per value. Columns the index does not mark blocked, and
// any column with a non-finite input, take the scatter. Writes y[0, n_out) for the active inputs.
//
// Bitwise equal to the sparse-gather: per active column, in the same order, both add each entry's
// product to its row, formed the same way: a whole block is the scatter's 16-wide product group (a
// multiply, then an add: no FMA, for that reason), the partial last block its tail expression.
// Bounds: the index is derived data (its starts lie in [0, n_out)); per column the kernel checks that
// the column still holds the entries the index implies (its col_ptr count) and that its first and last
// row index are still the ones its blocks imply, so rows or pointers changed since the derivation (a
// memory-mapped file edited on disk) are skipped and counted, never followed outside y or the column's
// values. Returns the skipped entries (0 for a valid structure).
template <class V, class A, class I, class W>
int64_t block_gather(const A* xv, const int32_t* idx, int64_t na, const int64_t* col_ptr, const I* rows,
                     const W* vals, const BlockIndex& bx, const A* bias, A* y, int64_t n_out) {
  static_assert(16 % V::W == 0, "a block must hold whole vectors");
  init_slice(bias, y, 0, n_out);
  int64_t bad = 0;
  for (int64_t a = 0; a < na; ++a) {
    const int64_t j = idx[a], k0 = col_ptr[j], k1 = col_ptr[j + 1];
    const A s = xv[a];
    if (!std::isfinite(s)) {
      bad += scatter_nonfinite_column(s, rows, vals, k0, k1, y, int64_t(0), n_out);
      continue;
    }
    if (!bx.blocked[j]) {  // the scatter, as sparse_gather forms it
      bad += scatter_column<V, A, I, W>(s, rows, vals, k0, k1, y, int64_t(0), n_out);
      continue;
    }
    const int32_t* st = bx.starts + bx.ptr[j];
    const int64_t nb = bx.ptr[j + 1] - bx.ptr[j];
    if (nb == 0) {
      bad += k1 - k0;  // (an empty blocked column has no entries)
      continue;
    }
    const int64_t last = st[nb - 1], last_len = std::min<int64_t>(16, n_out - last);
    if (__builtin_expect(k1 - k0 != 16 * (nb - 1) + last_len || int64_t(rows[k0]) != st[0] ||
                             int64_t(rows[k1 - 1]) != last + last_len - 1, 0)) {
      bad += k1 - k0;  // not the structure the index was derived from: the column is skipped
      continue;
    }
    const auto vs = V::set1(s);
    const W* vb = vals + k0;
    const int64_t whole = last_len == 16 ? nb : nb - 1;
    for (int64_t i = 0; i < whole; ++i, vb += 16) {
      A* yb = y + st[i];
      for (int h = 0; h < 16; h += V::W) {  // (opaque: the product rounded on its own, as the scatter's)
        V::store(yb + h, V::add(V::load(yb + h), V::opaque(V::mul(vs, V::loadw(vb + h)))));
      }
    }
    if (whole < nb) {  // the last, partial block (rows last .. n_out - 1)
      for (int64_t h = 0; h < last_len; ++h) y[last + h] += s * static_cast<A>(widen(vb[h]));
    }
  }
  return bad;
}

}  // namespace impl
}  // namespace
}  // namespace evsparse::cpu
