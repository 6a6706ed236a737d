#include <ATen/ATen.h>
#include <torch/library.h>
using at::Tensor;
Tensor ident(const Tensor& x) { return x; }
Tensor many(const Tensor& x, const Tensor& a, const std::optional<Tensor>& b, const std::optional<Tensor>& c, const Tensor& d, const std::optional<Tensor>& e, const std::optional<Tensor>& f, const Tensor& g, const Tensor& h, const Tensor& i) { return at::empty_like(x); }
TORCH_LIBRARY(lgtest, m) {
  m.def("ident(Tensor x) -> Tensor");
  m.def("many(Tensor x, Tensor a, Tensor? b, Tensor? c, Tensor d, Tensor? e, Tensor? f, Tensor g, Tensor h, Tensor i) -> Tensor");
}
TORCH_LIBRARY_IMPL(lgtest, CPU, m) { m.impl("ident", &ident); m.impl("many", &many); }
