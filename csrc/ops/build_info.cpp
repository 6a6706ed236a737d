#include "ops/build_info.h"

// Set by CMakeLists.txt on this target.
#ifndef EVSPARSE_CXX_FLAGS
#define EVSPARSE_CXX_FLAGS ""
#endif
#ifndef EVSPARSE_BUILD_TYPE
#define EVSPARSE_BUILD_TYPE ""
#endif
#ifndef EVSPARSE_ISA_FLAGS
#define EVSPARSE_ISA_FLAGS ""
#endif
#ifndef EVSPARSE_TORCH_VERSION
#define EVSPARSE_TORCH_VERSION ""
#endif

namespace evsparse::ops {

BuildInfo build_info() {
  BuildInfo info;
#if defined(__clang__)
  info.compiler = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  info.compiler = std::string("gcc ") + __VERSION__;
#else
  info.compiler = "unknown";
#endif
  info.cxx_flags = EVSPARSE_CXX_FLAGS;
  info.isa_flags = EVSPARSE_ISA_FLAGS;
  info.build_type = EVSPARSE_BUILD_TYPE;
  info.torch_version = EVSPARSE_TORCH_VERSION;
#if defined(__x86_64__) || defined(_M_X64)
  info.arch = "x86_64";
#elif defined(__aarch64__)
  info.arch = "aarch64";
#else
  info.arch = "other";
#endif
#if defined(_OPENMP)
  info.openmp = true;
#else
  info.openmp = false;
#endif
  return info;
}

}  // namespace evsparse::ops
