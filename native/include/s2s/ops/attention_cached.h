// attention_cached: attention of a few new query positions against the keys and values held in
// a KV cache (generation), plus a plain reference loop (tests only). Forward only: decoding never
// runs a backward pass, so unlike the other ops this one has no backward.
// Legend: R rows (sequences decoded together), Tq new positions per row, S cache slots,
// Tc cache capacity (positions per slot), Hq query heads, Hkv key/value heads (Hq % Hkv == 0),
// G = Hq / Hkv, D head dim, Tb bias key length.
#pragma once
#include <cstdint>

#include "s2s/ops/attention.h"
#include "s2s/tensor.h"

namespace s2s {

// For each row r, query head h, query i:
//   keys j in [key_begin[r], key_end[r]) of cache slot slot[r], further limited when
//   options.causal to j <= key_end[r] - Tq + i (query i sits at that position);
//   s[j] = scale * <q[r,i,h,:], k_cache[slot[r], j, h/G, :]> + bias[h, i, j],
//   out[r,i,h,:] = sum_j softmax(s)[j] v_cache[slot[r], j, h/G, :].
// A query with no allowed key outputs zeros (as attention_forward's fully masked rows).
// scale: options.scale, or 1/sqrt(D) when unset.
//
// Arguments, float32, contiguous but for q:
//   out        (R,Tq,Hq,D)
//   q          (R,Tq,Hq,D), each position's heads packed; rows and positions may be strided
//              (a view into a fused qkv projection, expect_f32_heads)
//   k_cache, v_cache (S,Tc,Hkv,D); float32, or both bfloat16 or both float16 (a 16-bit cache,
//              kv_cache_append's: each value widened exactly)
//   slot       R int32 in [0, S)
//   key_begin, key_end  R int32 each, 0 <= begin <= end <= Tc (and end >= Tq when causal)
//   bias       (Hq,Tq,Tb) with Tb >= every key_end, or data == nullptr for none
// Rows and heads run in parallel; each output is written by one task: deterministic.
void attention_cached_forward(const Tensor& out, const Tensor& q, const Tensor& k_cache,
                              const Tensor& v_cache, const int32_t* slot,
                              const int32_t* key_begin, const int32_t* key_end,
                              const Tensor& bias, const AttentionOptions& options);

// The same in double over explicit loops (the test oracle).
void attention_cached_forward_reference(const Tensor& out, const Tensor& q, const Tensor& k_cache,
                                        const Tensor& v_cache, const int32_t* slot,
                                        const int32_t* key_begin, const int32_t* key_end,
                                        const Tensor& bias, const AttentionOptions& options);

}  // namespace s2s
