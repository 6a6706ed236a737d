// The streaming threading policy's state machine, torch-free so the kernel self-test can drive it with
// synthetic clocks (csrc/ops/op_utils.h feeds it steady_clock time and applies its answer).
//
// Idle worker threads fall asleep, and on a VM waking one may wait for the host to reschedule its
// vCPU: milliseconds. Measured on the 2-core EPYC VM before any policy, paced at one call per 8 ms
// (1024x3072 at 10% x 15%): two threads 348 us median and 14.1 ms p99, one thread 235 us and 0.39 ms.
// So threadable work goes to the workers only when they are awake or about to be needed anyway:
//   * they ran within kIdleGapNs (still spinning), or
//   * the work is large enough to pay for a wake-up (kWakeWorthMacs), or
//   * kWakeAfterCalls threadable calls came back to back (each within kIdleGapNs of the previous
//     one's end): a hot loop or a sequence op, not one paced step.
// The last rule replaced "the previous threadable call ended within kIdleGapNs": a paced step of a
// 2-layer EGRU at H=1024 (four threadable products in a row) ran its first product on the calling
// thread and then, as the first had just ended, woke the sleeping workers for the second: a p99 of
// 8.0 ms, and medians of up to 7.1 ms, against 0.37 ms on one thread (Intel Xeon VM, 2026-12-04).
#pragma once

#include <atomic>
#include <cstdint>

namespace evsparse::cpu {

constexpr int64_t kIdleGapNs = 500'000;
constexpr int64_t kWakeWorthMacs = int64_t(1) << 22;
constexpr int32_t kWakeAfterCalls = 32;

class ThreadingClock {
 public:
  // Whether a threadable call of `work` multiply-accumulates starting at `now` (ns) runs on the workers.
  bool decide(int64_t now, int64_t work) {
    const bool back_to_back = now - last_threadable_end_.load(std::memory_order_relaxed) < kIdleGapNs;
    const int32_t streak = back_to_back ? streak_.load(std::memory_order_relaxed) + 1 : 0;
    streak_.store(streak, std::memory_order_relaxed);
    const bool awake = now - last_worker_end_.load(std::memory_order_relaxed) < kIdleGapNs;
    return work >= kWakeWorthMacs || awake || streak >= kWakeAfterCalls;
  }
  // The call that `decide` answered ended at `now`.
  void record(int64_t now, bool on_workers) {
    last_threadable_end_.store(now, std::memory_order_relaxed);
    if (on_workers) last_worker_end_.store(now, std::memory_order_relaxed);
  }

 private:
  // (Relaxed and unsynchronised across caller threads: a heuristic, and the pieces, hence the results,
  // are the same whichever thread runs them.)
  std::atomic<int64_t> last_threadable_end_{INT64_MIN / 2};
  std::atomic<int64_t> last_worker_end_{INT64_MIN / 2};
  std::atomic<int32_t> streak_{0};
};

}  // namespace evsparse::cpu
