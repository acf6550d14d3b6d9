// Beam search and beam sampling: transformers' vectorised GenerationMixin._beam_search
// (transformers >= 4.50; its helpers _get_top_k_continuations, _get_running_beams_for_next_
// iteration, _update_finished_beams, _check_early_stop_heuristic and
// _beam_search_has_unfinished_sequences), per input:
//   1. log_softmax(logits) -> processors (-> warpers when sampling) = the step's transition
//      log-probs; add each beam's running score; the best K = max(2, 1 + n_eos) * num_beams of
//      num_beams * V continuations (beam sampling: K drawn without replacement);
//   2. a continuation "hits" when its token is an EOS or its length reaches max_length;
//   3. running beams: the best num_beams continuations after -1e9 on those that hit;
//   4. finished hypotheses: the hitting continuations among the first num_beams compete with the
//      kept ones on sum_logprobs / generated_length ** length_penalty (generated_length counts
//      the new tokens, EOS included); -1e9 bars the rest, and all new ones once the hypotheses
//      are full under early_stopping=True or when the heuristic says no improvement can come;
//   5. heuristic: the best running score / length ** length_penalty (length = the current new
//      length, or max_length - prompt for early_stopping="never" with length_penalty > 0) must
//      beat the worst kept hypothesis once num_beams are kept;
//   6. stop when no input can improve, or (early_stopping=True) every input has num_beams
//      hypotheses, or every continuation hit.
// Version notes: before 4.50 the same rules lived in BeamSearchScorer/BeamHypotheses
// (generation/beam_search.py); before about 4.36 a decoder-only model's length penalty divided
// by the whole sequence length (prompt included) instead of the generated length, which ranks
// hypotheses differently for prompts of different lengths.
// Scores follow torch's fp32 arithmetic: sums and the -1e9 bars in fp32, the length divisor a
// double rounded to fp32.
// Legend: B inputs, NB num_beams, K candidates per input, V vocab, ML max_length, P prompt.
#include <algorithm>
#include <cmath>
#include <limits>

#include "core/philox.h"
#include "generate/decoding.h"
#include "s2s/generate/logits_process.h"

namespace s2s {
namespace gen {

namespace {

constexpr float kBar = -1.0e9f;  // transformers' "very large negative value"

struct Candidate {
  float score;     // running score + transition log-prob
  float logprob;   // the transition log-prob alone
  int32_t beam;    // source beam within the input
  int32_t token;
  bool hits;
};

// Descending by score; equal scores keep the lower flat index first (a fixed tie rule).
bool better(float a, int64_t ia, float b, int64_t ib) { return a > b || (a == b && ia < ib); }

// The K best of x (n values) by `better`, into idx (sorted best first). O(n log K).
void top_k_indices(const float* x, int64_t n, int64_t K, std::vector<int64_t>& idx) {
  idx.clear();
  auto worse = [x](int64_t a, int64_t b) { return better(x[a], a, x[b], b); };  // heap: worst on top
  for (int64_t i = 0; i < n; ++i) {
    if (int64_t(idx.size()) < K) {
      idx.push_back(i);
      std::push_heap(idx.begin(), idx.end(), worse);
    } else if (better(x[i], i, x[idx.front()], idx.front())) {
      std::pop_heap(idx.begin(), idx.end(), worse);
      idx.back() = i;
      std::push_heap(idx.begin(), idx.end(), worse);
    }
  }
  std::sort(idx.begin(), idx.end(), worse);
}

}  // namespace

GenerateResult beam_search(Decoding& d) {
  const GenerationConfig& c = d.config();
  const int64_t B = d.inputs(), NB = c.num_beams, R = d.rows(), V = d.vocab();
  const int64_t ML = d.max_length(), P = d.input_length();
  const int64_t n_eos = int64_t(c.eos_token_ids.size());
  const int64_t K = std::max<int64_t>(2, 1 + n_eos) * NB;
  // Beam sampling keeps n_eos + 1 tokens through top-k / top-p (_get_logits_processor).
  LogitsProcessors proc(c, V, d.min_length(), c.do_sample ? n_eos + 1 : 1);

  std::vector<float> scores(size_t(R * V));
  std::vector<float> run_score(static_cast<size_t>(R), 0.0f);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t k = 1; k < NB; ++k) run_score[size_t(b * NB + k)] = kBar;
  std::vector<float> run_lp(size_t(R * ML), 0.0f);  // transition log-prob of each position
  std::vector<int32_t> new_hist(size_t(R * ML));
  std::vector<float> new_lp(size_t(R * ML));
  // Finished hypotheses: NB slots per input, best first.
  std::vector<int32_t> fin_seq(size_t(R * ML)), tmp_seq(size_t(R * ML));
  std::vector<float> fin_lp(size_t(R * ML)), tmp_lp(size_t(R * ML));
  std::vector<float> fin_score(static_cast<size_t>(R), kBar), tmp_score(static_cast<size_t>(R));
  std::vector<int64_t> fin_len(static_cast<size_t>(R), 0), tmp_len(static_cast<size_t>(R));
  std::vector<uint8_t> fin_done(static_cast<size_t>(R), 0), tmp_done(static_cast<size_t>(R));
  std::vector<uint8_t> improvable(static_cast<size_t>(B), 1);  // is_early_stop_heuristic_unsatisfied
  std::vector<Candidate> cand(size_t(B * K));
  std::vector<int32_t> src(static_cast<size_t>(R)), next(static_cast<size_t>(R));
  std::vector<float> merged(size_t(NB + K)), flat(size_t(NB * V)), keyed;
  std::vector<int64_t> idx, order;
  idx.reserve(size_t(std::max(K, NB + K)));

