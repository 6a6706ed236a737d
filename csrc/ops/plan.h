// A model's inference plan: every packed weight and vector of a recurrent stack in one byte tensor (the
// arena) described by one int64 tensor (meta), so that one op call per step receives four or five
// tensors instead of a list of ~10 optional tensors per layer, each boxed and re-checked per call.
//
// meta (int64, 1-D) = header [kPlanHeader] + one record [kPlanRecord] per layer:
//   header: magic, format version, kind (PlanKind), num_layers, input_size, state width, arena bytes, 0
//   record: in, out, flags (kPlanResidual | kPlanComplex), S,
//           weight A [8] (EGRU: w_ih in -> 3H; linear RNN: w_in in -> width),
//           weight B [8] (EGRU: w_hh H -> 3H; linear RNN: w_out width -> out),
//           vector byte offsets [6] (EGRU: b_ih, b_hh, thr; linear RNN: b_in, a_re, a_im or -1, b_out), 0 ...
// The S5 kind (evsparse.nn.S5Stack's plan) has records of kPlanRecordS5 words instead, and its records
// are either dense layers (kPlanLinear) or S5 blocks (see s5_ops.cpp):
//   record: in, out, flags, S (complex states; 0 for a linear record), weights A, B, C [8 each]
//           (block: B' in -> 2S, C' 2S -> out, the GLU's W2 out -> out or absent; linear: W in -> out,
//           B and C absent), vector byte offsets [8] (block: b_in [2S], lambda_re [S], lambda_im [S],
//           b_out [out], d [out] or -1, b_glu [out] or -1; linear: bias [out]), activation code, 0 ...
//   An absent weight has layout code -1 and every other word 0 or -1.
//   weight: layout (0 dense, 1 sparse), value dtype (kDtype*), row index dtype (0 none, 1 int16, 2 int32),
//           nnz, byte offsets of values, col_ptr, rows (-1 where absent), and of the float32 scale [in]
//           for int8 values (0 for other dtypes)
// Python writes the same format (python/evsparse/plan.py); tests/test_plan.py checks both agree.
//
// Validated once: get_plan parses the header, checks every section's bounds and alignment against the
// arena and validates each sparse weight's structure (col_ptr monotone, rows in range and sorted) the
// first time it sees an (arena, meta) pair and again whenever either is replaced, resized or edited
// in place (its version moves); otherwise it returns the parsed plan after comparing a few fields.
// The parsed pointers stay inside the arena's storage, which the cache keeps alive, so data changed
// without a version bump (a file mapped with mmap=True and edited on disk) can change values but not
// make a kernel read outside the arena: the per-call col_ptr checks and the kernels' row range checks
// (packed_product.h, cpu/kernels.h) still apply.
#pragma once

#include <cstdint>
#include <vector>

#include "checks.h"

namespace evsparse {

enum class PlanKind : int64_t { egru = 1, linear_rnn = 2, s5 = 3 };

constexpr int64_t kPlanMagic = 0x50535645;  // "EVSP" little-endian
constexpr int64_t kPlanVersion = 1;
constexpr int64_t kPlanHeader = 8;
constexpr int64_t kPlanRecord = 32;
constexpr int64_t kPlanRecordS5 = 48;
inline int64_t plan_record_words(PlanKind kind) { return kind == PlanKind::s5 ? kPlanRecordS5 : kPlanRecord; }
constexpr int64_t kPlanMaxLayers = 64;
constexpr int64_t kPlanResidual = 1;
constexpr int64_t kPlanComplex = 2;
// S5 records' flags (kPlanResidual as above): a dense layer instead of a block; ReLU on the record's
// output (block: after the residual add); ReLU on the complex states before C (read-out only).
constexpr int64_t kPlanLinear = 4, kPlanRelu = 8, kPlanStateRelu = 16;
// S5 blocks' activation of C's output (before the GLU).
constexpr int64_t kActNone = 0, kActRelu = 1, kActGelu = 2;
// Value dtype codes of a plan's weights.
constexpr int64_t kDtypeF32 = 0, kDtypeF16 = 1, kDtypeBF16 = 2, kDtypeI8 = 3;

struct PlanLayer {
  PackedArgs w[3];      // per kind, see the record layout; values null where absent
  const float* vec[6];  // per kind, see the record layout; null where absent
  int64_t in, out, S, width;
  bool residual;
  int64_t flags = 0, act = 0;  // the S5 kind's
};

struct Plan {
  PlanKind kind;
  int64_t num_layers, input_size, width;
  int64_t num_states;  // state rows: num_layers, or the S5 kind's number of blocks
  PlanLayer layers[kPlanMaxLayers];
  // The block index of each sparse weight with 16x1-block columns (PackedArgs::blocks points here;
  // derived once with the validation): reserved up front, so the pointers stay valid.
  std::vector<CscBlocks> blocks;

  Plan() = default;
  Plan(const Plan&) = delete;  // a copy's PackedArgs::blocks would point into this plan's index
  Plan& operator=(const Plan&) = delete;
};

// The validated plan of (arena, meta) for an op of this kind, or a ValueError. Valid until this
// thread's next get_plan.
const Plan& get_plan(const char* op, const Tensor& arena, const Tensor& meta, PlanKind kind);

// The plan ops' per-call checks. x: float32 CPU [in] (unbatched) or [B, in]; returns B (1 unbatched).
int64_t check_plan_input(const char* op, const Plan& plan, const Tensor& x);
// A state tensor of the stack: float32, [L, width] (L = plan.num_states) for an unbatched x or [L, B, width]; width_name
// names the width in the message ("hidden_size", "state width").
void check_plan_state(const char* op, const Plan& plan, const char* name, const Tensor& t, const Tensor& x, int64_t B,
                      const char* width_name);

// The plan sequence ops' xs: [T, in] or [T, B, in]. Returns one step's input for the per-step checks
// (check_plan_input): xs[0], or an empty stand-in of that shape when T = 0.
Tensor check_plan_sequence(const char* op, const Tensor& xs);

// Nonzero (NaN included) entries of v[0, n): the plan sequence ops' per-layer activity counts.
inline int64_t count_nonzero(const float* v, int64_t n) {
  int64_t c = 0;
  for (int64_t i = 0; i < n; ++i) c += v[i] != 0.f;
  return c;
}

// Whether the float32 data of a and b share no byte (the in-place ops' aliasing check).
inline bool disjoint(const Tensor& a, const Tensor& b) {
  const auto* pa = static_cast<const char*>(a.const_data_ptr());
  const auto* pb = static_cast<const char*>(b.const_data_ptr());
  return pa + a.numel() * 4 <= pb || pb + b.numel() * 4 <= pa;
}

}  // namespace evsparse
