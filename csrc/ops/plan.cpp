// get_plan (see plan.h) and torch.ops.evsparse.plan_validate.
#include "plan.h"

#include <torch/library.h>

#include <memory>
#include <optional>
#include <mutex>
#include <unordered_map>

namespace evsparse {
namespace {

void check_plan_tensor(const char* op, const char* name, const Tensor& t, ScalarType dtype) {
  TORCH_CHECK_VALUE(t.defined(), op, ": argument '", name, "' is undefined");
  TORCH_CHECK_VALUE(t.device().is_cpu(), op, ": ", name, " is on ", t.device(), "; the plan ops run on the CPU");
  TORCH_CHECK_VALUE(t.layout() == at::kStrided && t.dim() == 1 && t.is_contiguous() && t.scalar_type() == dtype,
                    op, ": ", name, " must be a contiguous 1-D ", dtype, " tensor, got ", t.scalar_type(), " ",
                    t.sizes());
}

// Bytes [off, off + count * elem) of the arena, in bounds and aligned for elem, or a ValueError.
const void* section(const char* op, int64_t layer, const char* what, const uint8_t* base, int64_t bytes, int64_t off,
                    int64_t count, int64_t elem) {
  TORCH_CHECK_VALUE(off >= 0 && off <= bytes && count >= 0 && count <= (bytes - off) / elem &&
                        (reinterpret_cast<uintptr_t>(base) + static_cast<uintptr_t>(off)) % elem == 0,
                    op, ": layer ", layer, ": ", what, " (", count, " x ", elem, " bytes at offset ", off,
                    ") lies outside the ", bytes, "-byte arena or is misaligned (corrupted plan; rebuild the module "
                    "or reload an intact file)");
  return base + off;
}

ScalarType value_dtype(const char* op, int64_t layer, const char* name, int64_t code) {
  switch (code) {
    case kDtypeF32: return ScalarType::Float;
    case kDtypeF16: return ScalarType::Half;
    case kDtypeBF16: return ScalarType::BFloat16;
    case kDtypeI8: return ScalarType::Char;
    default: TORCH_CHECK_VALUE(false, op, ": layer ", layer, ": ", name, " has value dtype code ", code,
                               " (corrupted plan)");
  }
}

PackedArgs parse_weight(const char* op, int64_t layer, const char* name, const int64_t* d, const uint8_t* base,
                        int64_t bytes, int64_t in, int64_t out) {
  const int64_t layout = d[0], idx = d[2];
  const ScalarType dtype = value_dtype(op, layer, name, d[1]);
  const int64_t esize = dtype == ScalarType::Float ? 4 : dtype == ScalarType::Char ? 1 : 2;
  // int8 values: word 7 is the offset of the float32 scale [in]; otherwise it must be 0.
  const float* scale = nullptr;
  if (dtype == ScalarType::Char) {
    scale = static_cast<const float*>(section(op, layer, "int8 scale", base, bytes, d[7], in, 4));
  } else {
    TORCH_CHECK_VALUE(d[7] == 0, op, ": layer ", layer, ": ", name, " has a scale offset but is not int8 (corrupted plan)");
  }
  if (layout == 0) {
    TORCH_CHECK_VALUE(idx == 0, op, ": layer ", layer, ": ", name, " is dense but has a row index dtype (corrupted plan)");
    const void* v = section(op, layer, name, base, bytes, d[4], in * out, esize);
    return PackedArgs{v, dtype, nullptr, nullptr, false, 0, in, out, name, scale};
  }
  TORCH_CHECK_VALUE(layout == 1 && (idx == 1 || idx == 2), op, ": layer ", layer, ": ", name, " has layout code ",
                    layout, " and row index code ", idx, " (corrupted plan)");
  TORCH_CHECK_VALUE(idx == 2 || out <= 32768, op, ": layer ", layer, ": ", name, " has int16 row indices for ", out,
                    " outputs (corrupted plan)");
  const int64_t nnz = d[3];
  TORCH_CHECK_VALUE(nnz >= 0 && nnz <= in * out, op, ": layer ", layer, ": ", name, " has nnz=", nnz, " for a ", out,
                    "x", in, " weight (corrupted plan)");
  const void* v = section(op, layer, name, base, bytes, d[4], nnz, esize);
  const auto* cp = static_cast<const int64_t*>(section(op, layer, "col_ptr", base, bytes, d[5], in + 1, 8));
  const void* rows = section(op, layer, "row indices", base, bytes, d[6], nnz, idx == 2 ? 4 : 2);
  return PackedArgs{v, dtype, cp, rows, idx == 2, nnz, in, out, name, scale};
}

const float* parse_vector(const char* op, int64_t layer, const char* what, const uint8_t* base, int64_t bytes,
                          int64_t off, int64_t n) {
  return static_cast<const float*>(section(op, layer, what, base, bytes, off, n, 4));
}

constexpr int64_t kMaxDim = int64_t(1) << 31;

// An absent weight of an S5 record: layout code -1, every other word 0 or -1.
bool absent_weight(const int64_t* d) {
  if (d[0] != -1) return false;
  for (int i = 1; i < 8; ++i) {
    if (d[i] != 0 && d[i] != -1) return false;
  }
  return true;
}

// One record of an S5 plan (plan.h): a dense layer or an S5 block.
void parse_s5_record(const char* op, int64_t k, const int64_t* r, int64_t flags, const uint8_t* base, int64_t bytes,
                     Plan& p, PlanLayer& L) {
  TORCH_CHECK_VALUE((flags & ~(kPlanResidual | kPlanLinear | kPlanRelu | kPlanStateRelu)) == 0, op, ": layer ", k,
                    " has flags ", flags, " (corrupted plan)");
  TORCH_CHECK_VALUE(L.out >= 1 && L.out < kMaxDim, op, ": layer ", k, " has out=", L.out, " (corrupted plan)");
  L.flags = flags;
  L.residual = (flags & kPlanResidual) != 0;
  L.act = r[36];
  const int64_t* vec = r + 28;
  if ((flags & kPlanLinear) != 0) {
    TORCH_CHECK_VALUE(L.S == 0 && !L.residual && (flags & kPlanStateRelu) == 0 && L.act == kActNone &&
                          absent_weight(r + 12) && absent_weight(r + 20),
                      op, ": linear layer ", k, " has block fields (corrupted plan)");
    L.width = 0;
    L.w[0] = parse_weight(op, k, "weight", r + 4, base, bytes, L.in, L.out);
    L.vec[0] = parse_vector(op, k, "bias", base, bytes, vec[0], L.out);
    for (int i = 1; i < 8; ++i) {
      TORCH_CHECK_VALUE(vec[i] == -1, op, ": linear layer ", k, " has a block vector (corrupted plan)");
    }
    return;
  }
  TORCH_CHECK_VALUE(L.S >= 1 && 2 * L.S == p.width && (!L.residual || L.in == L.out) &&
                        (L.act == kActNone || L.act == kActRelu || L.act == kActGelu),
                    op, ": block ", k, " has S=", L.S, " (the plan's state width ", p.width, " = 2S), in=", L.in,
                    ", out=", L.out, L.residual ? ", residual" : "", ", activation code ", L.act, " (corrupted plan)");
  L.width = 2 * L.S;
  L.w[0] = parse_weight(op, k, "B", r + 4, base, bytes, L.in, L.width);
  L.w[1] = parse_weight(op, k, "C", r + 12, base, bytes, L.width, L.out);
  const bool glu = !absent_weight(r + 20);
  if (glu) L.w[2] = parse_weight(op, k, "W2", r + 20, base, bytes, L.out, L.out);
  L.vec[0] = parse_vector(op, k, "b_in", base, bytes, vec[0], L.width);
  L.vec[1] = parse_vector(op, k, "lambda_re", base, bytes, vec[1], L.S);
  L.vec[2] = parse_vector(op, k, "lambda_im", base, bytes, vec[2], L.S);
  L.vec[3] = parse_vector(op, k, "b_out", base, bytes, vec[3], L.out);
  L.vec[4] = vec[4] < 0 ? nullptr : parse_vector(op, k, "d", base, bytes, vec[4], L.out);
  TORCH_CHECK_VALUE(glu == (vec[5] >= 0) && vec[6] == -1 && vec[7] == -1, op, ": block ", k,
                    ": b_glu must be given exactly when the block has a GLU weight (corrupted plan)");
  L.vec[5] = glu ? parse_vector(op, k, "b_glu", base, bytes, vec[5], L.out) : nullptr;
  ++p.num_states;
}

// What a validated plan looked like (see csc_validation.cpp for why weak references).
struct Seen {
  c10::weak_intrusive_ptr<c10::TensorImpl> arena, meta;
  const c10::TensorImpl* arena_impl;
  const c10::TensorImpl* meta_impl;
  const void* arena_data;
  const void* meta_data;
  int64_t arena_numel, meta_numel;
  uint32_t arena_version, meta_version;
};

bool same(const Seen& s, const Tensor& arena, const Tensor& meta) {
  return s.arena_impl == arena.unsafeGetTensorImpl() && s.meta_impl == meta.unsafeGetTensorImpl() && s.arena_data == arena.const_data_ptr() &&
         s.meta_data == meta.const_data_ptr() && s.arena_numel == arena.numel() && s.meta_numel == meta.numel() &&
         s.arena_version == version_of(arena) && s.meta_version == version_of(meta);
}

// Parses and bounds-checks (arena, meta) into p.
void parse_plan(const char* op, const Tensor& arena, const Tensor& meta, PlanKind kind, Plan& p) {
  const int64_t n_meta = meta.numel();
  const int64_t* m = meta.const_data_ptr<int64_t>();
  TORCH_CHECK_VALUE(n_meta >= kPlanHeader && m[0] == kPlanMagic && m[1] == kPlanVersion, op,
                    ": meta is not an evsparse plan of format version ", kPlanVersion,
                    " (wrong magic number or version; rebuild the module with sparsify())");
  TORCH_CHECK_VALUE(m[2] == static_cast<int64_t>(kind), op, ": the plan is of kind ", m[2], ", this op takes kind ",
                    static_cast<int64_t>(kind), " (a plan of another model family)");
  p.kind = kind;
  p.num_layers = m[3];
  p.input_size = m[4];
  p.width = m[5];
  const int64_t rec_words = plan_record_words(kind);
  TORCH_CHECK_VALUE(p.num_layers >= 1 && p.num_layers <= kPlanMaxLayers && n_meta == kPlanHeader + p.num_layers * rec_words,
                    op, ": meta holds ", n_meta, " entries for ", p.num_layers, " layers (corrupted plan)");
  TORCH_CHECK_VALUE(p.input_size >= 1 && p.input_size < kMaxDim && p.width >= 1 && p.width < kMaxDim, op,
                    ": plan sizes input=", p.input_size, ", width=", p.width, " are out of range (corrupted plan)");
  const int64_t bytes = arena.numel();
  TORCH_CHECK_VALUE(m[6] == bytes, op, ": the plan describes a ", m[6], "-byte arena, the arena has ", bytes,
                    " bytes (corrupted plan)");
  const auto* base = static_cast<const uint8_t*>(arena.const_data_ptr());
  int64_t in = p.input_size;
  p.num_states = kind == PlanKind::s5 ? 0 : p.num_layers;
  for (int64_t k = 0; k < p.num_layers; ++k) {
    const int64_t* r = m + kPlanHeader + k * rec_words;
    PlanLayer& L = p.layers[k];
    L = PlanLayer{};
    L.in = r[0];
    L.out = r[1];
    L.S = r[3];
    const int64_t flags = r[2];
    if (kind == PlanKind::s5) {
      TORCH_CHECK_VALUE(L.in == in, op, ": layer ", k, " has in=", L.in, " (expected ", in, ") (corrupted plan)");
      parse_s5_record(op, k, r, flags, base, bytes, p, L);
      in = L.out;
      continue;
    }
    TORCH_CHECK_VALUE(L.in == in && L.out >= 1 && L.out < kMaxDim && L.S >= 1 && L.S < kMaxDim, op, ": layer ", k,
                      " has in=", L.in, " (expected ", in, "), out=", L.out, ", S=", L.S, " (corrupted plan)");
    if (kind == PlanKind::egru) {
      const int64_t H = p.width;
      TORCH_CHECK_VALUE(flags == 0 && L.out == H && L.S == H, op, ": layer ", k, " does not match the hidden size ", H,
                        " (corrupted plan)");
      L.width = H;
      L.residual = false;
      L.w[0] = parse_weight(op, k, "w_ih", r + 4, base, bytes, L.in, 3 * H);
      L.w[1] = parse_weight(op, k, "w_hh", r + 12, base, bytes, H, 3 * H);
      L.vec[0] = parse_vector(op, k, "b_ih", base, bytes, r[20], 3 * H);
      L.vec[1] = parse_vector(op, k, "b_hh", base, bytes, r[21], 3 * H);
      L.vec[2] = parse_vector(op, k, "thr", base, bytes, r[22], H);
      L.vec[3] = nullptr;
    } else {
      TORCH_CHECK_VALUE((flags & ~(kPlanResidual | kPlanComplex)) == 0, op, ": layer ", k, " has flags ", flags,
                        " (corrupted plan)");
      const bool complex = (flags & kPlanComplex) != 0;
      L.residual = (flags & kPlanResidual) != 0;
      L.width = complex ? 2 * L.S : L.S;
      TORCH_CHECK_VALUE(L.width == p.width && (!L.residual || L.in == L.out), op, ": layer ", k, " has state width ",
                        L.width, " (the plan's ", p.width, "), in=", L.in, ", out=", L.out,
                        L.residual ? " and is residual" : "", " (corrupted plan)");
      L.w[0] = parse_weight(op, k, "w_in", r + 4, base, bytes, L.in, L.width);
      L.w[1] = parse_weight(op, k, "w_out", r + 12, base, bytes, L.width, L.out);
      L.vec[0] = parse_vector(op, k, "b_in", base, bytes, r[20], L.width);
      L.vec[1] = parse_vector(op, k, "a_re", base, bytes, r[21], L.S);
      TORCH_CHECK_VALUE(complex == (r[22] >= 0), op, ": layer ", k, ": a_im must be given exactly when the layer is "
                        "complex (corrupted plan)");
      L.vec[2] = complex ? parse_vector(op, k, "a_im", base, bytes, r[22], L.S) : nullptr;
      L.vec[3] = parse_vector(op, k, "b_out", base, bytes, r[23], L.out);
    }
    in = L.out;
  }
  TORCH_CHECK_VALUE(p.num_states >= 1, op, ": the plan has no recurrent layer (corrupted plan)");
}

// The structure of every sparse weight of a parsed plan (col_ptr monotone, rows in range and sorted).
void validate_structure(const char* op, const Plan& plan) {
  for (int64_t k = 0; k < plan.num_layers; ++k) {
    for_layer(op, k, [&] {
      for (const PackedArgs& w : plan.layers[k].w) {
        if (w.values != nullptr && w.sparse()) validate_csc(op, w.name, w.col_ptr, w.in, w.rows, w.rows32, w.nnz, w.out);
      }
    });
  }
}

// The block index of every sparse weight with 16x1-block columns (a validated plan).
void derive_plan_blocks(Plan& plan) {
  size_t n = 0;
  for (int64_t k = 0; k < plan.num_layers; ++k) {
    for (const PackedArgs& w : plan.layers[k].w) n += (w.values != nullptr && w.sparse()) ? 1 : 0;
  }
  plan.blocks.reserve(n);  // (pointers into it stay valid: no reallocation below)
  for (int64_t k = 0; k < plan.num_layers; ++k) {
    for (PackedArgs& w : plan.layers[k].w) {
      if (w.values == nullptr || !w.sparse()) continue;
      CscBlocks b;
      if (derive_blocks(w.col_ptr, w.in, w.rows, w.rows32, w.out, b) > 0) {
        plan.blocks.push_back(std::move(b));
        w.blocks = &plan.blocks.back();
      }
    }
  }
}

struct Entry {
  Seen seen;
  std::shared_ptr<const Plan> plan;
};

// This thread's last plan: a stream calls with the same plan every step, so most calls end here,
// without the shared table's lock.
thread_local std::optional<Entry> tl_last;

}  // namespace

const Plan& get_plan(const char* op, const Tensor& arena, const Tensor& meta, PlanKind kind) {
  check_plan_tensor(op, "arena", arena, ScalarType::Byte);
  check_plan_tensor(op, "meta", meta, ScalarType::Long);
  const auto check_kind = [&](const Plan& p) -> const Plan& {
    TORCH_CHECK_VALUE(p.kind == kind, op, ": the plan is of kind ", static_cast<int64_t>(p.kind),
                      ", this op takes kind ", static_cast<int64_t>(kind),
                      " (a plan of another model family)");
    return p;
  };
  if (tl_last && same(tl_last->seen, arena, meta)) return check_kind(*tl_last->plan);
  static std::mutex mu;
  static std::unordered_map<const c10::TensorImpl*, Entry> seen;  // keyed by the arena tensor
  const c10::TensorImpl* key = arena.unsafeGetTensorImpl();
  {
    std::lock_guard<std::mutex> lock(mu);
    const auto it = seen.find(key);
    if (it != seen.end() && same(it->second.seen, arena, meta)) {
      tl_last = it->second;
      return check_kind(*tl_last->plan);
    }
  }
  // First use of this plan, or it changed: parse, bounds-check and validate it in full, outside the lock.
  auto plan = std::make_shared<Plan>();
  parse_plan(op, arena, meta, kind, *plan);
  validate_structure(op, *plan);
  derive_plan_blocks(*plan);
  Entry entry{Seen{c10::weak_intrusive_ptr<c10::TensorImpl>(arena.getIntrusivePtr()),
                   c10::weak_intrusive_ptr<c10::TensorImpl>(meta.getIntrusivePtr()), arena.unsafeGetTensorImpl(),
                   meta.unsafeGetTensorImpl(), arena.const_data_ptr(), meta.const_data_ptr(), arena.numel(),
                   meta.numel(), version_of(arena), version_of(meta)},
              std::move(plan)};
  {
    std::lock_guard<std::mutex> lock(mu);
    if (seen.size() >= kSeenSweepAt) {
      for (auto it = seen.begin(); it != seen.end();) {
        it = (it->second.seen.arena.expired() || it->second.seen.meta.expired()) ? seen.erase(it) : std::next(it);
      }
      if (seen.size() >= kSeenClearAt) seen.clear();
    }
    seen.insert_or_assign(key, entry);
  }
  tl_last = std::move(entry);
  return check_kind(*tl_last->plan);
}

int64_t check_plan_input(const char* op, const Plan& plan, const Tensor& x) {
  TORCH_CHECK_VALUE(x.defined() && (x.dim() == 1 || x.dim() == 2), op, ": x must be 1-D [in] or 2-D [B, in], got ",
                    x.defined() ? x.sizes() : at::IntArrayRef{});
  check_tensor(x, op, "x", x);
  TORCH_CHECK_VALUE(x.device().is_cpu() && x.scalar_type() == ScalarType::Float, op,
                    ": x must be a float32 CPU tensor, got ", x.scalar_type(), " on ", x.device());
  TORCH_CHECK_VALUE(x.size(-1) == plan.input_size, op, ": x has ", x.size(-1), " features, the model's input_size is ",
                    plan.input_size);
  return x.dim() == 2 ? x.size(0) : 1;
}

Tensor check_plan_sequence(const char* op, const Tensor& xs) {
  TORCH_CHECK_VALUE(xs.dim() == 2 || xs.dim() == 3, op, ": xs must be [T, in] or [T, B, in], got shape ", xs.sizes());
  return xs.size(0) > 0 ? xs.select(0, 0) : at::detail::empty_cpu(xs.sizes().slice(1), xs.scalar_type());
}

void check_plan_state(const char* op, const Plan& plan, const char* name, const Tensor& t, const Tensor& x, int64_t B,
                      const char* width_name) {
  const bool batched = x.dim() == 2;
  check_tensor(t, op, name, x);
  TORCH_CHECK_VALUE(t.scalar_type() == ScalarType::Float, op, ": ", name, " must be float32, got ", t.scalar_type());
  const int64_t L = plan.num_states;
  const bool ok = batched ? (t.dim() == 3 && t.size(0) == L && t.size(1) == B && t.size(2) == plan.width)
                          : (t.dim() == 2 && t.size(0) == L && t.size(1) == plan.width);
  TORCH_CHECK_VALUE(ok, op, ": ", name, " must have shape ",
                    batched ? at::IntArrayRef{L, B, plan.width} : at::IntArrayRef{L, plan.width},
                    batched ? " (num_layers, B, " : " (num_layers, ", width_name, batched ? "), got " : ": x is unbatched), got ",
                    t.sizes());
}

namespace {

// plan_validate(Tensor arena, Tensor meta, int kind) -> (): the full check, for load time.
void plan_validate(const Tensor& arena, const Tensor& meta, int64_t kind) {
  constexpr const char* op = "evsparse.plan_validate";
  TORCH_CHECK_VALUE(kind == static_cast<int64_t>(PlanKind::egru) || kind == static_cast<int64_t>(PlanKind::linear_rnn) ||
                        kind == static_cast<int64_t>(PlanKind::s5),
                    op, ": unknown plan kind ", kind);
  get_plan(op, arena, meta, static_cast<PlanKind>(kind));
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(evsparse, m) {
  // Checks a model plan (arena, meta) in full: the format, every section's bounds, every sparse
  // weight's structure. The plan ops do the same (the structure once per version); modules call
  // this when a plan is built or loaded so that a corrupted file fails at load time.
  m.def("plan_validate(Tensor arena, Tensor meta, int kind) -> ()");
}

TORCH_LIBRARY_IMPL(evsparse, CPU, m) { m.impl("plan_validate", &plan_validate); }

}  // namespace evsparse
