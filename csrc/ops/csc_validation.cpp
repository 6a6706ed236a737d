// ensure_valid_csc: a CSC structure is validated in full (O(in + nnz)) the first time an op sees it
// and again whenever it may have changed; otherwise one hash lookup. See packed_product.h. On request
// it also derives the structure's bitmask (the bitmask-gather's masks, gather_impl.h) and keeps it with
// the entry, so the masks always describe the structure as it was validated.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include <torch/library.h>

#include "checks.h"

namespace evsparse {
namespace {

// What a validated structure looked like. Weak references keep the two TensorImpl objects from being
// freed (not their data), so a live tensor can never have the address of a dead, validated one.
struct Seen {
  c10::weak_intrusive_ptr<c10::TensorImpl> col_ptr, row_idx;
  const c10::TensorImpl* col_ptr_impl;
  const void* col_ptr_data;
  const void* row_idx_data;
  int64_t col_ptr_numel, row_idx_numel, out;
  uint32_t col_ptr_version, row_idx_version;
  std::shared_ptr<const CscBitmask> masks;  // derived on first request (null until then)
  std::shared_ptr<const CscBlocks> blocks;  // derived on first request (null if no column is blocked)
  bool blocks_derived = false;
};

std::shared_ptr<const CscBlocks> build_blocks(const Tensor& col_ptr, const Tensor& row_idx, int64_t out) {
  auto bl = std::make_shared<CscBlocks>();
  derive_blocks(col_ptr.const_data_ptr<int64_t>(), col_ptr.size(0) - 1, row_idx.const_data_ptr(),
                row_idx.scalar_type() == ScalarType::Int, out, *bl);
  if (bl->blocked_nnz == 0) return nullptr;
  return bl;
}

// The bitmask of a validated structure (CscBitmask in checks.h), nb = ceil(out / 16) masks per column.
std::shared_ptr<const CscBitmask> build_masks(const Tensor& col_ptr, const Tensor& row_idx, int64_t out) {
  const int64_t in = col_ptr.size(0) - 1, nb = (out + 15) / 16;
  auto bm = std::make_shared<CscBitmask>();
  bm->masks.assign(static_cast<size_t>(in * nb), uint16_t(0));
  bm->counts.resize(static_cast<size_t>(in));
  bm->first.assign(static_cast<size_t>(in), -1);
  bm->last.assign(static_cast<size_t>(in), -1);
  const int64_t* cp = col_ptr.const_data_ptr<int64_t>();
  const auto fill = [&](const auto* rows) {
    for (int64_t j = 0; j < in; ++j) {
      uint16_t* m = bm->masks.data() + j * nb;
      for (int64_t k = cp[j]; k < cp[j + 1]; ++k) m[rows[k] / 16] |= static_cast<uint16_t>(1u << (rows[k] % 16));
      bm->counts[j] = cp[j + 1] - cp[j];  // = the bits set: rows are distinct within a column (validated)
      if (cp[j + 1] > cp[j]) {
        bm->first[j] = static_cast<int32_t>(rows[cp[j]]);
        bm->last[j] = static_cast<int32_t>(rows[cp[j + 1] - 1]);
      }
    }
  };
  if (row_idx.scalar_type() == ScalarType::Int) {
    fill(row_idx.const_data_ptr<int32_t>());
  } else {
    fill(row_idx.const_data_ptr<int16_t>());
  }
  return bm;
}

bool same(const Seen& s, const Tensor& cp, const Tensor& ri, int64_t out) {
  return s.col_ptr_impl == cp.unsafeGetTensorImpl() && s.out == out && s.col_ptr_data == cp.const_data_ptr() &&
         s.row_idx_data == ri.const_data_ptr() && s.col_ptr_numel == cp.numel() && s.row_idx_numel == ri.numel() &&
         s.col_ptr_version == version_of(cp) && s.row_idx_version == version_of(ri);
}

}  // namespace

// Which columns of a validated structure are runs of 16x1 row blocks, and where their blocks start:
// each block starts at a row 16 b and holds rows 16 b .. 16 b + 15 (up to out for the last one), so its
// values are contiguous. Rows are sorted and distinct (validated), so a block is checked by its first
// and last entry.
int64_t derive_blocks(const int64_t* cp, int64_t in, const void* rows_ptr, bool rows32, int64_t out, CscBlocks& b) {
  b.blocked.assign(static_cast<size_t>(in), uint8_t(0));
  b.ptr.assign(static_cast<size_t>(in + 1), 0);
  b.starts.clear();
  b.blocked_nnz = 0;
  const auto scan = [&](const auto* rows) {
    for (int64_t j = 0; j < in; ++j) {
      const size_t mark = b.starts.size();
      bool ok = true;
      for (int64_t k = cp[j]; k < cp[j + 1] && ok;) {
        const int64_t r = rows[k], len = std::min<int64_t>(16, out - r);
        ok = r % 16 == 0 && k + len <= cp[j + 1] && int64_t(rows[k + len - 1]) == r + len - 1;
        if (ok) b.starts.push_back(static_cast<int32_t>(r));
        k += len;
      }
      if (ok) {
        b.blocked[j] = 1;
        b.blocked_nnz += cp[j + 1] - cp[j];
      } else {
        b.starts.resize(mark);  // not blocked: none of its starts
      }
      b.ptr[j + 1] = static_cast<int64_t>(b.starts.size());
    }
  };
  if (rows32) {
    scan(static_cast<const int32_t*>(rows_ptr));
  } else {
    scan(static_cast<const int16_t*>(rows_ptr));
  }
  return b.blocked_nnz;
}

void validate_csc(const char* op, const char* name, const int64_t* cp, int64_t in, const void* rows_ptr, bool rows32,
                  int64_t nnz, int64_t out) {
  TORCH_CHECK_VALUE(cp[0] == 0 && cp[in] == nnz, op, ": ", name, " col_ptr must start at 0 and end at nnz=", nnz,
                    ", got ", cp[0], "..", cp[in], " (corrupted packed weight)");
  for (int64_t j = 0; j < in; ++j) {
    TORCH_CHECK_VALUE(cp[j] <= cp[j + 1], op, ": ", name, " col_ptr is not monotone at column ", j,
                      " (corrupted packed weight)");
    // (the message check_active_columns gives for the same fault)
    TORCH_CHECK_VALUE(0 <= cp[j] && cp[j + 1] <= nnz, op, ": ", name, " col_ptr is inconsistent at column ", j,
                      " ([", cp[j], ", ", cp[j + 1], ") with nnz=", nnz, "; corrupted packed weight)");
  }
  const auto check_rows = [&](const auto* rows) {
    for (int64_t j = 0; j < in; ++j) {
      int64_t prev = -1;
      for (int64_t k = cp[j]; k < cp[j + 1]; ++k) {
        const int64_t r = rows[k];
        TORCH_CHECK_VALUE(r >= 0 && r < out, op, ": ", name, " row_idx[", k, "] = ", r, " is out of range [0, ", out,
                          ") (corrupted packed weight)");
        TORCH_CHECK_VALUE(r > prev, op, ": ", name, " row_idx is not strictly increasing within column ", j,
                          " (position ", k, "; corrupted packed weight)");
        prev = r;
      }
    }
  };
  if (rows32) {
    check_rows(static_cast<const int32_t*>(rows_ptr));
  } else {
    check_rows(static_cast<const int16_t*>(rows_ptr));
  }
}

void validate_csc(const char* op, const char* name, const Tensor& col_ptr, const Tensor& row_idx, int64_t out) {
  validate_csc(op, name, col_ptr.const_data_ptr<int64_t>(), col_ptr.size(0) - 1, row_idx.const_data_ptr(),
               row_idx.scalar_type() == ScalarType::Int, row_idx.size(0), out);
}

CscDerived ensure_valid_csc(const char* op, const char* name, const Tensor& col_ptr, const Tensor& row_idx,
                            int64_t out, bool want_masks, bool want_blocks) {
  static std::mutex mu;
  static std::unordered_map<const c10::TensorImpl*, Seen> seen;  // keyed by the row_idx tensor
  const c10::TensorImpl* key = row_idx.unsafeGetTensorImpl();
  // The bitmask is not derived where the block path will serve the weight instead (sparse_args takes
  // the blocks first): it would be memory and a pass over the structure for nothing. (Checked per
  // call, as set_block_min_fraction may change which path serves.)
  const auto blocks_serve = [&](const std::shared_ptr<const CscBlocks>& b) {
    return b != nullptr && use_blocks(b->blocked_nnz, row_idx.numel());
  };
  bool valid = false, blocks_derived = false;
  std::shared_ptr<const CscBitmask> masks;
  std::shared_ptr<const CscBlocks> blocks;
  {
    std::lock_guard<std::mutex> lock(mu);
    const auto it = seen.find(key);
    if (it != seen.end() && same(it->second, col_ptr, row_idx, out)) {
      const Seen& e = it->second;
      if ((!want_masks || e.masks || blocks_serve(e.blocks)) && (!want_blocks || e.blocks_derived)) {
        return CscDerived{want_masks ? e.masks : nullptr, want_blocks ? e.blocks : nullptr};
      }
      valid = true;  // validated; only something derived is missing
      masks = e.masks;
      blocks = e.blocks;
      blocks_derived = e.blocks_derived;
    }
  }
  if (!valid) validate_csc(op, name, col_ptr, row_idx, out);  // outside the lock: O(in + nnz)
  // (derived from the structure just validated, which the entry's versions pin; outside the lock too)
  if (want_blocks && !blocks_derived) {
    blocks = build_blocks(col_ptr, row_idx, out);
    blocks_derived = true;
  }
  if (want_masks && !masks && !blocks_serve(blocks)) masks = build_masks(col_ptr, row_idx, out);
  std::lock_guard<std::mutex> lock(mu);
  if (seen.size() >= kSeenSweepAt) {
    for (auto it = seen.begin(); it != seen.end();) {
      it = (it->second.col_ptr.expired() || it->second.row_idx.expired()) ? seen.erase(it) : std::next(it);
    }
    if (seen.size() >= kSeenClearAt) seen.clear();
  }
  seen.insert_or_assign(key, Seen{c10::weak_intrusive_ptr<c10::TensorImpl>(col_ptr.getIntrusivePtr()),
                                  c10::weak_intrusive_ptr<c10::TensorImpl>(row_idx.getIntrusivePtr()),
                                  col_ptr.unsafeGetTensorImpl(), col_ptr.const_data_ptr(), row_idx.const_data_ptr(),
                                  col_ptr.numel(), row_idx.numel(), out, version_of(col_ptr), version_of(row_idx),
                                  masks, blocks, blocks_derived});
  return CscDerived{want_masks ? masks : nullptr, want_blocks ? blocks : nullptr};
}

namespace {
// A run-time threshold: the environment variable's value if it parses as a number >= 0 (an unusable
// value falls back to the default, as EVSPARSE_ISA does), else the default.
double env_threshold(const char* name, double fallback) {
  if (const char* env = std::getenv(name); env != nullptr && *env != '\0') {
    char* end = nullptr;
    const double d = std::strtod(env, &end);
    if (end != env && *end == '\0' && d >= 0.0) return d;
  }
  return fallback;
}
std::atomic<double>& bitmask_threshold() {
  static std::atomic<double> d{env_threshold("EVSPARSE_BITMASK_MIN_DENSITY", kBitmaskMinDensity)};
  return d;
}
std::atomic<double>& block_threshold() {
  static std::atomic<double> f{env_threshold("EVSPARSE_BLOCK_MIN_FRACTION", kBlockMinFraction)};
  return f;
}
}  // namespace

double bitmask_min_density() { return bitmask_threshold().load(std::memory_order_relaxed); }

void set_bitmask_min_density(double d) {
  TORCH_CHECK_VALUE(d >= 0.0, "evsparse.set_bitmask_min_density: the density must be >= 0 (2 turns the bitmask off), got ", d);
  bitmask_threshold().store(d, std::memory_order_relaxed);
}

double block_min_fraction() { return block_threshold().load(std::memory_order_relaxed); }

void set_block_min_fraction(double f) {
  TORCH_CHECK_VALUE(f >= 0.0, "evsparse.set_block_min_fraction: the fraction must be >= 0 (2 turns the block path off), got ", f);
  block_threshold().store(f, std::memory_order_relaxed);
}

namespace {

// csc_block_fraction(col_ptr, row_idx, out) -> float: the fraction of a structure's entries in columns
// of whole 16x1 blocks, as the op layer derives them (derive_blocks): what decides whether the block path
// serves a weight. evsparse.layout.block_fraction computes the same from a dense matrix before packing;
// the tests hold the two to agreement.
double csc_block_fraction(const Tensor& col_ptr, const Tensor& row_idx, int64_t out) {
  constexpr const char* op = "evsparse.csc_block_fraction";
  TORCH_CHECK_VALUE(col_ptr.device().is_cpu() && row_idx.device().is_cpu(), op, ": col_ptr and row_idx must be CPU tensors");
  TORCH_CHECK_VALUE(col_ptr.dim() == 1 && col_ptr.numel() >= 1 && col_ptr.scalar_type() == ScalarType::Long &&
                        col_ptr.is_contiguous(),
                    op, ": col_ptr must be a contiguous 1-D int64 tensor of in + 1 entries");
  TORCH_CHECK_VALUE(row_idx.dim() == 1 && row_idx.is_contiguous() &&
                        (row_idx.scalar_type() == ScalarType::Short || row_idx.scalar_type() == ScalarType::Int),
                    op, ": row_idx must be a contiguous 1-D int16 or int32 tensor");
  TORCH_CHECK_VALUE(out >= 0, op, ": out must be >= 0, got ", out);
  validate_csc(op, "weight", col_ptr, row_idx, out);
  if (row_idx.numel() == 0) return 0.0;
  CscBlocks b;
  const int64_t blocked = derive_blocks(col_ptr.const_data_ptr<int64_t>(), col_ptr.numel() - 1, row_idx.const_data_ptr(),
                                        row_idx.scalar_type() == ScalarType::Int, out, b);
  return double(blocked) / double(row_idx.numel());
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(evsparse, m) { m.def("csc_block_fraction(Tensor col_ptr, Tensor row_idx, int out) -> float"); }

TORCH_LIBRARY_IMPL(evsparse, CPU, m) { m.impl("csc_block_fraction", &csc_block_fraction); }

}  // namespace evsparse
