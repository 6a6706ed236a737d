// Portable scalar kernels: the fallback on any CPU, and the float64 kernels.
#define EVSPARSE_TABLE_FN kernels_scalar
#define EVSPARSE_TABLE_ISA Isa::scalar
#define EVSPARSE_TABLE_NAME "scalar"
#include "gather_table.inc"

namespace evsparse::cpu {

void dense_gather_f64(const double* xv, const int32_t* idx, int64_t n_active, const double* wt,
                      int64_t ld, const double* bias, double* y, int64_t o0, int64_t o1) {
  impl::dense_gather<ScalarVec<double>, double, double>(xv, idx, n_active, wt, ld, bias, y, o0, o1);
}

int64_t sparse_gather_f64(const double* xv, const int32_t* idx, int64_t n_active,
                          const int64_t* col_ptr, const int16_t* rows, const double* vals,
                          const double* bias, double* y, int64_t o0, int64_t o1, int64_t n_out) {
  return impl::sparse_gather<ScalarVec<double>, double, int16_t, double>(xv, idx, n_active, col_ptr, rows, vals, bias, y,
                                                                     o0, o1, n_out);
}

int64_t sparse_gather_f64(const double* xv, const int32_t* idx, int64_t n_active,
                          const int64_t* col_ptr, const int32_t* rows, const double* vals,
                          const double* bias, double* y, int64_t o0, int64_t o1, int64_t n_out) {
  return impl::sparse_gather<ScalarVec<double>, double, int32_t, double>(xv, idx, n_active, col_ptr, rows, vals, bias, y,
                                                                     o0, o1, n_out);
}

void transpose_sum(const float* src, int64_t parts, int64_t part_stride, int64_t rows, int64_t cols, float* dst,
                   int64_t c0, int64_t c1) {
  impl::train_transpose_sum(src, parts, part_stride, rows, cols, dst, c0, c1);
}
void transpose_sum(const double* src, int64_t parts, int64_t part_stride, int64_t rows, int64_t cols, double* dst,
                   int64_t c0, int64_t c1) {
  impl::train_transpose_sum(src, parts, part_stride, rows, cols, dst, c0, c1);
}

const DropconnectFn<double> dropconnect_f64 = &impl::dropconnect<double>;
const EgruTrainForwardFn<double> egru_train_forward_f64 = &impl::egru_train_forward<ScalarVec<double>, double>;
const EgruTrainBackwardFn<double> egru_train_backward_f64 = &impl::egru_train_backward<ScalarVec<double>, double>;

}  // namespace evsparse::cpu
