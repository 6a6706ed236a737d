// The EGRU cell update after the two products, shared by every ISA (included by gather_table.inc).
// Plain branch-free loops over float arrays that the compiler vectorises with the ISA's flags; the
// exponential is a Cephes-style range reduction + polynomial so it vectorises (std::exp does not).
#pragma once

#include <cstdint>
#include <cstring>

namespace evsparse::cpu {
namespace {  // internal linkage, see simd.h
namespace impl {

// exp(x) for float, relative error ~2e-7 on [-87, 88]; saturates outside.
inline float exp_approx(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float kf = __builtin_floorf(x * 1.44269504088896341f + 0.5f);
  float r = x - kf * 0.693359375f;  // ln2 split in hi + lo for an exact reduction
  r = r + kf * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(kf) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

inline float sigmoid_approx(float x) { return 1.0f / (1.0f + exp_approx(-x)); }
inline float tanh_approx(float x) { return 2.0f / (1.0f + exp_approx(-2.0f * x)) - 1.0f; }

// gi, gh: [3H] input and recurrent pre-activations (products + biases), gate blocks [z, r, g].
// Writes the new cell state and the event output; thr is clamped to [0, 1] here.
inline void egru_update(const float* __restrict gi, const float* __restrict gh, const float* __restrict thr,
                        const float* __restrict c_prev, float* __restrict c_out, float* __restrict y_out,
                        int64_t H) {
  for (int64_t h = 0; h < H; ++h) {
    const float z = sigmoid_approx(gi[h] + gh[h]);
    const float r = sigmoid_approx(gi[H + h] + gh[H + h]);
    const float g = tanh_approx(gi[2 * H + h] + r * gh[2 * H + h]);
    const float c_tilde = z * c_prev[h] + (1.0f - z) * g;
    const float t = thr[h] < 0.0f ? 0.0f : (thr[h] > 1.0f ? 1.0f : thr[h]);
    const float o = (c_tilde - t) > 0.0f ? 1.0f : 0.0f;  // Heaviside, 0 at equality
    y_out[h] = o * c_tilde;
    c_out[h] = c_tilde - o * t;
  }
}

}  // namespace impl
}  // namespace
}  // namespace evsparse::cpu
