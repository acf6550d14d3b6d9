// Batch checks, key mask and shifted labels shared by GPT-2 and Llama/Qwen2.
#include "models/decoder_common.h"

namespace s2s {
namespace decoder {

void check_batch(const Batch& batch, const char* model, int64_t max_positions) {
  S2S_REQUIRE(batch.B > 0 && batch.T > 0, code::kArgument, model,
              "expected a batch with B > 0 and T > 0, got B = ", batch.B, ", T = ", batch.T);
  S2S_REQUIRE(batch.input_ids != nullptr, code::kArgument, model, "expected input_ids, got none");
  if (max_positions > 0 && batch.position_ids == nullptr) {
    S2S_REQUIRE(batch.T <= max_positions, code::kArgument, model, "expected T <= ",
                max_positions, " (n_positions), got ", batch.T);
  }
}

const uint8_t* key_mask(Graph& g, const Batch& batch) {
  if (batch.attention_mask == nullptr) return nullptr;
  const int64_t n = batch.B * batch.T;
  bool all_ones = true;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t m = batch.attention_mask[i];
    S2S_REQUIRE(m == 0 || m == 1, code::kArgument, "attention_mask",
                "expected 0 or 1, got ", m, " at index ", i);
    all_ones = all_ones && m == 1;
  }
  if (all_ones) return nullptr;
  uint8_t* mask = g.scratch<uint8_t>(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) mask[i] = static_cast<uint8_t>(batch.attention_mask[i]);
  return g.indices(mask, n);
}

const int32_t* shifted_labels(Graph& g, const Batch& batch) {
  if (batch.labels == nullptr) return nullptr;
  const int64_t B = batch.B, T = batch.T;
  int32_t* shifted = g.scratch<int32_t>(static_cast<size_t>(B * T));  // (B,T)
  for (int64_t b = 0; b < B; ++b) {
    const int32_t* row = batch.labels + b * T;
    int32_t* out = shifted + b * T;
    for (int64_t t = 0; t + 1 < T; ++t) out[t] = row[t + 1];
    out[T - 1] = -100;
  }
  return shifted;
}

}  // namespace decoder

void position_ids_from_attention_mask(const int32_t* attention_mask, int64_t B, int64_t T,
                                      int32_t* out) {
  for (int64_t b = 0; b < B; ++b) {
    int32_t sum = 0;
    for (int64_t t = 0; t < T; ++t) {
      const int32_t m = attention_mask[b * T + t];
      sum += m;
      out[b * T + t] = m == 0 ? 1 : sum - 1;
    }
  }
}

}  // namespace s2s
