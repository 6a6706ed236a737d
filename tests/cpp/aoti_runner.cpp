// A C++-only process (libtorch, no Python) that loads libevsparse_ops and runs an AOTInductor package
// of an exported evsparse model. Used by tests/test_pt2.py::test_cpp_process_runs_an_aoti_package.
//   aoti_runner LIBEVSPARSE_OPS PACKAGE INPUT.bin T B N OUTPUT.bin
// INPUT.bin holds T*B*N float32 values ([T, B, N]); OUTPUT.bin gets the package's first output.
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <vector>

#include <ATen/ops/from_blob.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

int main(int argc, char** argv) {
  if (argc != 8) {
    std::fprintf(stderr, "usage: %s LIBEVSPARSE_OPS PACKAGE INPUT.bin T B N OUTPUT.bin\n", argv[0]);
    return 2;
  }
  // Loading the library registers torch.ops.evsparse.*, which the package calls through the dispatcher.
  if (dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL) == nullptr) {
    std::fprintf(stderr, "dlopen: %s\n", dlerror());
    return 3;
  }
  const int64_t T = std::atoll(argv[4]), B = std::atoll(argv[5]), N = std::atoll(argv[6]);
  std::vector<float> in(T * B * N);
  std::ifstream(argv[3], std::ios::binary).read(reinterpret_cast<char*>(in.data()), in.size() * sizeof(float));
  torch::inductor::AOTIModelPackageLoader loader(argv[2]);
  const std::vector<at::Tensor> out = loader.run({at::from_blob(in.data(), {T, B, N}).clone()});
  const at::Tensor y = out.at(0).contiguous();
  std::ofstream(argv[7], std::ios::binary).write(reinterpret_cast<const char*>(y.data_ptr<float>()),
                                                 y.numel() * sizeof(float));
  return 0;
}
