// torch.ops.evsparse.egru_step / egru_sequence: one EGRU layer's inference on packed weights.
//
// One call does the gathered input product, the gathered recurrent product (only the units that
// fired last step are read), the gate nonlinearities, the event and the soft reset. The two [B, 3H]
// pre-activation buffers are per-thread scratch reused across calls, not tensors. Inference only:
// no autograd (train with evsparse.nn.EGRU, then sparsify()).
#include <torch/library.h>

#include <cstring>
#include <tuple>
#include <vector>

#include <ATen/EmptyTensor.h>

#include "packed_product.h"
#include "plan.h"

namespace evsparse {
namespace {

using at::ScalarType;
using at::Tensor;

struct EgruLayer {
  PackedArgs w_ih;
  PackedArgs w_hh;
  const float* b_ih;
  const float* b_hh;
  const float* thr;
  int64_t in;
  int64_t H;
};

EgruLayer make_layer(const char* op, const Tensor& like, int64_t in, const Tensor& w_ih,
                     const std::optional<Tensor>& w_ih_col_ptr, const std::optional<Tensor>& w_ih_row_idx,
                     const Tensor& w_hh, const std::optional<Tensor>& w_hh_col_ptr,
                     const std::optional<Tensor>& w_hh_row_idx, const Tensor& b_ih, const Tensor& b_hh,
                     const Tensor& thr) {
  TORCH_CHECK_VALUE(thr.dim() == 1, op, ": thr must be 1-D [H], got ", thr.sizes());
  const int64_t H = thr.size(0);
  check_vector(op, "thr", thr, H, like);
  check_vector(op, "b_ih", b_ih, 3 * H, like);
  check_vector(op, "b_hh", b_hh, 3 * H, like);
  return EgruLayer{packed_args(op, "w_ih", w_ih, w_ih_col_ptr, w_ih_row_idx, in, 3 * H, like),
                   packed_args(op, "w_hh", w_hh, w_hh_col_ptr, w_hh_row_idx, H, 3 * H, like),
                   b_ih.const_data_ptr<float>(),
                   b_hh.const_data_ptr<float>(),
                   thr.const_data_ptr<float>(),
                   in,
                   H};
}

// One step for B rows: (x [B, in], c_prev, y_prev [B, H]) -> (c_out, y_out).
void step(const char* op, const EgruLayer& L, const float* x, const float* c_prev, const float* y_prev, int64_t B,
          float* c_out, float* y_out) {
  thread_local std::vector<float> gi, gh;
  gi.resize(static_cast<size_t>(B * 3 * L.H));
  gh.resize(static_cast<size_t>(B * 3 * L.H));
  packed_product<float>(op, L.w_ih, x, B, L.b_ih, gi.data());
  packed_product<float>(op, L.w_hh, y_prev, B, L.b_hh, gh.data());
  const auto update = cpu::active_kernels().egru_update;
  for (int64_t b = 0; b < B; ++b) {
    update(gi.data() + b * 3 * L.H, gh.data() + b * 3 * L.H, L.thr, c_prev + b * L.H, c_out + b * L.H,
           y_out + b * L.H, L.H);
  }
  trim_scratch(gi);
  trim_scratch(gh);
}

// egru_step(Tensor x, Tensor c, Tensor y, Tensor w_ih, Tensor? w_ih_col_ptr, Tensor? w_ih_row_idx,
//           Tensor w_hh, Tensor? w_hh_col_ptr, Tensor? w_hh_row_idx, Tensor b_ih, Tensor b_hh,
//           Tensor thr) -> (Tensor c_out, Tensor y_out)
std::tuple<Tensor, Tensor> egru_step(const Tensor& x, const Tensor& c, const Tensor& y, const Tensor& w_ih,
                                     const std::optional<Tensor>& w_ih_col_ptr,
                                     const std::optional<Tensor>& w_ih_row_idx, const Tensor& w_hh,
                                     const std::optional<Tensor>& w_hh_col_ptr,
                                     const std::optional<Tensor>& w_hh_row_idx, const Tensor& b_ih,
                                     const Tensor& b_hh, const Tensor& thr) {
  constexpr const char* op = "evsparse.egru_step";
  check_input(op, x, 2);
  const int64_t B = x.size(0);
  const EgruLayer L = make_layer(op, x, x.size(1), w_ih, w_ih_col_ptr, w_ih_row_idx, w_hh, w_hh_col_ptr,
                                 w_hh_row_idx, b_ih, b_hh, thr);
  check_state(op, "c", c, B, L.H, x);
  check_state(op, "y", y, B, L.H, x);
  Tensor c_out = at::empty_like(c);
  Tensor y_out = at::empty_like(y);
  step(op, L, x.const_data_ptr<float>(), c.const_data_ptr<float>(), y.const_data_ptr<float>(), B,
       c_out.mutable_data_ptr<float>(), y_out.mutable_data_ptr<float>());
  return {c_out, y_out};
}

// egru_sequence(Tensor xs, Tensor c, Tensor y, ...) -> (Tensor ys, Tensor c_out, Tensor y_out)
// xs [T, B, in]; ys [T, B, H] are the event outputs of every step.
std::tuple<Tensor, Tensor, Tensor> egru_sequence(const Tensor& xs, const Tensor& c, const Tensor& y,
                                                 const Tensor& w_ih, const std::optional<Tensor>& w_ih_col_ptr,
                                                 const std::optional<Tensor>& w_ih_row_idx, const Tensor& w_hh,
                                                 const std::optional<Tensor>& w_hh_col_ptr,
                                                 const std::optional<Tensor>& w_hh_row_idx, const Tensor& b_ih,
                                                 const Tensor& b_hh, const Tensor& thr) {
  constexpr const char* op = "evsparse.egru_sequence";
  check_input(op, xs, 3);
  const int64_t T = xs.size(0), B = xs.size(1), in = xs.size(2);
  const EgruLayer L =
      make_layer(op, xs, in, w_ih, w_ih_col_ptr, w_ih_row_idx, w_hh, w_hh_col_ptr, w_hh_row_idx, b_ih, b_hh, thr);
  check_state(op, "c", c, B, L.H, xs);
  check_state(op, "y", y, B, L.H, xs);
  Tensor ys = at::empty({T, B, L.H}, xs.options());
  Tensor c_out = c.clone();
  Tensor c_tmp = at::empty_like(c);
  float* cur = c_out.mutable_data_ptr<float>();
  float* nxt = c_tmp.mutable_data_ptr<float>();
  const float* y_prev = y.const_data_ptr<float>();
  const float* x = xs.const_data_ptr<float>();
  float* ys_p = ys.mutable_data_ptr<float>();
  for (int64_t t = 0; t < T; ++t) {
    float* y_t = ys_p + t * B * L.H;
    step(op, L, x + t * B * in, cur, y_prev, B, nxt, y_t);
    std::swap(cur, nxt);
    y_prev = y_t;
  }
  Tensor c_final = cur == c_out.mutable_data_ptr<float>() ? c_out : c_tmp;
  Tensor y_final = T > 0 ? ys[T - 1].clone() : y.clone();
  return {ys, c_final, y_final};
}

// egru_stack_step(Tensor x, Tensor c, Tensor y, Tensor?[] layers) -> (Tensor y_top, Tensor c_out, Tensor y_out)
// One step of a whole stack of layers, state [L, B, H]: what SparseEGRU.step would do with one
// egru_step per layer plus the Python around it (indexing the state, stacking the new one), which costs
// more than a small layer's step. layers: per layer the 9 weight arguments of egru_step, in its order.
std::tuple<Tensor, Tensor, Tensor> egru_stack_step(const Tensor& x, const Tensor& c, const Tensor& y,
                                                   const c10::List<std::optional<Tensor>>& layers) {
  constexpr const char* op = "evsparse.egru_stack_step";
  const int64_t kArgs = static_cast<int64_t>(egru_layer_args().size());
  const auto [B, num_layers, H] = check_stack_input(op, x, "c", c);
  check_stacked_state(op, "y", y, B, H, x);
  TORCH_CHECK_VALUE(y.size(0) == num_layers, op, ": c and y must have the same number of layers, got ", c.sizes(),
                    " and ", y.sizes());
  const auto args = stack_args(op, layers, num_layers, egru_layer_args());
  Tensor c_out = at::empty_like(c);
  Tensor y_out = at::empty_like(y);
  const float* inp = x.const_data_ptr<float>();
  int64_t in = x.size(1);
  for (int64_t k = 0; k < num_layers; ++k) {
    for_layer(op, k, [&] {
      const auto* a = args.data() + k * kArgs;
      const EgruLayer L = make_layer(op, x, in, *a[0], a[1], a[2], *a[3], a[4], a[5], *a[6], *a[7], *a[8]);
      TORCH_CHECK_VALUE(L.H == H, op, ": hidden size ", L.H, " (thr), the state ", H);
      const int64_t off = k * B * H;
      step(op, L, inp, c.const_data_ptr<float>() + off, y.const_data_ptr<float>() + off, B,
           c_out.mutable_data_ptr<float>() + off, y_out.mutable_data_ptr<float>() + off);
      inp = y_out.const_data_ptr<float>() + off;
    });
    in = H;
  }
  Tensor y_top = at::empty({B, H}, x.options());  // its own storage: an op's outputs must not alias
  std::memcpy(y_top.mutable_data_ptr<float>(), inp, static_cast<size_t>(B * H) * sizeof(float));
  return {y_top, c_out, y_out};
}

// ---------------------------------------------------------------------------------------------
// The model plan ops (plan.h): one step of the whole stack from (x, c, y, arena, meta).

// x [in] with c, y [L, H] (unbatched), or x [B, in] with c, y [L, B, H]. Returns B.
int64_t check_plan_call(const char* op, const Plan& plan, const Tensor& x, const Tensor& c, const Tensor& y) {
  const int64_t B = check_plan_input(op, plan, x);
  check_plan_state(op, plan, "c", c, x, B, "hidden_size");
  check_plan_state(op, plan, "y", y, x, B, "hidden_size");
  return B;
}

// Every layer in turn; layer k reads layer k-1's new output. c_prev may not alias c_out (the update's
// restrict); y_prev may alias y_out: each layer's products are done before its update writes.
// nonzero (optional, [num_layers]): adds each layer's count of nonzero (NaN included) event outputs.
void run_plan(const char* op, const Plan& plan, const float* x, int64_t B, const float* c_prev, const float* y_prev,
              float* c_out, float* y_out, int64_t* nonzero = nullptr) {
  const float* inp = x;
  for (int64_t k = 0; k < plan.num_layers; ++k) {
    const PlanLayer& P = plan.layers[k];
    const EgruLayer L{P.w[0], P.w[1], P.vec[0], P.vec[1], P.vec[2], P.in, P.out};
    const int64_t off = k * B * L.H;
    for_layer(op, k, [&] { step(op, L, inp, c_prev + off, y_prev + off, B, c_out + off, y_out + off); });
    inp = y_out + off;
    if (nonzero != nullptr) nonzero[k] += count_nonzero(inp, B * L.H);
  }
}

// egru_plan_step(Tensor x, Tensor c, Tensor y, Tensor arena, Tensor meta) -> (Tensor y_top, Tensor c_out, Tensor y_out)
std::tuple<Tensor, Tensor, Tensor> egru_plan_step(const Tensor& x_in, const Tensor& c_in, const Tensor& y_in,
                                                  const Tensor& arena, const Tensor& meta) {
  constexpr const char* op = "evsparse.egru_plan_step";
  // Functional: strided inputs are read through a contiguous copy (a no-op for contiguous ones).
  const Tensor x = x_in.contiguous(), c = c_in.contiguous(), y = y_in.contiguous();
  const Plan& plan = get_plan(op, arena, meta, PlanKind::egru);
  const int64_t B = check_plan_call(op, plan, x, c, y);
  // at::detail::empty_cpu: the allocation without a dispatcher round trip (a third of the call's
  // fixed cost at small sizes).
  Tensor c_out = at::detail::empty_cpu(c.sizes(), ScalarType::Float);
  Tensor y_out = at::detail::empty_cpu(y.sizes(), ScalarType::Float);
  Tensor y_top = at::detail::empty_cpu(y.sizes().slice(1), ScalarType::Float);
  float* yo = y_out.mutable_data_ptr<float>();
  run_plan(op, plan, x.const_data_ptr<float>(), B, c.const_data_ptr<float>(), y.const_data_ptr<float>(),
           c_out.mutable_data_ptr<float>(), yo);
  const int64_t n = B * plan.width;
  std::memcpy(y_top.mutable_data_ptr<float>(), yo + (plan.num_layers - 1) * n, static_cast<size_t>(n) * sizeof(float));
  return {y_top, c_out, y_out};
}

// egru_plan_step_(Tensor x, Tensor(a!) c, Tensor(b!) y, Tensor arena, Tensor meta) -> ()
// The same step with the state updated in place: no allocation; the top layer's output is y[-1].
void egru_plan_step_(const Tensor& x, const Tensor& c, const Tensor& y, const Tensor& arena, const Tensor& meta) {
  constexpr const char* op = "evsparse.egru_plan_step_";
  const Plan& plan = get_plan(op, arena, meta, PlanKind::egru);
  const int64_t B = check_plan_call(op, plan, x, c, y);
  TORCH_CHECK_VALUE(disjoint(c, y), op, ": c and y must not overlap");
  thread_local std::vector<float> c_prev;  // the update reads c_prev and writes c_out (restrict)
  c_prev.assign(c.const_data_ptr<float>(), c.const_data_ptr<float>() + c.numel());
  run_plan(op, plan, x.const_data_ptr<float>(), B, c_prev.data(), y.const_data_ptr<float>(), c.mutable_data_ptr<float>(),
           y.mutable_data_ptr<float>());
  trim_scratch(c_prev);
}

// egru_plan_sequence(Tensor xs, Tensor c, Tensor y, Tensor arena, Tensor meta)
//     -> (Tensor ys, Tensor c_out, Tensor y_out, Tensor nonzero)
// xs [T, in] with c, y [L, H], or xs [T, B, in] with [L, B, H]; ys [T, (B,) H]: the top layer's events;
// nonzero [L] int64: per layer, how many of its T * B * H event outputs were nonzero (the activity).
// The plan step run T times inside one call: the whole model over a sequence (int8 plans included,
// which the per-layer sequence ops cannot take), with the same per-step arithmetic as the step ops.
std::tuple<Tensor, Tensor, Tensor, Tensor> egru_plan_sequence(const Tensor& xs_in, const Tensor& c_in,
                                                              const Tensor& y_in, const Tensor& arena,
                                                              const Tensor& meta) {
  constexpr const char* op = "evsparse.egru_plan_sequence";
  const Tensor xs = xs_in.contiguous(), c = c_in.contiguous(), y = y_in.contiguous();
  const Tensor x0 = check_plan_sequence(op, xs);
  const Plan& plan = get_plan(op, arena, meta, PlanKind::egru);
  const int64_t T = xs.size(0);
  const int64_t B = check_plan_call(op, plan, x0, c, y);
  Tensor c_out = c.clone(), y_out = y.clone();
  std::vector<int64_t> ys_shape{T};
  for (int64_t d : y.sizes().slice(1)) ys_shape.push_back(d);
  Tensor ys = at::detail::empty_cpu(ys_shape, ScalarType::Float);
  Tensor nonzero = at::zeros({plan.num_layers}, at::kLong);
  thread_local std::vector<float> c_prev;
  const int64_t n = B * plan.width, step_in = xs.numel() / std::max<int64_t>(T, 1);
  float* co = c_out.mutable_data_ptr<float>();
  float* yo = y_out.mutable_data_ptr<float>();
  for (int64_t t = 0; t < T; ++t) {
    c_prev.assign(co, co + c_out.numel());
    run_plan(op, plan, xs.const_data_ptr<float>() + t * step_in, B, c_prev.data(), yo, co, yo,
             nonzero.mutable_data_ptr<int64_t>());
    std::memcpy(ys.mutable_data_ptr<float>() + t * n, yo + (plan.num_layers - 1) * n, static_cast<size_t>(n) * sizeof(float));
  }
  trim_scratch(c_prev);
  return {ys, c_out, y_out, nonzero};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(evsparse, m) {
  // One EGRU layer step on packed weights (w_* = dense [in, 3H] / [H, 3H], or CSC values with
  // col_ptr and row_idx). Gate blocks [z, r, g]; returns the new cell state and event output.
  m.def("egru_step(Tensor x, Tensor c, Tensor y, Tensor w_ih, Tensor? w_ih_col_ptr, Tensor? w_ih_row_idx, "
        "Tensor w_hh, Tensor? w_hh_col_ptr, Tensor? w_hh_row_idx, Tensor b_ih, Tensor b_hh, Tensor thr) "
        "-> (Tensor, Tensor)");
  // A whole sequence of one layer: xs [T, B, in] -> (ys [T, B, H], c, y).
  m.def("egru_sequence(Tensor xs, Tensor c, Tensor y, Tensor w_ih, Tensor? w_ih_col_ptr, Tensor? w_ih_row_idx, "
        "Tensor w_hh, Tensor? w_hh_col_ptr, Tensor? w_hh_row_idx, Tensor b_ih, Tensor b_hh, Tensor thr) "
        "-> (Tensor, Tensor, Tensor)");
  // One step of a stack of layers: x [B, in], c and y [L, B, H]; layers holds, per layer, the 9
  // weight arguments of egru_step in its order. Returns (the top layer's y [B, H], c, y [L, B, H]).
  m.def("egru_stack_step(Tensor x, Tensor c, Tensor y, Tensor?[] layers) -> (Tensor, Tensor, Tensor)");
  // One step of a stack from its plan (arena uint8, meta int64: csrc/ops/plan.h): x [in] or [B, in],
  // c and y [L, H] or [L, B, H]. Returns (the top layer's y, c, y); the _ variant updates c and y in
  // place and returns nothing (the top layer's output is y[-1]).
  m.def("egru_plan_step(Tensor x, Tensor c, Tensor y, Tensor arena, Tensor meta) -> (Tensor, Tensor, Tensor)");
  m.def("egru_plan_step_(Tensor x, Tensor(a!) c, Tensor(b!) y, Tensor arena, Tensor meta) -> ()");
  // The stack over a sequence from its plan: xs [T, in] or [T, B, in] -> (ys: the top layer's events
  // [T, (B,) H], c, y, per layer the count of nonzero events [L]).
  m.def("egru_plan_sequence(Tensor xs, Tensor c, Tensor y, Tensor arena, Tensor meta) "
        "-> (Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(evsparse, CPU, m) {
  m.impl("egru_step", &egru_step);
  m.impl("egru_sequence", &egru_sequence);
  m.impl("egru_stack_step", &egru_stack_step);
  m.impl("egru_plan_step", &egru_plan_step);
  m.impl("egru_plan_step_", &egru_plan_step_);
  m.impl("egru_plan_sequence", &egru_plan_sequence);
}

}  // namespace evsparse
