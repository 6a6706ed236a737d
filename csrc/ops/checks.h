// Every argument check of the op bindings, in one place: tensors (device, layout, contiguity),
// dtypes, the input and bias, a packed weight in either layout (CSC structure included), the fused
// recurrent ops' per-layer argument layout, states and stack-op lists. A failed check is a
// ValueError naming the op and the argument. The Python side states the same contract in
// python/evsparse/_contract.py (tests/test_contract.py compares the two).
#pragma once

#include <memory>
#include <vector>

#include <ATen/EmptyTensor.h>
#include <ATen/core/List.h>

#include <optional>
#include <string>
#include <vector>

#include "op_utils.h"

namespace evsparse {

inline void check_tensor(const Tensor& t, const char* op, const char* name, const Tensor& like) {
  TORCH_CHECK_VALUE(t.defined(), op, ": argument '", name, "' is undefined");
  TORCH_CHECK_VALUE(t.device() == like.device(), op, ": argument '", name, "' is on ", t.device(),
                    " but x is on ", like.device(), "; move both to the same device");
  TORCH_CHECK_VALUE(t.is_contiguous(), op, ": argument '", name,
                    "' must be contiguous (call .contiguous() first)");
  TORCH_CHECK_VALUE(t.layout() == at::kStrided, op, ": argument '", name, "' must be a strided tensor");
}

// The accumulation dtype of x * w: float32 unless both are float64. Supported combinations:
// x f32 with f32/f16/bf16 weights; x f64 with f64; x f16/bf16 with weights of the same dtype; int8
// (quantised) weights with x f32/f16/bf16.
inline ScalarType accumulation_dtype(const char* op, ScalarType x, ScalarType w) {
  const bool ok = (x == w && (x == ScalarType::Float || x == ScalarType::Double || is_half(x))) ||
                  (x == ScalarType::Float && is_half(w)) ||
                  (w == ScalarType::Char && (x == ScalarType::Float || is_half(x)));
  TORCH_CHECK_VALUE(ok, op, ": unsupported dtypes x=", x, ", weight=", w,
                    "; use x float32 with float32/float16/bfloat16/int8 weights, float64 with float64, "
                    "or float16/bfloat16 x with weights of the same dtype or int8");
  return x == ScalarType::Double ? ScalarType::Double : ScalarType::Float;
}

struct PreparedInput {
  Tensor x;        // x (same shape) in the accumulation dtype, contiguous
  Tensor bias;     // [out] in the accumulation dtype, or undefined
  ScalarType out_dtype;
  int64_t batch;   // rows of x (1 for a 1-D x)

