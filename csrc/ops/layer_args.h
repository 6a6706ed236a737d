// Argument checks shared by the fused recurrent-layer ops (egru_ops.cpp, linear_rnn_ops.cpp): a packed
// weight given as (values, col_ptr?, row_idx?), float32 vectors and [B, n] states.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <ATen/core/List.h>

#include "packed_product.h"

namespace evsparse {

// The weight arguments of one layer of the fused recurrent ops, in schema order (after the input
// and the state); a stack-step op's Tensor?[] list holds them for every layer in turn. Python states
// the same as EGRU_LAYER_ARGS / LINEAR_RNN_LAYER_ARGS (python/evsparse/_contract.py; compared by
// tests/test_contract.py). true = required (not Optional in the one-layer op's schema).
inline const std::vector<bool>& egru_layer_args() {
  static const std::vector<bool> required{true, false, false, true, false, false, true, true, true};
  return required;
}
inline const std::vector<bool>& linear_rnn_layer_args() {
  static const std::vector<bool> required{true, false, false, true, true, false, true, false, false, true};
  return required;
}

inline PackedArgs packed_args(const char* op, const char* name, const Tensor& values, const std::optional<Tensor>& col_ptr,
                       const std::optional<Tensor>& row_idx, int64_t in, int64_t out, const Tensor& like) {
  const bool sparse = col_ptr.has_value() && col_ptr->defined();
  TORCH_CHECK_VALUE(sparse == (row_idx.has_value() && row_idx->defined()), op, ": ", name,
                    " needs both col_ptr and row_idx (sparse layout) or neither (dense layout)");
  TORCH_CHECK_VALUE(values.scalar_type() == ScalarType::Float || is_half(values.scalar_type()), op, ": ", name,
                    " must be float32, float16 or bfloat16, got ", values.scalar_type());
  if (!sparse) {
    check_tensor(values, op, name, like);
    TORCH_CHECK_VALUE(values.dim() == 2 && values.size(0) == in && values.size(1) == out, op, ": ", name,
                      " (dense layout) must have shape [", in, ", ", out, "], got ", values.sizes());
    return PackedArgs{values, nullptr, nullptr, in, out, name};
  }
  check_csc(op, like, *col_ptr, *row_idx, &values, out);
  TORCH_CHECK_VALUE(col_ptr->size(0) == in + 1, op, ": ", name, " col_ptr must have ", in + 1, " entries, got ",
                    col_ptr->size(0));
  return PackedArgs{values, &*col_ptr, &*row_idx, in, out, name};
}

inline void check_vector(const char* op, const char* name, const Tensor& t, int64_t n, const Tensor& like) {
  check_tensor(t, op, name, like);
  TORCH_CHECK_VALUE(t.scalar_type() == ScalarType::Float, op, ": ", name, " must be float32, got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.dim() == 1 && t.size(0) == n, op, ": ", name, " must have shape [", n, "], got ", t.sizes());
}

inline void check_state(const char* op, const char* name, const Tensor& t, int64_t B, int64_t H, const Tensor& like) {
  check_tensor(t, op, name, like);
  TORCH_CHECK_VALUE(t.scalar_type() == ScalarType::Float, op, ": ", name, " must be float32, got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.dim() == 2 && t.size(0) == B && t.size(1) == H, op, ": ", name, " must have shape [", B, ", ",
                    H, "], got ", t.sizes());
}

inline void check_input(const char* op, const Tensor& x, int64_t expected_dim) {
  TORCH_CHECK_VALUE(x.dim() == expected_dim, op, ": x must be ", expected_dim, "-D, got shape ", x.sizes());
  check_tensor(x, op, "x", x);
  TORCH_CHECK_VALUE(x.device().is_cpu(), op, ": this build has CPU kernels only, got x on ", x.device());
  TORCH_CHECK_VALUE(x.scalar_type() == ScalarType::Float, op, ": x must be float32, got ", x.scalar_type());
}

// The per-layer arguments of a stack op (``Tensor?[] layers``: per layer, the weight arguments of the
// one-layer op in its order), as a vector that outlives the PackedArgs referring into it. Checks the
// count and that every required (non-optional in the one-layer op) entry is given.
inline std::vector<std::optional<Tensor>> stack_args(const char* op, const c10::List<std::optional<Tensor>>& layers,
                                                     int64_t num_layers, const std::vector<bool>& required) {
  const auto per_layer = static_cast<int64_t>(required.size());
  TORCH_CHECK_VALUE(static_cast<int64_t>(layers.size()) == num_layers * per_layer, op, ": layers must hold ",
                    per_layer, " entries per layer (", num_layers, " layers, from the state), got ", layers.size());
  std::vector<std::optional<Tensor>> args = layers.vec();
  for (int64_t i = 0; i < static_cast<int64_t>(args.size()); ++i) {
    TORCH_CHECK_VALUE(!required[i % per_layer] || (args[i].has_value() && args[i]->defined()), op,
                      ": layers entry ", i, " (layer ", i / per_layer, ", argument ", i % per_layer,
                      ") is required, got None");
  }
  return args;
}

inline void check_stacked_state(const char* op, const char* name, const Tensor& t, int64_t B, int64_t H,
                                const Tensor& like) {
  check_tensor(t, op, name, like);
  TORCH_CHECK_VALUE(t.scalar_type() == ScalarType::Float, op, ": ", name, " must be float32, got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.dim() == 3 && t.size(0) >= 1 && t.size(1) == B, op, ": ", name,
                    " must have shape [num_layers >= 1, ", B, ", width], got ", t.sizes());
  TORCH_CHECK_VALUE(H < 0 || t.size(2) == H, op, ": ", name, " must have width ", H, ", got ", t.sizes());
}

// Runs fn() for layer k of a stack op, so that a ValueError from the one-layer checks (which do not
// know the layer) names it. Free unless it throws.
template <class Fn>
void for_layer(const char* op, int64_t k, const Fn& fn) {
  try {
    fn();
  } catch (const c10::ValueError& e) {
    std::string msg = e.what_without_backtrace();
    const std::string prefix = std::string(op) + ": ";
    if (msg.rfind(prefix, 0) == 0) msg.erase(0, prefix.size());  // the op's name is said once
    TORCH_CHECK_VALUE(false, op, ": layer ", k, ": ", msg);
  }
}

struct StackDims {
  int64_t batch, num_layers, width;
};

// The stack ops' common start: x [B, in] and the first stacked state [L, B, width], checked against
// each other; the sizes the rest of the op checks its other arguments against.
inline StackDims check_stack_input(const char* op, const Tensor& x, const char* state_name, const Tensor& state) {
  check_input(op, x, 2);
  check_stacked_state(op, state_name, state, x.size(0), -1, x);
  return {x.size(0), state.size(0), state.size(2)};
}

}  // namespace evsparse