  int64_t cur_len = P;
  bool aborted = false;
  for (uint64_t step = 0;; ++step) {
    // 1. transition log-probs and the top K continuations per input
    std::copy(d.logits(), d.logits() + R * V, scores.begin());
    log_softmax_rows(scores.data(), R, V);
    proc.process(scores.data(), R, d.history(), ML, cur_len);
    if (c.do_sample) proc.warp(scores.data(), R);
    bool all_hit = true;
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t k = 0; k < NB; ++k) {
        const float* row = scores.data() + (b * NB + k) * V;
        const float base = run_score[size_t(b * NB + k)];
        for (int64_t v = 0; v < V; ++v) flat[size_t(k * V + v)] = row[v] + base;
      }
      if (c.do_sample) {
        // torch.multinomial(softmax(flat), K) without replacement == the K largest
        // log p + Gumbel noise (Gumbel-top-k), in draw order.
        keyed.resize(flat.size());
        const uint64_t base = step * uint64_t(B) + uint64_t(b);
        for (int64_t i = 0; i < NB * V; ++i) {
          const uint32_t w = philox_word(c.seed ^ 0x5DEECE66Dull, base * uint64_t(NB * V) + uint64_t(i));
          const double u = (double(w >> 8) + 0.5) * (1.0 / 16777216.0);
          keyed[size_t(i)] = flat[size_t(i)] == -std::numeric_limits<float>::infinity()
                                 ? flat[size_t(i)]
                                 : flat[size_t(i)] + float(-std::log(-std::log(u)));
        }
        top_k_indices(keyed.data(), NB * V, K, idx);
      } else {
        top_k_indices(flat.data(), NB * V, K, idx);
      }
      for (int64_t k = 0; k < K; ++k) {
        Candidate& cd = cand[size_t(b * K + k)];
        const int64_t i = idx[size_t(k)];
        cd.beam = int32_t(i / V);
        cd.token = int32_t(i % V);
        cd.score = flat[size_t(i)];
        cd.logprob = scores[size_t((b * NB + cd.beam) * V + cd.token)];
        // 2. EosTokenCriteria / MaxLengthCriteria on the continued sequence (length cur_len + 1)
        cd.hits = d.is_eos(cd.token) || cur_len + 1 >= ML;
        all_hit = all_hit && cd.hits;
      }
    }
    // 4. finished hypotheses (uses the heuristic flag and fullness from before this step)
    const float denom = static_cast<float>(std::pow(double(cur_len + 1 - P), c.length_penalty));
    for (int64_t b = 0; b < B; ++b) {
      bool full = true;
      for (int64_t k = 0; k < NB; ++k) full = full && fin_done[size_t(b * NB + k)];
      for (int64_t k = 0; k < NB; ++k) merged[size_t(k)] = fin_score[size_t(b * NB + k)];
      for (int64_t k = 0; k < K; ++k) {
        const Candidate& cd = cand[size_t(b * K + k)];
        float s = cd.score / denom;
        if (full && c.early_stopping == EarlyStopping::True) s += kBar;
        if (!improvable[size_t(b)]) s += kBar;
        if (!(cd.hits && k < NB)) s += kBar;
        merged[size_t(NB + k)] = s;
      }
      top_k_indices(merged.data(), NB + K, NB, order);
      for (int64_t k = 0; k < NB; ++k) {
        const int64_t o = order[size_t(k)], dst = b * NB + k;
        tmp_score[size_t(dst)] = merged[size_t(o)];
        if (o < NB) {  // a kept hypothesis
          const int64_t from = b * NB + o;
          std::copy_n(&fin_seq[size_t(from * ML)], ML, &tmp_seq[size_t(dst * ML)]);
          std::copy_n(&fin_lp[size_t(from * ML)], ML, &tmp_lp[size_t(dst * ML)]);
          tmp_len[size_t(dst)] = fin_len[size_t(from)];
          tmp_done[size_t(dst)] = fin_done[size_t(from)];
        } else {  // a continuation of this step
          const Candidate& cd = cand[size_t(b * K + (o - NB))];
          const int64_t from = b * NB + cd.beam;
          std::copy_n(d.history() + from * ML, cur_len, &tmp_seq[size_t(dst * ML)]);
          tmp_seq[size_t(dst * ML + cur_len)] = cd.token;
          std::copy_n(&run_lp[size_t(from * ML)], cur_len, &tmp_lp[size_t(dst * ML)]);
          tmp_lp[size_t(dst * ML + cur_len)] = cd.logprob;
          tmp_len[size_t(dst)] = cur_len + 1;
          tmp_done[size_t(dst)] = cd.hits && (o - NB) < NB;
        }
      }
    }
    fin_seq.swap(tmp_seq);
    fin_lp.swap(tmp_lp);
    fin_score.swap(tmp_score);
    fin_len.swap(tmp_len);
    fin_done.swap(tmp_done);
    // 3. running beams for the next step
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t k = 0; k < K; ++k) {
        const Candidate& cd = cand[size_t(b * K + k)];
        merged[size_t(k)] = cd.score + (cd.hits ? kBar : 0.0f);
      }
      top_k_indices(merged.data(), K, NB, order);
      for (int64_t k = 0; k < NB; ++k) {
        const Candidate& cd = cand[size_t(b * K + order[size_t(k)])];
        const int64_t dst = b * NB + k, from = b * NB + cd.beam;
        src[size_t(dst)] = int32_t(from);
        next[size_t(dst)] = cd.token;
        run_score[size_t(dst)] = merged[size_t(order[size_t(k)])];
        std::copy_n(d.history() + from * ML, cur_len, &new_hist[size_t(dst * ML)]);
        new_hist[size_t(dst * ML + cur_len)] = cd.token;
        std::copy_n(&run_lp[size_t(from * ML)], cur_len, &new_lp[size_t(dst * ML)]);
        new_lp[size_t(dst * ML + cur_len)] = cd.logprob;
      }
    }
    std::copy(new_hist.begin(), new_hist.end(), d.history());
    run_lp.swap(new_lp);
    ++cur_len;
    // 5. early-stop heuristic
    const int64_t best_len = (c.early_stopping == EarlyStopping::Never && c.length_penalty > 0.0)
                                 ? ML - P
                                 : cur_len - P;
    const float best_denom = static_cast<float>(std::pow(double(best_len), c.length_penalty));
    bool any_improvable = false, all_done = true;
    for (int64_t b = 0; b < B; ++b) {
      bool done = true;
      float worst = std::numeric_limits<float>::infinity();
      for (int64_t k = 0; k < NB; ++k) {
        done = done && fin_done[size_t(b * NB + k)];
        worst = std::min(worst, fin_score[size_t(b * NB + k)]);
      }
      const float best_possible = run_score[size_t(b * NB)] / best_denom;
      improvable[size_t(b)] = improvable[size_t(b)] && best_possible > (done ? worst : kBar);
      any_improvable = any_improvable || improvable[size_t(b)];
      all_done = all_done && done;
    }
    // 6. stop?
    const bool open = !(all_done && c.early_stopping == EarlyStopping::True);
    if (!(any_improvable && open && !all_hit)) break;
    if (d.cancelled()) {
      aborted = true;
      break;
    }
    d.reorder(src.data());
    d.step(next.data());
  }

  // Outputs: the first num_return_sequences hypotheses of each input (best first). An aborted
  // search fills slots nobody finished with the best running beams, scored the same way.
  GenerateResult out;
  const int64_t nrs = c.num_return_sequences;
  for (int64_t b = 0; b < B; ++b) {
    int64_t next_running = 0;
    for (int64_t k = 0; k < nrs; ++k) {
      const int64_t slot = b * NB + k;
      GeneratedSequence s;
      s.input_index = b;
      if (fin_done[size_t(slot)]) {
        const int64_t len = fin_len[size_t(slot)];
        s.tokens = std::vector<int32_t>(fin_seq.begin() + slot * ML + P, fin_seq.begin() + slot * ML + len);
        s.token_logprobs = std::vector<float>(fin_lp.begin() + slot * ML + P, fin_lp.begin() + slot * ML + len);
        s.score = fin_score[size_t(slot)];
        s.finish = d.is_eos(s.tokens.back()) ? FinishReason::Eos : FinishReason::Length;
      } else {
        const int64_t row = b * NB + std::min(next_running++, NB - 1);
        s.tokens = std::vector<int32_t>(d.history() + row * ML + P, d.history() + row * ML + cur_len);
        s.token_logprobs = std::vector<float>(run_lp.begin() + row * ML + P, run_lp.begin() + row * ML + cur_len);
        s.score = run_score[size_t(row)] /
                  static_cast<float>(std::pow(double(cur_len - P), c.length_penalty));
        s.finish = aborted ? FinishReason::Aborted : FinishReason::Length;
      }
      out.sequences.push_back(std::move(s));
    }
  }
  return out;
}

}  // namespace gen
}  // namespace s2s
