#include "backward.h"

namespace evsparse::cpu {

template <class A>
void dense_grad_weight(const A* x, const A* g, int64_t B, int64_t in, int64_t out, A* gwt,
                       int64_t j0, int64_t j1) {
  for (int64_t j = j0; j < j1; ++j) {
    A* row = gwt + j * out;
    for (int64_t b = 0; b < B; ++b) {
      const A s = x[b * in + j];
      if (s == A(0)) continue;
      const A* gb = g + b * out;
      for (int64_t o = 0; o < out; ++o) row[o] += s * gb[o];
    }
  }
}

template <class A, class I>
void sparse_grad_values(const A* x, const A* g, int64_t B, int64_t in, int64_t out,
                        const int64_t* col_ptr, const I* rows, A* gv, int64_t j0, int64_t j1) {
  for (int64_t j = j0; j < j1; ++j) {
    for (int64_t b = 0; b < B; ++b) {
      const A s = x[b * in + j];
      if (s == A(0)) continue;
      const A* gb = g + b * out;
      for (int64_t k = col_ptr[j]; k < col_ptr[j + 1]; ++k) gv[k] += s * gb[rows[k]];
    }
  }
}

template <class A, class I>
void sparse_grad_input(const A* g, int64_t B, int64_t in, int64_t out, const int64_t* col_ptr,
                       const I* rows, const A* vals, A* gx, int64_t j0, int64_t j1) {
  for (int64_t b = 0; b < B; ++b) {
    const A* gb = g + b * out;
    for (int64_t j = j0; j < j1; ++j) {
      A acc = A(0);
      for (int64_t k = col_ptr[j]; k < col_ptr[j + 1]; ++k) acc += vals[k] * gb[rows[k]];
      gx[b * in + j] = acc;
    }
  }
}

#define EVSPARSE_INSTANTIATE(A)                                                                   \
  template void dense_grad_weight<A>(const A*, const A*, int64_t, int64_t, int64_t, A*, int64_t, \
                                     int64_t);                                                    \
  template void sparse_grad_values<A, int16_t>(const A*, const A*, int64_t, int64_t, int64_t,    \
                                               const int64_t*, const int16_t*, A*, int64_t,      \
                                               int64_t);                                          \
  template void sparse_grad_values<A, int32_t>(const A*, const A*, int64_t, int64_t, int64_t,    \
                                               const int64_t*, const int32_t*, A*, int64_t,      \
                                               int64_t);                                          \
  template void sparse_grad_input<A, int16_t>(const A*, int64_t, int64_t, int64_t,               \
                                              const int64_t*, const int16_t*, const A*, A*,      \
                                              int64_t, int64_t);                                  \
  template void sparse_grad_input<A, int32_t>(const A*, int64_t, int64_t, int64_t,               \
                                              const int64_t*, const int32_t*, const A*, A*,      \
                                              int64_t, int64_t);

EVSPARSE_INSTANTIATE(float)
EVSPARSE_INSTANTIATE(double)
#undef EVSPARSE_INSTANTIATE

}  // namespace evsparse::cpu
