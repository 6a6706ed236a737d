// Public interface of the torch-free CPU kernel core: raw pointers and sizes only.
//
// Every forward kernel computes, for one output slice [o0, o1) of one batch row,
//     y[o] = bias[o] (or 0) + sum_a xv[a] * W[o, idx[a]]
// where (idx, xv) is the compacted list of the row's nonzero inputs. Weights are stored input-major,
// so the weights one input neuron sends out are contiguous:
//   dense-gather : wt[in, ld] (the transpose of W; ld >= out), row j = input j's weights;
//   sparse-gather: CSC of W - col_ptr[in + 1], rows[nnz] sorted within each column, vals[nnz];
//   bitmask-gather: the same CSC values read through a bitmask of the structure (one 16-bit mask per
//                   16 rows of each column, derived by the op layer), float32, for AVX-512;
//   block-gather  : the same CSC where whole columns come in 16x1 blocks of rows (block-pruned
//                   weights): one vector multiply-add per block, on every ISA.
// Weights are float32, float16, bfloat16 or int8; int8 ones are quantised per input column, and the
// caller passes xv[a] already multiplied by input idx[a]'s scale, so the kernels see plain integers.
// Threads split the outputs, so no reduction is needed; the caller picks the slices.
//
// Memory safety: the sparse-gather range-checks every row index it reads and returns the number of
// stored entries it skipped because their index was outside [0, n_out), outside the slice or out of
// order (0 for a valid structure): corrupted index data never makes it write outside y. The caller
// checks the active columns' col_ptr entries (0 <= col_ptr[j] <= col_ptr[j + 1] <= nnz).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "types.h"

namespace evsparse::cpu {

template <class A, class W>
using DenseGatherFn = void (*)(const A* xv, const int32_t* idx, int64_t n_active, const W* wt,
                               int64_t ld, const A* bias, A* y, int64_t o0, int64_t o1);

template <class A, class I, class W>
using SparseGatherFn = int64_t (*)(const A* xv, const int32_t* idx, int64_t n_active,
                                   const int64_t* col_ptr, const I* rows, const W* vals,
                                   const A* bias, A* y, int64_t o0, int64_t o1, int64_t n_out);

// Bitmask-gather (gather_impl.h): the sparse layout's float32 product through masks [in, nb] of its
// structure (nb = ceil(n_out / 16); counts[j]: column j's bits, derived with them); writes y[0, n_out).
// Returns the skipped entries (0 if valid).
template <class I>
using BitmaskGatherFn = int64_t (*)(const float* xv, const int32_t* idx, int64_t n_active, const int64_t* col_ptr,
                                    const I* rows, const uint16_t* masks, const int64_t* counts, int64_t nb,
                                    const float* vals, const float* bias, float* y, int64_t n_out);


// Block-gather (gather_impl.h): the sparse layout's product over columns made of 16x1 blocks of rows;
// writes y[0, n_out); returns the skipped entries (0 if valid).
template <class I, class W>
using BlockGatherFn = int64_t (*)(const float* xv, const int32_t* idx, int64_t n_active, const int64_t* col_ptr,
                                  const I* rows, const W* vals, const BlockIndex& blocks, const float* bias, float* y,
                                  int64_t n_out);

// EGRU cell update: gi, gh [3H] pre-activations (gate blocks [z, r, g]) -> c_out, y_out [H].
using EgruUpdateFn = void (*)(const float* gi, const float* gh, const float* thr, const float* c_prev,
                              float* c_out, float* y_out, int64_t H);

// The EGRU's training recurrence (egru_train_impl.h has the contract): forward and backward through
// time over batch rows [b0, b1) of a [T, B, .] sequence; A = float here, double below.
template <class A>
using EgruTrainForwardFn = void (*)(const A* gi, const A* c0, const A* y0, const A* rt, const A* b_hh,
                                    const A* thr, int64_t T, int64_t B, int64_t H, int64_t b0, int64_t b1, A* ys,
                                    A* c, A* events, A* saved);
template <class A>
using EgruTrainBackwardFn = int64_t (*)(const A* g_ys, const A* g_c, const A* g_events, const A* c0, const A* y0,
                                        const A* w_hh, const A* rt, const A* thr, const A* saved, A dampening,
                                        A support, int64_t T,
                                        int64_t B, int64_t H, int64_t b0, int64_t b1, A* g_gi, A* g_c0, A* g_y0,
                                        A* g_rt, A* g_b_hh, A* g_thr);

// DropConnect (dropconnect_impl.h has the contract): out[i] = keep(seed, i) ? in[i] * scale : 0, i in [i0, i1).
template <class A>
using DropconnectFn = void (*)(const A* in, A* out, int64_t i0, int64_t i1, uint64_t seed, uint32_t keep_below,
                               A scale);

enum class Isa : int { scalar = 0, avx2 = 1, avx512 = 2, neon = 3 };

// One instruction set's float32-accumulating kernels.
struct KernelTable {
  Isa isa;
  const char* name;
  DenseGatherFn<float, float> dense_f32;
  DenseGatherFn<float, f16> dense_f16;
  DenseGatherFn<float, bf16> dense_bf16;
  SparseGatherFn<float, int16_t, float> sparse_i16_f32;
  SparseGatherFn<float, int16_t, f16> sparse_i16_f16;
  SparseGatherFn<float, int16_t, bf16> sparse_i16_bf16;
  SparseGatherFn<float, int32_t, float> sparse_i32_f32;
  SparseGatherFn<float, int32_t, f16> sparse_i32_f16;
  SparseGatherFn<float, int32_t, bf16> sparse_i32_bf16;
  DenseGatherFn<float, int8_t> dense_i8;
  SparseGatherFn<float, int16_t, int8_t> sparse_i16_i8;
  SparseGatherFn<float, int32_t, int8_t> sparse_i32_i8;
  EgruUpdateFn egru_update;
  EgruTrainForwardFn<float> egru_train_forward;
  EgruTrainBackwardFn<float> egru_train_backward;
  DropconnectFn<float> dropconnect;
  BitmaskGatherFn<int16_t> bitmask_i16_f32;
  BitmaskGatherFn<int32_t> bitmask_i32_f32;
  BlockGatherFn<int16_t, float> block_i16_f32;
  BlockGatherFn<int16_t, f16> block_i16_f16;
  BlockGatherFn<int16_t, bf16> block_i16_bf16;
  BlockGatherFn<int16_t, int8_t> block_i16_i8;
  BlockGatherFn<int32_t, float> block_i32_f32;
  BlockGatherFn<int32_t, f16> block_i32_f16;
  BlockGatherFn<int32_t, bf16> block_i32_bf16;
  BlockGatherFn<int32_t, int8_t> block_i32_i8;

