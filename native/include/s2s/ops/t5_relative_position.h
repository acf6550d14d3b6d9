// t5_relative_position: T5's bucketed relative-position attention bias, forward (a gather from the
// (num_buckets, Hq) embedding table) and backward (a deterministic scatter-add), plus references.
// Legend: Hq heads, Tq query length, Tk key length, NB num_buckets.
#pragma once
#include <cstdint>

#include "s2s/tensor.h"

namespace s2s {

// Exactly transformers' T5Attention._relative_position_bucket(relative_position, bidirectional,
// num_buckets, max_distance), relative_position = key position - query position, including its
// fp32 logarithm and truncation (checked against torch for every value in [-300, 300]).
// Requires num_buckets >= 2 (>= 4 when bidirectional) and max_distance > the exact range
// (num_buckets/2, halved again when bidirectional); throws S2S_ARGUMENT otherwise.
int32_t t5_relative_position_bucket(int64_t relative_position, bool bidirectional,
                                    int64_t num_buckets, int64_t max_distance);

struct T5RelativePositionOptions {
  bool bidirectional = true;   // true in the encoder, false in the decoder's self-attention
  int64_t max_distance = 128;  // relative_attention_max_distance
  int64_t q_offset = 0;        // query i sits at position q_offset + i (decoding with a cache);
                               // key j at position j
};

// bias[h,i,j] = table[bucket(j - (q_offset + i)), h]
//   bias  (Hq,Tq,Tk) float32, written      table (NB,Hq) float32: relative_attention_bias.weight
// NB is table's first dimension. The result is attention's `bias` argument.
void t5_relative_position_forward(const Tensor& bias, const Tensor& table,
                                  const T5RelativePositionOptions& options);

// Decoding's bias over a KV cache: the Tq new queries sit at positions key_end[0] - Tq + i, read
// from memory instead of passed as q_offset, so that a recorded decoding step (Backend::record)
// stays right at every length; Tk is the cache capacity (the attention ignores keys past
// key_end). Every row has the same length in a KVCache, so only key_end[0] is read, and it must
// lie in [Tq, Tk]. options.q_offset must be 0.
//   bias[h,i,j] = table[bucket(j - (key_end[0] - Tq + i)), h]
void t5_relative_position_decoding_forward(const Tensor& bias, const Tensor& table,
                                           const int32_t* key_end,
                                           const T5RelativePositionOptions& options);

// dtable[bucket, h] += sum of dbias[h,i,j] over the (i,j) in that bucket. ACCUMULATES into dtable
// (the caller zeroes it); dtable with data == nullptr is skipped. Each head's column is summed in
// double by one task in (i, j) order, so the result is deterministic.
void t5_relative_position_backward(const Tensor& dtable, const Tensor& dbias,
                                   const T5RelativePositionOptions& options);

// Per-element loops (tests only).
void t5_relative_position_forward_reference(const Tensor& bias, const Tensor& table,
                                            const T5RelativePositionOptions& options);
void t5_relative_position_backward_reference(const Tensor& dtable, const Tensor& dbias,
                                             const T5RelativePositionOptions& options);

}  // namespace s2s
