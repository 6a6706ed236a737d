// torch.ops.evsparse.* : the gather-by-active-neuron linear products.
//
// This file is the thin layer between ATen and the torch-free kernel core (csrc/cpu): it checks
// arguments, compacts the active inputs, splits the outputs across at::parallel_for threads and
// calls the kernels on raw pointers. Fake kernels and autograd formulas are registered from Python
// (python/evsparse/_ops.py).
#include <torch/library.h>

#include "../cpu/backward.h"
#include "op_utils.h"

namespace evsparse {
namespace {

using at::ScalarType;
using at::Tensor;

// ---------------------------------------------------------------------------------------------
// gather_linear(Tensor x, Tensor weight_t, Tensor? bias=None) -> Tensor
Tensor gather_linear(const Tensor& x, const Tensor& weight_t, const std::optional<Tensor>& bias) {
  constexpr const char* op = "evsparse.gather_linear";
  TORCH_CHECK_VALUE(weight_t.dim() == 2, op, ": weight_t must be 2-D [in, out], got shape ",
                    weight_t.sizes());
  check_tensor(weight_t, op, "weight_t", x);
  const int64_t in = weight_t.size(0), out = weight_t.size(1);
  PreparedInput p = prepare_input(op, x, in, out, weight_t.scalar_type(), bias);
  const int64_t B = p.batch;
  Tensor y = p.new_output(out);

  dispatch_weight_type(weight_t.scalar_type(), [&](auto tag) {
    using W = std::remove_const_t<std::remove_pointer_t<decltype(tag)>>;
    using A = std::conditional_t<std::is_same_v<W, double>, double, float>;
    ActiveSet<A>& act = scratch_active_set<A>();
    act.compute(p.x.const_data_ptr<A>(), B, in);
    int64_t macs = 0;
    for (int64_t b = 0; b < B; ++b) macs += act.count[b] * out;
    const W* w = weight_ptr<W>(weight_t);
    const A* bp = data_or_null<A>(p.bias);
    A* yp = y.mutable_data_ptr<A>();
    if constexpr (std::is_same_v<A, double>) {
      for_each_output_slice(B, out, macs, [&](int64_t b, int64_t o0, int64_t o1) {
        cpu::dense_gather_f64(act.xv_row(b), act.idx_row(b), act.count[b], w, out, bp, yp + b * out, o0, o1);
      });
    } else {
      const auto fn = cpu::active_kernels().dense(w);
      for_each_output_slice(B, out, macs, [&](int64_t b, int64_t o0, int64_t o1) {
        fn(act.xv_row(b), act.idx_row(b), act.count[b], w, out, bp, yp + b * out, o0, o1);
      });
    }
  });
  return finish_output(p, y);
}

void check_csc(const char* op, const Tensor& x, const Tensor& col_ptr, const Tensor& row_idx,
               const Tensor& values, int64_t out) {
  check_tensor(col_ptr, op, "col_ptr", x);
  check_tensor(row_idx, op, "row_idx", x);
  check_tensor(values, op, "values", x);
  TORCH_CHECK_VALUE(col_ptr.dim() == 1 && col_ptr.scalar_type() == ScalarType::Long, op,
                    ": col_ptr must be a 1-D int64 tensor, got ", col_ptr.scalar_type(), " ", col_ptr.sizes());
  TORCH_CHECK_VALUE(col_ptr.size(0) >= 1, op, ": col_ptr must have in_features + 1 entries");
  TORCH_CHECK_VALUE(row_idx.dim() == 1 && (row_idx.scalar_type() == ScalarType::Short ||
                                           row_idx.scalar_type() == ScalarType::Int),
                    op, ": row_idx must be a 1-D int16 or int32 tensor, got ", row_idx.scalar_type());
  TORCH_CHECK_VALUE(values.dim() == 1 && values.size(0) == row_idx.size(0), op,
                    ": values must be 1-D with one entry per row index (", row_idx.size(0), "), got ",
                    values.sizes());
  TORCH_CHECK_VALUE(out >= 0, op, ": out_features must be >= 0, got ", out);
  TORCH_CHECK_VALUE(row_idx.scalar_type() == ScalarType::Int || out <= 32768, op,
                    ": int16 row indices cannot address ", out, " outputs; use int32");
}

// Active columns' pointer ranges are checked on every call (O(active), cheap), so a corrupted
// pointer array cannot make the kernel read out of bounds. Row indices are validated once, when
// the PackedWeight is built (O(nnz)), as the kernels trust them.
void check_active_columns(const char* op, const int64_t* col_ptr, const int32_t* idx, int64_t na,
                          int64_t nnz, int64_t* touched) {
  for (int64_t a = 0; a < na; ++a) {
    const int64_t j = idx[a];
    const int64_t k0 = col_ptr[j], k1 = col_ptr[j + 1];
    TORCH_CHECK_VALUE(0 <= k0 && k0 <= k1 && k1 <= nnz, op, ": col_ptr is inconsistent at column ",
                      j, " ([", k0, ", ", k1, ") with nnz=", nnz, ")");
    *touched += k1 - k0;
  }
}

// sparse_gather_linear(Tensor x, Tensor col_ptr, Tensor row_idx, Tensor values, int out_features,
//                      Tensor? bias=None) -> Tensor
Tensor sparse_gather_linear(const Tensor& x, const Tensor& col_ptr, const Tensor& row_idx,
                            const Tensor& values, int64_t out, const std::optional<Tensor>& bias) {
  constexpr const char* op = "evsparse.sparse_gather_linear";
  check_csc(op, x, col_ptr, row_idx, values, out);
  const int64_t in = col_ptr.size(0) - 1;
  const int64_t nnz = row_idx.size(0);
  PreparedInput p = prepare_input(op, x, in, out, values.scalar_type(), bias);
  const int64_t B = p.batch;
  Tensor y = p.new_output(out);
  const int64_t* cp = col_ptr.const_data_ptr<int64_t>();

  dispatch_weight_type(values.scalar_type(), [&](auto tag) {
    using W = std::remove_const_t<std::remove_pointer_t<decltype(tag)>>;
    using A = std::conditional_t<std::is_same_v<W, double>, double, float>;
    ActiveSet<A>& act = scratch_active_set<A>();
    act.compute(p.x.const_data_ptr<A>(), B, in);
    int64_t touched = 0;
    for (int64_t b = 0; b < B; ++b) check_active_columns(op, cp, act.idx_row(b), act.count[b], nnz, &touched);
    const W* v = weight_ptr<W>(values);
    const A* bp = data_or_null<A>(p.bias);
    A* yp = y.mutable_data_ptr<A>();
    const auto run = [&](const auto* rows) {
      const auto columns = [&](int64_t b, int64_t a0, int64_t a1, const A* bias_or_null, A* dst) {
        if constexpr (std::is_same_v<A, double>) {
          cpu::sparse_gather_f64(act.xv_row(b) + a0, act.idx_row(b) + a0, a1 - a0, cp, rows, v, bias_or_null,
                                 dst, 0, out);
        } else {
          cpu::active_kernels().sparse(rows, v)(act.xv_row(b) + a0, act.idx_row(b) + a0, a1 - a0, cp, rows, v,
                                                bias_or_null, dst, 0, out);
        }
      };
      for_each_column_group(B, out, act, cp, touched, bp, yp, columns);
    };
    dispatch_row_index(row_idx, run);
  });
  return finish_output(p, y);
}

// ---------------------------------------------------------------------------------------------
// Backward kernels. grad_out and x are float32 or float64 (autograd casts half weights up).

std::pair<Tensor, Tensor> prepare_grad(const char* op, const Tensor& grad_out, const Tensor* x) {
  TORCH_CHECK_VALUE(grad_out.scalar_type() == ScalarType::Float ||
                        grad_out.scalar_type() == ScalarType::Double,
                    op, ": grad_out must be float32 or float64, got ", grad_out.scalar_type());
  TORCH_CHECK_VALUE(grad_out.dim() == 1 || grad_out.dim() == 2, op, ": grad_out must be 1-D or 2-D");
  check_tensor(grad_out, op, "grad_out", grad_out);
  Tensor g2 = grad_out.reshape({-1, grad_out.size(-1)});
  Tensor x2;
  if (x != nullptr) {
    check_tensor(*x, op, "x", grad_out);
    TORCH_CHECK_VALUE(x->scalar_type() == grad_out.scalar_type(), op, ": x dtype ", x->scalar_type(),
                      " differs from grad_out dtype ", grad_out.scalar_type());
    TORCH_CHECK_VALUE(x->dim() == grad_out.dim(), op, ": x and grad_out must have the same rank");
    x2 = x->reshape({-1, x->size(-1)});
    TORCH_CHECK_VALUE(x2.size(0) == g2.size(0), op, ": x and grad_out disagree on the batch size");
  }
  return {g2, x2};
}

template <class Body>
void parallel_over_inputs(int64_t in, int64_t work_per_input, const Body& body) {
  const int64_t grain = std::max<int64_t>(1, kMinParallelMacs / std::max<int64_t>(1, work_per_input));
  at::parallel_for(0, in, grain, body);
}

// gather_linear_grad_weight(Tensor grad_out, Tensor x) -> Tensor   ([in, out])
Tensor gather_linear_grad_weight(const Tensor& grad_out, const Tensor& x) {
  constexpr const char* op = "evsparse.gather_linear_grad_weight";
  auto [g2, x2] = prepare_grad(op, grad_out, &x);
  const int64_t B = g2.size(0), out = g2.size(1), in = x2.size(1);
  Tensor gwt = at::zeros({in, out}, g2.options());
  AT_DISPATCH_FLOATING_TYPES(g2.scalar_type(), "gather_linear_grad_weight", [&] {
    const scalar_t* xp = x2.const_data_ptr<scalar_t>();
    const scalar_t* gp = g2.const_data_ptr<scalar_t>();
    scalar_t* wp = gwt.mutable_data_ptr<scalar_t>();
    parallel_over_inputs(in, B * out, [&](int64_t j0, int64_t j1) {
      cpu::dense_grad_weight<scalar_t>(xp, gp, B, in, out, wp, j0, j1);
    });
  });
  return gwt;
}

// sparse_gather_linear_grad_values(Tensor grad_out, Tensor x, Tensor col_ptr, Tensor row_idx) -> Tensor
Tensor sparse_gather_linear_grad_values(const Tensor& grad_out, const Tensor& x, const Tensor& col_ptr,
                                        const Tensor& row_idx) {
  constexpr const char* op = "evsparse.sparse_gather_linear_grad_values";
  auto [g2, x2] = prepare_grad(op, grad_out, &x);
  const int64_t B = g2.size(0), out = g2.size(1), in = x2.size(1);
  check_csc(op, grad_out, col_ptr, row_idx, row_idx, out);
  TORCH_CHECK_VALUE(col_ptr.size(0) == in + 1, op, ": col_ptr has ", col_ptr.size(0),
                    " entries, expected in_features + 1 = ", in + 1);
  Tensor gv = at::zeros({row_idx.size(0)}, g2.options());
  const int64_t nnz_per_col = in > 0 ? row_idx.size(0) / in + 1 : 1;
  AT_DISPATCH_FLOATING_TYPES(g2.scalar_type(), "sparse_gather_linear_grad_values", [&] {
    const scalar_t* xp = x2.const_data_ptr<scalar_t>();
    const scalar_t* gp = g2.const_data_ptr<scalar_t>();
    scalar_t* vp = gv.mutable_data_ptr<scalar_t>();
    const int64_t* cp = col_ptr.const_data_ptr<int64_t>();
    const auto run = [&](const auto* rows) {
      parallel_over_inputs(in, B * nnz_per_col, [&](int64_t j0, int64_t j1) {
        cpu::sparse_grad_values<scalar_t>(xp, gp, B, in, out, cp, rows, vp, j0, j1);
      });
    };
    dispatch_row_index(row_idx, run);
  });
  return gv;
}

// sparse_gather_linear_grad_input(Tensor grad_out, Tensor col_ptr, Tensor row_idx, Tensor values) -> Tensor
Tensor sparse_gather_linear_grad_input(const Tensor& grad_out, const Tensor& col_ptr, const Tensor& row_idx,
                                       const Tensor& values) {
  constexpr const char* op = "evsparse.sparse_gather_linear_grad_input";
  auto [g2, unused] = prepare_grad(op, grad_out, nullptr);
  const int64_t B = g2.size(0), out = g2.size(1);
  check_csc(op, grad_out, col_ptr, row_idx, values, out);
  TORCH_CHECK_VALUE(values.scalar_type() == g2.scalar_type(), op, ": values dtype ", values.scalar_type(),
                    " differs from grad_out dtype ", g2.scalar_type());
  const int64_t in = col_ptr.size(0) - 1;
  Tensor gx = at::empty({B, in}, g2.options());
  const int64_t nnz_per_col = in > 0 ? row_idx.size(0) / in + 1 : 1;
  AT_DISPATCH_FLOATING_TYPES(g2.scalar_type(), "sparse_gather_linear_grad_input", [&] {
    const scalar_t* gp = g2.const_data_ptr<scalar_t>();
    const scalar_t* vp = values.const_data_ptr<scalar_t>();
    scalar_t* xp = gx.mutable_data_ptr<scalar_t>();
    const int64_t* cp = col_ptr.const_data_ptr<int64_t>();
    const auto run = [&](const auto* rows) {
      parallel_over_inputs(in, B * nnz_per_col, [&](int64_t j0, int64_t j1) {
        cpu::sparse_grad_input<scalar_t>(gp, B, in, out, cp, rows, vp, xp, j0, j1);
      });
    };
    dispatch_row_index(row_idx, run);
  });
  return grad_out.dim() == 1 ? gx.squeeze(0) : gx;
}

}  // namespace

TORCH_LIBRARY(evsparse, m) {
  // y = x @ weight_t (+ bias), reading only the rows of weight_t ([in, out]) whose input is nonzero.
  m.def("gather_linear(Tensor x, Tensor weight_t, Tensor? bias=None) -> Tensor");
  // y = x @ W.T (+ bias) with W [out, in] in CSC form, reading only the columns of nonzero inputs.
  m.def("sparse_gather_linear(Tensor x, Tensor col_ptr, Tensor row_idx, Tensor values, int out_features, "
        "Tensor? bias=None) -> Tensor");
  // Gradients (used by the autograd formulas registered in Python).
  m.def("gather_linear_grad_weight(Tensor grad_out, Tensor x) -> Tensor");
  m.def("sparse_gather_linear_grad_values(Tensor grad_out, Tensor x, Tensor col_ptr, Tensor row_idx) -> Tensor");
  m.def("sparse_gather_linear_grad_input(Tensor grad_out, Tensor col_ptr, Tensor row_idx, Tensor values) "
        "-> Tensor");
}

TORCH_LIBRARY_IMPL(evsparse, CPU, m) {
  m.impl("gather_linear", &gather_linear);
  m.impl("sparse_gather_linear", &sparse_gather_linear);
  m.impl("gather_linear_grad_weight", &gather_linear_grad_weight);
  m.impl("sparse_gather_linear_grad_values", &sparse_gather_linear_grad_values);
  m.impl("sparse_gather_linear_grad_input", &sparse_gather_linear_grad_input);
}

}  // namespace evsparse
