// torch.ops.evsparse.linear_rnn_step / linear_rnn_sequence: one sparse linear RNN layer's inference
// on packed weights.
//
// Per step: u = W_in x + b_in (only the nonzero inputs' weight rows or nonzeros are read),
// h = a * h_prev + u (diagonal, real or complex), v = W_out h + b_out, y = relu(v [+ x]).
// One call does all four; u and v live in per-thread scratch reused across calls. Inference only:
// train with evsparse.nn.SparseLinearRNN, then sparsify().
#include <torch/library.h>

#include <tuple>
#include <vector>

#include "../cpu/linear_rnn_impl.h"
#include <ATen/EmptyTensor.h>

#include "packed_product.h"
#include "plan_ops.h"

namespace evsparse {
namespace {

struct LinearRnnLayer {
  PackedArgs w_in;
  PackedArgs w_out;
  const float* b_in;
  const float* b_out;
  const float* a_re;
  const float* a_im;  // null for a real recurrence
  int64_t in;
  int64_t S;          // diagonal size (complex: S complex values stored as 2S floats)
  int64_t width;      // floats per state row: S or 2S
  int64_t out;
  bool residual;
};

LinearRnnLayer make_layer(const char* op, const Tensor& like, int64_t in, const Tensor& w_in,
                          const std::optional<Tensor>& w_in_col_ptr, const std::optional<Tensor>& w_in_row_idx,
                          const Tensor& b_in, const Tensor& a_re, const std::optional<Tensor>& a_im,
                          const Tensor& w_out, const std::optional<Tensor>& w_out_col_ptr,
                          const std::optional<Tensor>& w_out_row_idx, const Tensor& b_out, bool residual) {
  TORCH_CHECK_VALUE(a_re.dim() == 1, op, ": a_re must be 1-D [S], got ", a_re.sizes());
  const int64_t S = a_re.size(0);
  check_vector(op, "a_re", a_re, S, like);
  const bool is_complex = a_im.has_value() && a_im->defined();
  if (is_complex) check_vector(op, "a_im", *a_im, S, like);
  const int64_t width = is_complex ? 2 * S : S;
  check_vector(op, "b_in", b_in, width, like);
  TORCH_CHECK_VALUE(b_out.dim() == 1, op, ": b_out must be 1-D [out], got ", b_out.sizes());
  const int64_t out = b_out.size(0);
  check_vector(op, "b_out", b_out, out, like);
  TORCH_CHECK_VALUE(!residual || in == out, op, ": a residual layer needs in_features == out_features, got ", in,
                    " and ", out);
  return LinearRnnLayer{packed_args(op, "w_in", w_in, w_in_col_ptr, w_in_row_idx, in, width, like),
                        packed_args(op, "w_out", w_out, w_out_col_ptr, w_out_row_idx, width, out, like),
                        b_in.const_data_ptr<float>(),
                        b_out.const_data_ptr<float>(),
                        a_re.const_data_ptr<float>(),
                        is_complex ? a_im->const_data_ptr<float>() : nullptr,
                        in,
                        S,
                        width,
                        out,
                        residual};
}

// One step for B rows: (x [B, in], h_prev [B, width]) -> (h [B, width], y [B, out]).
void step(const char* op, const LinearRnnLayer& L, const float* x, const float* h_prev, int64_t B, float* h,
          float* y) {
  thread_local std::vector<float> u, v;
  u.resize(static_cast<size_t>(B * L.width));
  v.resize(static_cast<size_t>(B * L.out));
  packed_product<float>(op, L.w_in, x, B, L.b_in, u.data());
  for (int64_t b = 0; b < B; ++b) {
    cpu::diagonal_recurrence(L.a_re, L.a_im, h_prev + b * L.width, u.data() + b * L.width, h + b * L.width, L.S);
  }
  packed_product<float>(op, L.w_out, h, B, L.b_out, v.data());
  for (int64_t b = 0; b < B; ++b) {
    cpu::residual_relu(v.data() + b * L.out, L.residual ? x + b * L.in : nullptr, y + b * L.out, L.out);
  }
  trim_scratch(u);
  trim_scratch(v);
}

// linear_rnn_step(x [B, in], h [B, width], ...) -> (y [B, out], h_out [B, width])
std::tuple<Tensor, Tensor> linear_rnn_step(const Tensor& x, const Tensor& h, const Tensor& w_in,
                                           const std::optional<Tensor>& w_in_col_ptr,
                                           const std::optional<Tensor>& w_in_row_idx, const Tensor& b_in,
                                           const Tensor& a_re, const std::optional<Tensor>& a_im, const Tensor& w_out,
                                           const std::optional<Tensor>& w_out_col_ptr,
                                           const std::optional<Tensor>& w_out_row_idx, const Tensor& b_out,
                                           bool residual) {
  constexpr const char* op = "evsparse.linear_rnn_step";
  check_input(op, x, 2);
  const int64_t B = x.size(0);
  const LinearRnnLayer L = make_layer(op, x, x.size(1), w_in, w_in_col_ptr, w_in_row_idx, b_in, a_re, a_im, w_out,
                                      w_out_col_ptr, w_out_row_idx, b_out, residual);
  check_state(op, "h", h, B, L.width, x);
  Tensor y = at::empty({B, L.out}, x.options());
  Tensor h_out = at::empty_like(h);
  step(op, L, x.const_data_ptr<float>(), h.const_data_ptr<float>(), B, h_out.mutable_data_ptr<float>(),
       y.mutable_data_ptr<float>());
  return {y, h_out};
}

// linear_rnn_sequence(xs [T, B, in], h [B, width], ...) -> (ys [T, B, out], h_out [B, width])
std::tuple<Tensor, Tensor> linear_rnn_sequence(const Tensor& xs, const Tensor& h, const Tensor& w_in,
                                               const std::optional<Tensor>& w_in_col_ptr,
                                               const std::optional<Tensor>& w_in_row_idx, const Tensor& b_in,
                                               const Tensor& a_re, const std::optional<Tensor>& a_im,
                                               const Tensor& w_out, const std::optional<Tensor>& w_out_col_ptr,
                                               const std::optional<Tensor>& w_out_row_idx, const Tensor& b_out,
                                               bool residual) {
  constexpr const char* op = "evsparse.linear_rnn_sequence";
  check_input(op, xs, 3);
  const int64_t T = xs.size(0), B = xs.size(1), in = xs.size(2);
  const LinearRnnLayer L = make_layer(op, xs, in, w_in, w_in_col_ptr, w_in_row_idx, b_in, a_re, a_im, w_out,
                                      w_out_col_ptr, w_out_row_idx, b_out, residual);
  check_state(op, "h", h, B, L.width, xs);
  Tensor ys = at::empty({T, B, L.out}, xs.options());
  Tensor h_a = h.clone();
  Tensor h_b = at::empty_like(h);
  float* cur = h_a.mutable_data_ptr<float>();
  float* nxt = h_b.mutable_data_ptr<float>();
  const float* x = xs.const_data_ptr<float>();
  float* ys_p = ys.mutable_data_ptr<float>();
  for (int64_t t = 0; t < T; ++t) {
    step(op, L, x + t * B * in, cur, B, nxt, ys_p + t * B * L.out);
    std::swap(cur, nxt);
  }
  return {ys, cur == h_a.mutable_data_ptr<float>() ? h_a : h_b};
}

// linear_rnn_stack_step(Tensor x, Tensor h, Tensor?[] layers, bool[] residual) -> (Tensor y, Tensor h_out)
// One step of a whole stack of layers, state [L, B, width]: what PackedLinearRNN.step would do with one
// linear_rnn_step per layer plus the Python around it. layers: per layer the 10 weight arguments of
// linear_rnn_step in its order (w_in .. b_out); residual: one flag per layer.
std::tuple<Tensor, Tensor> linear_rnn_stack_step(const Tensor& x, const Tensor& h,
                                                 const c10::List<std::optional<Tensor>>& layers,
                                                 const c10::List<bool>& residual) {
  constexpr const char* op = "evsparse.linear_rnn_stack_step";
  const int64_t kArgs = static_cast<int64_t>(linear_rnn_layer_args().size());
  const auto [B, num_layers, width] = check_stack_input(op, x, "h", h);
  TORCH_CHECK_VALUE(static_cast<int64_t>(residual.size()) == num_layers, op, ": residual must hold one flag per "
                    "layer (", num_layers, " layers, from the state), got ", residual.size());
  const auto args =
      stack_args(op, layers, num_layers, linear_rnn_layer_args());
  Tensor h_out = at::empty_like(h);
  Tensor inp = x;
  for (int64_t k = 0; k < num_layers; ++k) {
    for_layer(op, k, [&] {
      const auto* a = args.data() + k * kArgs;
      const LinearRnnLayer L = make_layer(op, x, inp.size(1), *a[0], a[1], a[2], *a[3], *a[4], a[5], *a[6], a[7],
                                          a[8], *a[9], residual.get(k));
      TORCH_CHECK_VALUE(L.width == width, op, ": state width ", L.width, ", the state ", width);
      Tensor y = at::empty({B, L.out}, x.options());  // the next layer's input (its residual reads it too)
      const int64_t off = k * B * width;
      step(op, L, inp.const_data_ptr<float>(), h.const_data_ptr<float>() + off, B,
           h_out.mutable_data_ptr<float>() + off, y.mutable_data_ptr<float>());
      inp = y;
    });
  }
  return {inp, h_out};
}

// ---------------------------------------------------------------------------------------------
// The model plan ops (plan.h): one step of the whole stack from (x, h, arena, meta).

// Every layer in turn into y [B, out of the top layer]; the layers' outputs in between live in two
// per-thread buffers (a layer's residual reads its own input, so input and output need their own).
// nonzero (optional, [num_layers]): adds each layer's count of nonzero (NaN included) outputs.
void run_plan(const char* op, const Plan& plan, const float* x, int64_t B, const float* h_prev, float* h_out,
              float* y, int64_t* nonzero) {
  thread_local std::vector<float> buf[2];
  const float* inp = x;
  for (int64_t k = 0; k < plan.num_layers; ++k) {
    const PlanLayer& P = plan.layers[k];
    const LinearRnnLayer L{P.w[0], P.w[1], P.vec[0], P.vec[3], P.vec[1], P.vec[2],
                           P.in, P.S, P.width, P.out, P.residual};
    float* dst = y;
    if (k + 1 < plan.num_layers) {
      buf[k % 2].resize(static_cast<size_t>(B * L.out));
      dst = buf[k % 2].data();
    }
    const int64_t off = k * B * L.width;
    for_layer(op, k, [&] { step(op, L, inp, h_prev + off, B, h_out + off, dst); });
    inp = dst;
    if (nonzero != nullptr) nonzero[k] += count_nonzero(dst, B * L.out);
  }
  trim_scratch(buf[0]);
  trim_scratch(buf[1]);
}

// linear_rnn_plan_step(Tensor x, Tensor h, Tensor arena, Tensor meta, int out_features) -> (Tensor y, Tensor h_out)
std::tuple<Tensor, Tensor> linear_rnn_plan_step(const Tensor& x, const Tensor& h, const Tensor& arena,
                                                const Tensor& meta, int64_t out_features) {
  return state_plan_step("evsparse.linear_rnn_plan_step", PlanKind::linear_rnn, x, h, arena, meta, out_features,
                         run_plan);
}

// linear_rnn_plan_step_(Tensor x, Tensor(a!) h, Tensor(b!) out, Tensor arena, Tensor meta) -> ()
void linear_rnn_plan_step_(const Tensor& x, const Tensor& h, const Tensor& y, const Tensor& arena, const Tensor& meta) {
  state_plan_step_("evsparse.linear_rnn_plan_step_", PlanKind::linear_rnn, x, h, y, arena, meta, run_plan);
}

// linear_rnn_plan_sequence(Tensor xs, Tensor h, Tensor arena, Tensor meta, int out_features)
//     -> (Tensor ys, Tensor h_out, Tensor nonzero)
std::tuple<Tensor, Tensor, Tensor> linear_rnn_plan_sequence(const Tensor& xs, const Tensor& h, const Tensor& arena,
                                                            const Tensor& meta, int64_t out_features) {
  return state_plan_sequence("evsparse.linear_rnn_plan_sequence", PlanKind::linear_rnn, xs, h, arena, meta,
                             out_features, run_plan);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(evsparse, m) {
  // One sparse linear RNN layer step on packed weights (w_in: dense [in, width] or CSC; w_out: dense
  // [width, out] or CSC; width = S, or 2S for a complex diagonal given by a_re + i a_im, state laid out
  // [re | im]). Returns (y = relu(W_out h + b_out [+ x]), h).
  m.def("linear_rnn_step(Tensor x, Tensor h, Tensor w_in, Tensor? w_in_col_ptr, Tensor? w_in_row_idx, "
        "Tensor b_in, Tensor a_re, Tensor? a_im, Tensor w_out, Tensor? w_out_col_ptr, Tensor? w_out_row_idx, "
        "Tensor b_out, bool residual) -> (Tensor, Tensor)");
  // A whole sequence of one layer: xs [T, B, in] -> (ys [T, B, out], h of the last step).
  m.def("linear_rnn_sequence(Tensor xs, Tensor h, Tensor w_in, Tensor? w_in_col_ptr, Tensor? w_in_row_idx, "
        "Tensor b_in, Tensor a_re, Tensor? a_im, Tensor w_out, Tensor? w_out_col_ptr, Tensor? w_out_row_idx, "
        "Tensor b_out, bool residual) -> (Tensor, Tensor)");
  // One step of a stack of layers: x [B, in], h [L, B, width]; layers holds, per layer, the 10 weight
  // arguments of linear_rnn_step (w_in .. b_out) in its order. Returns (the top layer's y, h [L, B, width]).
  m.def("linear_rnn_stack_step(Tensor x, Tensor h, Tensor?[] layers, bool[] residual) -> (Tensor, Tensor)");
  // One step of a stack from its plan (arena uint8, meta int64: csrc/ops/plan.h): x [in] or [B, in],
  // h [L, width] or [L, B, width]. Returns (the top layer's y, h); the _ variant updates h in place and
  // writes y to out.
  m.def("linear_rnn_plan_step(Tensor x, Tensor h, Tensor arena, Tensor meta, int out_features) -> (Tensor, Tensor)");
  m.def("linear_rnn_plan_step_(Tensor x, Tensor(a!) h, Tensor(b!) out, Tensor arena, Tensor meta) -> ()");
  // The stack over a sequence from its plan: xs [T, in] or [T, B, in] -> (ys [T, (B,) out], h, per
  // layer the count of nonzero outputs [L]).
  m.def("linear_rnn_plan_sequence(Tensor xs, Tensor h, Tensor arena, Tensor meta, int out_features) "
        "-> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(evsparse, CPU, m) {
  m.impl("linear_rnn_step", &linear_rnn_step);
  m.impl("linear_rnn_sequence", &linear_rnn_sequence);
  m.impl("linear_rnn_stack_step", &linear_rnn_stack_step);
  m.impl("linear_rnn_plan_step", &linear_rnn_plan_step);
  m.impl("linear_rnn_plan_step_", &linear_rnn_plan_step_);
  m.impl("linear_rnn_plan_sequence", &linear_rnn_plan_sequence);
}

}  // namespace evsparse
