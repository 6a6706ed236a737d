// The elementwise parts of one S5 block step (evsparse.nn.S5Block at inference), between its
// products. Torch-free. Plain loops: O(width) work next to the O(active x out) products.
#pragma once

#include <cmath>
#include <cstdint>

namespace evsparse::cpu {

// r = relu(h) on complex states laid out [re(0..S) | im(0..S)], as JAX's relu acts on a complex
// number: z is kept where Re z > 0, else both parts are zeroed (so an inactive state's column pair
// of C is skipped). NaN in Re z propagates rather than being zeroed.
inline void complex_state_relu(const float* h, float* r, int64_t S) {
  for (int64_t i = 0; i < S; ++i) {
    const float re = h[i];
    const bool keep = re > 0.0f || re != re;
    r[i] = keep ? re : 0.0f;
    r[S + i] = keep ? h[S + i] : 0.0f;
  }
}

// v += d * x (the S5 feedthrough D u, with the folded BatchNorm's scale in d).
inline void add_feedthrough(const float* d, const float* x, float* v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) v[i] += d[i] * x[i];
}

// act: 0 none, 1 ReLU (NaN propagates), 2 GELU (exact, erf: torch.nn.GELU's default).
inline void activation(int64_t act, float* v, int64_t n) {
  if (act == 1) {
    for (int64_t i = 0; i < n; ++i) v[i] = (v[i] > 0.0f || v[i] != v[i]) ? v[i] : 0.0f;
  } else if (act == 2) {
    for (int64_t i = 0; i < n; ++i) v[i] = 0.5f * v[i] * (1.0f + std::erf(v[i] * 0.70710678118654752f));
  }
}

// v *= sigmoid(g): the one-matrix GLU's gate.
inline void glu_gate(const float* g, float* v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) v[i] *= 1.0f / (1.0f + std::exp(-g[i]));
}

// v += x (the block's skip connection).
inline void add_residual(const float* x, float* v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) v[i] += x[i];
}

}  // namespace evsparse::cpu
