// torch.ops.evsparse.s5_plan_step / s5_plan_step_ / s5_plan_sequence: evsparse.nn.S5Stack's inference
// from its plan (plan.h, kind s5): a chain of dense layers and S5 blocks, one op call per step.
//
// One S5 block step (BatchNorm already folded into B', b_in and d; ZOH discretisation into B' and
// lambda; the conjugate-symmetric output's factor 2 and the sign of Im into C'):
//   u = B' x + b_in                  (reads only x's nonzero entries)
//   h = lambda * h_prev + u          (complex diagonal, [re | im])
//   r = relu_c(h) if state ReLU      (read-out path only: the recurrence stays linear)
//   v = act(C' r + b_out + d * x)    (reads only r's nonzero entries)
//   v = v * sigmoid(W2 v + b_glu)    (the one-matrix GLU, if W2; reads only v's nonzero entries)
//   y = relu?(v + x if residual)
// A dense layer: y = relu?(W x + b). Scratch is per thread and reused. Inference only: train with
// evsparse.nn.S5Stack, then sparsify().
#include <torch/library.h>

#include <tuple>
#include <vector>

#include <ATen/EmptyTensor.h>

#include "../cpu/linear_rnn_impl.h"
#include "../cpu/s5_impl.h"
#include "packed_product.h"
#include "plan.h"

