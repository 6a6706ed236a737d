// The Autograd kernel of the ops that have no derivative: the recurrent inference ops and the
// gradient ops of sparse_linear (whose own double backward uses ATen formulas instead).
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/autograd_not_implemented_fallback.h>
#include <torch/csrc/autograd/functions/basic_ops.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/library.h>

#include <vector>

namespace evsparse {
namespace {

using at::Tensor;

// With grad mode off or no input requiring grad (the streaming path) it only redispatches; otherwise
// the outputs get a NotImplemented node, so backward raises "derivative for evsparse::... is not
// implemented" instead of leaving every gradient None. (PyTorch's autogradNotImplementedFallback does
// the same with more bookkeeping per call: aliasing and in-place analysis these functional ops need not.)
void not_differentiable(const c10::OperatorHandle& op, c10::DispatchKeySet keys, torch::jit::Stack* stack) {
  std::vector<Tensor> needing_grad;
  if (at::GradMode::is_enabled()) {
    const size_t n = op.schema().arguments().size();
    const auto note = [&](const c10::IValue& v) {
      if (v.isTensor() && v.toTensor().requires_grad()) needing_grad.push_back(v.toTensor());
    };
    for (size_t i = stack->size() - n; i < stack->size(); ++i) {
      const c10::IValue& v = (*stack)[i];
      if (v.isList()) {
        for (const c10::IValue& e : v.toListRef()) note(e);
      } else {
        note(v);
      }
    }
  }
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    op.redispatchBoxed(keys & c10::after_ADInplaceOrView_keyset, stack);
  }
  if (needing_grad.empty()) return;
  auto node = c10::make_intrusive<torch::autograd::NotImplemented>(
      op.schema().operator_name().name, torch::autograd::collect_next_edges(needing_grad));
  const size_t m = op.schema().returns().size();
  for (size_t i = stack->size() - m; i < stack->size(); ++i) {
    const Tensor& out = (*stack)[i].toTensor();  // these ops return tensors only
    if (torch::autograd::isDifferentiableType(out.scalar_type())) torch::autograd::set_history(out, node);
  }
}

}  // namespace

TORCH_LIBRARY_IMPL(evsparse, Autograd, m) {
  // No derivative: a gradient requested through these raises "derivative ... is not implemented" (the
  // gradient ops are differentiated by sparse_linear_autograd.cpp's formulas instead; the recurrent ops
  // are inference only).
  for (const char* name : {"gather_linear_grad_weight", "sparse_gather_linear_grad_values",
                           "sparse_gather_linear_grad_input", "egru_step", "egru_sequence", "egru_stack_step",
                           "linear_rnn_step", "linear_rnn_sequence", "linear_rnn_stack_step",
                           "egru_plan_step", "linear_rnn_plan_step", "egru_plan_sequence",
                           "linear_rnn_plan_sequence", "s5_plan_step", "s5_plan_sequence", "egru_train_forward",
                           "egru_train_backward"}) {
    m.impl(name, torch::CppFunction::makeFromBoxedFunction<&not_differentiable>());
  }
  // The in-place plan steps: PyTorch's full fallback, which also refuses a mutated input that requires
  // grad and bumps the mutated tensors' versions (ADInplaceOrView below). Under inference_mode, where
  // streams run, neither key is visited.
  for (const char* name : {"egru_plan_step_", "linear_rnn_plan_step_", "s5_plan_step_"}) {
    m.impl(name, torch::autograd::autogradNotImplementedFallback());
  }
}

TORCH_LIBRARY_IMPL(evsparse, ADInplaceOrView, m) {
  for (const char* name : {"egru_plan_step_", "linear_rnn_plan_step_", "s5_plan_step_"}) {
    m.impl(name, torch::autograd::autogradNotImplementedInplaceOrViewFallback());
  }
}

}  // namespace evsparse
