// torch.ops.evsparse.build_info / get_isa / set_isa: what the operator library was built with and which
// instruction set its kernels use (the library's one state). Ops, not a Python extension module, so the
// package has no CPython-specific binary: one wheel serves every Python version (docs/install.md).
#include <torch/library.h>

#include <string>
#include <vector>

#include "../cpu/kernels.h"
#include "checks.h"

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

namespace evsparse {
namespace {

using cpu::Isa;
constexpr Isa kAllIsas[] = {Isa::scalar, Isa::avx2, Isa::avx512, Isa::neon};

std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string quoted_list(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + quoted(items[i]);
  return out + "]";
}

// build_info() -> str: a JSON object (evsparse.build_info() adds the run-time facts).
std::string build_info() {
  std::vector<std::string> compiled, supported;
  for (Isa isa : kAllIsas) {
    if (cpu::isa_compiled(isa)) compiled.emplace_back(cpu::isa_name(isa));
    if (cpu::isa_supported(isa)) supported.emplace_back(cpu::isa_name(isa));
  }
#if defined(__clang__)
  const std::string compiler = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  const std::string compiler = std::string("gcc ") + __VERSION__;
#else
  const std::string compiler = "unknown";
#endif
#if defined(__x86_64__) || defined(_M_X64)
  const char* arch = "x86_64";
#elif defined(__aarch64__)
  const char* arch = "aarch64";
#else
  const char* arch = "other";
#endif
  std::string j = "{";
  j += "\"compiler\": " + quoted(compiler);
  j += ", \"cxx_flags\": " + quoted(EVSPARSE_CXX_FLAGS);
  j += ", \"isa_flags\": " + quoted(EVSPARSE_ISA_FLAGS);
  j += ", \"build_type\": " + quoted(EVSPARSE_BUILD_TYPE);
  j += ", \"torch_version\": " + quoted(EVSPARSE_TORCH_VERSION);
  j += ", \"arch\": " + quoted(arch);
  j += ", \"isa_compiled\": " + quoted_list(compiled);
  j += ", \"isa_supported\": " + quoted_list(supported);
  j += ", \"isa_active\": " + quoted(cpu::active_kernels().name);
  j += ", \"cpu_features\": " + quoted_list(cpu::detected_cpu_features());
  j += ", \"bitmask_min_density\": " + std::to_string(bitmask_min_density());
  j += ", \"block_min_fraction\": " + std::to_string(block_min_fraction());
  j += ", \"parallel_backend\": \"torch\"";  // torch's thread pool (op_utils.h parallel_for)
  return j + "}";
}

std::string get_isa() { return cpu::active_kernels().name; }

void set_isa(const std::string& name) {
  for (Isa isa : kAllIsas) {
    if (name == cpu::isa_name(isa)) {
      TORCH_CHECK_VALUE(cpu::set_isa(isa), "evsparse: instruction set '", name,
                        "' is not supported on this CPU/build");
      return;
    }
  }
  TORCH_CHECK_VALUE(false, "evsparse: unknown instruction set '", name, "' (scalar, avx2, avx512, neon)");
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(evsparse, m) {
  m.def("build_info() -> str", &build_info);
  m.def("get_isa() -> str", &get_isa);
  m.def("set_isa(str name) -> ()", &set_isa);
  m.def("get_bitmask_min_density() -> float", &bitmask_min_density);
  m.def("set_bitmask_min_density(float density) -> ()", &set_bitmask_min_density);
  m.def("get_block_min_fraction() -> float", &block_min_fraction);
  m.def("set_block_min_fraction(float fraction) -> ()", &set_block_min_fraction);
}

}  // namespace evsparse
