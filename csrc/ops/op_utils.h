// Helpers shared by the op bindings: active-input compaction, per-thread scratch, output-slice and
// column-group threading, dtype dispatch. (The argument checks are in checks.h.)
#pragma once

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/stable/c/shim.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <exception>
#include <optional>
#include <thread>
#include <type_traits>
#include <vector>

#include <time.h>  // clock_gettime (POSIX)

#include "../cpu/kernels.h"
#include "../cpu/threading_policy.h"

namespace evsparse {

using at::ScalarType;
using at::Tensor;

// Below this many multiply-accumulates one thread finishes before a parallel region would pay off
// (the gradient ops' grain).
constexpr int64_t kMinParallelMacs = 1 << 15;
// The forward products split their work across threads only above these sizes. Measured on the
// 2-core EPYC VM (2026-12-02, hot loop, batch 1, one thread vs two): the sparse layout gained nothing
// at 47K touched nonzeros (1024x3072, 10% x 15%: 30.7 vs 30.5 us) and 1.36x at 189K; the dense
// layout 1.24x at 315K MACs and 1.36x at 1.26M. On the Intel Xeon VM (2026-12-04) the sparse split
// gained 1.19-1.24x at 47K (in one run of four 1.03x), 1.00x at 24-29K and 0.83x at 12K, so its
// threshold is 32K there. (It was 96K while a descheduled worker could hold a hot loop's calls at the
// join: with one competing busy process the p99 was 4.1 ms on two threads and 0.12 ms on one; the
// stall rule of cpu/threading_policy.h now answers that.)
constexpr int64_t kMinParallelDenseMacs = int64_t(1) << 18;
constexpr int64_t kMinParallelSparseNnz = int64_t(32) << 10;
// The column-group split's partial sums: added on the calling thread up to this many outputs.
constexpr int64_t kMaxSerialSum = 16384;
// Output slices are whole cache lines of float32 so threads never share a line.
constexpr int64_t kSliceAlign = 16;

// [in] or [B, in] as [B, in]; unlike reshape({-1, n}) also for zero sizes (n = 0 leaves -1 ambiguous).
inline Tensor as_matrix(const Tensor& t) { return t.dim() == 1 ? t.unsqueeze(0) : t; }

inline bool is_half(ScalarType t) { return t == ScalarType::Half || t == ScalarType::BFloat16; }

// Per-thread scratch is kept between calls (no allocation on the per-step path) up to this size; a
// larger call's scratch is freed as it returns, so one big batch does not pin its memory per thread.
constexpr size_t kKeepScratchBytes = size_t(1) << 20;

template <class T>
void trim_scratch(std::vector<T>& v) {
  if (v.capacity() * sizeof(T) > kKeepScratchBytes) std::vector<T>().swap(v);
}

// Active inputs of every batch row, compacted once per call on the calling thread and shared
// read-only by the worker threads.
template <class A>
struct ActiveSet {
  std::vector<int32_t> idx;
  std::vector<A> xv;
  std::vector<int64_t> count;
  int64_t in = 0;

