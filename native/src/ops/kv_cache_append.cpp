// kv_cache_append on the CPU (see the header): a row copy per (row, position). Decoding writes
// one position per row, a few KB, so this is a memcpy per row and never worth threads.
#include "s2s/ops/kv_cache_append.h"

#include <cstring>

namespace s2s {

namespace {
constexpr const char* kOp = "kv_cache_append";
}

void expect_kv_cache_dtype(const Tensor& k_cache, const Tensor& v_cache, const char* op) {
  S2S_REQUIRE(k_cache.dtype == DType::F32 || k_cache.dtype == DType::BF16 ||
                  k_cache.dtype == DType::F16,
              code::kDType, op, "expected k_cache to be float32, bfloat16 or float16, got ",
              dtype_name(k_cache.dtype));
  S2S_REQUIRE(v_cache.dtype == k_cache.dtype, code::kDType, op, "expected v_cache to be ",
              dtype_name(k_cache.dtype), " (as k_cache), got ", dtype_name(v_cache.dtype));
}

KvCacheAppendShape kv_cache_append_shape(const Tensor& k_cache, const Tensor& v_cache,
                                         const Tensor& k, const Tensor& v, const int32_t* slot,
                                         const int32_t* key_end) {
  expect_kv_cache_dtype(k_cache, v_cache, kOp);
  expect_shape(k_cache, {-1, -1, -1, -1}, kOp, "k_cache");
  expect_contiguous(k_cache, kOp, "k_cache");
  KvCacheAppendShape s{};
  s.S = k_cache.shape[0];
  s.Tc = k_cache.shape[1];
  s.H = k_cache.shape[2];
  s.D = k_cache.shape[3];
  expect_shape(v_cache, {s.S, s.Tc, s.H, s.D}, kOp, "v_cache");
  expect_contiguous(v_cache, kOp, "v_cache");
  expect_f32_heads(k, {-1, -1, s.H, s.D}, kOp, "k");
  s.R = k.shape[0];
  s.T = k.shape[1];
  expect_f32_heads(v, {s.R, s.T, s.H, s.D}, kOp, "v");
  S2S_REQUIRE(s.R == 0 || (slot != nullptr && key_end != nullptr), code::kArgument, kOp,
              "expected slot and key_end arrays");
  return s;
}

void kv_cache_append(const Tensor& k_cache, const Tensor& v_cache, const Tensor& k,
                     const Tensor& v, const int32_t* slot, const int32_t* key_end) {
  const auto [R, T, S, Tc, H, D] = kv_cache_append_shape(k_cache, v_cache, k, v, slot, key_end);
  for (int64_t r = 0; r < R; ++r) {
    S2S_REQUIRE(slot[r] >= 0 && slot[r] < S, code::kArgument, kOp, "expected slot[", r,
                "] in [0, ", S, "), got ", slot[r]);
    S2S_REQUIRE(key_end[r] >= T && key_end[r] <= Tc, code::kArgument, kOp, "expected key_end[",
                r, "] in [", T, ", ", Tc, "] (the ", T,
                " new positions before it, within the capacity), got ", key_end[r]);
  }
  const int64_t HD = H * D;
  // n values from src into the cache at element dst: copied, or rounded to the 16-bit type.
  auto put = [&](const Tensor& cache, int64_t dst, const float* src) {
    if (cache.dtype == DType::F32) {
      std::memcpy(cache.f32() + dst, src, sizeof(float) * size_t(HD));
    } else {
      uint16_t* out = cache.u16() + dst;
      const bool bf16 = cache.dtype == DType::BF16;
      for (int64_t c = 0; c < HD; ++c) out[c] = bf16 ? f32_to_bf16(src[c]) : f32_to_f16(src[c]);
    }
  };
  for (int64_t r = 0; r < R; ++r) {
    const int64_t first = (int64_t(slot[r]) * Tc + key_end[r] - T) * HD;
    for (int64_t t = 0; t < T; ++t) {
      put(k_cache, first + t * HD, k.f32() + r * k.strides[0] + t * k.strides[1]);
      put(v_cache, first + t * HD, v.f32() + r * v.strides[0] + t * v.strides[1]);
    }
  }
}

}  // namespace s2s
