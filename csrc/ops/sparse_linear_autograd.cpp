// Autograd for the gather products, registered on the Autograd dispatch key in C++.
//
// A Python-registered autograd formula (torch.library.register_autograd) runs a Python function on
// every call, grad or not: ~6 us here, more than a whole 256-unit step. In C++ the no-grad path costs
// well under a microsecond. Backward calls the gradient ops through the dispatcher so other backends
// can supply them. Under create_graph (double backward) it uses differentiable ATen formulas instead,
// so higher-order gradients are right, not silently zero. The ops without a derivative get the
// Autograd kernel of not_differentiable.cpp.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <optional>

#include "op_utils.h"

namespace evsparse {
namespace {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// Gradients are formed in float32/float64, then cast to each input's dtype.
Tensor accumulation_grad(const Tensor& g) {
  const auto t = g.scalar_type();
  Tensor out = (t == at::kFloat || t == at::kDouble) ? g : g.to(at::kFloat);
  return out.contiguous();
}

// The bias dtype is remembered in saved_data (None without a bias).
c10::IValue bias_dtype_of(const std::optional<Tensor>& bias) {
  if (!bias.has_value() || !bias->defined()) return c10::IValue();
  return c10::IValue(static_cast<int64_t>(bias->scalar_type()));
}

Tensor bias_grad(const Tensor& g, const c10::IValue& dtype) {
  return (g.dim() == 1 ? g : g.sum(0)).to(static_cast<at::ScalarType>(dtype.toInt()));
}

// An int8 weight's scale (None otherwise) is saved as a tensor or an undefined one.
Tensor scale_or_undefined(const std::optional<Tensor>& scale) {
  return scale.has_value() ? *scale : Tensor();
}

// int8 weights (integers: no gradient of their own), from gq = g @ W_q ([.., in]): x's gradient through
// the dequantised matrix, gq * scale, and the scale's, sum_b x[b, j] * gq[b, j]. scale_edge: the
// scale's autograd edge (edges exist for given tensors only, so it depends on whether a bias was given).
void int8_grads(AutogradContext* ctx, const Tensor& gq, const Tensor& x, const Tensor& scale, size_t scale_edge,
                Tensor& gx, Tensor& gs) {
  if (ctx->needs_input_grad(0)) gx = (gq * scale.to(gq.scalar_type())).to(x.scalar_type());
  if (ctx->needs_input_grad(scale_edge)) gs = as_matrix(gq * x.to(gq.scalar_type())).sum(0).to(scale.scalar_type());
}

class GatherLinear : public torch::autograd::Function<GatherLinear> {
 public:
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& weight_t,
                        const std::optional<Tensor>& bias, const std::optional<Tensor>& scale) {
    at::AutoDispatchBelowADInplaceOrView guard;
    static auto op = op_handle<Tensor(const Tensor&, const Tensor&, const std::optional<Tensor>&,
                                      const std::optional<Tensor>&)>("evsparse::gather_linear");
    ctx->save_for_backward({x, weight_t, scale_or_undefined(scale)});
    ctx->saved_data["bias_dtype"] = bias_dtype_of(bias);
    return op.call(x, weight_t, bias, scale);
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    static auto grad_weight = op_handle<Tensor(const Tensor&, const Tensor&)>("evsparse::gather_linear_grad_weight");
    const auto saved = ctx->get_saved_variables();
    const Tensor &x = saved[0], &weight_t = saved[1], &scale = saved[2];
    const Tensor g = accumulation_grad(grads[0]);
    Tensor gx, gw, gb, gs;
    // Edges: x, weight_t, then bias and scale when given.
    const c10::IValue& bias_dtype = ctx->saved_data["bias_dtype"];
    const bool has_bias = !bias_dtype.isNone();
    if (scale.defined()) {
      int8_grads(ctx, at::linear(g, weight_t.to(g.scalar_type())), x, scale, has_bias ? 3 : 2, gx, gs);
    } else if (ctx->needs_input_grad(0)) {
      gx = at::linear(g, weight_t.to(g.scalar_type())).to(x.scalar_type());
    }
    if (ctx->needs_input_grad(1)) {
      const Tensor xg = x.to(g.scalar_type()).contiguous();
      if (at::GradMode::is_enabled()) {  // create_graph: x^T g in differentiable ATen ops
        const Tensor g2 = as_matrix(g), x2 = as_matrix(xg);
        gw = x2.t().mm(g2).to(weight_t.scalar_type());
      } else {
        gw = grad_weight.call(g, xg).to(weight_t.scalar_type());
      }
    }
    if (has_bias && ctx->needs_input_grad(2)) {
      gb = bias_grad(g, bias_dtype);
    }
    return {gx, gw, gb, gs};
  }
};

class SparseGatherLinear : public torch::autograd::Function<SparseGatherLinear> {
 public:
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& col_ptr, const Tensor& row_idx,
                        const Tensor& values, int64_t out_features, const std::optional<Tensor>& bias,
                        const std::optional<Tensor>& scale) {
    at::AutoDispatchBelowADInplaceOrView guard;
    static auto op = op_handle<Tensor(const Tensor&, const Tensor&, const Tensor&, const Tensor&, int64_t,
                                      const std::optional<Tensor>&, const std::optional<Tensor>&)>(
        "evsparse::sparse_gather_linear");
    ctx->save_for_backward({x, col_ptr, row_idx, values, scale_or_undefined(scale)});
    ctx->saved_data["bias_dtype"] = bias_dtype_of(bias);
    ctx->saved_data["out_features"] = out_features;
    return op.call(x, col_ptr, row_idx, values, out_features, bias, scale);
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    static auto grad_input = op_handle<Tensor(const Tensor&, const Tensor&, const Tensor&, const Tensor&)>(
        "evsparse::sparse_gather_linear_grad_input");
    static auto grad_values = op_handle<Tensor(const Tensor&, const Tensor&, const Tensor&, const Tensor&)>(
        "evsparse::sparse_gather_linear_grad_values");
    const auto saved = ctx->get_saved_variables();
    const Tensor &x = saved[0], &col_ptr = saved[1], &row_idx = saved[2], &values = saved[3], &scale = saved[4];
    const Tensor g = accumulation_grad(grads[0]);
    Tensor gx, gv, gb, gs;
    // Autograd edges (given tensors only): x, col_ptr, row_idx, values, then bias and scale when given.
    const c10::IValue& bias_dtype = ctx->saved_data["bias_dtype"];
    const bool has_bias = !bias_dtype.isNone();
    const size_t scale_edge = has_bias ? 5 : 4;
    if (scale.defined()) {  // int8 values: as GatherLinear, through the kernels' transposed product
      if (ctx->needs_input_grad(0) || ctx->needs_input_grad(scale_edge)) {
        int8_grads(ctx, grad_input.call(g, col_ptr, row_idx, values.to(g.scalar_type())), x, scale, scale_edge, gx, gs);
      }
    } else if (at::GradMode::is_enabled() && (ctx->needs_input_grad(0) || ctx->needs_input_grad(3))) {
      // create_graph: the dense W built from values (differentiable), then plain products. O(out * in)
      // memory, acceptable for higher-order gradients, which are rare; out-of-range indices raise in ATen.
      const int64_t out = ctx->saved_data["out_features"].toInt(), in = col_ptr.size(0) - 1;
      const Tensor rows = row_idx.to(at::kLong);
      const Tensor cols = at::repeat_interleave(at::arange(in, col_ptr.options()), col_ptr.diff(), std::nullopt,
                                                row_idx.size(0));
      const Tensor vg = values.to(g.scalar_type());
      const Tensor w = at::zeros({out, in}, vg.options()).index_put({rows, cols}, vg);
      if (ctx->needs_input_grad(0)) gx = g.matmul(w).to(x.scalar_type());
      if (ctx->needs_input_grad(3)) {
        const Tensor g2 = as_matrix(g), x2 = as_matrix(x.to(g.scalar_type()));
        gv = g2.t().mm(x2).index({rows, cols}).to(values.scalar_type());
      }
    } else {
      if (ctx->needs_input_grad(0)) {
        gx = grad_input.call(g, col_ptr, row_idx, values.to(g.scalar_type())).to(x.scalar_type());
      }
      if (ctx->needs_input_grad(3)) {
        gv = grad_values.call(g, x.to(g.scalar_type()).contiguous(), col_ptr, row_idx).to(values.scalar_type());
      }
    }
    if (has_bias && ctx->needs_input_grad(4)) {
      gb = bias_grad(g, bias_dtype);
    }
    return {gx, Tensor(), Tensor(), gv, Tensor(), gb, gs};
  }
};

Tensor gather_linear_autograd(const Tensor& x, const Tensor& weight_t, const std::optional<Tensor>& bias,
                              const std::optional<Tensor>& scale) {
  return GatherLinear::apply(x, weight_t, bias, scale);
}

Tensor sparse_gather_linear_autograd(const Tensor& x, const Tensor& col_ptr, const Tensor& row_idx,
                                     const Tensor& values, int64_t out_features,
                                     const std::optional<Tensor>& bias, const std::optional<Tensor>& scale) {
  return SparseGatherLinear::apply(x, col_ptr, row_idx, values, out_features, bias, scale);
}

}  // namespace

TORCH_LIBRARY_IMPL(evsparse, Autograd, m) {
  m.impl("gather_linear", &gather_linear_autograd);
  m.impl("sparse_gather_linear", &sparse_gather_linear_autograd);
}

}  // namespace evsparse
