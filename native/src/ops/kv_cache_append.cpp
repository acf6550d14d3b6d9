// kv_cache_append on the CPU (see the header): a row copy per (row, position). Decoding writes
// one position per row, a few KB, so this is a memcpy per row and never worth threads.
#include "s2s/ops/kv_cache_append.h"

#include <cstring>

namespace s2s {

namespace {
constexpr const char* kOp = "kv_cache_append";
}

KvCacheAppendShape kv_cache_append_shape(const Tensor& k_cache, const Tensor& v_cache,
                                         const Tensor& k, const Tensor& v, const int32_t* slot,
                                         const int32_t* key_end) {
  expect_f32(k_cache, {-1, -1, -1, -1}, kOp, "k_cache");
  KvCacheAppendShape s{};
  s.S = k_cache.shape[0];
  s.Tc = k_cache.shape[1];
  s.H = k_cache.shape[2];
  s.D = k_cache.shape[3];
  expect_f32(v_cache, {s.S, s.Tc, s.H, s.D}, kOp, "v_cache");
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
  const size_t bytes = sizeof(float) * size_t(HD);
  for (int64_t r = 0; r < R; ++r) {
    const int64_t first = (int64_t(slot[r]) * Tc + key_end[r] - T) * HD;
    for (int64_t t = 0; t < T; ++t) {
      const int64_t src_k = r * k.strides[0] + t * k.strides[1];
      const int64_t src_v = r * v.strides[0] + t * v.strides[1];
      std::memcpy(k_cache.f32() + first + t * HD, k.f32() + src_k, bytes);
      std::memcpy(v_cache.f32() + first + t * HD, v.f32() + src_v, bytes);
    }
  }
}

}  // namespace s2s
