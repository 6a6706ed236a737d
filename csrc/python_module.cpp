// The evsparse._C extension module. It links the operator library libevsparse_ops (csrc/ops and the
// kernel core), whose loading registers the torch.ops.evsparse.* operators (static initialisers);
// the pybind11 functions here only describe the build and let tests and benchmarks pick the
// kernels' instruction set (the library's one state, shared with the operators).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "cpu/kernels.h"
#include "ops/build_info.h"

namespace py = pybind11;
using evsparse::cpu::Isa;

namespace {

constexpr Isa kAllIsas[] = {Isa::scalar, Isa::avx2, Isa::avx512, Isa::neon};

py::dict build_info() {
  py::list compiled, supported;
  for (Isa isa : kAllIsas) {
    if (evsparse::cpu::isa_compiled(isa)) compiled.append(evsparse::cpu::isa_name(isa));
    if (evsparse::cpu::isa_supported(isa)) supported.append(evsparse::cpu::isa_name(isa));
  }
  const evsparse::ops::BuildInfo built = evsparse::ops::build_info();
  py::dict info;
  info["compiler"] = built.compiler;
  info["cxx_flags"] = built.cxx_flags;
  info["isa_flags"] = built.isa_flags;
  info["build_type"] = built.build_type;
  info["torch_version"] = built.torch_version;
  info["arch"] = built.arch;
  info["isa_compiled"] = compiled;
  info["isa_supported"] = supported;
  info["isa_active"] = std::string(evsparse::cpu::active_kernels().name);
  info["cpu_features"] = evsparse::cpu::detected_cpu_features();
  info["openmp"] = built.openmp;
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
