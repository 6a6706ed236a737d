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

#include "../cpu/linear_rnn_impl.h"
#include "../cpu/s5_impl.h"
#include "packed_product.h"
#include "plan_ops.h"

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
              float* y, int64_t* nonzero) {
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

// s5_plan_step(Tensor x, Tensor h, Tensor arena, Tensor meta, int out_features) -> (Tensor y, Tensor h_out)
std::tuple<Tensor, Tensor> s5_plan_step(const Tensor& x, const Tensor& h, const Tensor& arena, const Tensor& meta,
                                        int64_t out_features) {
  return state_plan_step("evsparse.s5_plan_step", PlanKind::s5, x, h, arena, meta, out_features, run_plan);
}

// s5_plan_step_(Tensor x, Tensor(a!) h, Tensor(b!) out, Tensor arena, Tensor meta) -> ()
void s5_plan_step_(const Tensor& x, const Tensor& h, const Tensor& y, const Tensor& arena, const Tensor& meta) {
  state_plan_step_("evsparse.s5_plan_step_", PlanKind::s5, x, h, y, arena, meta, run_plan);
}

// s5_plan_sequence(Tensor xs, Tensor h, Tensor arena, Tensor meta, int out_features)
//     -> (Tensor ys, Tensor h_out, Tensor nonzero)
std::tuple<Tensor, Tensor, Tensor> s5_plan_sequence(const Tensor& xs, const Tensor& h, const Tensor& arena,
                                                    const Tensor& meta, int64_t out_features) {
  return state_plan_sequence("evsparse.s5_plan_sequence", PlanKind::s5, xs, h, arena, meta, out_features, run_plan);
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
