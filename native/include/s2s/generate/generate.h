// generate: transformers' GenerationMixin.generate for the engine's models, natively: greedy
// search and multinomial sampling (its _sample), beam search and beam sampling (its vectorised
// _beam_search, transformers >= 4.50), with the logits processors of logits_process.h, over a
// preallocated KV cache (kv_cache.h). Nothing is allocated per token: buffers are sized for
// max_length at the start, the graph's arena is rewound every step.
//
// Inputs are token ids, one sequence per input, unpadded: decoder-only prompts are left-padded to
// the longest with pad_token_id and get transformers' positions (cumsum(attention_mask) - 1);
// T5 encoder inputs are right-padded (their attention mask hides the padding) and the decoder
// starts from decoder_start_token_id. Rows decoded together are input x num_return_sequences
// (sampling) or input x num_beams (beam search), in transformers' repeat_interleave order.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

#include "s2s/generate/generation_config.h"
#include "s2s/generate/kv_cache.h"
#include "s2s/models/model.h"
#include "s2s/nn/graph.h"

namespace s2s {

enum class FinishReason : uint8_t { Eos = 0, Length = 1, Aborted = 2 };
const char* finish_reason_name(FinishReason r);  // "eos" | "length" | "aborted"

struct GeneratedSequence {
  int64_t input_index = 0;
  std::vector<int32_t> tokens;        // new tokens only, through the EOS that ended it
  std::vector<float> token_logprobs;  // per token: log-prob under the processed distribution
  // Beam search: sum of token_logprobs / generated_length ** length_penalty (sequences_scores).
  // Otherwise: the sum of token_logprobs.
  double score = 0.0;
  FinishReason finish = FinishReason::Length;
};

struct GenerateResult {
  // inputs.size() * num_return_sequences, grouped by input (beam search: best first).
  std::vector<GeneratedSequence> sequences;
  int64_t steps = 0;         // decoding steps (forward passes after the prefill)
  int64_t replayed_steps = 0;  // of them, replays of a recorded step (a CUDA graph)
  double prefill_ms = 0.0;   // start to the first logits (encoder + prompt)
  double decode_ms = 0.0;    // the rest
};

struct GenerateHooks {
  // Greedy / sampling: after each step, the tokens just appended to still-running sequences as
  // (sequence index, token id) pairs; sequence index = input index * num_return_sequences + k.
  // Beam search never calls it (its tokens are not final until the end). Runs on the
  // generating thread; may throw to stop generation (the error propagates).
  std::function<void(const int32_t* pairs, int64_t count)> on_tokens;
  // Checked before every step: when set, generation stops and returns what it has, with
  // finish reason Aborted for sequences still running.
  const std::atomic<bool>* cancel = nullptr;
  // Greedy / sampling only (generate refuses it with beam search): called every step after the
  // logits processors and before the warpers (temperature, top-k, top-p), as transformers runs
  // a constraint's logits processor. scores: (R, V), changed in place (a constraint sets what it
  // forbids to -inf). last[r]: the token row r appended at the previous step, -1 at the first
  // step and for rows that are no longer running. Runs on the generating thread; may throw.
  std::function<void(float* scores, int64_t R, int64_t V, const int32_t* last)> mask_logits;
};

// Runs one generate call. The graph is put in no_grad for the call and reset every step; the
// cache is (re)sized for it. Errors: S2S_ARGUMENT naming the field or input at fault.
GenerateResult generate(Model& model, Graph& graph, KVCache& cache,
                        const std::vector<std::vector<int32_t>>& inputs,
                        const GenerationConfig& config, const GenerateHooks& hooks = {});

}  // namespace s2s