  DenseGatherFn<float, float> dense(const float*) const { return dense_f32; }
  DenseGatherFn<float, f16> dense(const f16*) const { return dense_f16; }
  DenseGatherFn<float, bf16> dense(const bf16*) const { return dense_bf16; }
  DenseGatherFn<float, int8_t> dense(const int8_t*) const { return dense_i8; }
  SparseGatherFn<float, int16_t, float> sparse(const int16_t*, const float*) const { return sparse_i16_f32; }
  SparseGatherFn<float, int16_t, f16> sparse(const int16_t*, const f16*) const { return sparse_i16_f16; }
  SparseGatherFn<float, int16_t, bf16> sparse(const int16_t*, const bf16*) const { return sparse_i16_bf16; }
  SparseGatherFn<float, int32_t, float> sparse(const int32_t*, const float*) const { return sparse_i32_f32; }
  SparseGatherFn<float, int32_t, f16> sparse(const int32_t*, const f16*) const { return sparse_i32_f16; }
  SparseGatherFn<float, int32_t, bf16> sparse(const int32_t*, const bf16*) const { return sparse_i32_bf16; }
  SparseGatherFn<float, int16_t, int8_t> sparse(const int16_t*, const int8_t*) const { return sparse_i16_i8; }
  SparseGatherFn<float, int32_t, int8_t> sparse(const int32_t*, const int8_t*) const { return sparse_i32_i8; }
  BitmaskGatherFn<int16_t> bitmask(const int16_t*) const { return bitmask_i16_f32; }
  BitmaskGatherFn<int32_t> bitmask(const int32_t*) const { return bitmask_i32_f32; }
  BlockGatherFn<int16_t, float> block(const int16_t*, const float*) const { return block_i16_f32; }
  BlockGatherFn<int16_t, f16> block(const int16_t*, const f16*) const { return block_i16_f16; }
  BlockGatherFn<int16_t, bf16> block(const int16_t*, const bf16*) const { return block_i16_bf16; }
  BlockGatherFn<int16_t, int8_t> block(const int16_t*, const int8_t*) const { return block_i16_i8; }
  BlockGatherFn<int32_t, float> block(const int32_t*, const float*) const { return block_i32_f32; }
  BlockGatherFn<int32_t, f16> block(const int32_t*, const f16*) const { return block_i32_f16; }
  BlockGatherFn<int32_t, bf16> block(const int32_t*, const bf16*) const { return block_i32_bf16; }
  BlockGatherFn<int32_t, int8_t> block(const int32_t*, const int8_t*) const { return block_i32_i8; }
};

// Per-ISA tables, each defined in its own translation unit (gather_<isa>.cpp).
const KernelTable& kernels_scalar();
#if defined(__x86_64__) || defined(_M_X64)
const KernelTable& kernels_avx2();
const KernelTable& kernels_avx512();
#endif
#if defined(__aarch64__)
const KernelTable& kernels_neon();
#endif

// float64 kernels (portable; used for gradcheck-grade accuracy, not speed).
void dense_gather_f64(const double* xv, const int32_t* idx, int64_t n_active, const double* wt,
                      int64_t ld, const double* bias, double* y, int64_t o0, int64_t o1);
int64_t sparse_gather_f64(const double* xv, const int32_t* idx, int64_t n_active,
                          const int64_t* col_ptr, const int16_t* rows, const double* vals,
                          const double* bias, double* y, int64_t o0, int64_t o1, int64_t n_out);
int64_t sparse_gather_f64(const double* xv, const int32_t* idx, int64_t n_active,
                          const int64_t* col_ptr, const int32_t* rows, const double* vals,
                          const double* bias, double* y, int64_t o0, int64_t o1, int64_t n_out);

// float64 DropConnect (portable).
extern const DropconnectFn<double> dropconnect_f64;

// dst[c, r] = sum_p src[p * part_stride + r * cols + c] for c in [c0, c1): a tiled transpose of src
// [rows, cols] summed over its parts (egru_train_impl.h).
void transpose_sum(const float* src, int64_t parts, int64_t part_stride, int64_t rows, int64_t cols, float* dst,
                   int64_t c0, int64_t c1);
void transpose_sum(const double* src, int64_t parts, int64_t part_stride, int64_t rows, int64_t cols, double* dst,
                   int64_t c0, int64_t c1);

// float64 EGRU training recurrence (portable; for gradcheck).
extern const EgruTrainForwardFn<double> egru_train_forward_f64;
extern const EgruTrainBackwardFn<double> egru_train_backward_f64;

// The table in use: the best instruction set this CPU supports, unless set_isa() chose another.
const KernelTable& active_kernels();
// Selects an instruction set; returns false (and changes nothing) if it is not compiled in or not
// supported by this CPU.
bool set_isa(Isa isa);
Isa best_supported_isa();
bool isa_supported(Isa isa);
bool isa_compiled(Isa isa);
const char* isa_name(Isa isa);
std::vector<std::string> detected_cpu_features();

// Compacts the nonzero entries of x[0, n) (NaN counts as nonzero) into idx/xv; returns their count.
// Branch-free per entry so its cost does not depend on the activity pattern, except that a block of
// 8 zeros (the common case for event outputs) is skipped after one OR of its bits.
template <class A>
inline int64_t compact_active(const A* x, int64_t n, int32_t* idx, A* xv) {
  using Bits = std::conditional_t<sizeof(A) == 8, uint64_t, std::conditional_t<sizeof(A) == 4, uint32_t, uint16_t>>;
  int64_t c = 0, j = 0;
  for (; j + 8 <= n; j += 8) {
    Bits bits[8];
    std::memcpy(bits, x + j, sizeof bits);
    Bits any = 0;
    for (int i = 0; i < 8; ++i) any |= bits[i];
    if (static_cast<Bits>(any << 1) == 0) continue;  // +0 and -0 only (sign bit shifted out): none active
    for (int i = 0; i < 8; ++i) {
      const A v = x[j + i];
      idx[c] = static_cast<int32_t>(j + i);
      xv[c] = v;
      c += (v != A(0));
    }
  }
  for (; j < n; ++j) {
    const A v = x[j];
    idx[c] = static_cast<int32_t>(j);
    xv[c] = v;
    c += (v != A(0));
  }
  return c;
}

}  // namespace evsparse::cpu
