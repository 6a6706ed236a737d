// Run-time choice of the kernel table: the best instruction set the CPU supports, or the one named by
// the EVSPARSE_ISA environment variable / set_isa() (for testing every path on one machine).
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "kernels.h"

namespace evsparse::cpu {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::scalar: return "scalar";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
    case Isa::neon: return "neon";
  }
  return "unknown";
}

bool isa_compiled(Isa isa) {
  switch (isa) {
    case Isa::scalar: return true;
#if defined(__x86_64__) || defined(_M_X64)
    case Isa::avx2:
    case Isa::avx512: return true;
#endif
#if defined(__aarch64__)
    case Isa::neon: return true;
#endif
    default: return false;
  }
}

bool isa_supported(Isa isa) {
  if (!isa_compiled(isa)) return false;
#if defined(__x86_64__) || defined(_M_X64)
  __builtin_cpu_init();
  // __builtin_cpu_supports also checks that the OS saves the wider registers (XGETBV).
  if (isa == Isa::avx2) {
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c");
  }
  if (isa == Isa::avx512) {
#if defined(EVSPARSE_EMULATE_AVX512)  // test builds: the AVX-512 table runs on SIMDe over AVX2
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c");
#else
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c");
#endif
  }
#endif
  return true;  // scalar everywhere; NEON is mandatory on aarch64
}

std::vector<std::string> detected_cpu_features() {
  std::vector<std::string> out;
#if defined(__x86_64__) || defined(_M_X64)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("sse4.2")) out.emplace_back("sse4.2");
  if (__builtin_cpu_supports("avx")) out.emplace_back("avx");
  if (__builtin_cpu_supports("avx2")) out.emplace_back("avx2");
  if (__builtin_cpu_supports("fma")) out.emplace_back("fma");
  if (__builtin_cpu_supports("f16c")) out.emplace_back("f16c");
  if (__builtin_cpu_supports("avx512f")) out.emplace_back("avx512f");
  if (__builtin_cpu_supports("avx512bw")) out.emplace_back("avx512bw");
  if (__builtin_cpu_supports("avx512vl")) out.emplace_back("avx512vl");
#elif defined(__aarch64__)
  out.emplace_back("neon");
#endif
  return out;
}

Isa best_supported_isa() {
  for (Isa isa : {Isa::avx512, Isa::avx2, Isa::neon}) {
    if (isa_supported(isa)) return isa;
  }
  return Isa::scalar;
}

static const KernelTable& table_for(Isa isa) {
  switch (isa) {
#if defined(__x86_64__) || defined(_M_X64)
    case Isa::avx2: return kernels_avx2();
    case Isa::avx512: return kernels_avx512();
#endif
#if defined(__aarch64__)
    case Isa::neon: return kernels_neon();
#endif
    default: return kernels_scalar();
  }
}

static Isa initial_isa() {
  const char* env = std::getenv("EVSPARSE_ISA");
  if (env != nullptr && *env != '\0') {
    for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512, Isa::neon}) {
      if (std::strcmp(env, isa_name(isa)) == 0 && isa_supported(isa)) return isa;
    }
    // An unusable request falls back to the best ISA; build_info() reports what is in use.
  }
  return best_supported_isa();
}

static std::atomic<const KernelTable*>& current_table() {
  static std::atomic<const KernelTable*> table{&table_for(initial_isa())};
  return table;
}

const KernelTable& active_kernels() { return *current_table().load(std::memory_order_relaxed); }

bool set_isa(Isa isa) {
  if (!isa_supported(isa)) return false;
  current_table().store(&table_for(isa), std::memory_order_relaxed);
  return true;
}

}  // namespace evsparse::cpu
