// Greedy search and multinomial sampling: transformers' GenerationMixin._sample.
// Each step: processors (and, sampling, the warpers) on the last logits, argmax or a draw from
// softmax, finished rows get pad_token_id (when there is an EOS criterion), append, then the
// stopping criteria (EosTokenCriteria on the new token, MaxLengthCriteria on the length).
// Random numbers: Philox4x32-10 keyed by the seed, one 32-bit word per (step, row), so the same
// seed gives the same tokens on any machine and thread count.
// Legend: R rows, V vocab, ML max_length.
#include <cmath>
#include <limits>

#include "core/philox.h"
#include "generate/decoding.h"
#include "ops/vec_math.h"
#include "s2s/generate/logits_process.h"

namespace s2s {
namespace gen {

namespace {

// torch.multinomial(softmax(scores), 1) with the uniform number u in [0, 1): the first token
// whose cumulative probability exceeds u (tokens of probability 0 are never drawn).
int32_t draw(const float* s, int64_t V, float u) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t v = 0; v < V; ++v) mx = s[v] > mx ? s[v] : mx;
  double total = 0.0;
  for (int64_t v = 0; v < V; ++v) total += vm::exp_f(s[v] - mx);
  const double target = double(u) * total;
  double cum = 0.0;
  int32_t last = 0;
  for (int64_t v = 0; v < V; ++v) {
    const double p = vm::exp_f(s[v] - mx);
    if (p <= 0.0) continue;
    last = int32_t(v);
    cum += p;
    if (cum > target) return int32_t(v);
  }
  return last;  // rounding left the target just above the total
}

}  // namespace

GenerateResult sample_search(Decoding& d) {
  const GenerationConfig& c = d.config();
  const int64_t R = d.rows(), V = d.vocab(), ML = d.max_length();
  const bool has_eos = !c.eos_token_ids.empty();
  LogitsProcessors proc(c, V, d.min_length(), 1);
  std::vector<float> scores(size_t(R * V));
  std::vector<int32_t> next(static_cast<size_t>(R)), pairs(size_t(2 * R));
  std::vector<uint8_t> running(static_cast<size_t>(R), 1);
  std::vector<int32_t> last(static_cast<size_t>(R), -1);  // mask_logits' view of the last step
  GenerateResult out;
  out.sequences.resize(static_cast<size_t>(R));
  for (int64_t r = 0; r < R; ++r) {
    GeneratedSequence& s = out.sequences[size_t(r)];
    s.input_index = r / d.per_input();
    s.tokens.reserve(size_t(ML - d.input_length()));
    s.token_logprobs.reserve(size_t(ML - d.input_length()));
  }
  int64_t cur_len = d.input_length();
  for (uint64_t step = 0;; ++step) {
    std::copy(d.logits(), d.logits() + R * V, scores.begin());
    proc.process(scores.data(), R, d.history(), ML, cur_len);
    if (d.hooks().mask_logits) {
      for (int64_t r = 0; r < R; ++r) {
        last[size_t(r)] = step > 0 && running[size_t(r)] ? next[size_t(r)] : -1;
      }
      d.hooks().mask_logits(scores.data(), R, V, last.data());
    }
    if (c.do_sample) proc.warp(scores.data(), R);
    int64_t count = 0;
    for (int64_t r = 0; r < R; ++r) {
      const float* row = scores.data() + r * V;
      int32_t tok;
      if (c.do_sample) {
        const float u = philox_uniform(philox_word(c.seed, step * uint64_t(R) + uint64_t(r)));
        tok = draw(row, V, u);
      } else {
        tok = argmax_row(row, V);
      }
      if (running[size_t(r)]) {
        GeneratedSequence& s = out.sequences[size_t(r)];
        s.tokens.push_back(tok);
        const float lp = log_prob_of(row, V, tok);
        s.token_logprobs.push_back(lp);
        s.score += lp;
        pairs[size_t(2 * count)] = int32_t(r);
        pairs[size_t(2 * count + 1)] = tok;
        ++count;
      } else if (has_eos) {
        tok = d.pad_token();  // finished rows continue with padding
      }
      next[size_t(r)] = tok;
      d.history()[r * ML + cur_len] = tok;
    }
    ++cur_len;
    if (count > 0 && d.hooks().on_tokens) d.hooks().on_tokens(pairs.data(), count);
    bool any = false;
    for (int64_t r = 0; r < R; ++r) {
      if (!running[size_t(r)]) continue;
      GeneratedSequence& s = out.sequences[size_t(r)];
      if (d.is_eos(next[size_t(r)])) {
        running[size_t(r)] = 0;
        s.finish = FinishReason::Eos;
      } else if (cur_len >= ML) {
        running[size_t(r)] = 0;
        s.finish = FinishReason::Length;
      } else {
        any = true;
      }
    }
    if (!any) break;
    if (d.cancelled()) {
      for (int64_t r = 0; r < R; ++r) {
        if (running[size_t(r)]) out.sequences[size_t(r)].finish = FinishReason::Aborted;
      }
      break;
    }
    d.step(next.data());
  }
  return out;
}

}  // namespace gen
}  // namespace s2s
