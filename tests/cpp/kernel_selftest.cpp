// Self-test of the torch-free kernel core: every compiled-in and CPU-supported instruction set
// against a naive reference, for dense- and sparse-gather, float32/float16/bfloat16 weights, int16
// and int32 row indices, odd sizes and output slices. Needs no torch, so it also runs on other
// architectures (scripts/test_aarch64.sh cross-compiles it and runs it under qemu for NEON).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "cpu/kernels.h"
#include "cpu/threading_policy.h"

using namespace evsparse::cpu;

namespace {

uint64_t rng_state = 0x9e3779b97f4a7c15ull;
uint32_t next_u32() {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return static_cast<uint32_t>(rng_state >> 16);
}
float uniform() { return (next_u32() & 0xffffff) / float(0x1000000); }

uint16_t float_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return static_cast<uint16_t>(u >> 16);  // truncation: any bf16 value will do for a test
}
uint16_t float_to_f16(float f) {  // small normal values only (the test's range)
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const int32_t exp = int32_t((u >> 23) & 0xff) - 127 + 15;
  if (exp <= 0) return static_cast<uint16_t>(sign);
  return static_cast<uint16_t>(sign | (uint32_t(exp) << 10) | ((u >> 13) & 0x3ffu));
}

template <class W> W make_weight(float v);
template <> float make_weight<float>(float v) { return v; }
template <> f16 make_weight<f16>(float v) { return f16{float_to_f16(v)}; }
template <> bf16 make_weight<bf16>(float v) { return bf16{float_to_bf16(v)}; }
// int8: the quantised integer itself (the kernels never see the scale; the op layer folds it into x).
template <> int8_t make_weight<int8_t>(float v) { return static_cast<int8_t>(std::lround(v * 127.f)); }

int failures = 0;

void check(bool ok, const char* what, const char* isa, int trial) {
  if (!ok) {
    std::printf("FAIL %s isa=%s trial=%d\n", what, isa, trial);
    ++failures;
  }
}

template <class W, class I>
void run_trials(const KernelTable& table) {
  for (int trial = 0; trial < 60; ++trial) {
    const int64_t in = 1 + next_u32() % 70, out = 1 + next_u32() % 150;
    const float density = uniform(), activity = uniform();
    // Dense [in, out] transposed weight, with zeros where "pruned".
    std::vector<W> wt(static_cast<size_t>(in * out));
    std::vector<float> wref(static_cast<size_t>(in * out));
    for (int64_t k = 0; k < in * out; ++k) {
      const float v = uniform() < density ? uniform() * 2 - 1 : 0.f;
      wt[k] = make_weight<W>(v);
      wref[k] = to_float(wt[k]);
    }
    // CSC of W = rows of wt.
    std::vector<int64_t> col_ptr(static_cast<size_t>(in + 1), 0);
    std::vector<I> rows;
    std::vector<W> vals;
    for (int64_t j = 0; j < in; ++j) {
      for (int64_t o = 0; o < out; ++o) {
        if (wref[j * out + o] != 0.f) {
          rows.push_back(static_cast<I>(o));
          vals.push_back(wt[j * out + o]);
        }
      }
      col_ptr[j + 1] = static_cast<int64_t>(rows.size());
    }
    std::vector<float> x(static_cast<size_t>(in)), bias(static_cast<size_t>(out));
    for (auto& v : x) v = uniform() < activity ? uniform() * 2 - 1 : 0.f;
    for (auto& v : bias) v = uniform();
    std::vector<int32_t> idx(static_cast<size_t>(in));
    std::vector<float> xv(static_cast<size_t>(in));
    const int64_t na = compact_active(x.data(), in, idx.data(), xv.data());
    std::vector<double> ref(static_cast<size_t>(out));
    for (int64_t o = 0; o < out; ++o) {
      double s = bias[o];
      for (int64_t j = 0; j < in; ++j) s += double(x[j]) * wref[j * out + o];
      ref[o] = s;
    }
    // Whole output, and two slices with a boundary that is not a multiple of any vector width.
    const int64_t cut = out / 3;
    const int64_t slices[3][2] = {{0, out}, {0, cut}, {cut, out}};
    for (int s = 0; s < 3; ++s) {
      const int64_t o0 = slices[s][0], o1 = slices[s][1];
      if (s > 0 && cut == 0) continue;
      std::vector<float> yd(static_cast<size_t>(out), -7.f), ys(static_cast<size_t>(out), -7.f);
      table.dense(wt.data())(xv.data(), idx.data(), na, wt.data(), out, bias.data(), yd.data(), o0, o1);
      const int64_t skipped = table.sparse(rows.data(), vals.data())(
          xv.data(), idx.data(), na, col_ptr.data(), rows.data(), vals.data(), bias.data(), ys.data(), o0, o1, out);
      check(skipped == 0, "sparse_gather (valid structure reported bad)", table.name, trial);
      bool dense_ok = true, sparse_ok = true;
      for (int64_t o = 0; o < out; ++o) {
        const bool inside = o >= o0 && o < o1;
        const double tol = 1e-4 * (1 + std::fabs(ref[o])) * (1 + in / 8.0);
        if (inside) {
          dense_ok &= std::fabs(yd[o] - ref[o]) <= tol;
          sparse_ok &= std::fabs(ys[o] - ref[o]) <= tol;
        } else {  // outside the slice nothing is written
          dense_ok &= yd[o] == -7.f;
          sparse_ok &= ys[o] == -7.f;
        }
      }
      check(dense_ok, "dense_gather", table.name, trial);
      check(sparse_ok, "sparse_gather", table.name, trial);
    }
  }
}

