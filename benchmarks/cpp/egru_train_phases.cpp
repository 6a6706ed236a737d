// Per-phase timing of the EGRU training kernels (csrc/cpu/egru_train_impl.h) on one thread, for one
// chunk of batch rows as the op gives each thread: where the backward's time goes (the cell, dR^T over
// the active units, dy_{t-1} = R^T dgh over the needed ones). Random weights; thr sets the activity.
// Usage: egru_train_phases [T B H thr support]   (default 35 16 384 0.3: one thread's half of PTB-small's layer 1)
#ifndef EVSPARSE_ISA_AVX512
#define EVSPARSE_ISA_AVX2 1
#endif
#define EVSPARSE_TRAIN_PROFILE 1
#include <cstdio>
#include <cstdlib>
#include <random>

#include "cpu/egru_train_impl.h"

using namespace evsparse::cpu;

int main(int argc, char** argv) {
  const int64_t T = argc > 1 ? std::atoll(argv[1]) : 35, B = argc > 2 ? std::atoll(argv[2]) : 16,
                H = argc > 3 ? std::atoll(argv[3]) : 384;
  const float th = argc > 4 ? std::atof(argv[4]) : 0.3f;
  const float support = argc > 5 ? std::atof(argv[5]) : 1.0f;  // the surrogate's: larger, fewer dy needed
  const int64_t G = 3 * H;
  std::mt19937 rng(0);
  std::normal_distribution<float> nd(0, 1);
  std::uniform_real_distribution<float> ud(-0.05f, 0.05f);
  std::vector<float> gi(T * B * G), c0(B * H, 0), y0(B * H, 0), rt(H * G), bhh(G), thr(H, th), ys(T * B * H),
      c(B * H), ev(B * H), saved(T * B * 5 * H), gy(T * B * H), gc(B * H, 0), gev(B * H, 0), ggi(T * B * G),
      gc0(B * H), gy0(B * H), grt(H * G), gb(G), gthr(H);
  for (auto& v : gi) v = nd(rng);
  for (auto& v : rt) v = ud(rng);
  std::vector<float> w(G * H);  // w_hh [3H, H], the backward's form of the same weight
  for (int64_t j = 0; j < H; ++j)
    for (int64_t i = 0; i < G; ++i) w[i * H + j] = rt[j * G + i];
  for (auto& v : bhh) v = ud(rng);
  for (auto& v : gy) v = nd(rng);
  std::printf("T=%lld B=%lld H=%lld thr=%.2f, one thread, %s\n", (long long)T, (long long)B, (long long)H, th,
              FloatVec::W == 16 ? "AVX-512" : "AVX2");
  for (int rep = 0; rep < 7; ++rep) {
    for (auto& p : g_prof) p = 0;
    const auto t0 = std::chrono::steady_clock::now();
    impl::egru_train_forward<FloatVec, float>(gi.data(), c0.data(), y0.data(), rt.data(), bhh.data(), thr.data(), T,
                                              B, H, 0, B, ys.data(), c.data(), ev.data(), saved.data());
    const auto t1 = std::chrono::steady_clock::now();
    const int64_t n = impl::egru_train_backward<FloatVec, float>(
        gy.data(), gc.data(), gev.data(), c0.data(), y0.data(), w.data(), rt.data(), thr.data(), saved.data(), 0.7f, support, T,
        B, H, 0, B, ggi.data(), gc0.data(), gy0.data(), grt.data(), gb.data(), gthr.data());
    const auto t2 = std::chrono::steady_clock::now();
    int64_t act = 0;
    for (float v : ys) act += v != 0;
    std::printf("forward %.2f ms (R y %.2f + cell %.2f)  backward %.2f ms = cell %.2f + need %.2f + dR^T %.2f (its row lists %.2f) + dy %.2f  |  activity %.3f, "
                "dy needed %.3f\n",
                std::chrono::duration<double>(t1 - t0).count() * 1e3, g_prof[5] * 1e3, g_prof[6] * 1e3,
                std::chrono::duration<double>(t2 - t1).count() * 1e3,
                g_prof[0] * 1e3, g_prof[1] * 1e3, (g_prof[2] + g_prof[4]) * 1e3, g_prof[4] * 1e3, g_prof[3] * 1e3, double(act) / ys.size(),
                double(n) / (T * B * H));
  }
}
