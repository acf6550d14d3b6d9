// What one generate call's strategies share (internal to native/src/generate): the model run over
// the KV cache (prefill, one step, beam reorder), the token history transformers calls
// input_ids, the resolved lengths, and the hooks. Legend: B inputs, R rows = B x per_input,
// V vocab, ML max_length, P input length (padded prompt, or 1 for T5's start token).
#pragma once
#include <chrono>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "s2s/generate/generate.h"

namespace s2s {
namespace gen {

class Decoding {
 public:
  Decoding(Model& model, Graph& graph, KVCache& cache, const GenerationConfig& config,
           const std::vector<std::vector<int32_t>>& inputs, int64_t per_input,
           const GenerateHooks& hooks);

  // Prompt (decoder-only) or encoder + start token (T5): fills logits() for every row.
  void prefill();
  // One new token per row (rows, after any reorder): fills logits(). On a backend that records
  // (a GPU), the second step of a long enough decoding is recorded and later steps replay it.
  void step(const int32_t* tokens);
  // Beam search: row r continues row src[r] (the cache follows; the caller moves history).
  void reorder(const int32_t* src) { cache_.reorder(src); }
  bool cancelled() const { return hooks_.cancel != nullptr && hooks_.cancel->load(); }

  const GenerationConfig& config() const { return config_; }
  const GenerateHooks& hooks() const { return hooks_; }
  int64_t inputs() const { return B_; }
  int64_t per_input() const { return per_input_; }
  int64_t rows() const { return R_; }
  int64_t vocab() const { return V_; }
  int64_t input_length() const { return P_; }
  int64_t max_length() const { return max_length_; }
  int64_t min_length() const { return min_length_; }
  int32_t pad_token() const { return pad_; }
  bool is_eos(int32_t t) const;
  const std::vector<int32_t>& eos() const { return config_.eos_token_ids; }

  // (R, ML): each row's history; the first cur_len entries are valid.
  int32_t* history() { return history_.data(); }
  const float* logits() const { return logits_.data(); }  // (R, V), the last forward's
  int64_t steps() const { return steps_; }
  int64_t replayed_steps() const { return replayed_; }
  // Milliseconds from construction to the end of prefill, and from there to now.
  double prefill_ms() const { return prefill_ms_; }
  double decode_ms() const;

 private:
  void copy_logits(const Tensor& logits);
  // This step's tokens and positions where the ops read them: the host arrays on the CPU; else
  // one upload into a buffer that keeps its device address for the whole generation.
  std::pair<const int32_t*, const int32_t*> step_inputs(const int32_t* tokens);
  bool should_record() const;

  Model& model_;
  Graph& graph_;
  KVCache& cache_;
  const GenerationConfig& config_;
  const std::vector<std::vector<int32_t>>& inputs_;
  const GenerateHooks& hooks_;
  int64_t B_, per_input_, R_, V_, P_ = 0, max_length_ = 0, min_length_ = 0;
  int32_t pad_ = -1;
  std::vector<int32_t> history_, tokens_, positions_;
  std::vector<float> logits_;
  std::vector<int32_t> staged_inputs_;  // [tokens | positions] before the upload
  Buffer step_inputs_;                  // their device copy
  std::unique_ptr<RecordedWork> recorded_;  // a recorded step, replayed by the steps after it
  bool record_tried_ = false;
  Tensor step_logits_;  // the last step's logits (a recorded step's stay where they were)
  int64_t steps_ = 0, replayed_ = 0;
  std::chrono::steady_clock::time_point start_, prefilled_;
  double prefill_ms_ = 0.0;
};

GenerateResult sample_search(Decoding& d);  // greedy and multinomial sampling
GenerateResult beam_search(Decoding& d);    // beam search and beam sampling

}  // namespace gen
}  // namespace s2s