// Corrupted structures: random row indices anywhere in I's range and unsorted columns, whole output
// and a slice. The kernel must write nothing outside [o0, o1) (guard values around y), and for the
// whole output must report (return > 0) every structure with an index outside [0, out).
template <class I>
void run_corruption_trials(const KernelTable& table) {
  for (int trial = 0; trial < 200; ++trial) {
    const int64_t in = 1 + next_u32() % 40, out = 1 + next_u32() % 120;
    std::vector<int64_t> col_ptr(static_cast<size_t>(in + 1), 0);
    std::vector<I> rows;
    for (int64_t j = 0; j < in; ++j) {
      for (int64_t o = 0; o < out; ++o) {
        if (uniform() < 0.4f) rows.push_back(static_cast<I>(o));
      }
      col_ptr[j + 1] = static_cast<int64_t>(rows.size());
    }
    if (rows.empty()) continue;
    const int64_t nnz = static_cast<int64_t>(rows.size());
    bool outside = false;
    for (int e = 0, n = 1 + int(next_u32() % 4); e < n; ++e) {
      const size_t k = next_u32() % rows.size();
      if (next_u32() % 3 == 0) {  // swap: unsorted but in range
        std::swap(rows[k], rows[next_u32() % rows.size()]);
      } else {
        const int64_t lo = sizeof(I) == 2 ? -32768 : -2147483647 - 1, hi = sizeof(I) == 2 ? 32767 : 2147483647;
        const int64_t v = next_u32() % 2 ? lo + int64_t(next_u32() % uint32_t(hi - lo)) : out + int64_t(next_u32() % 3);
        rows[k] = static_cast<I>(v);
      }
    }
    for (I r : rows) outside |= int64_t(r) < 0 || int64_t(r) >= out;
    std::vector<float> vals(static_cast<size_t>(nnz), 1.f), x(static_cast<size_t>(in), 1.f);
    std::vector<int32_t> idx(static_cast<size_t>(in));
    std::vector<float> xv(static_cast<size_t>(in));
    const int64_t na = compact_active(x.data(), in, idx.data(), xv.data());
    const int64_t cut = out / 2;
    const int64_t slices[2][2] = {{0, out}, {cut, out}};
    for (int s = 0; s < 2; ++s) {
      const int64_t o0 = slices[s][0], o1 = slices[s][1];
      constexpr int64_t kGuard = 64;
      std::vector<float> buf(static_cast<size_t>(out + 2 * kGuard), -7.f);
      float* y = buf.data() + kGuard;
      const int64_t skipped = table.sparse(rows.data(), vals.data())(xv.data(), idx.data(), na, col_ptr.data(),
                                                                     rows.data(), vals.data(), nullptr, y, o0, o1, out);
      bool guards_ok = true;
      for (int64_t o = -kGuard; o < out + kGuard; ++o) {
        if (o < o0 || o >= o1) guards_ok &= y[o] == -7.f;
      }
      check(guards_ok, "sparse_gather corrupted: wrote outside its slice", table.name, trial);
      // The whole output (how the ops call it) walks every entry, so every bad one is seen; a slice's
      // binary search assumes sorted columns and may step over an unsorted bad entry (never writing it).
      if (s == 0) check(!outside || skipped > 0, "sparse_gather corrupted: bad index not reported", table.name, trial);
    }
  }
}

