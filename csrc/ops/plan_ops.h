// The three op bodies of plan kinds whose state is one tensor h (linear RNN, S5): a functional step,
// an in-place step, and a sequence. Each kind supplies its run(op, plan, x, B, h_prev, h_out, y,
// nonzero), which runs every layer of one step (h_prev and h_out may alias; nonzero may be null).
#pragma once

#include <tuple>

#include <ATen/EmptyTensor.h>

#include "plan.h"

namespace evsparse {

// x [in] with h [L, width] (unbatched), or x [B, in] with h [L, B, width]. Returns B.
inline int64_t check_plan_call(const char* op, const Plan& plan, const Tensor& x, const Tensor& h) {
  const int64_t B = check_plan_input(op, plan, x);
  check_plan_state(op, plan, "h", h, x, B, "state width");
  return B;
}

// The plan's output width, checked against the op's out_features argument (which gives tracing the
// output's shape without reading meta).
inline int64_t plan_out_features(const char* op, const Plan& plan, int64_t out_features) {
  const int64_t out = plan.layers[plan.num_layers - 1].out;
  TORCH_CHECK_VALUE(out_features == out, op, ": out_features=", out_features, " but the plan's top layer has ", out,
                    " outputs");
  return out;
}

template <class Run>
std::tuple<Tensor, Tensor> state_plan_step(const char* op, PlanKind kind, const Tensor& x_in, const Tensor& h_in,
                                           const Tensor& arena, const Tensor& meta, int64_t out_features,
                                           const Run& run) {
  // Functional: strided inputs are read through a contiguous copy (a no-op for contiguous ones).
  const Tensor x = x_in.contiguous(), h = h_in.contiguous();
  const Plan& plan = get_plan(op, arena, meta, kind);
  const int64_t B = check_plan_call(op, plan, x, h);
  const int64_t out = plan_out_features(op, plan, out_features);
  Tensor y = x.dim() == 2 ? at::detail::empty_cpu({B, out}, ScalarType::Float)
                          : at::detail::empty_cpu({out}, ScalarType::Float);
  Tensor h_out = at::detail::empty_cpu(h.sizes(), ScalarType::Float);
  run(op, plan, x.const_data_ptr<float>(), B, h.const_data_ptr<float>(), h_out.mutable_data_ptr<float>(),
      y.mutable_data_ptr<float>(), nullptr);
  return {y, h_out};
}

// The same step with the state updated in place and the last layer's output written to y.
template <class Run>
void state_plan_step_(const char* op, PlanKind kind, const Tensor& x, const Tensor& h, const Tensor& y,
                      const Tensor& arena, const Tensor& meta, const Run& run) {
  const Plan& plan = get_plan(op, arena, meta, kind);
  const int64_t B = check_plan_call(op, plan, x, h);
  const int64_t out = plan.layers[plan.num_layers - 1].out;
  check_tensor(y, op, "out", x);
  TORCH_CHECK_VALUE(y.scalar_type() == ScalarType::Float && y.dim() == x.dim() && y.size(-1) == out &&
                        (x.dim() == 1 || y.size(0) == B),
                    op, ": out must be float32 of shape ", x.dim() == 2 ? at::IntArrayRef{B, out} : at::IntArrayRef{out},
                    ", got ", y.scalar_type(), " ", y.sizes());
  // A residual reads x after h is written, and the last layer writes out while reading its input:
  // none of x, h, out may share memory.
  TORCH_CHECK_VALUE(disjoint(x, h) && disjoint(x, y) && disjoint(h, y), op, ": x, h and out must not overlap");
  run(op, plan, x.const_data_ptr<float>(), B, h.const_data_ptr<float>(), h.mutable_data_ptr<float>(),
      y.mutable_data_ptr<float>(), nullptr);
}

// xs [T, in] with h [L, width], or xs [T, B, in] with [L, B, width] -> (ys [T, (B,) out], h, per layer
// its count of nonzero outputs [num_layers]): the step run T times in one call, h in place.
template <class Run>
std::tuple<Tensor, Tensor, Tensor> state_plan_sequence(const char* op, PlanKind kind, const Tensor& xs_in,
                                                       const Tensor& h_in, const Tensor& arena, const Tensor& meta,
                                                       int64_t out_features, const Run& run) {
  const Tensor xs = xs_in.contiguous(), h = h_in.contiguous();
  const Tensor x0 = check_plan_sequence(op, xs);
  const Plan& plan = get_plan(op, arena, meta, kind);
  const int64_t T = xs.size(0);
  const int64_t B = check_plan_call(op, plan, x0, h);
  const int64_t out = plan_out_features(op, plan, out_features);
  Tensor h_out = h.clone();
  Tensor ys = xs.dim() == 3 ? at::detail::empty_cpu({T, B, out}, ScalarType::Float)
                            : at::detail::empty_cpu({T, out}, ScalarType::Float);
  Tensor nonzero = at::zeros({plan.num_layers}, at::kLong);
  const int64_t step_in = xs.numel() / std::max<int64_t>(T, 1);
  float* ho = h_out.mutable_data_ptr<float>();
  for (int64_t t = 0; t < T; ++t) {
    run(op, plan, xs.const_data_ptr<float>() + t * step_in, B, ho, ho, ys.mutable_data_ptr<float>() + t * B * out,
        nonzero.mutable_data_ptr<int64_t>());
  }
  return {ys, h_out, nonzero};
}

}  // namespace evsparse
