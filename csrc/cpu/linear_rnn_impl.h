// The elementwise parts of one sparse linear RNN step, between and after its two products. Torch-free.
// Plain loops: O(state) work next to the O(active x out) products, so no ISA variants.
#pragma once

#include <cstdint>

namespace evsparse::cpu {

// Diagonal recurrence h = a * h_prev + u. Real: all arrays [S]. Complex: h, h_prev, u are [2S] laid
// out [re(0..S) | im(0..S)], a = a_re + i a_im with a_re, a_im [S].
inline void diagonal_recurrence(const float* a_re, const float* a_im, const float* h_prev, const float* u, float* h,
                                int64_t S) {
  if (a_im == nullptr) {
    for (int64_t i = 0; i < S; ++i) h[i] = a_re[i] * h_prev[i] + u[i];
    return;
  }
  const float* pr = h_prev;
  const float* pi = h_prev + S;
  for (int64_t i = 0; i < S; ++i) {
    const float re = a_re[i] * pr[i] - a_im[i] * pi[i] + u[i];
    const float im = a_im[i] * pr[i] + a_re[i] * pi[i] + u[S + i];
    h[i] = re;
    h[S + i] = im;
  }
}

// y = max(0, v + residual) (residual may be null). The ReLU is where activity sparsity comes from:
// its exact zeros are the inputs the next layer's product skips. NaN propagates (NaN > 0 is false,
// so it is written through explicitly rather than clamped to 0).
inline void residual_relu(const float* v, const float* residual, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float s = residual != nullptr ? v[i] + residual[i] : v[i];
    y[i] = (s > 0.0f || s != s) ? s : 0.0f;
  }
}

}  // namespace evsparse::cpu
