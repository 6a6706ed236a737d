// torch.ops.evsparse.dropconnect: DropConnect on a weight, with autograd.
//
//   dropconnect(w, p, seed) -> w * mask / (1 - p)
//
// mask[i] ~ Bernoulli(1 - p), drawn per element from a hash of (seed, i) (csrc/cpu/dropconnect_impl.h):
// the same distribution and scaling as F.dropout(w, p, training=True), several times faster on the CPU,
// and the backward (grad * mask / (1 - p)) is this op applied to the gradient with the same seed.
// seed: a 0-d int64 tensor (drawn from torch's generator by evsparse.functional.dropconnect), a tensor
// so that torch.compile traces its draw. float32 and float64, CPU.
#include <torch/autograd.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>

#include "checks.h"
#include "op_utils.h"

namespace evsparse {
namespace {

using at::ScalarType;
using at::Tensor;

constexpr int64_t kDropconnectGrain = int64_t(1) << 16;  // elements per thread piece

Tensor dropconnect_cpu(const Tensor& w, double p, const Tensor& seed) {
  constexpr const char* op = "evsparse.dropconnect";
  TORCH_CHECK_VALUE(w.defined(), op, ": w is undefined");
  TORCH_CHECK_VALUE(w.device().is_cpu(), op, ": CPU only (use F.dropout on other devices), got w on ", w.device());
  TORCH_CHECK_VALUE(w.layout() == at::kStrided, op, ": w must be a strided tensor");
  TORCH_CHECK_VALUE(w.scalar_type() == ScalarType::Float || w.scalar_type() == ScalarType::Double, op,
                    ": w must be float32 or float64, got ", w.scalar_type());
  TORCH_CHECK_VALUE(std::isfinite(p) && p >= 0.0 && p <= 1.0, op, ": p must be in [0, 1], got ", p);
  TORCH_CHECK_VALUE(seed.defined() && seed.device().is_cpu() && seed.scalar_type() == ScalarType::Long &&
                        seed.numel() == 1,
                    op, ": seed must be a one-element int64 CPU tensor");
  const Tensor src = w.contiguous();
  Tensor out = at::empty_like(src, at::MemoryFormat::Contiguous);
  const uint64_t s = static_cast<uint64_t>(seed.item<int64_t>());
  const double keep = 1.0 - p;
  // keep * 2^32, below 2^32 unless nothing is dropped (p = 0 copies).
  const double below = std::floor(keep * 4294967296.0);
  const int64_t n = src.numel();
  const auto run = [&](auto* tag) {
    using A = std::remove_pointer_t<decltype(tag)>;
    const A* in = src.const_data_ptr<A>();
    A* dst = out.mutable_data_ptr<A>();
    if (p == 0.0) {
      std::copy(in, in + n, dst);
      return;
    }
    const uint32_t keep_below = static_cast<uint32_t>(below);  // < 2^32 since p > 0
    const A scale = keep > 0.0 ? static_cast<A>(1.0 / keep) : A(0);
    const auto fn = [&]() {
      if constexpr (std::is_same_v<A, double>) {
        return cpu::dropconnect_f64;
      } else {
        return cpu::active_kernels().dropconnect;
      }
    }();
    parallel_for(0, n, kDropconnectGrain, [&](int64_t i0, int64_t i1) { fn(in, dst, i0, i1, s, keep_below, scale); });
  };
  if (src.scalar_type() == ScalarType::Double) {
    run(static_cast<double*>(nullptr));
  } else {
    run(static_cast<float*>(nullptr));
  }
  return out;
}

class Dropconnect : public torch::autograd::Function<Dropconnect> {
 public:
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& w, double p, const Tensor& seed) {
    at::AutoDispatchBelowADInplaceOrView guard;
    static auto fwd = op_handle<Tensor(const Tensor&, double, const Tensor&)>("evsparse::dropconnect");
    ctx->saved_data["p"] = p;
    ctx->save_for_backward({seed});
    return fwd.call(w, p, seed);
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    static auto op = op_handle<Tensor(const Tensor&, double, const Tensor&)>("evsparse::dropconnect");
    // d(w * mask * scale) / dw = mask * scale: the same op on the gradient (differentiable again).
    const Tensor seed = ctx->get_saved_variables()[0];
    return {op.call(grads[0], ctx->saved_data["p"].toDouble(), seed), Tensor(), Tensor()};
  }
};

Tensor dropconnect_autograd(const Tensor& w, double p, const Tensor& seed) { return Dropconnect::apply(w, p, seed); }

}  // namespace

TORCH_LIBRARY_FRAGMENT(evsparse, m) {
  m.def("dropconnect(Tensor w, float p, Tensor seed) -> Tensor");
}

TORCH_LIBRARY_IMPL(evsparse, CPU, m) { m.impl("dropconnect", &dropconnect_cpu); }

TORCH_LIBRARY_IMPL(evsparse, Autograd, m) { m.impl("dropconnect", &dropconnect_autograd); }

}  // namespace evsparse