namespace evsparse {
namespace {

// One block for B rows: x [B, in] (in == out where residual), h_prev/h [B, 2S] (may alias), y [B, out].
void block_step(const char* op, const PlanLayer& L, const float* x, int64_t B, const float* h_prev, float* h,
                float* y) {
  thread_local std::vector<float> u, r, g;
  const int64_t W = L.width, out = L.out;
  u.resize(static_cast<size_t>(B * W));
  packed_product<float>(op, L.w[0], x, B, L.vec[0], u.data());
  for (int64_t b = 0; b < B; ++b) {
    cpu::diagonal_recurrence(L.vec[1], L.vec[2], h_prev + b * W, u.data() + b * W, h + b * W, L.S);
  }
  const float* readout = h;
  if ((L.flags & kPlanStateRelu) != 0) {
    r.resize(static_cast<size_t>(B * W));
    for (int64_t b = 0; b < B; ++b) cpu::complex_state_relu(h + b * W, r.data() + b * W, L.S);
    readout = r.data();
  }
  packed_product<float>(op, L.w[1], readout, B, L.vec[3], y);
  for (int64_t b = 0; b < B; ++b) {
    float* v = y + b * out;
    if (L.vec[4] != nullptr) cpu::add_feedthrough(L.vec[4], x + b * L.in, v, out);
    cpu::activation(L.act, v, out);
  }
  if (L.w[2].values != nullptr) {
    g.resize(static_cast<size_t>(B * out));
    packed_product<float>(op, L.w[2], y, B, L.vec[5], g.data());
    for (int64_t b = 0; b < B; ++b) cpu::glu_gate(g.data() + b * out, y + b * out, out);
  }
  for (int64_t b = 0; b < B; ++b) {
    float* v = y + b * out;
    const float* skip = L.residual ? x + b * L.in : nullptr;
    if ((L.flags & kPlanRelu) != 0) {
      cpu::residual_relu(v, skip, v, out);
    } else if (skip != nullptr) {
      cpu::add_residual(skip, v, out);
    }
  }
  trim_scratch(u);
  trim_scratch(r);
  trim_scratch(g);
}

// Every record in turn into y [B, out of the last record]; outputs in between live in two per-thread
// buffers (a block's feedthrough and skip read its own input). h_prev/h_out [num_states, B, width]
// (may alias). nonzero (optional, [num_layers]): adds each record's count of nonzero outputs.
void run_plan(const char* op, const Plan& plan, const float* x, int64_t B, const float* h_prev, float* h_out,
              float* y, int64_t* nonzero = nullptr) {
  thread_local std::vector<float> buf[2];
  const float* inp = x;
  int64_t s = 0;  // state row
  for (int64_t k = 0; k < plan.num_layers; ++k) {
    const PlanLayer& L = plan.layers[k];
    float* dst = y;
    if (k + 1 < plan.num_layers) {
      buf[k % 2].resize(static_cast<size_t>(B * L.out));
      dst = buf[k % 2].data();
    }
    for_layer(op, k, [&] {
      if ((L.flags & kPlanLinear) != 0) {
        packed_product<float>(op, L.w[0], inp, B, L.vec[0], dst);
        if ((L.flags & kPlanRelu) != 0) {
          for (int64_t b = 0; b < B; ++b) cpu::residual_relu(dst + b * L.out, nullptr, dst + b * L.out, L.out);
        }
      } else {
        const int64_t off = s * B * plan.width;
        block_step(op, L, inp, B, h_prev + off, h_out + off, dst);
        ++s;
      }
    });
    inp = dst;
    if (nonzero != nullptr) nonzero[k] += count_nonzero(dst, B * L.out);
  }
  trim_scratch(buf[0]);
  trim_scratch(buf[1]);
}

int64_t check_call(const char* op, const Plan& plan, const Tensor& x, const Tensor& h) {
  const int64_t B = check_plan_input(op, plan, x);
  check_plan_state(op, plan, "h", h, x, B, "state width");
  return B;
}

int64_t top_out(const char* op, const Plan& plan, int64_t out_features) {
  const int64_t out = plan.layers[plan.num_layers - 1].out;
  TORCH_CHECK_VALUE(out_features == out, op, ": out_features=", out_features, " but the plan's last layer has ", out,
                    " outputs");
  return out;
}

// s5_plan_step(Tensor x, Tensor h, Tensor arena, Tensor meta, int out_features) -> (Tensor y, Tensor h_out)
std::tuple<Tensor, Tensor> s5_plan_step(const Tensor& x_in, const Tensor& h_in, const Tensor& arena, const Tensor& meta,
                                        int64_t out_features) {
  constexpr const char* op = "evsparse.s5_plan_step";
  const Tensor x = x_in.contiguous(), h = h_in.contiguous();
  const Plan& plan = get_plan(op, arena, meta, PlanKind::s5);
  const int64_t B = check_call(op, plan, x, h);
  const int64_t out = top_out(op, plan, out_features);
  Tensor y = x.dim() == 2 ? at::detail::empty_cpu({B, out}, ScalarType::Float)
                          : at::detail::empty_cpu({out}, ScalarType::Float);
  Tensor h_out = at::detail::empty_cpu(h.sizes(), ScalarType::Float);
  run_plan(op, plan, x.const_data_ptr<float>(), B, h.const_data_ptr<float>(), h_out.mutable_data_ptr<float>(),
           y.mutable_data_ptr<float>());
  return {y, h_out};
}

// s5_plan_step_(Tensor x, Tensor(a!) h, Tensor(b!) out, Tensor arena, Tensor meta) -> ()
void s5_plan_step_(const Tensor& x, const Tensor& h, const Tensor& y, const Tensor& arena, const Tensor& meta) {
  constexpr const char* op = "evsparse.s5_plan_step_";
  const Plan& plan = get_plan(op, arena, meta, PlanKind::s5);
  const int64_t B = check_call(op, plan, x, h);
  const int64_t out = plan.layers[plan.num_layers - 1].out;
  check_tensor(y, op, "out", x);
  TORCH_CHECK_VALUE(y.scalar_type() == ScalarType::Float && y.dim() == x.dim() && y.size(-1) == out &&
                        (x.dim() == 1 || y.size(0) == B),
                    op, ": out must be float32 of shape ", x.dim() == 2 ? at::IntArrayRef{B, out} : at::IntArrayRef{out},
                    ", got ", y.scalar_type(), " ", y.sizes());
  TORCH_CHECK_VALUE(disjoint(x, h) && disjoint(x, y) && disjoint(h, y), op, ": x, h and out must not overlap");
  run_plan(op, plan, x.const_data_ptr<float>(), B, h.const_data_ptr<float>(), h.mutable_data_ptr<float>(),
           y.mutable_data_ptr<float>());
}

// s5_plan_sequence(Tensor xs, Tensor h, Tensor arena, Tensor meta, int out_features)
//     -> (Tensor ys, Tensor h_out, Tensor nonzero)
std::tuple<Tensor, Tensor, Tensor> s5_plan_sequence(const Tensor& xs_in, const Tensor& h_in, const Tensor& arena,
                                                    const Tensor& meta, int64_t out_features) {
  constexpr const char* op = "evsparse.s5_plan_sequence";
  const Tensor xs = xs_in.contiguous(), h = h_in.contiguous();
  const Tensor x0 = check_plan_sequence(op, xs);
  const Plan& plan = get_plan(op, arena, meta, PlanKind::s5);
  const int64_t T = xs.size(0);
  const int64_t B = check_call(op, plan, x0, h);
  const int64_t out = top_out(op, plan, out_features);
  Tensor h_out = h.clone();
  Tensor ys = xs.dim() == 3 ? at::detail::empty_cpu({T, B, out}, ScalarType::Float)
                            : at::detail::empty_cpu({T, out}, ScalarType::Float);
  Tensor nonzero = at::zeros({plan.num_layers}, at::kLong);
  const int64_t step_in = xs.numel() / std::max<int64_t>(T, 1);
  float* ho = h_out.mutable_data_ptr<float>();
  for (int64_t t = 0; t < T; ++t) {
    run_plan(op, plan, xs.const_data_ptr<float>() + t * step_in, B, ho, ho, ys.mutable_data_ptr<float>() + t * B * out,
             nonzero.mutable_data_ptr<int64_t>());
  }
  return {ys, h_out, nonzero};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(evsparse, m) {
  // One step of an S5 stack from its plan (kind s5: csrc/ops/plan.h): x [in] or [B, in], h
  // [num_blocks, (B,) 2S]. Returns (the last layer's y, h); the _ variant updates h in place and writes
  // y to out.
  m.def("s5_plan_step(Tensor x, Tensor h, Tensor arena, Tensor meta, int out_features) -> (Tensor, Tensor)");
  m.def("s5_plan_step_(Tensor x, Tensor(a!) h, Tensor(b!) out, Tensor arena, Tensor meta) -> ()");
  // The stack over a sequence: xs [T, in] or [T, B, in] -> (ys [T, (B,) out], h, per layer the count of
  // nonzero outputs [num_layers]).
  m.def("s5_plan_sequence(Tensor xs, Tensor h, Tensor arena, Tensor meta, int out_features) "
        "-> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(evsparse, CPU, m) {
  m.impl("s5_plan_step", &s5_plan_step);
  m.impl("s5_plan_step_", &s5_plan_step_);
  m.impl("s5_plan_sequence", &s5_plan_sequence);
}

}  // namespace evsparse
