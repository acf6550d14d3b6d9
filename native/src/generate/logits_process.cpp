// The logits processors and warpers (see the header), each citing the transformers class whose
// definition it follows (generation/logits_process.py). Legend: R rows, V vocab, L history.
#include "s2s/generate/logits_process.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "ops/vec_math.h"
#include "s2s/error.h"

namespace s2s {

namespace {
constexpr float kNegInf = -std::numeric_limits<float>::infinity();
}

LogitsProcessors::LogitsProcessors(const GenerationConfig& c, int64_t vocab, int64_t min_length,
                                   int64_t min_tokens_to_keep)
    : V_(vocab),
      penalty_(c.repetition_penalty),
      ngram_(c.no_repeat_ngram_size),
      eos_(c.eos_token_ids),
      min_length_(min_length),
      temperature_(c.do_sample ? c.temperature : 1.0f),
      top_k_(c.do_sample ? c.top_k : 0),
      top_p_(c.do_sample ? c.top_p : 1.0f),
      min_keep_(min_tokens_to_keep) {
  // NoBadWordsLogitsProcessor.__init__: sequences that are exactly one EOS token are dropped
  // (banning EOS is min_length's job).
  for (const auto& seq : c.bad_words_ids) {
    const bool eos_only =
        seq.size() == 1 && std::find(eos_.begin(), eos_.end(), seq[0]) != eos_.end();
    if (!eos_only) bad_words_.push_back(seq);
  }
  if (penalty_ != 1.0f) stamp_.assign(size_t(V_), 0);
  if (top_k_ != 0 || top_p_ < 1.0f) {
    sorted_.resize(size_t(V_));
    order_.resize(size_t(V_));
  }
}

void LogitsProcessors::process(float* scores, int64_t R, const int32_t* history, int64_t stride,
                               int64_t L) {
  for (int64_t r = 0; r < R; ++r) {
    float* s = scores + r * V_;
    const int32_t* h = history + r * stride;
    if (penalty_ != 1.0f) repetition_penalty(s, h, L);
    if (ngram_ > 0) no_repeat_ngram(s, h, L);
    if (!bad_words_.empty()) bad_words(s, h, L);
    // MinLengthLogitsProcessor: input_ids.shape[-1] < min_length -> EOS scores -inf.
    if (L < min_length_) {
      for (int32_t e : eos_) s[e] = kNegInf;
    }
  }
}

// RepetitionPenaltyLogitsProcessor: every token of input_ids (prompt included), once however often
// it occurs: score < 0 ? score * penalty : score / penalty (gather, then scatter, so duplicates
// see the original score).
void LogitsProcessors::repetition_penalty(float* s, const int32_t* h, int64_t L) {
  if (++epoch_ == 0) {  // stamps wrapped: clear them once every 2^32 rows
    std::fill(stamp_.begin(), stamp_.end(), 0);
    epoch_ = 1;
  }
  for (int64_t i = 0; i < L; ++i) {
    const int32_t t = h[i];
    if (stamp_[size_t(t)] == epoch_) continue;
    stamp_[size_t(t)] = epoch_;
    const float v = s[t];
    s[t] = v < 0.0f ? v * penalty_ : v / penalty_;
  }
}

// NoRepeatNGramLogitsProcessor (_get_ngrams / _get_generated_ngrams): with n = ngram size and
// L + 1 >= n, every n-gram of the history whose first n - 1 tokens equal the last n - 1 tokens
// of the history bans its last token.
void LogitsProcessors::no_repeat_ngram(float* s, const int32_t* h, int64_t L) const {
  const int64_t n = ngram_;
  if (L + 1 < n) return;
  const int32_t* tail = h + (L - (n - 1));  // the last n - 1 tokens
  for (int64_t i = 0; i + n <= L; ++i) {
    bool match = true;
    for (int64_t j = 0; j + 1 < n && match; ++j) match = h[i + j] == tail[j];
    if (match) s[h[i + n - 1]] = kNegInf;
  }
}

// NoBadWordsLogitsProcessor (SequenceBiasLogitsProcessor with -inf biases): a one-token sequence
// is always banned; a longer one bans its last token when its other tokens end the history, and
// is skipped while it is longer than the history.
void LogitsProcessors::bad_words(float* s, const int32_t* h, int64_t L) const {
  for (const auto& seq : bad_words_) {
    const int64_t n = int64_t(seq.size());
    if (n == 1) {
      s[seq[0]] = kNegInf;
      continue;
    }
    if (n > L) continue;
    bool match = true;
    for (int64_t j = 0; j + 1 < n && match; ++j) match = h[L - (n - 1) + j] == seq[size_t(j)];
    if (match) s[seq[size_t(n - 1)]] = kNegInf;
  }
}

void LogitsProcessors::warp(float* scores, int64_t R) {
  for (int64_t r = 0; r < R; ++r) {
    float* s = scores + r * V_;
    // TemperatureLogitsWarper: scores / temperature.
    if (temperature_ != 1.0f) {
      for (int64_t v = 0; v < V_; ++v) s[v] = s[v] / temperature_;
    }
    if (top_k_ != 0) top_k(s);
    if (top_p_ < 1.0f) top_p(s);
  }
}

// TopKLogitsWarper: k = min(max(top_k, min_tokens_to_keep), V); scores below the k-th largest
// become -inf (ties with it stay).
void LogitsProcessors::top_k(float* s) {
  const int64_t k = std::min(std::max(top_k_, min_keep_), V_);
  std::copy(s, s + V_, sorted_.begin());
  std::nth_element(sorted_.begin(), sorted_.begin() + (k - 1), sorted_.end(), std::greater<float>());
  const float kth = sorted_[size_t(k - 1)];
  for (int64_t v = 0; v < V_; ++v) {
    if (s[v] < kth) s[v] = kNegInf;
  }
}

// TopPLogitsWarper: sort ascending, cumulative softmax; tokens whose cumulative probability is
// <= 1 - top_p go, except the min_tokens_to_keep most likely.
void LogitsProcessors::top_p(float* s) {
  for (int64_t v = 0; v < V_; ++v) order_[size_t(v)] = int32_t(v);
  std::stable_sort(order_.begin(), order_.end(), [s](int32_t a, int32_t b) { return s[a] < s[b]; });
  const float mx = s[order_[size_t(V_ - 1)]];
  float sum = 0.0f;
  for (int64_t i = 0; i < V_; ++i) {
    sorted_[size_t(i)] = vm::exp_f(s[order_[size_t(i)]] - mx);
    sum += sorted_[size_t(i)];
  }
  const float cut = 1.0f - top_p_;
  float cum = 0.0f;
  for (int64_t i = 0; i < V_ - min_keep_; ++i) {
    cum += sorted_[size_t(i)] / sum;
    if (cum <= cut) s[order_[size_t(i)]] = kNegInf;
  }
}

void log_softmax_rows(float* x, int64_t R, int64_t V) {
  for (int64_t r = 0; r < R; ++r) {
    float* row = x + r * V;
    float mx = kNegInf;
    for (int64_t v = 0; v < V; ++v) mx = row[v] > mx ? row[v] : mx;
    double sum = 0.0;
    for (int64_t v = 0; v < V; ++v) sum += vm::exp_f(row[v] - mx);
    const float ls = static_cast<float>(std::log(sum));
    for (int64_t v = 0; v < V; ++v) row[v] = (row[v] - mx) - ls;  // torch's x - max - log(sum)
  }
}

float log_prob_of(const float* s, int64_t V, int32_t token) {
  float mx = kNegInf;
  for (int64_t v = 0; v < V; ++v) mx = s[v] > mx ? s[v] : mx;
  double sum = 0.0;
  for (int64_t v = 0; v < V; ++v) sum += vm::exp_f(s[v] - mx);
  return static_cast<float>(double(s[token]) - double(mx) - std::log(sum));
}

int32_t argmax_row(const float* s, int64_t V) {
  int32_t best = 0;
  for (int64_t v = 1; v < V; ++v) {
    if (s[v] > s[best]) best = int32_t(v);
  }
  return best;
}

}  // namespace s2s
