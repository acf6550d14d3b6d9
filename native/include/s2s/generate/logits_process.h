// Logits processors and sampling warpers with transformers' definitions and order
// (generation/logits_process.py, built by GenerationMixin._get_logits_processor):
//   process(): RepetitionPenalty -> NoRepeatNGram -> NoBadWords -> MinLength (min_new_tokens is
//              folded into min_length, which is what transformers' two processors amount to);
//   warp() (sampling only): Temperature -> TopK -> TopP.
// Greedy and sampling apply them to the raw logits; beam search to log_softmax(logits).
// Each call works on a (rows, V) fp32 score matrix in place, given each row's token history
// (transformers' input_ids: the padded prompt / decoder start token plus the tokens so far).
// Scratch is sized once at construction: a decoding step allocates nothing.
// Legend: R rows, V vocab, L history length (cur_len).
#pragma once
#include <cstdint>
#include <vector>

#include "s2s/generate/generation_config.h"

namespace s2s {

class LogitsProcessors {
 public:
  // min_tokens_to_keep: for top-k / top-p (1 for sampling; beam sampling keeps n_eos + 1).
  LogitsProcessors(const GenerationConfig& config, int64_t vocab, int64_t min_length,
                   int64_t min_tokens_to_keep);

  // scores (R,V); history: row r's tokens are history[r * stride .. + L).
  void process(float* scores, int64_t R, const int32_t* history, int64_t stride, int64_t L);
  // Temperature, top-k, top-p on scores (R,V) (no-ops unless configured).
  void warp(float* scores, int64_t R);

  bool warps() const { return temperature_ != 1.0f || top_k_ != 0 || top_p_ < 1.0f; }

 private:
  void repetition_penalty(float* s, const int32_t* h, int64_t L);
  void no_repeat_ngram(float* s, const int32_t* h, int64_t L) const;
  void bad_words(float* s, const int32_t* h, int64_t L) const;
  void top_k(float* s);
  void top_p(float* s);

  int64_t V_;
  float penalty_;
  int64_t ngram_;
  std::vector<std::vector<int32_t>> bad_words_;  // EOS-only sequences removed, as transformers
  std::vector<int32_t> eos_;
  int64_t min_length_;
  float temperature_;
  int64_t top_k_;
  float top_p_;
  int64_t min_keep_;
  // scratch
  std::vector<uint32_t> stamp_;  // repetition penalty: token seen in this row (epoch stamps)
  uint32_t epoch_ = 0;
  std::vector<float> sorted_;
  std::vector<int32_t> order_;
};

// Row-wise helpers the strategies share (R rows of V).
// log_softmax in place (a row of all -inf becomes NaN, as in torch).
void log_softmax_rows(float* x, int64_t R, int64_t V);
// The log-prob of `token` under softmax(scores) without modifying scores.
float log_prob_of(const float* scores, int64_t V, int32_t token);
// Index of the first maximum (torch.argmax's tie rule).
int32_t argmax_row(const float* scores, int64_t V);

}  // namespace s2s