// The EGRU training recurrence: each ISA's float kernels against the float64 ones (the same
// algorithm in double, libm nonlinearities), the batch split in two row ranges as two threads would
// take it (their weight-gradient shares summed), random sizes with SIMD tails.
void run_egru_train_trials(const KernelTable& table) {
  int compared = 0;
  for (int trial = 0; trial < 40; ++trial) {
    // H up to 80: every register block of dy = dgh W (AVX-512's 64 units, AVX2's 16), vectors, tails.
    const int64_t T = next_u32() % 12, B = 1 + next_u32() % 8, H = 1 + next_u32() % 80, G = 3 * H;
    const int64_t split = next_u32() % (B + 1);
    // A wide and a narrow surrogate: most dy entries needed (the dense dy) or few (the sparse one).
    const double support = trial % 2 == 0 ? 1.0 : 8.0;
    const float act = uniform();
    std::vector<double> gi(T * B * G), c0(B * H), y0(B * H), rt(H * G), bhh(G), thr(H), gy(T * B * H), gc(B * H),
        gev(B * H);
    for (auto& v : gi) v = 4 * uniform() - 2;
    for (auto& v : c0) v = uniform() - 0.5;
    for (auto& v : y0) v = uniform() < act ? uniform() : 0.0;
    for (auto& v : rt) v = uniform() < 0.6 ? uniform() - 0.5 : 0.0;
    for (auto& v : bhh) v = uniform() - 0.5;
    for (auto& v : thr) v = 1.4 * uniform() - 0.2;  // outside [0, 1] too: the clamp
    for (auto& v : gy) v = uniform() - 0.5;
    for (auto& v : gc) v = uniform() - 0.5;
    for (auto& v : gev) v = uniform() - 0.5;
    const auto f32 = [](const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); };
    // Both precisions from the float-rounded inputs, so only the arithmetic differs.
    const auto round = [&](std::vector<double>& v) { for (auto& x : v) x = static_cast<float>(x); };
    for (auto* v : {&gi, &c0, &y0, &rt, &bhh, &thr, &gy, &gc, &gev}) round(*v);
    std::vector<double> w(G * H);  // w_hh [3H, H], the backward's form of the weight (rt = w^T)
    for (int64_t j = 0; j < H; ++j) {
      for (int64_t i = 0; i < G; ++i) w[i * H + j] = rt[j * G + i];
    }
    std::vector<double> ys(T * B * H), c(B * H), ev(B * H), sv(T * B * 5 * H), ggi(T * B * G), gc0(B * H), gy0(B * H),
        grt(H * G, 0.0), gb(G, 0.0), gthr(H, 0.0);
    std::vector<float> ys_f(ys.size()), c_f(c.size()), ev_f(ev.size()), sv_f(sv.size()), ggi_f(ggi.size()),
        gc0_f(gc0.size()), gy0_f(gy0.size()), grt_f(grt.size(), 0.f), gb_f(G, 0.f), gthr_f(H, 0.f);
    const auto gi_f = f32(gi), c0_f = f32(c0), y0_f = f32(y0), rt_f = f32(rt), bhh_f = f32(bhh), thr_f = f32(thr),
               gy_f = f32(gy), gc_f = f32(gc), gev_f = f32(gev), w_f = f32(w);
    for (auto [b0, b1] : {std::pair<int64_t, int64_t>{0, split}, {split, B}}) {
      egru_train_forward_f64(gi.data(), c0.data(), y0.data(), rt.data(), bhh.data(), thr.data(), T, B, H, b0, b1,
                             ys.data(), c.data(), ev.data(), sv.data());
      egru_train_backward_f64(gy.data(), gc.data(), gev.data(), c0.data(), y0.data(), w.data(), rt.data(), thr.data(),
                              sv.data(),
                              0.7, support, T, B, H, b0, b1, ggi.data(), gc0.data(), gy0.data(), grt.data(), gb.data(),
                              gthr.data());
      table.egru_train_forward(gi_f.data(), c0_f.data(), y0_f.data(), rt_f.data(), bhh_f.data(), thr_f.data(), T, B, H,
                               b0, b1, ys_f.data(), c_f.data(), ev_f.data(), sv_f.data());
      table.egru_train_backward(gy_f.data(), gc_f.data(), gev_f.data(), c0_f.data(), y0_f.data(), w_f.data(), rt_f.data(),
                                thr_f.data(), sv_f.data(), 0.7f, static_cast<float>(support), T, B, H, b0, b1, ggi_f.data(), gc0_f.data(),
                                gy0_f.data(), grt_f.data(), gb_f.data(), gthr_f.data());
    }
    // A unit whose c~ lies within rounding of its threshold may fire in one precision only; such a
    // trial is skipped (rare), not counted as a failure.
    bool borderline = false;
    for (int64_t k = 0; k < T * B; ++k) {
      for (int64_t h = 0; h < H; ++h) {
        const double v = sv[k * 5 * H + 4 * H + h] - std::min(1.0, std::max(0.0, thr[h]));
        borderline |= std::fabs(v) < 1e-4;
      }
    }
    if (borderline) continue;
    ++compared;
    const auto close = [](const std::vector<float>& a, const std::vector<double>& b, double tol) {
      for (size_t i = 0; i < a.size(); ++i) {
        if (!(std::fabs(a[i] - b[i]) <= tol * (1.0 + std::fabs(b[i])))) return false;
      }
      return true;
    };
    check(close(ys_f, ys, 1e-5) && close(c_f, c, 1e-5) && close(ev_f, ev, 0) && close(sv_f, sv, 1e-5),
          "egru_train forward", table.name, trial);
    check(close(ggi_f, ggi, 1e-4) && close(gc0_f, gc0, 1e-4) && close(gy0_f, gy0, 1e-4) && close(grt_f, grt, 1e-4) &&
              close(gb_f, gb, 1e-4) && close(gthr_f, gthr, 1e-4),
          "egru_train backward", table.name, trial);
  }
  check(compared >= 30, "egru_train: too many borderline trials skipped", table.name, compared);
}