  void compute(const A* x, int64_t B, int64_t n_in) {
    in = n_in;
    idx.resize(static_cast<size_t>(B * in));
    xv.resize(static_cast<size_t>(B * in));
    count.resize(static_cast<size_t>(B));
    for (int64_t b = 0; b < B; ++b) {
      count[b] = cpu::compact_active(x + b * in, in, idx.data() + b * in, xv.data() + b * in);
    }
  }
  // int8 weights: multiplies each active input by its column's dequantisation scale, so the kernels
  // read the quantised integers as they are (O(active)). False if a scale it used is not finite.
  bool fold_scale(const float* scale, int64_t B) {
    bool finite = true;
    for (int64_t b = 0; b < B; ++b) {
      A* v = xv.data() + b * in;
      const int32_t* j = idx.data() + b * in;
      for (int64_t a = 0; a < count[b]; ++a) {
        const float s = scale[j[a]];
        finite &= std::isfinite(s);
        v[a] *= static_cast<A>(s);
      }
    }
    return finite;
  }
  void trim() {
    trim_scratch(idx);
    trim_scratch(xv);
    trim_scratch(count);
  }
  const int32_t* idx_row(int64_t b) const { return idx.data() + b * in; }
  const A* xv_row(int64_t b) const { return xv.data() + b * in; }
};

template <class A>
ActiveSet<A>& scratch_active_set() {
  // Reused across calls to keep allocation off the per-step path.
  thread_local ActiveSet<A> set;
  return set;
}

// The streaming threading policy (csrc/cpu/threading_policy.h): whether a threadable call's pieces
// go to the workers. Either way the work is cut into the same pieces (run_pieces), so the result is
// bitwise the same whichever thread runs them: it depends on the data and torch.get_num_threads(),
// never on timing.
inline int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

inline cpu::ThreadingClock& threading_clock() {
  static cpu::ThreadingClock clock;
  return clock;
}

// What the calling thread saw of its last parallel_for: its own pieces' time and its wait at the join
// after them (0 if it ran none), for the policy's stall rule.
struct JoinTimes {
  int64_t own_piece = 0;
  int64_t join_wait = 0;
};
inline JoinTimes& last_join() {
  thread_local JoinTimes t;
  return t;
}

// torch.get_num_threads(): the size of the pool parallel_for runs on.
inline int64_t num_threads() {
  uint32_t n = 1;
  TORCH_CHECK(torch_get_num_threads(&n) == AOTI_TORCH_SUCCESS, "evsparse: torch_get_num_threads failed");
  return n;
}

// CPU time of the calling thread (~0.16 us a read on the Xeon VM; read twice per call on the workers).
inline int64_t thread_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// The decision for one call; the guard records the call's end, with what a stall looks like from the
// calling thread: its wait at the join, and the wall time it was not running (descheduled).
struct WorkerChoice {
  bool on_workers;
  int64_t wall0 = 0, cpu0 = 0;
  ~WorkerChoice() {
    const int64_t now = now_ns();
    if (!on_workers) {
      threading_clock().record(now, false);
      return;
    }
    const JoinTimes j = last_join();
    threading_clock().record(now, true, j.join_wait, j.own_piece, (now - wall0) - (thread_cpu_ns() - cpu0));
  }
};
inline WorkerChoice choose_workers(int64_t macs) {
  last_join() = {};
  threading_clock().note_threads(num_threads());
  const int64_t now = now_ns();
  const bool on = threading_clock().decide(now, macs);
  return on ? WorkerChoice{true, now, thread_cpu_ns()} : WorkerChoice{false};
}

// at::parallel_for, run by libtorch itself through its C entry point (torch_parallel_for, torch >=
// 2.10). at::parallel_for is a header template that instantiates the OpenMP runtime in the caller, so
// calling it makes this library link libgomp. A source build then shares torch's copy (same soname),
// but a wheel cannot: libgomp is outside the manylinux policy, so auditwheel would graft a renamed copy,
// a second OpenMP runtime and thread pool in the process. This way the work runs on torch's pool, sized
// by torch.set_num_threads. The C boundary carries no exceptions: the first one a piece throws is kept
// and rethrown here.
template <class Body>
void parallel_for(int64_t begin, int64_t end, int64_t grain, const Body& body) {
  if (begin >= end) return;
  struct Ctx {
    const Body* body;
    std::exception_ptr error;
    std::atomic<bool> failed{false};
    std::thread::id caller;
    int64_t own_ns = 0, own_end = 0;  // written by the calling thread only
  } ctx{&body, nullptr};
  ctx.caller = std::this_thread::get_id();
  const auto call = [](int64_t b, int64_t e, void* p) {
    auto* c = static_cast<Ctx*>(p);
    const bool mine = std::this_thread::get_id() == c->caller;
    const int64_t t0 = mine ? now_ns() : 0;
    try {
      (*c->body)(b, e);
    } catch (...) {
      if (!c->failed.exchange(true)) c->error = std::current_exception();
    }
    if (mine) {
      c->own_end = now_ns();
      c->own_ns += c->own_end - t0;
    }
  };
  const AOTITorchError rc = torch_parallel_for(begin, end, grain, call, &ctx);
  last_join() = {ctx.own_ns, ctx.own_end > 0 ? now_ns() - ctx.own_end : 0};
  if (ctx.error) std::rethrow_exception(ctx.error);
  TORCH_CHECK(rc == AOTI_TORCH_SUCCESS, "evsparse: torch_parallel_for failed");
}

// A typed handle of one of the ops, for calling it through the dispatcher (the autograd kernels call
// the ops below autograd this way, so other backends can supply them).
template <class Sig>
c10::TypedOperatorHandle<Sig> op_handle(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Sig>();
}

// body(i0, i1) over [0, n): on the workers (parallel_for) or, as body(0, n), on this thread.
template <class Body>
void run_pieces(bool on_workers, int64_t n, int64_t grain, const Body& body) {
  if (on_workers) {
    parallel_for(0, n, grain, body);
  } else if (n > 0) {
    body(0, n);
  }
}

// Runs kernel(b, o0, o1) for every batch row over output slices, in parallel when the work is big.
template <class Kernel>
void for_each_output_slice(int64_t B, int64_t out, int64_t macs, const Kernel& kernel) {
  const int64_t threads = num_threads();
  if (threads <= 1 || macs < kMinParallelDenseMacs || out < 2 * kSliceAlign) {
    for (int64_t b = 0; b < B; ++b) kernel(b, 0, out);
    return;
  }
  const int64_t per = (out + threads - 1) / threads;
  const int64_t slice = (per + kSliceAlign - 1) / kSliceAlign * kSliceAlign;
  const int64_t n_slices = (out + slice - 1) / slice;
  const WorkerChoice workers = choose_workers(macs);
  run_pieces(workers.on_workers, n_slices, 1, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      const int64_t o0 = s * slice, o1 = std::min(out, o0 + slice);
      for (int64_t b = 0; b < B; ++b) kernel(b, o0, o1);
    }
  });
}