  // Output in the accumulation dtype with x's rank; no reshape/squeeze on the per-step path.
  // (at::detail::empty_cpu: x is on the CPU here; it skips the dispatcher round trip of at::empty.)
  Tensor new_output(int64_t out) const {
    return x.dim() == 1 ? at::detail::empty_cpu({out}, x.scalar_type())
                        : at::detail::empty_cpu({batch, out}, x.scalar_type());
  }
};

inline PreparedInput prepare_input(const char* op, const Tensor& x, int64_t in, int64_t out,
                                   ScalarType w_dtype, const std::optional<Tensor>& bias) {
  TORCH_CHECK_VALUE(x.dim() == 1 || x.dim() == 2, op, ": x must be 1-D [in] or 2-D [B, in], got ",
                    x.dim(), "-D with shape ", x.sizes());
  TORCH_CHECK_VALUE(x.size(-1) == in, op, ": x has ", x.size(-1),
                    " features but the weight expects in_features=", in);
  check_tensor(x, op, "x", x);
  TORCH_CHECK_VALUE(x.device().is_cpu(), op, ": this build has CPU kernels only, got x on ", x.device());
  const ScalarType acc = accumulation_dtype(op, x.scalar_type(), w_dtype);
  PreparedInput p;
  p.out_dtype = x.scalar_type();
  p.x = x.scalar_type() == acc ? x : x.to(acc);
  p.batch = x.dim() == 2 ? x.size(0) : 1;
  if (bias.has_value() && bias->defined()) {
    const Tensor& b = *bias;
    check_tensor(b, op, "bias", x);
    TORCH_CHECK_VALUE(b.dim() == 1 && b.size(0) == out, op, ": bias must have shape [", out,
                      "], got ", b.sizes());
    const bool int8_w = w_dtype == ScalarType::Char;  // quantised weights keep a float bias
    TORCH_CHECK_VALUE(b.scalar_type() == x.scalar_type() || (b.scalar_type() == w_dtype && !int8_w) ||
                          (int8_w && b.scalar_type() == ScalarType::Float), op,
                      ": bias dtype ", b.scalar_type(), " matches neither x (", x.scalar_type(),
                      ") nor the weight (", w_dtype, ")");
    p.bias = b.scalar_type() == acc ? b : b.to(acc);
  }
  return p;
}

inline Tensor finish_output(const PreparedInput& p, const Tensor& y) {
  return y.scalar_type() == p.out_dtype ? y : y.to(p.out_dtype);
}

// Checks a CSC structure (col_ptr, row_idx) for out outputs, and its values when given.
inline void check_csc(const char* op, const Tensor& x, const Tensor& col_ptr, const Tensor& row_idx,
                      const Tensor* values, int64_t out) {
  check_tensor(col_ptr, op, "col_ptr", x);
  check_tensor(row_idx, op, "row_idx", x);
  TORCH_CHECK_VALUE(col_ptr.dim() == 1 && col_ptr.scalar_type() == ScalarType::Long, op,
                    ": col_ptr must be a 1-D int64 tensor, got ", col_ptr.scalar_type(), " ", col_ptr.sizes());
  TORCH_CHECK_VALUE(col_ptr.size(0) >= 1, op, ": col_ptr must have in_features + 1 entries");
  TORCH_CHECK_VALUE(row_idx.dim() == 1 && (row_idx.scalar_type() == ScalarType::Short ||
                                           row_idx.scalar_type() == ScalarType::Int),
                    op, ": row_idx must be a 1-D int16 or int32 tensor, got ", row_idx.scalar_type());
  TORCH_CHECK_VALUE(out >= 0, op, ": out_features must be >= 0, got ", out);
  TORCH_CHECK_VALUE(row_idx.scalar_type() == ScalarType::Int || out <= 32768, op,
                    ": int16 row indices cannot address ", out, " outputs; use int32");
  TORCH_CHECK_VALUE(out <= INT32_MAX, op, ": out_features must be < 2^31, got ", out);
  if (values != nullptr) {
    check_tensor(*values, op, "values", x);
    TORCH_CHECK_VALUE(values->dim() == 1 && values->size(0) == row_idx.size(0), op,
                      ": values must be 1-D with one entry per row index (", row_idx.size(0), "), got ",
                      values->sizes());
  }
}

// The full structure check of a sparse weight, O(in + nnz): col_ptr from 0 to nnz and
// non-decreasing, every row index in [0, out) and strictly increasing within its column. The
// gradient ops run it on every call (their work is O(nnz) anyway); the forward ops through
// ensure_valid_csc, once per structure (csc_validation.cpp).
void validate_csc(const char* op, const char* name, const Tensor& col_ptr, const Tensor& row_idx, int64_t out);
// The same on raw pointers (a plan's weights, plan.cpp): col_ptr [in + 1], rows [nnz].
void validate_csc(const char* op, const char* name, const int64_t* col_ptr, int64_t in, const void* rows, bool rows32,
                  int64_t nnz, int64_t out);

// A tensor's version counter; inference tensors (made under torch.inference_mode) have none and count
// as unchanged: they can be edited only inside inference mode, where the kernels' range checks still
// keep every access in bounds. (The validation caches of csc_validation.cpp and plan.cpp key on it.)
inline uint32_t version_of(const Tensor& t) {
  const auto& vc = t.unsafeGetTensorImpl()->version_counter();
  return vc.enabled() ? vc.current_version() : 0;
}
// Those caches drop entries of dead tensors once they hold kSeenSweepAt, and everything (re-validated
// on next use) if they still grow to kSeenClearAt.
constexpr size_t kSeenSweepAt = 256;
constexpr size_t kSeenClearAt = 4096;

// validate_csc, done once per structure: again only when col_ptr or row_idx is a different tensor,
// was edited in place (its version moved) or now has other data or size. So a raw op call with
// corrupted data gets a ValueError naming the tensor, at the cost of one hash lookup per weight and
// call (csc_validation.cpp). Data changed without a version bump (a file mapped with mmap=True and
// edited on disk) is still caught by the per-call checks below and by the kernels' own range checks,
// so it can never be read out of bounds.
// With want_masks, it also returns the structure's bitmask, derived once and kept with the entry.
struct CscBitmask {
  std::vector<uint16_t> masks;  // [in, ceil(out / 16)]: bit r % 16 of masks[j][r / 16] for each stored row r of column j
  std::vector<int64_t> counts;  // [in]: the bits set per column (its col_ptr count when derived)
  std::vector<int32_t> first, last;  // [in]: each column's first and last stored row when derived (-1: none)
};
// With want_blocks, which columns are made of 16x1 blocks of rows (the block-gather's flags,
// gather_impl.h), derived once and kept with the entry; null when no column with entries is.
struct CscBlocks {
  std::vector<uint8_t> blocked;  // [in]: 1 where column j was a run of 16x1 row blocks (or empty)
  std::vector<int64_t> ptr;      // [in + 1]: the blocked columns' ranges in starts
  std::vector<int32_t> starts;   // their blocks' first rows
  int64_t blocked_nnz = 0;       // the entries in the blocked columns
  cpu::BlockIndex index() const { return cpu::BlockIndex{blocked.data(), ptr.data(), starts.data()}; }
};
// The same derivation on raw pointers (a validated structure): fills b; returns b.blocked_nnz.
int64_t derive_blocks(const int64_t* col_ptr, int64_t in, const void* rows, bool rows32, int64_t out, CscBlocks& b);
// The block-gather serves a weight whose blocked columns hold at least this fraction of its entries
// (the rest of its columns take the scatter inside it). EVSPARSE_BLOCK_MIN_FRACTION (at load) and
// set_block_min_fraction (any time) override it; 2 turns the block path off (for A/B measurements:
// the two paths give the same bits).
constexpr double kBlockMinFraction = 0.5;
double block_min_fraction();
void set_block_min_fraction(double f);
inline bool use_blocks(int64_t blocked_nnz, int64_t nnz) {
  return blocked_nnz > 0 && double(blocked_nnz) >= block_min_fraction() * double(nnz);
}
struct CscDerived {
  std::shared_ptr<const CscBitmask> masks;
  std::shared_ptr<const CscBlocks> blocks;
};
CscDerived ensure_valid_csc(const char* op, const char* name, const Tensor& col_ptr, const Tensor& row_idx,
                            int64_t out, bool want_masks = false, bool want_blocks = false);


// Per call, O(1) + O(active): col_ptr's two ends (catches a zeroed or truncated col_ptr) and the
// pointer ranges of the columns this call reads, so a corrupted pointer array cannot make the kernel
// read out of bounds. Row indices are range-checked by the kernel as it reads them (see
// cpu/kernels.h); a structure the kernel had to skip entries of is reported by report_bad_rows.
inline void check_col_ptr_ends(const char* op, const char* name, const int64_t* col_ptr, int64_t in, int64_t nnz) {
  TORCH_CHECK_VALUE(col_ptr[0] == 0 && col_ptr[in] == nnz, op, ": ", name, " col_ptr must start at 0 and end at nnz=",
                    nnz, ", got ", col_ptr[0], "..", col_ptr[in], " (corrupted packed weight)");
}

inline void check_active_columns(const char* op, const char* name, const int64_t* col_ptr, const int32_t* idx,
                                 int64_t na, int64_t nnz, int64_t* touched) {
  for (int64_t a = 0; a < na; ++a) {
    const int64_t j = idx[a];
    const int64_t k0 = col_ptr[j], k1 = col_ptr[j + 1];
    TORCH_CHECK_VALUE(0 <= k0 && k0 <= k1 && k1 <= nnz, op, ": ", name, " col_ptr is inconsistent at column ", j,
                      " ([", k0, ", ", k1, ") with nnz=", nnz, "; corrupted packed weight)");
    *touched += k1 - k0;
  }
}

// The bitmask-gather reads the masks derived when the structure was validated, not row_idx. Data that
// changed since without a version bump (a memory-mapped file edited on disk) would go unseen, so per
// call, O(active), each active column's first and last row index must still be the ones the masks
// were derived from: a changed index there is refused as the scatter's range checks would refuse it.
template <class I>
inline void check_bitmask_rows(const char* op, const char* name, const int64_t* col_ptr, const I* rows,
                               const CscBitmask& bm, const int32_t* idx, int64_t na) {
  for (int64_t a = 0; a < na; ++a) {
    const int64_t j = idx[a], k0 = col_ptr[j], k1 = col_ptr[j + 1];
    if (k1 > k0) {
      TORCH_CHECK_VALUE(int64_t(rows[k0]) == bm.first[j] && int64_t(rows[k1 - 1]) == bm.last[j], op, ": ", name,
                        " row_idx changed at column ", j, " since it was validated, without a version bump (e.g. a "
                        "memory-mapped file edited on disk; corrupted packed weight; rebuild it with evsparse.pack, "
                        "or reload an intact file)");
    }
  }
}

inline void report_bad_rows(const char* op, const char* name, int64_t bad, int64_t out) {
  TORCH_CHECK_VALUE(bad == 0, op, ": ", name, " row_idx holds ", bad, " entr", bad == 1 ? "y" : "ies",
                    " outside [0, ", out, ") or out of order within a column (corrupted packed weight; "
                    "rebuild it with evsparse.pack, or reload an intact file)");
}

// A packed weight as the kernels read it, on raw pointers: dense layout = values [in, out]; sparse
// layout = CSC values [nnz], col_ptr [in + 1], rows [nnz] (int16, or int32 when rows32). Built from
// tensors by dense_args / packed_args (checked here) or from a model plan's arena (plan.h).
struct PackedArgs {
  const void* values;
  ScalarType dtype;
  const int64_t* col_ptr;  // null for the dense layout
  const void* rows;
  bool rows32;
  int64_t nnz;
  int64_t in;
  int64_t out;
  const char* name = "weight";  // the argument's name in error messages
  const float* scale = nullptr;  // int8 values: the per-input-column scale [in]; null otherwise
  // The structure's bitmask (float32 sparse weights on AVX-512, dense enough: sparse_args), for the
  // bitmask-gather; null otherwise. The owner keeps it alive for the call.
  const uint16_t* masks = nullptr;
  const int64_t* mask_counts = nullptr;
  std::shared_ptr<const CscBitmask> masks_owner;
  // The structure's 16x1-block columns (CscBlocks; sparse_args), for the block-gather; null otherwise.
  const CscBlocks* blocks = nullptr;  // (kept alive by blocks_owner, or by the plan that holds it)
  std::shared_ptr<const CscBlocks> blocks_owner;
  bool sparse() const { return col_ptr != nullptr; }
};

// The bitmask-gather replaces the scatter for float32 sparse weights on AVX-512 at or above this
// density: it costs the same per 16-row block whatever the density, the scatter costs per nonzero.
// Measured with benchmarks/ab/bitmask_layout.py (sparse_linear, 2 threads, 10% active, 256x768 to
// 2048x6144), the bitmask over the AVX-512 scatter:
//   Intel Xeon, 2026-12-03: 0.85-0.97x at 12.5%, 0.91-1.02x at 15%, 1.09-1.32x at 20%, 1.53-1.67x at 30%;
//   AMD EPYC Zen 4, 2026-12-03: 0.69-0.89x at 12.5%, 0.81-0.89x at 15%, 0.97-1.31x at 20%, 1.11-1.46x at 30%.
// On both the crossover lies between 15% and 20%. EVSPARSE_BITMASK_MIN_DENSITY (at load) and
// set_bitmask_min_density (any time) override it, for tuning on another CPU; 2 turns the bitmask off.
constexpr double kBitmaskMinDensity = 0.175;
double bitmask_min_density();
void set_bitmask_min_density(double d);

// Calls fn(const int16_t*) or fn(const int32_t*) with the row indices of a sparse packed weight.
template <class Fn>
void dispatch_rows(const PackedArgs& w, const Fn& fn) {
  if (w.rows32) {
    fn(static_cast<const int32_t*>(w.rows));
  } else {
    fn(static_cast<const int16_t*>(w.rows));
  }
}

inline PackedArgs dense_args(const Tensor& values, int64_t in, int64_t out, const char* name) {
  return PackedArgs{values.const_data_ptr(), values.scalar_type(), nullptr, nullptr, false, 0, in, out, name};
}

// A sparse weight whose tensors check_csc accepted; validates its structure (once per structure, see
// ensure_valid_csc below).
// The products a sparse weight may take besides the scatter. The block-gather (any weight dtype but
// float64, any ISA) when most of the structure is 16x1 blocks: bitwise equal to the scatter, so every
// op and the plans take it. The bitmask-gather (float32, AVX-512, dense enough) only for
// sparse_gather_linear: it rounds differently, and the recurrent ops' per-layer and plan forms must
// stay bitwise equal (plans use the blocks, never the bitmask).
enum class Derive { blocks, blocks_and_bitmask };
inline PackedArgs sparse_args(const char* op, const char* name, const Tensor& values, const Tensor& col_ptr,
                              const Tensor& row_idx, int64_t out, Derive derive = Derive::blocks) {
  const int64_t in = col_ptr.size(0) - 1, nnz = row_idx.size(0);
  const bool want_blocks = values.scalar_type() != ScalarType::Double && nnz > 0;
  const bool want_masks = derive == Derive::blocks_and_bitmask && values.scalar_type() == ScalarType::Float &&
                          cpu::active_kernels().isa == cpu::Isa::avx512 && in > 0 && out > 0 &&
                          double(nnz) >= bitmask_min_density() * double(in) * double(out);
  auto d = ensure_valid_csc(op, name, col_ptr, row_idx, out, want_masks, want_blocks);
  PackedArgs w{values.const_data_ptr(),     values.scalar_type(),
               col_ptr.const_data_ptr<int64_t>(), row_idx.const_data_ptr(),
               row_idx.scalar_type() == ScalarType::Int, nnz,
               in,                            out,
               name};
  if (d.blocks && use_blocks(d.blocks->blocked_nnz, nnz)) {
    w.blocks = d.blocks.get();
    w.blocks_owner = std::move(d.blocks);
  } else if (d.masks) {
    w.masks = d.masks->masks.data();
    w.mask_counts = d.masks->counts.data();
    w.masks_owner = std::move(d.masks);
  }
  return w;
}

// The weight arguments of one layer of the fused recurrent ops, in schema order (after the input
// and the state); a stack-step op's Tensor?[] list holds them for every layer in turn. Python states
// the same as EGRU_LAYER_ARGS / LINEAR_RNN_LAYER_ARGS (python/evsparse/_contract.py; compared by
// tests/test_contract.py). true = required (not Optional in the one-layer op's schema).
inline const std::vector<bool>& egru_layer_args() {
  static const std::vector<bool> required{true, false, false, true, false, false, true, true, true};
  return required;
}
inline const std::vector<bool>& linear_rnn_layer_args() {
  static const std::vector<bool> required{true, false, false, true, true, false, true, false, false, true};
  return required;
}

inline PackedArgs packed_args(const char* op, const char* name, const Tensor& values, const std::optional<Tensor>& col_ptr,
                       const std::optional<Tensor>& row_idx, int64_t in, int64_t out, const Tensor& like) {
  const bool sparse = col_ptr.has_value() && col_ptr->defined();
  TORCH_CHECK_VALUE(sparse == (row_idx.has_value() && row_idx->defined()), op, ": ", name,
                    " needs both col_ptr and row_idx (sparse layout) or neither (dense layout)");
  TORCH_CHECK_VALUE(values.scalar_type() != ScalarType::Char, op, ": ", name,
                    " is int8, whose scale this op does not take; run int8 models through their plan "
                    "(PackedEGRU / PackedLinearRNN) or use sparse_linear");
  TORCH_CHECK_VALUE(values.scalar_type() == ScalarType::Float || is_half(values.scalar_type()), op, ": ", name,
                    " must be float32, float16 or bfloat16, got ", values.scalar_type());
  if (!sparse) {
    check_tensor(values, op, name, like);
    TORCH_CHECK_VALUE(values.dim() == 2 && values.size(0) == in && values.size(1) == out, op, ": ", name,
                      " (dense layout) must have shape [", in, ", ", out, "], got ", values.sizes());
    return dense_args(values, in, out, name);
  }
  check_csc(op, like, *col_ptr, *row_idx, &values, out);
  TORCH_CHECK_VALUE(col_ptr->size(0) == in + 1, op, ": ", name, " col_ptr must have ", in + 1, " entries, got ",
                    col_ptr->size(0));
  return sparse_args(op, name, values, *col_ptr, *row_idx, out);
}

inline void check_vector(const char* op, const char* name, const Tensor& t, int64_t n, const Tensor& like) {
  check_tensor(t, op, name, like);
  TORCH_CHECK_VALUE(t.scalar_type() == ScalarType::Float, op, ": ", name, " must be float32, got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.dim() == 1 && t.size(0) == n, op, ": ", name, " must have shape [", n, "], got ", t.sizes());
}

// The dequantisation scale of an int8 weight: float32 [in], one per input column; required with int8
// values and refused with any other dtype (a scale would otherwise be silently ignored). Its entries
// are checked where they are used: packed_product refuses a non-finite scale of an active input.
inline PackedArgs with_scale(const char* op, PackedArgs w, const std::optional<Tensor>& scale, const Tensor& like) {
  const bool given = scale.has_value() && scale->defined();
  if (w.dtype != ScalarType::Char) {
    TORCH_CHECK_VALUE(!given, op, ": scale is only for int8 weights; ", w.name, " is ", w.dtype);
    return w;
  }
  TORCH_CHECK_VALUE(given, op, ": int8 ", w.name, " needs its scale (float32 [in_features]); "
                    "pack with evsparse.pack(..., weight_dtype=torch.int8)");
  check_vector(op, "scale", *scale, w.in, like);
  w.scale = scale->const_data_ptr<float>();
  return w;
}

inline void check_state(const char* op, const char* name, const Tensor& t, int64_t B, int64_t H, const Tensor& like) {
  check_tensor(t, op, name, like);
  TORCH_CHECK_VALUE(t.scalar_type() == ScalarType::Float, op, ": ", name, " must be float32, got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.dim() == 2 && t.size(0) == B && t.size(1) == H, op, ": ", name, " must have shape [", B, ", ",
                    H, "], got ", t.sizes());
}

inline void check_input(const char* op, const Tensor& x, int64_t expected_dim) {
  TORCH_CHECK_VALUE(x.dim() == expected_dim, op, ": x must be ", expected_dim, "-D, got shape ", x.sizes());
  check_tensor(x, op, "x", x);
  TORCH_CHECK_VALUE(x.device().is_cpu(), op, ": this build has CPU kernels only, got x on ", x.device());
  TORCH_CHECK_VALUE(x.scalar_type() == ScalarType::Float, op, ": x must be float32, got ", x.scalar_type());
}

// The per-layer arguments of a stack op (``Tensor?[] layers``: per layer, the weight arguments of the
// one-layer op in its order), as a vector that outlives the PackedArgs referring into it. Checks the
// count and that every required (non-optional in the one-layer op) entry is given.
inline std::vector<std::optional<Tensor>> stack_args(const char* op, const c10::List<std::optional<Tensor>>& layers,
                                                     int64_t num_layers, const std::vector<bool>& required) {
  const auto per_layer = static_cast<int64_t>(required.size());
  TORCH_CHECK_VALUE(static_cast<int64_t>(layers.size()) == num_layers * per_layer, op, ": layers must hold ",
                    per_layer, " entries per layer (", num_layers, " layers, from the state), got ", layers.size());
  std::vector<std::optional<Tensor>> args = layers.vec();
  for (int64_t i = 0; i < static_cast<int64_t>(args.size()); ++i) {
    TORCH_CHECK_VALUE(!required[i % per_layer] || (args[i].has_value() && args[i]->defined()), op,
                      ": layers entry ", i, " (layer ", i / per_layer, ", argument ", i % per_layer,
                      ") is required, got None");
  }
  return args;
}

inline void check_stacked_state(const char* op, const char* name, const Tensor& t, int64_t B, int64_t H,
                                const Tensor& like) {
  check_tensor(t, op, name, like);
  TORCH_CHECK_VALUE(t.scalar_type() == ScalarType::Float, op, ": ", name, " must be float32, got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.dim() == 3 && t.size(0) >= 1 && t.size(1) == B, op, ": ", name,
                    " must have shape [num_layers >= 1, ", B, ", width], got ", t.sizes());
  TORCH_CHECK_VALUE(H < 0 || t.size(2) == H, op, ": ", name, " must have width ", H, ", got ", t.sizes());
}

// Runs fn() for layer k of a stack op, so that a ValueError from the one-layer checks (which do not
// know the layer) names it. Free unless it throws.
template <class Fn>
void for_layer(const char* op, int64_t k, const Fn& fn) {
  try {
    fn();
  } catch (const c10::ValueError& e) {
    std::string msg = e.what_without_backtrace();
    const std::string prefix = std::string(op) + ": ";
    if (msg.rfind(prefix, 0) == 0) msg.erase(0, prefix.size());  // the op's name is said once
    TORCH_CHECK_VALUE(false, op, ": layer ", k, ": ", msg);
  }
}

struct StackDims {
  int64_t batch, num_layers, width;
};

// The stack ops' common start: x [B, in] and the first stacked state [L, B, width], checked against
// each other; the sizes the rest of the op checks its other arguments against.
inline StackDims check_stack_input(const char* op, const Tensor& x, const char* state_name, const Tensor& state) {
  check_input(op, x, 2);
  check_stacked_state(op, state_name, state, x.size(0), -1, x);
  return {x.size(0), state.size(0), state.size(2)};
}

}  // namespace evsparse