// A random input of in features at the given activity (a NaN in every tenth trial), compacted as the op
// layer compacts it, and a bias of out: what the bitmask and block trials feed both kernels they compare.
struct ActiveInput {
  std::vector<float> bias, xv;
  std::vector<int32_t> idx;
  int64_t na;
};
ActiveInput make_active_input(int64_t in, int64_t out, float activity, int trial) {
  std::vector<float> x(static_cast<size_t>(in));
  ActiveInput r{std::vector<float>(static_cast<size_t>(out)), std::vector<float>(static_cast<size_t>(in)),
                std::vector<int32_t>(static_cast<size_t>(in)), 0};
  for (auto& v : x) v = uniform() < activity ? uniform() * 2 - 1 : 0.f;
  if (trial % 10 == 3) x[next_u32() % in] = NAN;
  for (auto& v : r.bias) v = uniform();
  r.na = compact_active(x.data(), in, r.idx.data(), r.xv.data());
  return r;
}

// Bitmask-gather (float32 values) against the CSC sparse-gather on the same structure: random sizes
// with 16-row tails, densities and activities, a non-finite input now and then (the CSC path per
// column); and col_ptr changed after the masks were derived (a column whose count disagrees is
// skipped and counted), and mask bits past the output, which are never stored (guard values after y).
// The 16 floats past y[out) of a -7-filled output still -7: the kernel stored nothing past the output
// (the bitmask's and the block path's vector stores are the ones that could).
bool tail_guard_intact(const std::vector<float>& y, int64_t out) {
  bool ok = true;
  for (int64_t o = out; o < out + 16; ++o) ok &= y[o] == -7.f;
  return ok;
}

