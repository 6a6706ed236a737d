// torch.ops.evsparse.* : the gather-by-active-neuron linear products.
//
// This file is the thin layer between ATen and the torch-free kernel core (csrc/cpu): it checks
// arguments, compacts the active inputs, splits the outputs across torch's threads (parallel_for, op_utils.h) and
// calls the kernels on raw pointers. Autograd: sparse_linear_autograd.cpp; fake kernels: python/evsparse/_fakes.py.
#include <torch/library.h>

#include "../cpu/backward.h"
#include "packed_product.h"

namespace evsparse {
namespace {

using at::ScalarType;
using at::Tensor;

// ---------------------------------------------------------------------------------------------
// Forward products.

Tensor run_product(const char* op, const PreparedInput& p, const PackedArgs& w) {
  Tensor y = p.new_output(w.out);
  if (p.x.scalar_type() == ScalarType::Double) {
    packed_product<double>(op, w, p.x.const_data_ptr<double>(), p.batch, data_or_null<double>(p.bias),
                           y.mutable_data_ptr<double>());
  } else {
    packed_product<float>(op, w, p.x.const_data_ptr<float>(), p.batch, data_or_null<float>(p.bias),
                          y.mutable_data_ptr<float>());
  }
  return finish_output(p, y);
}

// gather_linear(Tensor x, Tensor weight_t, Tensor? bias=None, Tensor? scale=None) -> Tensor
Tensor gather_linear(const Tensor& x, const Tensor& weight_t, const std::optional<Tensor>& bias,
                     const std::optional<Tensor>& scale) {
  constexpr const char* op = "evsparse.gather_linear";
  TORCH_CHECK_VALUE(weight_t.dim() == 2, op, ": weight_t must be 2-D [in, out], got shape ",
                    weight_t.sizes());
  check_tensor(weight_t, op, "weight_t", x);
  const int64_t in = weight_t.size(0), out = weight_t.size(1);
  const PreparedInput p = prepare_input(op, x, in, out, weight_t.scalar_type(), bias);
  return run_product(op, p, with_scale(op, dense_args(weight_t, in, out, "weight"), scale, x));
}

// sparse_gather_linear(Tensor x, Tensor col_ptr, Tensor row_idx, Tensor values, int out_features,
//                      Tensor? bias=None, Tensor? scale=None) -> Tensor
Tensor sparse_gather_linear(const Tensor& x, const Tensor& col_ptr, const Tensor& row_idx,
                            const Tensor& values, int64_t out, const std::optional<Tensor>& bias,
                            const std::optional<Tensor>& scale) {
  constexpr const char* op = "evsparse.sparse_gather_linear";
  check_csc(op, x, col_ptr, row_idx, &values, out);
  const PreparedInput p = prepare_input(op, x, col_ptr.size(0) - 1, out, values.scalar_type(), bias);
  return run_product(op, p, with_scale(op, sparse_args(op, "weight", values, col_ptr, row_idx, out, Derive::blocks_and_bitmask),
                                       scale, x));
}

// ---------------------------------------------------------------------------------------------
// Backward kernels. grad_out and x are float32 or float64 (autograd casts half weights up).

std::pair<Tensor, Tensor> prepare_grad(const char* op, const Tensor& grad_out, const Tensor* x) {
  TORCH_CHECK_VALUE(grad_out.scalar_type() == ScalarType::Float ||
                        grad_out.scalar_type() == ScalarType::Double,
                    op, ": grad_out must be float32 or float64, got ", grad_out.scalar_type());
  TORCH_CHECK_VALUE(grad_out.dim() == 1 || grad_out.dim() == 2, op, ": grad_out must be 1-D or 2-D");
  check_tensor(grad_out, op, "grad_out", grad_out);
  Tensor g2 = as_matrix(grad_out);
  Tensor x2;
  if (x != nullptr) {
    check_tensor(*x, op, "x", grad_out);
    TORCH_CHECK_VALUE(x->scalar_type() == grad_out.scalar_type(), op, ": x dtype ", x->scalar_type(),
                      " differs from grad_out dtype ", grad_out.scalar_type());
    TORCH_CHECK_VALUE(x->dim() == grad_out.dim(), op, ": x and grad_out must have the same rank");
    x2 = as_matrix(*x);
    TORCH_CHECK_VALUE(x2.size(0) == g2.size(0), op, ": x and grad_out disagree on the batch size");
  }
  return {g2, x2};
}

template <class Body>
void parallel_over_inputs(int64_t in, int64_t work_per_input, const Body& body) {
  const int64_t grain = std::max<int64_t>(1, kMinParallelMacs / std::max<int64_t>(1, work_per_input));
  parallel_for(0, in, grain, body);
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
  check_csc(op, grad_out, col_ptr, row_idx, nullptr, out);
  validate_csc(op, "weight", col_ptr, row_idx, out);
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
  check_csc(op, grad_out, col_ptr, row_idx, &values, out);
  validate_csc(op, "weight", col_ptr, row_idx, out);
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
  // An int8 weight_t/values comes with scale [in]: W[o, j] = scale[j] * q[o, j].
  m.def("gather_linear(Tensor x, Tensor weight_t, Tensor? bias=None, Tensor? scale=None) -> Tensor");
  // y = x @ W.T (+ bias) with W [out, in] in CSC form, reading only the columns of nonzero inputs.
  m.def("sparse_gather_linear(Tensor x, Tensor col_ptr, Tensor row_idx, Tensor values, int out_features, "
        "Tensor? bias=None, Tensor? scale=None) -> Tensor");
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
