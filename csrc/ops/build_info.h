// What the operator library was built with: evsparse._C turns it into evsparse.build_info(), and a
// C++ program that loads the library can ask it too.
#pragma once

#include <string>

namespace evsparse::ops {

struct BuildInfo {
  std::string compiler, cxx_flags, isa_flags, build_type, torch_version, arch;
  bool openmp;  // at::parallel_for's backend, instantiated in this library
};

BuildInfo build_info();

}  // namespace evsparse::ops