template <class I>
void run_bitmask_trials(const KernelTable& table) {
  for (int trial = 0; trial < 120; ++trial) {
    const int64_t in = 1 + next_u32() % 60, out = 1 + next_u32() % 200, nb = (out + 15) / 16;
    const float density = uniform(), activity = uniform();
    std::vector<int64_t> col_ptr(static_cast<size_t>(in + 1), 0), counts(static_cast<size_t>(in));
    std::vector<I> rows;
    std::vector<float> vals;
    std::vector<uint16_t> masks(static_cast<size_t>(in * nb), 0);
    for (int64_t j = 0; j < in; ++j) {
      for (int64_t o = 0; o < out; ++o) {
        if (uniform() < density) {
          rows.push_back(static_cast<I>(o));
          vals.push_back(uniform() * 2 - 1);
          masks[j * nb + o / 16] |= uint16_t(1u << (o % 16));
        }
      }
      col_ptr[j + 1] = static_cast<int64_t>(rows.size());
      counts[j] = col_ptr[j + 1] - col_ptr[j];
    }
    const ActiveInput inp = make_active_input(in, out, activity, trial);
    const std::vector<float>& bias = inp.bias;
    const std::vector<int32_t>& idx = inp.idx;
    const std::vector<float>& xv = inp.xv;
    const int64_t na = inp.na;
    std::vector<float> ys(static_cast<size_t>(out)), yb(static_cast<size_t>(out + 16), -7.f);
    const auto run = [&](const std::vector<int64_t>& cp, const std::vector<uint16_t>& m) {
      std::fill(yb.begin(), yb.end(), -7.f);
      return table.bitmask(rows.data())(xv.data(), idx.data(), na, cp.data(), rows.data(), m.data(), counts.data(), nb,
                                        vals.data(), bias.data(), yb.data(), out);
    };
    table.sparse(rows.data(), vals.data())(xv.data(), idx.data(), na, col_ptr.data(), rows.data(), vals.data(),
                                           bias.data(), ys.data(), 0, out, out);
    bool ok = run(col_ptr, masks) == 0 && tail_guard_intact(yb, out);
    for (int64_t o = 0; o < out; ++o) {
      const bool both_nan = std::isnan(ys[o]) && std::isnan(yb[o]);
      ok &= both_nan || std::fabs(ys[o] - yb[o]) <= 1e-5f * (1 + std::fabs(ys[o])) * (1 + in / 8.f);
    }
    check(ok, "bitmask_gather against sparse_gather", table.name, trial);
    if (na == 0 || !std::isfinite(xv[0])) continue;
    const int64_t j = idx[0];
    // col_ptr moved under the masks: column j's count now disagrees (and so may its neighbour's).
    if (counts[j] > 0) {
      std::vector<int64_t> cp2 = col_ptr;
      cp2[j + 1] -= 1;
      const int64_t bad = run(cp2, masks);
      check(bad >= counts[j] - 1 && tail_guard_intact(yb, out), "bitmask_gather: a column whose count moved not skipped",
            table.name, trial);
    }
    // A bit past the output in the last block instead of a valid one (the count kept): nothing past y.
    const int tail_rows = int(out - 16 * (nb - 1));
    std::vector<uint16_t> m2 = masks;
    uint16_t& last = m2[j * nb + nb - 1];
    if (tail_rows < 16 && (last & 1u)) {
      last = uint16_t((last & ~1u) | (1u << 15));
      run(col_ptr, m2);
      check(tail_guard_intact(yb, out), "bitmask_gather: a mask bit past the output was stored", table.name, trial);
    }
  }
}

