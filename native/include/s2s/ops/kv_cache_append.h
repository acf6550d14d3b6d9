// kv_cache_append: decoding's cache write. The keys and values of T new positions go into a KV
// cache, each row into its own slot at the T positions just before its key_end, so the same
// arrays that tell attention_cached which keys to read tell this op where to write (on a GPU,
// one launch for every row whose arguments do not change from step to step).
// Legend: R rows, T new positions, S cache slots, Tc cache capacity, H kv heads, D head dim.
#pragma once
#include <cstdint>

#include "s2s/tensor.h"

namespace s2s {

// For each row r and new position t:
//   k_cache[slot[r], key_end[r] - T + t] = k[r, t],  v_cache likewise from v.
// Arguments, float32 but for the caches:
//   k_cache, v_cache (S,Tc,H,D) contiguous, float32, or both bfloat16 or both float16 (a 16-bit
//                    cache: each value rounded to nearest even as it goes in, dtype.h)
//   k, v             (R,T,H,D), each position's H x D values packed; rows and positions may be
//                    strided (views into a fused qkv projection, expect_f32_heads)
//   slot             R int32 in [0, S)
//   key_end          R int32 in [T, Tc]
// Two rows must not write the same slot (KVCache gives each row its own).
void kv_cache_append(const Tensor& k_cache, const Tensor& v_cache, const Tensor& k,
                     const Tensor& v, const int32_t* slot, const int32_t* key_end);

// A KV cache's element type, as kv_cache_append and attention_cached take it: F32, BF16 or
// F16, the same for keys and values (S2S_DTYPE naming `op` otherwise).
void expect_kv_cache_dtype(const Tensor& k_cache, const Tensor& v_cache, const char* op);

// The dtype, shape and layout checks (and non-null index arrays) every backend's op makes first;
// the values in slot and key_end are each backend's to check (on a GPU, in the kernel).
struct KvCacheAppendShape {
  int64_t R, T, S, Tc, H, D;
};
KvCacheAppendShape kv_cache_append_shape(const Tensor& k_cache, const Tensor& v_cache,
                                         const Tensor& k, const Tensor& v, const int32_t* slot,
                                         const int32_t* key_end);

}  // namespace s2s
