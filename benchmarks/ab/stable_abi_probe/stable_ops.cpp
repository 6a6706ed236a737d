#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/csrc/stable/ops.h>
#include <stdexcept>
using torch::stable::Tensor;
Tensor thr(Tensor x, int64_t kind) {
  if (kind == 1) throw std::invalid_argument("bad value arg");
  if (kind == 2) throw std::runtime_error("runtime");
  if (kind == 3) throw std::out_of_range("oor");
  return x;
}
Tensor ident(Tensor x) { return x; }
STABLE_TORCH_LIBRARY(sttest, m) {
  m.def("thr(Tensor x, int kind) -> Tensor");
  m.def("ident(Tensor x) -> Tensor");
}
STABLE_TORCH_LIBRARY_IMPL(sttest, CPU, m) {
  m.impl("thr", TORCH_BOX(&thr));
  m.impl("ident", TORCH_BOX(&ident));
}
Tensor many(Tensor x, Tensor a, std::optional<Tensor> b, std::optional<Tensor> c, Tensor d, std::optional<Tensor> e, std::optional<Tensor> f, Tensor g, Tensor h, Tensor i) {
  int64_t s = a.size(0) + d.size(0) + g.size(0) + h.size(0) + i.size(0) + (b ? b->size(0) : 0);
  (void)s; return torch::stable::empty_like(x); }
STABLE_TORCH_LIBRARY_FRAGMENT(sttest, m) {
  m.def("many(Tensor x, Tensor a, Tensor? b, Tensor? c, Tensor d, Tensor? e, Tensor? f, Tensor g, Tensor h, Tensor i) -> Tensor");
}
STABLE_TORCH_LIBRARY_IMPL(sttest, CPU, m) { m.impl("many", TORCH_BOX(&many)); }
STABLE_TORCH_LIBRARY_FRAGMENT(sttest, m) {
  m.def("many_ag(Tensor x, Tensor a, Tensor? b, Tensor? c, Tensor d, Tensor? e, Tensor? f, Tensor g, Tensor h, Tensor i) -> Tensor");
}
STABLE_TORCH_LIBRARY_IMPL(sttest, CPU, m) { m.impl("many_ag", TORCH_BOX(&many)); }
STABLE_TORCH_LIBRARY_IMPL(sttest, Autograd, m) { m.impl("many_ag", TORCH_BOX(&many)); }
