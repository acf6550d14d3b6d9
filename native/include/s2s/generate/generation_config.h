// GenerationConfig: the settings of one generate call, with the names and meaning of transformers'
// GenerationConfig (generation/configuration_utils.py). TypeScript merges generation_config.json
// and the call's options into this; the C++ side resolves lengths against the input exactly as
// transformers' _prepare_generated_length does and validates every field (errors name it).
#pragma once
#include <cstdint>
#include <vector>

namespace s2s {

// transformers' early_stopping: True, False or "never" (beam search only).
enum class EarlyStopping : uint8_t { False = 0, True = 1, Never = 2 };

struct GenerationConfig {
  // ---- length (input length: the padded prompt for decoder-only models, 1 for T5) ----
  int64_t max_new_tokens = -1;  // >= 0: max_length = input length + max_new_tokens (precedence)
  int64_t max_length = 20;      // total length (prompt + new tokens; T5: start token + new)
  // transformers' default (max_length left at 20, no max_new_tokens): 20 new tokens, capped at
  // max_position_embeddings. TypeScript sets this when neither the call nor the folder chose.
  bool default_length = false;
  int64_t min_new_tokens = -1;  // >= 0: min_length = input length + min_new_tokens (precedence)
  int64_t min_length = 0;       // EOS is banned while the total length is below this

  // ---- strategy ----
  bool do_sample = false;
  float temperature = 1.0f;   // > 0
  int64_t top_k = 50;         // 0: off
  float top_p = 1.0f;         // (0, 1]; 1: off
  uint64_t seed = 0;          // sampling: Philox stream key
  int64_t num_beams = 1;
  int64_t num_return_sequences = 1;
  double length_penalty = 1.0;
  EarlyStopping early_stopping = EarlyStopping::False;

  // ---- logits processors ----
  float repetition_penalty = 1.0f;  // > 0; 1: off
  int64_t no_repeat_ngram_size = 0;  // 0: off
  std::vector<std::vector<int32_t>> bad_words_ids;

  // ---- special tokens (-1: none) ----
  std::vector<int32_t> eos_token_ids;
  int32_t pad_token_id = -1;  // none: the first EOS id (transformers' fallback)
  int32_t bos_token_id = -1;  // decoder-only: the prompt of an empty input
  int32_t decoder_start_token_id = -1;  // T5: the decoder's first token
};

// Checks every field against the vocabulary size; S2S_ARGUMENT naming the field (in
// transformers' snake_case) and what was expected.
void validate_generation_config(const GenerationConfig& config, int64_t vocab_size,
                                bool encoder_decoder);

}  // namespace s2s
