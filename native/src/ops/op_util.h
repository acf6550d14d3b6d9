// Small helpers shared by the op files: argument checks on Tensor views beyond tensor.h's
// expect_*, "is this optional tensor present", and the grains that keep tiny work on one thread.
#pragma once
#include <algorithm>
#include <cstdint>

#include "s2s/dtype.h"
#include "s2s/error.h"
#include "s2s/tensor.h"

namespace s2s {
namespace opu {

// ~16K elements per thread: below that, waking a second thread costs more than it saves.
constexpr int64_t kElemGrain = 16384;
// Grain in rows for row-wise ops over rows of C elements.
inline int64_t row_grain(int64_t C) { return C >= kElemGrain ? 1 : kElemGrain / (C > 0 ? C : 1); }

// An optional tensor (bias, a gradient that may not be needed) is absent when data == nullptr.
inline bool present(const Tensor& t) { return t.data != nullptr; }

// f32, contiguous, at least 1-D; returns the row count N = numel / C where C = last dim.
inline int64_t expect_rows(const Tensor& t, const char* op, const char* name, int64_t* C) {
  expect_dtype(t, DType::F32, op, name);
  if (t.ndim < 1) fail(code::kShape, op, "expected ", name, " to be at least 1-D, got a scalar");
  expect_contiguous(t, op, name);
  *C = t.shape[t.ndim - 1];
  return *C == 0 ? 0 : t.numel() / *C;
}

// The row stride of t (elements): a 2-D (rows, cols) view whose rows may be padded (unit column
// stride, row stride >= cols: nn::linear_cross_entropy lays its logits and their gradient out at
// Backend::aligned_row_stride, since GPU GEMMs want aligned rows), else t must be contiguous, of
// any rank, and its row stride is its last dimension.
inline int64_t row_stride(const Tensor& t, const char* op, const char* name) {
  if (t.data == nullptr && t.numel() > 0) {
    fail(code::kArgument, op, "expected ", name, " to have data, got a null pointer");
  }
  if (t.ndim == 2 && t.strides[1] == 1 && t.strides[0] >= t.shape[1]) return t.strides[0];
  if (!t.is_contiguous()) {
    fail(code::kLayout, op, "expected ", name, " to be contiguous, or 2-D with unit column ",
         "stride and a row stride of at least its columns, got shape ", t.shape_string());
  }
  return t.ndim >= 1 ? t.shape[t.ndim - 1] : 1;
}

// f32, contiguous, and exactly the shape of `like`.
inline void expect_f32_like(const Tensor& t, const Tensor& like, const char* op, const char* name,
                            const char* like_name) {
  expect_dtype(t, DType::F32, op, name);
  bool same = t.ndim == like.ndim;
  for (int i = 0; same && i < t.ndim; ++i) same = t.shape[i] == like.shape[i];
  if (!same) {
    fail(code::kShape, op, "expected ", name, " of shape ", like.shape_string(), " (as ",
         like_name, "), got ", t.shape_string());
  }
  expect_contiguous(t, op, name);
}

// cross_entropy_backward's dlogits (N, V), rows padded or not (row_stride), not the logits'
// buffer: f32, or bf16 (the bf16-compute head's gradient, rounded as written), which cannot
// accumulate (overwrite only). Returns its row stride.
inline int64_t expect_dlogits(const Tensor& dlogits, const Tensor& logits, int64_t N, int64_t V,
                              bool overwrite, const char* op) {
  if (dlogits.dtype == DType::BF16) {
    if (!overwrite) {
      fail(code::kArgument, op,
           "expected overwrite = true with bfloat16 dlogits (they cannot accumulate)");
    }
  } else {
    expect_dtype(dlogits, DType::F32, op, "dlogits");
  }
  expect_shape(dlogits, {N, V}, op, "dlogits");
  if (dlogits.data == logits.data) {
    fail(code::kArgument, op,
         "expected dlogits and logits to be different buffers, got the same one");
  }
  return row_stride(dlogits, op, "dlogits");
}

// A finite scalar in [lo, hi] (inclusive); NaN fails.
inline void expect_range(double v, double lo, double hi, const char* op, const char* name) {
  if (!(v >= lo && v <= hi)) {
    fail(code::kArgument, op, "expected ", name, " in [", lo, ", ", hi, "], got ", v);
  }
}

// f32, contiguous, exactly `n` elements in any shape (e.g. saved row statistics (N,) or (B,T)).
inline void expect_f32_numel(const Tensor& t, int64_t n, const char* op, const char* name) {
  expect_dtype(t, DType::F32, op, name);
  if (t.numel() != n) {
    fail(code::kShape, op, "expected ", name, " with ", n, " elements (one per row), got ",
         t.shape_string());
  }
  expect_contiguous(t, op, name);
}

// Rows [begin, end) of chunk t when n rows are split evenly into `chunks` (the first n % chunks
// chunks get one extra row), for ops that keep per-chunk partial sums (parallel_run + this).
inline void chunk_range(int64_t n, int chunks, int t, int64_t* begin, int64_t* end) {
  const int64_t base = n / chunks, extra = n % chunks;
  *begin = t * base + (t < extra ? t : extra);
  *end = *begin + base + (t < extra ? 1 : 0);
}

// Sums in 16 fixed lanes, lanes added in order at the end: the compiler vectorises it without
// reassociating, and the result does not depend on the vector width.
constexpr int kLanes = 16;
inline float lane_sum(const float* v, int64_t n) {
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) acc[j] += v[i + j];
  }
  for (int j = 0; i < n; ++i, ++j) acc[j] += v[i];
  float s = 0;
  for (int j = 0; j < kLanes; ++j) s += acc[j];
  return s;
}

