// y = bias + x @ W^T for a packed weight of either layout, into a raw buffer: the product shared by
// the linear ops and the fused EGRU step. Chooses the thread split per layout (see op_utils.h).
#pragma once

#include <atomic>

#include "op_utils.h"

namespace evsparse {

// Checks a CSC structure (col_ptr, row_idx) for out outputs, and its values when given.
inline void check_csc(const char* op, const Tensor& x, const Tensor& col_ptr, const Tensor& row_idx,
                      const Tensor* values, int64_t out) {
  check_tensor(col_ptr, op, "col_ptr", x);
  check_tensor(row_idx, op, "row_idx", x);
  TORCH_CHECK_VALUE(col_ptr.dim() == 1 && col_ptr.scalar_type() == ScalarType::Long, op,
                    ": col_ptr must be a 1-D int64 tensor, got ", col_ptr.scalar_type(), " ", col_ptr.sizes());
  TORCH_CHECK_VALUE(col_ptr.size(0) >= 1, op, ": col_ptr must have in_features + 1 entries");
  TORCH_CHECK_VALUE(row_idx.dim() == 1 && (row_idx.scalar_type() == ScalarType::Short ||
                                           row_idx.scalar_type() == ScalarType::Int),
                    op, ": row_idx must be a 1-D int16 or int32 tensor, got ", row_idx.scalar_type());
  TORCH_CHECK_VALUE(out >= 0, op, ": out_features must be >= 0, got ", out);
  TORCH_CHECK_VALUE(row_idx.scalar_type() == ScalarType::Int || out <= 32768, op,
                    ": int16 row indices cannot address ", out, " outputs; use int32");
  TORCH_CHECK_VALUE(out <= INT32_MAX, op, ": out_features must be < 2^31, got ", out);
  if (values != nullptr) {
    check_tensor(*values, op, "values", x);
    TORCH_CHECK_VALUE(values->dim() == 1 && values->size(0) == row_idx.size(0), op,
                      ": values must be 1-D with one entry per row index (", row_idx.size(0), "), got ",
                      values->sizes());
  }
}

// Full bounds check of a CSC structure, O(in + nnz): used by the gradient ops, whose work is O(nnz)
// anyway, so a raw call with a corrupted structure is an error rather than an out-of-bounds read.
inline void check_csc_bounds(const char* op, const Tensor& col_ptr, const Tensor& row_idx, int64_t out) {
  const int64_t* cp = col_ptr.const_data_ptr<int64_t>();
  const int64_t in = col_ptr.size(0) - 1, nnz = row_idx.size(0);
  TORCH_CHECK_VALUE(cp[0] == 0 && cp[in] == nnz, op, ": col_ptr must start at 0 and end at nnz=", nnz);
  for (int64_t j = 0; j < in; ++j) {
    TORCH_CHECK_VALUE(cp[j] <= cp[j + 1], op, ": col_ptr is not monotone at column ", j);
  }
  dispatch_row_index(row_idx, [&](const auto* rows) {
    for (int64_t k = 0; k < nnz; ++k) {
      TORCH_CHECK_VALUE(rows[k] >= 0 && int64_t(rows[k]) < out, op, ": row_idx[", k, "] = ", int64_t(rows[k]),
                        " is out of range [0, ", out, ")");
    }
  });
}

// The full structure check of a sparse weight (col_ptr from 0 to nnz and non-decreasing; every row
// index in [0, out) and strictly increasing within its column), done once per structure: again only
// when col_ptr or row_idx is a different tensor, was edited in place (its version moved) or now has
// other data or size. So a raw op call with corrupted data gets a ValueError naming the tensor, at
// the cost of one hash lookup per weight and call (csc_validation.cpp). Data changed without a
// version bump (a file mapped with mmap=True and edited on disk) is still caught by the per-call
// checks below and by the kernels' own range checks, so it can never be read out of bounds.
void ensure_valid_csc(const char* op, const char* name, const Tensor& col_ptr, const Tensor& row_idx, int64_t out);

// Active columns' pointer ranges are checked on every call (O(active), cheap), so a corrupted
// pointer array cannot make the kernel read out of bounds; so are col_ptr's two ends (O(1)), which
// catches a zeroed or truncated col_ptr. Row indices are range-checked by the kernel as it reads them
// (see cpu/kernels.h); a structure the kernel had to skip entries of is reported by report_bad_rows.
inline void check_active_columns(const char* op, const char* name, const int64_t* col_ptr, int64_t in,
                                 const int32_t* idx, int64_t na, int64_t nnz, int64_t* touched) {
  TORCH_CHECK_VALUE(col_ptr[0] == 0 && col_ptr[in] == nnz, op, ": ", name, " col_ptr must start at 0 and end at nnz=",
                    nnz, ", got ", col_ptr[0], "..", col_ptr[in], " (corrupted packed weight)");
  for (int64_t a = 0; a < na; ++a) {
    const int64_t j = idx[a];
    const int64_t k0 = col_ptr[j], k1 = col_ptr[j + 1];
    TORCH_CHECK_VALUE(0 <= k0 && k0 <= k1 && k1 <= nnz, op, ": ", name, " col_ptr is inconsistent at column ", j,
                      " ([", k0, ", ", k1, ") with nnz=", nnz, "; corrupted packed weight)");
    *touched += k1 - k0;
  }
}

inline void report_bad_rows(const char* op, const char* name, int64_t bad, int64_t out) {
  TORCH_CHECK_VALUE(bad == 0, op, ": ", name, " row_idx holds ", bad, " entr", bad == 1 ? "y" : "ies",
                    " outside [0, ", out, ") or out of order within a column (corrupted packed weight; "
                    "rebuild it with evsparse.pack, or reload an intact file)");
}

// A packed weight as the ops receive it: dense layout = (values [in, out]); sparse layout =
// (values [nnz], col_ptr [in + 1], row_idx [nnz]). Shapes and dtypes are checked by the callers.
struct PackedArgs {
  const Tensor& values;
  const Tensor* col_ptr;  // null for the dense layout
  const Tensor* row_idx;
  int64_t in;
  int64_t out;
  const char* name = "weight";  // the argument's name in error messages
  bool sparse() const { return col_ptr != nullptr; }
};

// y[B, out] = bias + x[B, in] @ W^T. A is the accumulation type (float, or double with float64
// weights). The active inputs are compacted once into a reused per-thread buffer.
template <class A>
void packed_product(const char* op, const PackedArgs& w, const A* x, int64_t B, const A* bias, A* y) {
  ActiveSet<A>& act = scratch_active_set<A>();
  act.compute(x, B, w.in);
  const int64_t out = w.out;
  dispatch_weight_type(w.values.scalar_type(), [&](auto tag) {
    using W = std::remove_const_t<std::remove_pointer_t<decltype(tag)>>;
    if constexpr (std::is_same_v<W, double> != std::is_same_v<A, double>) {
      TORCH_CHECK_VALUE(false, op, ": weight dtype ", w.values.scalar_type(), " does not match the accumulation type");
    } else {
      const W* v = weight_ptr<W>(w.values);
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
      ensure_valid_csc(op, w.name, *w.col_ptr, *w.row_idx, out);
      const int64_t* cp = w.col_ptr->const_data_ptr<int64_t>();
      int64_t touched = 0;
      for (int64_t b = 0; b < B; ++b) {
        check_active_columns(op, w.name, cp, w.in, act.idx_row(b), act.count[b], w.values.size(0), &touched);
      }
      std::atomic<int64_t> bad{0};
      dispatch_row_index(*w.row_idx, [&](const auto* rows) {
        const auto columns = [&](int64_t b, int64_t a0, int64_t a1, const A* bias_or_null, A* dst) {
          int64_t skipped;
          if constexpr (std::is_same_v<A, double>) {
            skipped = cpu::sparse_gather_f64(act.xv_row(b) + a0, act.idx_row(b) + a0, a1 - a0, cp, rows, v,
                                             bias_or_null, dst, 0, out, out);
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
