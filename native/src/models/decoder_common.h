// What the decoder-only models (gpt2.cpp, llama.cpp) share: batch checks, the attention key
// mask, and the causal-LM labels (shifted). Internal to native/src/models.
// Legend: B batch, T time, N = B*T rows, V vocab.
#pragma once
#include <cstdint>

#include "s2s/models/model.h"

namespace s2s {
namespace decoder {

// Checks the decoder-only fields of a batch (B, T > 0, input_ids present, T <= max_positions
// when the model has a bound); `model` names the architecture in errors.
void check_batch(const Batch& batch, const char* model, int64_t max_positions);

// attention_mask (B,T) int32 -> a uint8 key mask in the graph's tensor memory (Graph::indices),
// or null when the batch has no mask or it is all ones (the attention then skips the mask).
const uint8_t* key_mask(Graph& g, const Batch& batch);

// The causal-LM labels: labels at t+1 for position t (transformers' ForCausalLMLoss), -100 at
// the last position of each row, built once in the graph's host scratch (valid until reset),
// so the logits are never shifted or copied. No labels: null.
const int32_t* shifted_labels(Graph& g, const Batch& batch);

}  // namespace decoder
}  // namespace s2s