// Block-gather against the same ISA's sparse-gather on the same structure, bit for bit: columns of
// whole 16x1 blocks (the last one shorter when out % 16 != 0), some columns not blocked, a non-finite
// input now and then; and the structure changed after the index was derived (a column's last row, a
// misaligned first row, a count moved by col_ptr): skipped and counted, nothing written past y.
template <class W, class I>
void run_block_trials(const KernelTable& table) {
  for (int trial = 0; trial < 120; ++trial) {
    const int64_t in = 1 + next_u32() % 50, out = 1 + next_u32() % 300, nb = (out + 15) / 16;
    const float density = uniform(), activity = uniform();
    std::vector<int64_t> col_ptr(static_cast<size_t>(in + 1), 0);
    std::vector<I> rows;
    std::vector<W> vals;
    std::vector<uint8_t> blocked(static_cast<size_t>(in), 1);
    std::vector<int64_t> bptr(static_cast<size_t>(in + 1), 0);
    std::vector<int32_t> starts;
    for (int64_t j = 0; j < in; ++j) {
      const bool unblocked = next_u32() % 5 == 0;
      blocked[j] = unblocked ? 0 : 1;
      for (int64_t b = 0; b < nb; ++b) {
        if (unblocked) {
          for (int64_t o = 16 * b; o < std::min<int64_t>(out, 16 * b + 16); ++o) {
            if (uniform() < density) {
              rows.push_back(static_cast<I>(o));
              vals.push_back(make_weight<W>(uniform() * 2 - 1));
            }
          }
        } else if (uniform() < density) {
          starts.push_back(static_cast<int32_t>(16 * b));
          for (int64_t o = 16 * b; o < std::min<int64_t>(out, 16 * b + 16); ++o) {
            rows.push_back(static_cast<I>(o));
            vals.push_back(make_weight<W>(uniform() * 2 - 1));
          }
        }
      }
      col_ptr[j + 1] = static_cast<int64_t>(rows.size());
      bptr[j + 1] = static_cast<int64_t>(starts.size());
    }
    const BlockIndex bx{blocked.data(), bptr.data(), starts.data()};
    const ActiveInput inp = make_active_input(in, out, activity, trial);
    const std::vector<float>& bias = inp.bias;
    const std::vector<int32_t>& idx = inp.idx;
    const std::vector<float>& xv = inp.xv;
    const int64_t na = inp.na;
    std::vector<float> ys(static_cast<size_t>(out)), yb(static_cast<size_t>(out + 16), -7.f);
    const auto run = [&](const std::vector<I>& r, const std::vector<int64_t>& cp) {
      std::fill(yb.begin(), yb.end(), -7.f);
      return table.block(r.data(), vals.data())(xv.data(), idx.data(), na, cp.data(), r.data(), vals.data(), bx,
                                                bias.data(), yb.data(), out);
    };
    table.sparse(rows.data(), vals.data())(xv.data(), idx.data(), na, col_ptr.data(), rows.data(), vals.data(),
                                           bias.data(), ys.data(), 0, out, out);
    bool ok = run(rows, col_ptr) == 0 && tail_guard_intact(yb, out);
    for (int64_t o = 0; o < out; ++o) {
      ok &= (std::isnan(ys[o]) && std::isnan(yb[o])) || std::memcmp(&ys[o], &yb[o], sizeof(float)) == 0;
    }
    check(ok, "block_gather against sparse_gather (bits)", table.name, trial);
    // A changed structure under the flags: the first active, finite, blocked column with a block.
    for (int64_t a = 0; a < na; ++a) {
      const int64_t j = idx[a], k0 = col_ptr[j], k1 = col_ptr[j + 1];
      if (!blocked[j] || k1 == k0 || !std::isfinite(xv[a])) continue;
      for (int edit = 0; edit < 3; ++edit) {
        std::vector<I> r2 = rows;
        std::vector<int64_t> cp2 = col_ptr;
        if (edit == 0) {
          r2[k1 - 1] = static_cast<I>(r2[k1 - 1] - 1);  // the column's last row
        } else if (edit == 1) {
          r2[k0] = static_cast<I>(r2[k0] + 1);  // a misaligned first row
        } else if (k1 - k0 >= 2) {
          cp2[j + 1] -= 1;  // one entry fewer (the next column one more); (emptied, it is just empty)
        } else {
          continue;
        }
        const int64_t bad = run(r2, cp2);
        check(bad > 0 && tail_guard_intact(yb, out), "block_gather: a changed column not refused", table.name, trial);
      }
      break;
    }
  }
}

// DropConnect: every ISA's float kernel draws exactly the scalar table's mask (the hash is integer
// arithmetic), in any split of the range, and keeps about 1 - p of the elements.
void run_dropconnect_trials(const KernelTable& table) {
  const KernelTable& ref = kernels_scalar();
  for (int trial = 0; trial < 20; ++trial) {
    const int64_t n = 1 + next_u32() % 5000, cut = next_u32() % (n + 1);
    const uint64_t seed = (uint64_t(next_u32()) << 32) | next_u32();
    const double p = uniform();
    const uint32_t keep_below = static_cast<uint32_t>(std::floor((1.0 - p) * 4294967296.0));
    const float scale = static_cast<float>(1.0 / (1.0 - p));
    std::vector<float> in(n), a(n), b(n);
    for (auto& v : in) v = uniform() + 0.5f;  // nonzero, so a zero output means dropped
    ref.dropconnect(in.data(), a.data(), 0, n, seed, keep_below, scale);
    table.dropconnect(in.data(), b.data(), 0, cut, seed, keep_below, scale);
    table.dropconnect(in.data(), b.data(), cut, n, seed, keep_below, scale);
    check(std::memcmp(a.data(), b.data(), n * sizeof(float)) == 0, "dropconnect: differs from scalar", table.name,
          trial);
    if (n >= 2000) {
      int64_t kept = 0;
      for (float v : b) kept += v != 0.f;
      const double frac = double(kept) / n, sd = std::sqrt(p * (1 - p) / n);
      check(std::fabs(frac - (1 - p)) <= 6 * sd + 1e-3, "dropconnect: kept fraction", table.name, trial);
    }
  }
}

}  // namespace