// f32_to_bf16 (dtype.h) written as selects, so that loops over it vectorise: RNE on the dropped
// 16 bits; a NaN keeps its top bits with the quiet bit set. The same bits.
inline uint16_t bf16_rne(float f) {
  uint32_t u;
  __builtin_memcpy(&u, &f, 4);
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const uint32_t nan = (u >> 16) | 0x40u;
  return static_cast<uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}

// A backward op's gradient (present): f32 shaped like `like`, or, when the op overwrites it,
// bf16 (the f32 values rounded to nearest even: what the bias-less bf16 linear that produced
// the op's input rounds its output gradient to, so the same products, half the bytes, no
// rounding pass). Returns whether it is bf16.
inline bool expect_grad_like(const Tensor& t, const Tensor& like, bool overwrite, const char* op,
                             const char* name, const char* like_name) {
  if (t.dtype != DType::BF16) {
    expect_f32_like(t, like, op, name, like_name);
    return false;
  }
  S2S_REQUIRE(overwrite, code::kDType, op, "expected ", name,
              " in float32 when accumulating (bfloat16 only when overwritten), got bfloat16");
  Tensor as_f32 = t;  // the shape checks
  as_f32.dtype = DType::F32;
  expect_f32_like(as_f32, like, op, name, like_name);
  return true;
}

// A gated op's gradients (dgate, dup; either may be absent), as expect_grad_like; present ones
// share the dtype. Returns whether it is bf16.
inline bool expect_gated_grads(const Tensor& dgate, const Tensor& dup, const Tensor& like,
                               bool overwrite, const char* op) {
  const bool g16 = present(dgate) && expect_grad_like(dgate, like, overwrite, op, "dgate", "gate");
  const bool u16 = present(dup) && expect_grad_like(dup, like, overwrite, op, "dup", "gate");
  S2S_REQUIRE(!present(dgate) || !present(dup) || g16 == u16, code::kDType, op,
              "expected dgate and dup in one dtype, got ", dtype_name(dgate.dtype), " and ",
              dtype_name(dup.dtype));
  return g16 || u16;
}

// A gated backward into bf16 gradients over elements [b, e): fill(g32, u32, begin, n) writes a
// block's f32 values (nullptr where not wanted), which are then rounded into dg / du.
template <typename Fill>
void rounded_blocks(uint16_t* dg, uint16_t* du, int64_t b, int64_t e, Fill fill) {
  constexpr int64_t kBlock = 512;
  float g32[kBlock], u32[kBlock];
  for (int64_t c0 = b; c0 < e; c0 += kBlock) {
    const int64_t n = std::min(kBlock, e - c0);
    fill(dg ? g32 : nullptr, du ? u32 : nullptr, c0, n);
    if (dg != nullptr) {
      for (int64_t i = 0; i < n; ++i) dg[c0 + i] = bf16_rne(g32[i]);
    }
    if (du != nullptr) {
      for (int64_t i = 0; i < n; ++i) du[c0 + i] = bf16_rne(u32[i]);
    }
  }
}

}  // namespace opu
}  // namespace s2s