// Sparse layout: a thread split that needs no search inside columns. With B >= threads, threads take
// whole batch rows. Otherwise each row's active columns are cut into groups of about equal nonzero
// count; group t scatters into its own fp32 buffer (thread 0 into y itself), and the buffers are
// summed afterwards: O(out * threads), small next to the scatter once the work is worth threading.
// kernel(b, a0, a1, bias_or_null, dst) must write dst[0, out) = bias + columns a0..a1 of row b.
template <class A, class Kernel>
void for_each_column_group(int64_t B, int64_t out, const ActiveSet<A>& act, const int64_t* col_ptr,
                           int64_t touched, const A* bias, A* y, const Kernel& kernel) {
  const int64_t threads = num_threads();
  if (threads <= 1 || touched < kMinParallelSparseNnz) {
    for (int64_t b = 0; b < B; ++b) kernel(b, 0, act.count[b], bias, y + b * out);
    return;
  }
  const WorkerChoice workers = choose_workers(touched);
  const bool on_workers = workers.on_workers;
  if (B >= threads) {
    run_pieces(on_workers, B, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) kernel(b, 0, act.count[b], bias, y + b * out);
    });
    return;
  }
  thread_local std::vector<A> partial;
  thread_local std::vector<int64_t> bounds;
  partial.resize(static_cast<size_t>((threads - 1) * out));
  bounds.resize(static_cast<size_t>(threads + 1));
  // Lambdas do not capture thread_locals (a worker would see its own, empty, copy): use pointers.
  int64_t* cut = bounds.data();
  A* part = partial.data();
  for (int64_t b = 0; b < B; ++b) {
    const int32_t* idx = act.idx_row(b);
    const int64_t na = act.count[b];
    int64_t row_work = 0;
    for (int64_t a = 0; a < na; ++a) row_work += col_ptr[idx[a] + 1] - col_ptr[idx[a]];
    // Cut points at equal shares of the row's nonzeros.
    cut[0] = 0;
    int64_t a = 0, acc = 0;
    for (int64_t t = 1; t < threads; ++t) {
      const int64_t target = row_work * t / threads;
      while (a < na && acc < target) acc += col_ptr[idx[a] + 1] - col_ptr[idx[a]], ++a;
      cut[t] = a;
    }
    cut[threads] = na;
    A* yb = y + b * out;
    run_pieces(on_workers, threads, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        kernel(b, cut[t], cut[t + 1], t == 0 ? bias : nullptr, t == 0 ? yb : part + (t - 1) * out);
      }
    });
    // Summed on this thread up to kMaxSerialSum outputs: a second parallel region cost more than the
    // adds (1024x3072 at 10% x 15%: 1.4 us serial against 2.0 us split, per call, Intel Xeon).
    const int64_t grain = std::max<int64_t>(kSliceAlign, out / threads);
    run_pieces(on_workers && out > kMaxSerialSum, out, grain, [&](int64_t o0, int64_t o1) {
      for (int64_t t = 1; t < threads; ++t) {
        const A* src = part + (t - 1) * out;
        for (int64_t o = o0; o < o1; ++o) yb[o] += src[o];
      }
    });
  }
  trim_scratch(partial);
}

template <class A>
const A* data_or_null(const Tensor& t) {
  return t.defined() ? t.const_data_ptr<A>() : nullptr;
}

// Reinterprets half/bfloat16 storage as the kernel core's 16-bit element types.
template <class W>
const W* weight_ptr(const Tensor& t) {
  return static_cast<const W*>(t.const_data_ptr());
}

// Calls fn(const int16_t*) or fn(const int32_t*) with the row indices of a sparse packed weight.
template <class Fn>
void dispatch_row_index(const Tensor& row_idx, const Fn& fn) {
  if (row_idx.scalar_type() == ScalarType::Short) {
    fn(row_idx.const_data_ptr<int16_t>());
  } else {
    fn(row_idx.const_data_ptr<int32_t>());
  }
}

template <class Fn>
void dispatch_weight_type(ScalarType t, const Fn& fn) {
  switch (t) {
    case ScalarType::Float: fn(static_cast<const float*>(nullptr)); break;
    case ScalarType::Double: fn(static_cast<const double*>(nullptr)); break;
    case ScalarType::Half: fn(static_cast<const cpu::f16*>(nullptr)); break;
    case ScalarType::BFloat16: fn(static_cast<const cpu::bf16*>(nullptr)); break;
    case ScalarType::Char: fn(static_cast<const int8_t*>(nullptr)); break;
    default: TORCH_CHECK_VALUE(false, "evsparse: unsupported weight dtype ", t);
  }
}

}  // namespace evsparse
