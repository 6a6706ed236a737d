// y = bias + x @ W^T for a packed weight of either layout, into a raw buffer: the product shared by
// the linear ops and the fused EGRU step. Chooses the thread split per layout (see op_utils.h).
#pragma once

#include <atomic>

#include "checks.h"

namespace evsparse {

// y[B, out] = bias + x[B, in] @ W^T. A is the accumulation type (float, or double with float64
// weights). The active inputs are compacted once into a reused per-thread buffer; with int8 weights
// each is multiplied there by its column's scale (w.scale), the only place the scale enters.
template <class A>
void packed_product(const char* op, const PackedArgs& w, const A* x, int64_t B, const A* bias, A* y) {
  ActiveSet<A>& act = scratch_active_set<A>();
  act.compute(x, B, w.in);
  if (w.scale != nullptr) {
    TORCH_CHECK_VALUE(act.fold_scale(w.scale, B), op, ": ", w.name,
                      " has a non-finite int8 scale at an active input (corrupted packed weight)");
  }
  const int64_t out = w.out;
  dispatch_weight_type(w.dtype, [&](auto tag) {
    using W = std::remove_const_t<std::remove_pointer_t<decltype(tag)>>;
    if constexpr (std::is_same_v<W, double> != std::is_same_v<A, double>) {  // (int8 with double x too)
      TORCH_CHECK_VALUE(false, op, ": weight dtype ", w.dtype, " does not match the accumulation type");
    } else {
      const W* v = static_cast<const W*>(w.values);
      if (!w.sparse()) {
        int64_t macs = 0;
        for (int64_t b = 0; b < B; ++b) macs += act.count[b] * out;
        for_each_output_slice(B, out, macs, [&](int64_t b, int64_t o0, int64_t o1) {
          if constexpr (std::is_same_v<A, double>) {
            cpu::dense_gather_f64(act.xv_row(b), act.idx_row(b), act.count[b], v, out, bias, y + b * out, o0, o1);
          } else {
            cpu::active_kernels().dense(v)(act.xv_row(b), act.idx_row(b), act.count[b], v, out, bias, y + b * out,
                                           o0, o1);
          }
        });
        return;
      }
      // (The structure was validated by whoever built w: sparse_args, or the plan's validation.)
      const int64_t* cp = w.col_ptr;
      check_col_ptr_ends(op, w.name, cp, w.in, w.nnz);
      int64_t touched = 0;
      for (int64_t b = 0; b < B; ++b) {
        check_active_columns(op, w.name, cp, act.idx_row(b), act.count[b], w.nnz, &touched);
      }
      std::atomic<int64_t> bad{0};
      dispatch_rows(w, [&](const auto* rows) {
        if (w.masks_owner) {
          for (int64_t b = 0; b < B; ++b) {
            check_bitmask_rows(op, w.name, cp, rows, *w.masks_owner, act.idx_row(b), act.count[b]);
          }
        }
        const auto columns = [&](int64_t b, int64_t a0, int64_t a1, const A* bias_or_null, A* dst) {
          int64_t skipped;
          if constexpr (std::is_same_v<A, double>) {
            skipped = cpu::sparse_gather_f64(act.xv_row(b) + a0, act.idx_row(b) + a0, a1 - a0, cp, rows, v,
                                             bias_or_null, dst, 0, out, out);
          } else if (w.blocks != nullptr && use_blocks(w.blocks->blocked_nnz, w.nnz)) {  // (mostly 16x1 blocks)
            skipped = cpu::active_kernels().block(rows, v)(act.xv_row(b) + a0, act.idx_row(b) + a0, a1 - a0, cp, rows, v,
                                                           w.blocks->index(), bias_or_null, dst, out);
          } else if constexpr (std::is_same_v<W, float>) {
            if (w.masks != nullptr) {  // (float32 on AVX-512, dense enough: sparse_args)
              skipped = cpu::active_kernels().bitmask(rows)(act.xv_row(b) + a0, act.idx_row(b) + a0, a1 - a0, cp, rows,
                                                            w.masks, w.mask_counts, (out + 15) / 16, v, bias_or_null, dst,
                                                            out);
            } else {
              skipped = cpu::active_kernels().sparse(rows, v)(act.xv_row(b) + a0, act.idx_row(b) + a0, a1 - a0, cp,
                                                              rows, v, bias_or_null, dst, 0, out, out);
            }
          } else {
            skipped = cpu::active_kernels().sparse(rows, v)(act.xv_row(b) + a0, act.idx_row(b) + a0, a1 - a0, cp,
                                                            rows, v, bias_or_null, dst, 0, out, out);
          }
          if (skipped != 0) bad.fetch_add(skipped, std::memory_order_relaxed);
        };
        for_each_column_group(B, out, act, cp, touched, bias, y, columns);
      });
      report_bad_rows(op, w.name, bad.load(), out);
    }
  });
  act.trim();
}

}  // namespace evsparse
