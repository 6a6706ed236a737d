// The evsparse._C extension module. Loading it registers the torch.ops.evsparse.* operators
// (static initialisers in csrc/ops); the pybind11 functions here only describe the build and let
// tests and benchmarks pick the kernels' instruction set.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "cpu/kernels.h"

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

namespace py = pybind11;
using evsparse::cpu::Isa;

namespace {

constexpr Isa kAllIsas[] = {Isa::scalar, Isa::avx2, Isa::avx512, Isa::neon};

std::string compiler() {
#if defined(__clang__)
  return std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  return std::string("gcc ") + __VERSION__;
#else
  return "unknown";
#endif
}

py::dict build_info() {
  py::list compiled, supported;
  for (Isa isa : kAllIsas) {
    if (evsparse::cpu::isa_compiled(isa)) compiled.append(evsparse::cpu::isa_name(isa));
    if (evsparse::cpu::isa_supported(isa)) supported.append(evsparse::cpu::isa_name(isa));
  }
  py::dict info;
  info["compiler"] = compiler();
  info["cxx_flags"] = std::string(EVSPARSE_CXX_FLAGS);
  info["isa_flags"] = std::string(EVSPARSE_ISA_FLAGS);
  info["build_type"] = std::string(EVSPARSE_BUILD_TYPE);
  info["torch_version"] = std::string(EVSPARSE_TORCH_VERSION);
#if defined(__x86_64__) || defined(_M_X64)
  info["arch"] = "x86_64";
#elif defined(__aarch64__)
  info["arch"] = "aarch64";
#else
  info["arch"] = "other";
#endif
  info["isa_compiled"] = compiled;
  info["isa_supported"] = supported;
  info["isa_active"] = std::string(evsparse::cpu::active_kernels().name);
  info["cpu_features"] = evsparse::cpu::detected_cpu_features();
#if defined(_OPENMP)
  info["openmp"] = true;
#else
  info["openmp"] = false;
#endif
  return info;
}

void set_isa(const std::string& name) {
  for (Isa isa : kAllIsas) {
    if (name == evsparse::cpu::isa_name(isa)) {
      if (!evsparse::cpu::set_isa(isa)) {
        throw py::value_error("evsparse: instruction set '" + name + "' is not supported on this CPU/build");
      }
      return;
    }
  }
  throw py::value_error("evsparse: unknown instruction set '" + name + "' (scalar, avx2, avx512, neon)");
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "evsparse native extension: registers torch.ops.evsparse and reports build information";
  m.def("build_info", &build_info, "Compiler, flags and instruction sets compiled in / supported / in use.");
  m.def("set_isa", &set_isa, py::arg("name"), "Select the kernels' instruction set (testing/benchmarks).");
  m.def("get_isa", [] { return std::string(evsparse::cpu::active_kernels().name); });
}