// The streaming threading policy on synthetic clocks (ns): a paced step never wakes the workers; a
// hot loop does after kWakeAfterCalls back-to-back calls; awake workers are used; big work always.
void run_threading_policy_trials() {
  constexpr int64_t us = 1000, ms = 1000 * us;
  ThreadingClock c;
  int64_t t = 1000 * ms;
  // A paced stream: one step of 4 threadable products (20 us each) every 8 ms.
  bool woke = false;
  for (int step = 0; step < 50; ++step, t += 8 * ms) {
    int64_t u = t;
    for (int k = 0; k < 4; ++k, u += 25 * us) {
      const bool w = c.decide(u, 300'000);
      woke |= w;
      c.record(u + 20 * us, w);
    }
  }
  check(!woke, "threading: a paced 4-product step woke the workers", "-", 0);
  // A hot loop: back-to-back calls switch to the workers at the kWakeAfterCalls-th and stay there.
  int first = -1;
  for (int i = 0; i < 3 * kWakeAfterCalls; ++i, t += 25 * us) {
    const bool w = c.decide(t, 300'000);
    if (w && first < 0) first = i;
    check(first < 0 || w, "threading: a hot loop left the workers", "-", i);
    c.record(t + 20 * us, w);
  }
  check(first == kWakeAfterCalls, "threading: a hot loop woke the workers at the wrong call", "-", first);
  // Right after the workers ran they are awake: the next call uses them even after a short pause...
  t += 300 * us;
  check(c.decide(t, 300'000), "threading: awake workers not used", "-", 0);
  c.record(t + 20 * us, true);
  // ... but not after a gap: a stream's next step starts on the calling thread, streak reset.
  t += 8 * ms;
  check(!c.decide(t, 300'000), "threading: slept workers woken after a gap", "-", 0);
  c.record(t + 20 * us, false);
  // Work big enough to pay for a wake-up always goes to the workers.
  t += 8 * ms;
  check(c.decide(t, kWakeWorthMacs), "threading: big work not threaded", "-", 0);
  c.record(t + 20 * us, true);
  // A hot loop on the workers whose join stalls (a descheduled worker): the next kBackoffNs stay on the
  // calling thread, even for big work; an uneven but unstalled join, or a long wait after a long own
  // piece, does not count.
  ThreadingClock h;
  h.note_threads(2);
  t = 5000 * ms;
  const auto hot_call = [&](int64_t wait, int64_t own) {
    const bool w = h.decide(t, 300'000);
    h.record(t + own + wait, w, w ? wait : 0, w ? own : 0);
    t += own + wait + 5 * us;
    return w;
  };
  for (int i = 0; i <= kWakeAfterCalls; ++i) hot_call(i == kWakeAfterCalls ? 30 * ms : 10 * us, 20 * us);
  check(!h.backing_off(t), "threading: the first call on new threads judged", "-", 0);
  check(hot_call(10 * us, 20 * us), "threading: hot loop not on the workers", "-", 0);
  check(hot_call(kStallNs / 2, 20 * us) && !h.backing_off(t), "threading: a short join wait counted", "-", 0);
  check(hot_call(3 * kStallNs, 2 * kStallNs) && !h.backing_off(t), "threading: a long own piece's wait counted",
        "-", 0);
  {  // the caller descheduled mid-call (not at the join) is a stall too
    ThreadingClock d;
    d.note_threads(2);
    int64_t u = 100 * ms;
    for (int i = 0; i <= kWakeAfterCalls; ++i, u += 30 * us) d.record(u + 20 * us, d.decide(u, 300'000));
    check(d.decide(u, 300'000), "threading: hot loop not on the workers", "-", 2);
    d.record(u + 11 * ms, true, 5 * us, 11 * ms, kStallNs / 2);
    check(!d.backing_off(u + 11 * ms + us), "threading: a short deschedule counted", "-", 0);
    u += 12 * ms;
    for (int i = 0; i <= kWakeAfterCalls; ++i, u += 30 * us) d.record(u + 20 * us, d.decide(u, 300'000));
    check(d.decide(u, 300'000), "threading: hot loop not on the workers", "-", 3);
    d.record(u + 11 * ms, true, 5 * us, 11 * ms, 10 * ms);
    check(d.backing_off(u + 11 * ms + us), "threading: a descheduled caller did not pause the workers", "-", 0);
  }
  check(hot_call(12 * ms, 20 * us), "threading: hot loop not on the workers", "-", 1);
  check(h.backing_off(t), "threading: a stalled join did not pause the workers", "-", 0);
  const int64_t stalled_at = t;
  int threaded = 0;
  while (t < stalled_at + kBackoffNs - 100 * us) {
    threaded += hot_call(10 * us, 20 * us);
    threaded += h.decide(t, kWakeWorthMacs);
  }
  check(threaded == 0, "threading: workers used during the pause", "-", threaded);
  t = stalled_at + kBackoffNs + us;
  check(hot_call(10 * us, 20 * us), "threading: the pause did not end", "-", 0);
  // A second stall soon after doubles the pause; each further one doubles it again, up to kMaxBackoffNs.
  int64_t pause = kBackoffNs;
  for (int k = 0; k < 8; ++k) {
    for (int i = 0; i <= kWakeAfterCalls; ++i) hot_call(10 * us, 20 * us);  // the loop goes on after the pause
    check(hot_call(12 * ms, 20 * us), "threading: hot loop not on the workers after the pause", "-", k);
    pause = std::min(2 * pause, kMaxBackoffNs);
    check(h.backing_off(t + pause - 2 * ms) && !h.backing_off(t + pause + ms), "threading: the pause did not double",
          "-", k);
    t += pause + us;
  }
  // Waking sleeping workers (big work after a gap) may take milliseconds without contention: not judged.
  t += 100 * ms;
  check(h.decide(t, kWakeWorthMacs), "threading: big work not threaded", "-", 1);
  h.record(t + 6 * ms, true, 5 * ms, 1 * ms, 5 * ms);
  check(!h.backing_off(t + 6 * ms + us), "threading: a slow wake-up counted as a stall", "-", 0);
  t += 7 * ms;
  // A new pool size ends a pause (and its first call is not judged).
  for (int i = 0; i <= kWakeAfterCalls; ++i) hot_call(10 * us, 20 * us);
  check(hot_call(12 * ms, 20 * us) && h.backing_off(t), "threading: a stall did not pause the workers", "-", 2);
  h.note_threads(3);
  check(!h.backing_off(t), "threading: a new pool size did not end the pause", "-", 0);
  check(hot_call(30 * ms, 20 * us) && !h.backing_off(t), "threading: the first call on a new pool size judged",
        "-", 0);
  // Much later, a stall starts again from kBackoffNs; and without stalls the workers stay in use.
  t += 10 * kMaxBackoffNs;
  for (int i = 0; i <= kWakeAfterCalls; ++i) hot_call(10 * us, 20 * us);
  check(hot_call(12 * ms, 20 * us), "threading: hot loop not on the workers much later", "-", 0);
  check(h.backing_off(t + kBackoffNs - 2 * ms) && !h.backing_off(t + kBackoffNs + ms),
        "threading: a stall long after the last did not start from kBackoffNs", "-", 0);
}

int main() {
  int passed = 0, failed = 0;
  const auto group = [&](void (*fn)(const KernelTable&), const KernelTable& t, const char* what) {
    const int before = failures;
    fn(t);
    const bool ok = failures == before;
    std::printf("%-7s %-12s %s\n", t.name, what, ok ? "ok" : "FAILED");
    (ok ? passed : failed) += 1;
  };
  for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512, Isa::neon}) {
    if (!isa_supported(isa)) continue;
    if (!set_isa(isa)) return 2;
    const KernelTable& t = active_kernels();
    group(&run_trials<float, int16_t>, t, "f32/int16");
    group(&run_trials<float, int32_t>, t, "f32/int32");
    group(&run_trials<f16, int16_t>, t, "f16/int16");
    group(&run_trials<bf16, int32_t>, t, "bf16/int32");
    group(&run_trials<int8_t, int16_t>, t, "i8/int16");
    group(&run_trials<int8_t, int32_t>, t, "i8/int32");
    group(&run_corruption_trials<int16_t>, t, "bad int16");
    group(&run_corruption_trials<int32_t>, t, "bad int32");
    group(&run_egru_train_trials, t, "egru train");
    group(&run_dropconnect_trials, t, "dropconnect");
    group(&run_bitmask_trials<int16_t>, t, "bitmask i16");
    group(&run_bitmask_trials<int32_t>, t, "bitmask i32");
    group(&run_block_trials<float, int16_t>, t, "block f32/i16");
    group(&run_block_trials<f16, int32_t>, t, "block f16/i32");
    group(&run_block_trials<bf16, int16_t>, t, "block bf16/i16");
    group(&run_block_trials<int8_t, int32_t>, t, "block i8/i32");
  }
  {
    const int before = failures;
    run_threading_policy_trials();
    const bool ok = failures == before;
    std::printf("%-7s %-12s %s\n", "-", "threading", ok ? "ok" : "FAILED");
    (ok ? passed : failed) += 1;
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 && passed > 0 ? 0 : 1;
}
