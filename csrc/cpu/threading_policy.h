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
//
// Stalls. A worker the OS has descheduled holds the call at the join for a whole time slice. With one
// competing busy process on the 2-core Xeon VM a hot loop of sparse_linear at 2048x6144 (10% x 15%) had
// a median of 46 us and a p99 of 12.0 ms on two threads, 157 us on one (benchmarks/ab/busy_process.py).
// Not only at the join: libgomp's workers spin after a parallel region (GOMP_SPINCOUNT, 300K pauses,
// ~11 ms on this CPU), so with the busy process three threads compete for two vCPUs and the caller
// itself is descheduled mid-piece; calls of 9-15 ms then came in runs of ten or more. The caller cannot
// take back a piece a worker has started, so the policy learns instead: a call on the workers whose
// caller waited at the join more than kStallNs (and more than twice its own piece), or was descheduled
// for more than kStallNs of it (wall time less its thread's CPU time), was stalled, and the calls of
// the next kBackoffNs stay on the calling thread (the workers then fall asleep: two threads for two
// vCPUs). A stall soon after such a pause (within kBackoffNs of its end) doubles the pause, up to
// kMaxBackoffNs; a later one starts again from kBackoffNs. So under lasting contention stalls come at
// most once per pause (seconds), and without it the pauses end and the workers return. Only calls that
// found the workers awake are judged: waking sleeping ones takes milliseconds on a VM without any
// contention (the rules above keep that rare). The first call on the workers after the pool changed
// size (torch.set_num_threads; also the process's first) starts new threads and is not judged.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace evsparse::cpu {

constexpr int64_t kIdleGapNs = 500'000;
constexpr int64_t kWakeWorthMacs = int64_t(1) << 22;
constexpr int32_t kWakeAfterCalls = 32;
constexpr int64_t kStallNs = 1'000'000;
constexpr int64_t kBackoffNs = 50'000'000;
constexpr int64_t kMaxBackoffNs = 3'200'000'000;

class ThreadingClock {
 public:
  // The size of the pool the next call would use (torch.get_num_threads()); a change clears the pause.
  void note_threads(int64_t threads) {
    if (threads != threads_.load(std::memory_order_relaxed)) {
      threads_.store(threads, std::memory_order_relaxed);
      backoff_until_.store(INT64_MIN / 2, std::memory_order_relaxed);
      backoff_ns_.store(0, std::memory_order_relaxed);
      fresh_.store(true, std::memory_order_relaxed);
    }
  }
  // Whether a threadable call of `work` multiply-accumulates starting at `now` (ns) runs on the workers.
  bool decide(int64_t now, int64_t work) {
    if (now < backoff_until_.load(std::memory_order_relaxed)) return false;  // after a stall
    const bool back_to_back = now - last_threadable_end_.load(std::memory_order_relaxed) < kIdleGapNs;
    const int32_t streak = back_to_back ? streak_.load(std::memory_order_relaxed) + 1 : 0;
    streak_.store(streak, std::memory_order_relaxed);
    const bool awake = now - last_worker_end_.load(std::memory_order_relaxed) < kIdleGapNs;
    judge_.store(awake, std::memory_order_relaxed);  // (waking sleeping workers is slow, not a stall)
    return work >= kWakeWorthMacs || awake || streak >= kWakeAfterCalls;
  }
  // The call that `decide` answered ended at `now`; on the workers, its caller waited `join_wait` ns at
  // the join after `own_piece` ns of its own work, and was not running for `descheduled` ns of the call.
  void record(int64_t now, bool on_workers, int64_t join_wait = 0, int64_t own_piece = 0, int64_t descheduled = 0) {
    last_threadable_end_.store(now, std::memory_order_relaxed);
    if (!on_workers) return;
    last_worker_end_.store(now, std::memory_order_relaxed);
    if (fresh_.exchange(false, std::memory_order_relaxed)) return;  // (new threads started)
    if (!judge_.load(std::memory_order_relaxed)) return;
    if ((join_wait > kStallNs && join_wait > 2 * own_piece) || descheduled > kStallNs) {
      const int64_t until = backoff_until_.load(std::memory_order_relaxed);
      const int64_t last = backoff_ns_.load(std::memory_order_relaxed);
      const int64_t pause = now - until < kBackoffNs && last > 0 ? std::min(2 * last, kMaxBackoffNs) : kBackoffNs;
      backoff_ns_.store(pause, std::memory_order_relaxed);
      backoff_until_.store(now + pause, std::memory_order_relaxed);
    }
  }
  // Whether calls now stay on the calling thread after a stall (for tests and diagnostics).
  bool backing_off(int64_t now) const { return now < backoff_until_.load(std::memory_order_relaxed); }

 private:
  // (Relaxed and unsynchronised across caller threads: a heuristic, and the pieces, hence the results,
  // are the same whichever thread runs them.)
  std::atomic<int64_t> last_threadable_end_{INT64_MIN / 2};
  std::atomic<int64_t> last_worker_end_{INT64_MIN / 2};
  std::atomic<int32_t> streak_{0};
  std::atomic<int64_t> backoff_until_{INT64_MIN / 2};
  std::atomic<int64_t> backoff_ns_{0};
  std::atomic<int64_t> threads_{0};
  std::atomic<bool> fresh_{true};
  std::atomic<bool> judge_{false};  // the last decision found the workers awake
};

}  // namespace evsparse::cpu
