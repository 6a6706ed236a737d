// Gradient kernels of the gather products (torch-free). A = float or double. Each works on a range
// of input neurons [j0, j1), so the caller can split inputs across threads without reductions.
// x is [B, in], g (the output gradient) is [B, out]; all row-major and contiguous.
#pragma once

#include <cstdint>

namespace evsparse::cpu {

// Dense layout: gwt[j, :] = sum_b x[b, j] * g[b, :]. Only rows of active inputs are written; the
// caller zero-fills gwt, so the weight gradient touches only the columns of active inputs.
template <class A>
void dense_grad_weight(const A* x, const A* g, int64_t B, int64_t in, int64_t out, A* gwt,
                       int64_t j0, int64_t j1);

// Sparse layout, values: gv[k] = sum_b x[b, j] * g[b, rows[k]] for k in column j. Columns whose
// inputs are zero in every batch row are skipped (caller zero-fills gv).
template <class A, class I>
void sparse_grad_values(const A* x, const A* g, int64_t B, int64_t in, int64_t out,
                        const int64_t* col_ptr, const I* rows, A* gv, int64_t j0, int64_t j1);

// Sparse layout, input: gx[b, j] = sum_k vals[k] * g[b, rows[k]] (every column: the gradient of
// an inactive input is generally nonzero).
template <class A, class I>
void sparse_grad_input(const A* g, int64_t B, int64_t in, int64_t out, const int64_t* col_ptr,
                       const I* rows, const A* vals, A* gx, int64_t j0, int64_t j1);

}  // namespace evsparse::cpu
