// torch.ops.evsparse.egru_train: one EGRU layer's training recurrence over a sequence, forward and
// backward through time in C++ (the kernels: csrc/cpu/egru_train_impl.h), with autograd.
//
//   egru_train(gi, c0, y0, w_hh, b_hh, thr, dampening, support) -> (ys, c, events)
//
// gi [T, B, 3H] is the input product of every step plus b_ih (the caller's one GEMM, differentiated by
// autograd as usual); w_hh [3H, H] the recurrent weight as the module holds it (DropConnect already
// applied); ys [T, B, H] the event outputs, c [B, H] the last cell state, events [B, H] how many steps
// each unit fired (float: differentiable through the surrogate, for the activity loss). float32 and
// float64, CPU. egru_train_forward / egru_train_backward are the two halves, without a derivative.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "checks.h"
#include "op_utils.h"

namespace evsparse {
namespace {

using at::ScalarType;
using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

struct TrainDims {
  int64_t T, B, H;
};

void check_same(const char* op, const char* name, const Tensor& t, const Tensor& like,
                std::initializer_list<int64_t> shape) {
  check_tensor(t, op, name, like);
  TORCH_CHECK_VALUE(t.scalar_type() == like.scalar_type(), op, ": ", name, " must be ", like.scalar_type(),
                    " like gi, got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.sizes().equals(shape), op, ": ", name, " must have shape ", c10::IntArrayRef(shape), ", got ",
                    t.sizes());
}

// gi [T, B, 3H] float32/float64 on the CPU, every other argument of its dtype and the shapes gi and thr imply.
TrainDims check_train_args(const char* op, const Tensor& gi, const Tensor& c0, const Tensor& y0, const Tensor& w_hh,
                           const Tensor* b_hh, const Tensor& thr) {
  TORCH_CHECK_VALUE(gi.dim() == 3, op, ": gi must be 3-D [T, B, 3H], got shape ", gi.sizes());
  check_tensor(gi, op, "gi", gi);
  TORCH_CHECK_VALUE(gi.device().is_cpu(), op, ": CPU kernels only (EGRU runs its Python loop on other devices), "
                    "got gi on ", gi.device());
  TORCH_CHECK_VALUE(gi.scalar_type() == ScalarType::Float || gi.scalar_type() == ScalarType::Double, op,
                    ": gi must be float32 or float64, got ", gi.scalar_type());
  TORCH_CHECK_VALUE(thr.dim() == 1, op, ": thr must be 1-D [H], got shape ", thr.sizes());
  const int64_t H = thr.size(0), T = gi.size(0), B = gi.size(1);
  TORCH_CHECK_VALUE(gi.size(2) == 3 * H, op, ": gi must be [T, B, 3H] with H = ", H, " (thr), got ", gi.sizes());
  check_same(op, "thr", thr, gi, {H});
  check_same(op, "c0", c0, gi, {B, H});
  check_same(op, "y0", y0, gi, {B, H});
  check_same(op, "w_hh", w_hh, gi, {3 * H, H});
  if (b_hh != nullptr) check_same(op, "b_hh", *b_hh, gi, {3 * H});
  return {T, B, H};
}

// Batch rows in chunks, one per thread: the recurrence of different rows never meets.
int64_t train_chunks(const TrainDims& d) {
  const int64_t work = d.T * d.B * 3 * d.H * d.H;
  if (work < kMinParallelDenseMacs) return d.B > 0 ? 1 : 0;
  return std::min(num_threads(), d.B);
}

template <class Body>
void for_each_chunk(int64_t n_chunks, int64_t B, const Body& body) {
  const auto run = [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) body(k, B * k / n_chunks, B * (k + 1) / n_chunks);
  };
  if (n_chunks > 1) {
    parallel_for(0, n_chunks, 1, run);
  } else {
    run(0, n_chunks);
  }
}

// [cols, rows] = the transpose of src [rows, cols] (contiguous), summed over src's leading dimension when
// it has three (the backward's per-chunk parts): the kernel core's tiled transpose, split by output rows.
Tensor transposed_sum(const Tensor& src) {
  const Tensor s = src.dim() == 2 ? src.unsqueeze(0).contiguous() : src.contiguous();
  const int64_t parts = s.size(0), rows = s.size(1), cols = s.size(2);
  Tensor dst = at::empty({cols, rows}, s.options());
  const auto run = [&](auto* tag) {
    using A = std::remove_pointer_t<decltype(tag)>;
    const A* in = s.const_data_ptr<A>();
    A* out = dst.mutable_data_ptr<A>();
    parallel_for(0, cols, std::max<int64_t>(16, (int64_t(1) << 15) / std::max<int64_t>(rows, 1)),
                 [&](int64_t c0, int64_t c1) { cpu::transpose_sum(in, parts, rows * cols, rows, cols, out, c0, c1); });
  };
  if (s.scalar_type() == ScalarType::Double) {
    run(static_cast<double*>(nullptr));
  } else {
    run(static_cast<float*>(nullptr));
  }
  return dst;
}

// egru_train_forward(Tensor gi, Tensor c0, Tensor y0, Tensor w_hh, Tensor b_hh, Tensor thr)
//     -> (Tensor ys, Tensor c, Tensor events, Tensor saved)
// saved [T, B, 5H]: per step z, r, g, (R y + b_hh)_g and c~, what the backward needs.
std::tuple<Tensor, Tensor, Tensor, Tensor> egru_train_forward(const Tensor& gi, const Tensor& c0, const Tensor& y0,
                                                              const Tensor& w_hh, const Tensor& b_hh,
                                                              const Tensor& thr) {
  constexpr const char* op = "evsparse.egru_train_forward";
  const TrainDims d = check_train_args(op, gi, c0, y0, w_hh, &b_hh, thr);
  const auto opts = gi.options();
  Tensor ys = at::empty({d.T, d.B, d.H}, opts), c = at::empty({d.B, d.H}, opts), events = at::empty({d.B, d.H}, opts);
  Tensor saved = at::empty({d.T, d.B, 5 * d.H}, opts);
  const Tensor rt = transposed_sum(w_hh);  // R^T: unit j's outgoing weights contiguous
  const int64_t n_chunks = train_chunks(d);
  const auto run = [&](auto fn, auto* tag) {
    using A = std::remove_pointer_t<decltype(tag)>;
    for_each_chunk(n_chunks, d.B, [&](int64_t, int64_t b0, int64_t b1) {
      fn(gi.const_data_ptr<A>(), c0.const_data_ptr<A>(), y0.const_data_ptr<A>(), rt.const_data_ptr<A>(),
         b_hh.const_data_ptr<A>(), thr.const_data_ptr<A>(), d.T, d.B, d.H, b0, b1, ys.mutable_data_ptr<A>(),
         c.mutable_data_ptr<A>(), events.mutable_data_ptr<A>(), saved.mutable_data_ptr<A>());
    });
  };
  if (gi.scalar_type() == ScalarType::Double) {
    run(cpu::egru_train_forward_f64, static_cast<double*>(nullptr));
  } else {
    run(cpu::active_kernels().egru_train_forward, static_cast<float*>(nullptr));
  }
  return {ys, c, events, saved};
}

// egru_train_backward(Tensor grad_ys, Tensor grad_c, Tensor grad_events, Tensor c0, Tensor y0, Tensor w_hh,
//                     Tensor thr, Tensor saved, float dampening, float support)
//     -> (Tensor grad_gi, Tensor grad_c0, Tensor grad_y0, Tensor grad_w_hh, Tensor grad_b_hh, Tensor grad_thr)
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> egru_train_backward(
    const Tensor& grad_ys, const Tensor& grad_c, const Tensor& grad_events, const Tensor& c0, const Tensor& y0,
    const Tensor& w_hh, const Tensor& thr, const Tensor& saved, double dampening, double support) {
  constexpr const char* op = "evsparse.egru_train_backward";
  TORCH_CHECK_VALUE(saved.dim() == 3, op, ": saved must be 3-D [T, B, 5H], got shape ", saved.sizes());
  TORCH_CHECK_VALUE(thr.dim() == 1, op, ": thr must be 1-D [H], got shape ", thr.sizes());
  const int64_t H = thr.size(0);
  // The gradient of gi has gi's shape; check everything against a [T, B, 3H] stand-in of it.
  TORCH_CHECK_VALUE(saved.size(2) == 5 * H, op, ": saved must be [T, B, 5H] with H = ", H, ", got ", saved.sizes());
  const Tensor gi_like = at::empty({saved.size(0), saved.size(1), 3 * H}, saved.options());
  check_tensor(saved, op, "saved", saved);
  const TrainDims d = check_train_args(op, gi_like, c0, y0, w_hh, nullptr, thr);
  check_same(op, "saved", saved, gi_like, {d.T, d.B, 5 * d.H});
  check_same(op, "grad_ys", grad_ys, gi_like, {d.T, d.B, d.H});
  check_same(op, "grad_c", grad_c, gi_like, {d.B, d.H});
  check_same(op, "grad_events", grad_events, gi_like, {d.B, d.H});
  const auto opts = saved.options();
  const int64_t G = 3 * d.H;
  Tensor g_gi = at::empty({d.T, d.B, G}, opts), g_c0 = at::empty({d.B, d.H}, opts), g_y0 = at::empty({d.B, d.H}, opts);
  const int64_t n_chunks = std::max<int64_t>(train_chunks(d), 1);
  // Per chunk its own weight/bias/threshold gradient accumulators, summed afterwards. Each chunk zeroes
  // its own dR^T part on its thread (a fresh 1.7 MB part is first touched there, in parallel).
  Tensor g_rt = at::empty({n_chunks, d.H, G}, opts), g_b = at::zeros({n_chunks, G}, opts),
         g_thr = at::zeros({n_chunks, d.H}, opts);
  const Tensor w = w_hh.contiguous();  // read by rows (the dense dy = dgh W)
  const Tensor rt = transposed_sum(w);  // and R^T, for a sparse dy (few entries needed: a narrow surrogate)
  const auto run = [&](auto fn, auto* tag) {
    using A = std::remove_pointer_t<decltype(tag)>;
    for_each_chunk(n_chunks, d.B, [&](int64_t k, int64_t b0, int64_t b1) {
      A* part = g_rt.mutable_data_ptr<A>() + k * d.H * G;
      std::fill(part, part + d.H * G, A(0));
      fn(grad_ys.const_data_ptr<A>(), grad_c.const_data_ptr<A>(), grad_events.const_data_ptr<A>(),
         c0.const_data_ptr<A>(), y0.const_data_ptr<A>(), w.const_data_ptr<A>(), rt.const_data_ptr<A>(),
         thr.const_data_ptr<A>(),
         saved.const_data_ptr<A>(), static_cast<A>(dampening), static_cast<A>(support), d.T, d.B, d.H, b0, b1,
         g_gi.mutable_data_ptr<A>(), g_c0.mutable_data_ptr<A>(), g_y0.mutable_data_ptr<A>(),
         g_rt.mutable_data_ptr<A>() + k * d.H * G, g_b.mutable_data_ptr<A>() + k * G,
         g_thr.mutable_data_ptr<A>() + k * d.H);
    });
  };
  if (saved.scalar_type() == ScalarType::Double) {
    run(cpu::egru_train_backward_f64, static_cast<double*>(nullptr));
  } else {
    run(cpu::active_kernels().egru_train_backward, static_cast<float*>(nullptr));
  }
  const auto total = [&](const Tensor& parts) { return n_chunks == 1 ? parts[0] : parts.sum(0); };
  return {g_gi, g_c0, g_y0, transposed_sum(g_rt), total(g_b), total(g_thr)};
}

class EgruTrain : public torch::autograd::Function<EgruTrain> {
 public:
  static tensor_list forward(AutogradContext* ctx, const Tensor& gi, const Tensor& c0, const Tensor& y0,
                             const Tensor& w_hh, const Tensor& b_hh, const Tensor& thr, double dampening,
                             double support) {
    at::AutoDispatchBelowADInplaceOrView guard;
    static auto fwd = op_handle<std::tuple<Tensor, Tensor, Tensor, Tensor>(
        const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&)>(
        "evsparse::egru_train_forward");
    auto [ys, c, events, saved] = fwd.call(gi, c0, y0, w_hh, b_hh, thr);
    ctx->save_for_backward({c0, y0, w_hh, thr, saved});
    ctx->saved_data["dampening"] = dampening;
    ctx->saved_data["support"] = support;
    return {ys, c, events};
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    static auto bwd = op_handle<std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>(
        const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
        const Tensor&, double, double)>("evsparse::egru_train_backward");
    const auto s = ctx->get_saved_variables();
    // Undefined output gradients arrive as zeros (materialised); strided ones are made contiguous.
    auto [g_gi, g_c0, g_y0, g_w, g_b, g_thr] =
        bwd.call(grads[0].contiguous(), grads[1].contiguous(), grads[2].contiguous(), s[0], s[1], s[2], s[3], s[4],
                 ctx->saved_data["dampening"].toDouble(), ctx->saved_data["support"].toDouble());
    return {g_gi, g_c0, g_y0, g_w, g_b, g_thr, Tensor(), Tensor()};
  }
};

std::tuple<Tensor, Tensor, Tensor> egru_train_autograd(const Tensor& gi, const Tensor& c0, const Tensor& y0,
                                                       const Tensor& w_hh, const Tensor& b_hh, const Tensor& thr,
                                                       double dampening, double support) {
  auto out = EgruTrain::apply(gi, c0, y0, w_hh, b_hh, thr, dampening, support);
  return {out[0], out[1], out[2]};
}

// Below autograd (no grad needed, inference_mode): the forward alone.
std::tuple<Tensor, Tensor, Tensor> egru_train_cpu(const Tensor& gi, const Tensor& c0, const Tensor& y0,
                                                  const Tensor& w_hh, const Tensor& b_hh, const Tensor& thr, double,
                                                  double) {
  auto [ys, c, events, saved] = egru_train_forward(gi, c0, y0, w_hh, b_hh, thr);
  return {ys, c, events};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(evsparse, m) {
  m.def("egru_train(Tensor gi, Tensor c0, Tensor y0, Tensor w_hh, Tensor b_hh, Tensor thr, float dampening, "
        "float support) -> (Tensor, Tensor, Tensor)");
  m.def("egru_train_forward(Tensor gi, Tensor c0, Tensor y0, Tensor w_hh, Tensor b_hh, Tensor thr) "
        "-> (Tensor, Tensor, Tensor, Tensor)");
  m.def("egru_train_backward(Tensor grad_ys, Tensor grad_c, Tensor grad_events, Tensor c0, Tensor y0, "
        "Tensor w_hh, Tensor thr, Tensor saved, float dampening, float support) "
        "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(evsparse, CPU, m) {
  m.impl("egru_train", &egru_train_cpu);
  m.impl("egru_train_forward", &egru_train_forward);
  m.impl("egru_train_backward", &egru_train_backward);
}

TORCH_LIBRARY_IMPL(evsparse, Autograd, m) { m.impl("egru_train", &egru_train_autograd); }

}  // namespace evsparse
