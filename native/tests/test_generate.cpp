// Native generate against test/fixtures/generation/generation.json (made by
// scripts/fixtures/make_generation_fixtures.py, a torch port of transformers' generation): greedy,
// greedy with repetition penalty + no-repeat n-grams + bad words + min_new_tokens, beam search
// (4 beams, length_penalty 1.2, early_stopping true / false / "never", several EOS ids,
// num_return_sequences), left-padded decoder-only batches and right-padded T5 batches, on GPT-2,
// Llama (GQA), Qwen2 and both T5 variants: token ids exactly, scores within 1e-4. Also the
// logits processors on hand-made cases, sampling (seeded determinism, top-k / top-p support,
// temperature), cancellation, streaming hooks, the mask_logits hook and argument errors.
#include <atomic>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "fixture_model.h"
#include "harness.h"
#include "io/json.h"
#include "s2s/generate/generate.h"
#include "s2s/generate/logits_process.h"
#include "s2s/models/weights.h"

using namespace s2s;

namespace {

std::unique_ptr<Model> load_fixture(const std::string& name) {
  return s2s_test::load_fixture_model(s2s_test::fixture_dir(name));
}

// The folder's generation_config.json fields the fixtures rely on (the TypeScript layer does this
// merge in the product).
GenerationConfig folder_defaults(const std::string& name) {
  const json::Value gc =
      json::parse(s2s_test::read_text(s2s_test::fixture_dir(name) + "/generation_config.json"));
  GenerationConfig c;
  if (const json::Value* v = gc.find("eos_token_id")) c.eos_token_ids = {int32_t(v->integer)};
  if (const json::Value* v = gc.find("pad_token_id")) c.pad_token_id = int32_t(v->integer);
  if (const json::Value* v = gc.find("bos_token_id")) c.bos_token_id = int32_t(v->integer);
  if (const json::Value* v = gc.find("decoder_start_token_id")) {
    c.decoder_start_token_id = int32_t(v->integer);
  }
  return c;
}

std::vector<int32_t> ints(const json::Value& a) {
  std::vector<int32_t> out;
  for (const json::Value& v : a.array) out.push_back(int32_t(v.integer));
  return out;
}

// A case's config (transformers' names) over the folder defaults.
GenerationConfig case_config(const json::Value& cfg, GenerationConfig c) {
  for (const auto& [key, v] : cfg.object) {
    if (key == "max_new_tokens") c.max_new_tokens = v.integer;
    else if (key == "num_beams") c.num_beams = v.integer;
    else if (key == "num_return_sequences") c.num_return_sequences = v.integer;
    else if (key == "length_penalty") c.length_penalty = v.number;
    else if (key == "repetition_penalty") c.repetition_penalty = float(v.number);
    else if (key == "no_repeat_ngram_size") c.no_repeat_ngram_size = v.integer;
    else if (key == "min_new_tokens") c.min_new_tokens = v.integer;
    else if (key == "early_stopping") {
      c.early_stopping = v.is(json::Kind::String) ? EarlyStopping::Never
                         : v.boolean              ? EarlyStopping::True
                                                  : EarlyStopping::False;
    } else if (key == "eos_token_id") {
      c.eos_token_ids = v.is(json::Kind::Array) ? ints(v) : std::vector<int32_t>{int32_t(v.integer)};
    } else if (key == "bad_words_ids") {
      c.bad_words_ids.clear();
      for (const json::Value& seq : v.array) c.bad_words_ids.push_back(ints(seq));
    } else {
      s2s_test::record_failure(__FILE__, __LINE__, "fixture config key not mapped: " + key);
    }
  }
  return c;
}

std::vector<std::vector<int32_t>> case_inputs(const json::Value& c) {
  std::vector<std::vector<int32_t>> out;
  for (const json::Value& in : c.find("inputs")->array) out.push_back(ints(in));
  return out;
}

const json::Value& fixture_json() {
  static const json::Value v = json::parse(
      s2s_test::read_text(s2s_test::repo_root() + "test/fixtures/generation/generation.json"));
  return v;
}

}  // namespace

TEST(generation_matches_the_transformers_port_fixtures) {
  int cases = 0;
  double worst_score = 0.0;
  for (const auto& [name, model_cases] : fixture_json().find("models")->object) {
    std::unique_ptr<Model> m = load_fixture(name);
    const GenerationConfig defaults = folder_defaults(name);
    Graph g;
    KVCache cache;
    for (const json::Value& c : model_cases.array) {
      const std::string what = name + " " + c.find("name")->string;
      const GenerationConfig cfg = case_config(*c.find("config"), defaults);
      GenerateResult r = generate(*m, g, cache, case_inputs(c), cfg);
      const json::Value& want = *c.find("sequences");
      CHECK_MSG(r.sequences.size() == want.array.size(), what + ": sequence count");
      for (size_t i = 0; i < want.array.size() && i < r.sequences.size(); ++i) {
        const GeneratedSequence& got = r.sequences[i];
        const std::vector<int32_t> tokens = ints(*want.array[i].find("tokens"));
        CHECK_MSG(got.input_index == want.array[i].find("input_index")->integer,
                  what + ": input index of sequence " + std::to_string(i));
        std::string got_s, want_s;
        for (int32_t t : got.tokens) got_s += std::to_string(t) + " ";
        for (int32_t t : tokens) want_s += std::to_string(t) + " ";
        CHECK_MSG(got.tokens == tokens, what + " sequence " + std::to_string(i) + ": tokens [" +
                                            got_s + "] expected [" + want_s + "]");
        const double ws = want.array[i].find("score")->number;
        CHECK_ERR(std::fabs(got.score - ws), 1e-4, what + " sequence " + std::to_string(i) + " score");
        worst_score = std::max(worst_score, std::fabs(got.score - ws));
        const bool ends_eos = !tokens.empty() && std::count(cfg.eos_token_ids.begin(),
                                                            cfg.eos_token_ids.end(), tokens.back());
        CHECK_MSG(got.finish == (ends_eos ? FinishReason::Eos : FinishReason::Length),
                  what + ": finish reason");
        CHECK_MSG(got.token_logprobs.size() == got.tokens.size(), what + ": one logprob per token");
      }
      ++cases;
    }
  }
  CHECK(cases >= 30);  // 6 cases x 5 models
  std::printf("  generation fixtures: %d cases, worst score difference %.2e\n", cases, worst_score);
}

TEST(logits_processors_follow_transformers_definitions) {
  GenerationConfig c;
  c.repetition_penalty = 2.0f;
  c.no_repeat_ngram_size = 2;
  c.bad_words_ids = {{7}, {3, 5}, {9}};  // {9} is the EOS: dropped from bad words
  c.eos_token_ids = {9};
  const int64_t V = 10;
  LogitsProcessors p(c, V, /*min_length=*/6, 1);
  // history 3 5 3 : repeated tokens 3, 5; bigram "3 5" exists so after "3" token 5 is banned;
  // bad word (3,5): last token 3 -> ban 5; length 3 < min_length 6 -> EOS banned.
  const int32_t h[3] = {3, 5, 3};
  std::vector<float> s = {1, 1, 1, 4, 1, -2, 1, 1, 1, 1};
  s[5] = -2.0f;
  p.process(s.data(), 1, h, 3, 3);
  CHECK(s[3] == 2.0f);                    // positive / penalty
  CHECK(std::isinf(s[5]) && s[5] < 0);    // n-gram ban (and penalised first)
  CHECK(std::isinf(s[7]) && s[7] < 0);    // bad word
  CHECK(std::isinf(s[9]) && s[9] < 0);    // min length bans EOS
  CHECK(s[0] == 1.0f && s[8] == 1.0f);
  // Negative logits are multiplied: -2 * 2 = -4 (a token seen once even if repeated).
  std::vector<float> t(10, 0.5f);
  t[4] = -2.0f;
  const int32_t h2[3] = {4, 4, 1};
  GenerationConfig c2;
  c2.repetition_penalty = 2.0f;
  LogitsProcessors p2(c2, V, 0, 1);
  p2.process(t.data(), 1, h2, 3, 3);
  CHECK(t[4] == -4.0f && t[1] == 0.25f);
}

TEST(sampling_warpers_restrict_the_support) {
  GenerationConfig c;
  c.do_sample = true;
  c.top_k = 3;
  c.top_p = 1.0f;
  c.temperature = 0.5f;
  const int64_t V = 8;
  LogitsProcessors p(c, V, 0, 1);
  std::vector<float> s = {0.1f, 2.0f, 0.3f, 1.0f, -1.0f, 3.0f, 0.2f, 0.0f};
  p.warp(s.data(), 1);
  int kept = 0;
  for (float v : s) kept += std::isfinite(v);
  CHECK(kept == 3);
  CHECK(s[5] == 6.0f && s[1] == 4.0f && s[3] == 2.0f);  // divided by the temperature
  // top-p 0.7 over probabilities {0.6, 0.3, 0.1}: keeps the two most likely (0.6 < 0.7).
  GenerationConfig cp;
  cp.do_sample = true;
  cp.top_k = 0;
  cp.top_p = 0.7f;
  LogitsProcessors pp(cp, 3, 0, 1);
  std::vector<float> q = {std::log(0.3f), std::log(0.1f), std::log(0.6f)};
  pp.warp(q.data(), 1);
  CHECK(std::isfinite(q[0]) && std::isfinite(q[2]) && std::isinf(q[1]));
}

TEST(sampling_is_seeded_and_stays_in_the_top_k_and_top_p_support) {
  std::unique_ptr<Model> m = load_fixture("gpt2");
  Graph g;
  KVCache cache;
  GenerationConfig c = folder_defaults("gpt2");
  c.do_sample = true;
  c.max_new_tokens = 16;
  c.top_k = 2;
  c.eos_token_ids.clear();
  c.num_return_sequences = 3;
  c.seed = 1234;
  const std::vector<int32_t> prompt = {10, 20, 30};
  const std::vector<std::vector<int32_t>> in = {prompt};
  const GenerateResult a = generate(*m, g, cache, in, c);
  const GenerateResult b = generate(*m, g, cache, in, c);
  CHECK(a.sequences.size() == 3);
  for (size_t i = 0; i < 3; ++i) CHECK(a.sequences[i].tokens == b.sequences[i].tokens);
  c.seed = 99;
  const GenerateResult other = generate(*m, g, cache, in, c);
  bool differs = false;
  for (size_t i = 0; i < 3; ++i) differs = differs || other.sequences[i].tokens != a.sequences[i].tokens;
  CHECK_MSG(differs, "another seed should draw other tokens");

  // Replays a sampled sequence through the training forward: at each step, the drawn token's
  // rank among the logits, and the probability mass (temperature 1) of the tokens above it.
  const int64_t V = m->config().vocab_size;
  auto ranks = [&](const std::vector<int32_t>& tokens, std::vector<int>* rank, std::vector<double>* mass_above) {
    std::vector<int32_t> full = prompt;
    full.insert(full.end(), tokens.begin(), tokens.end());
    Graph fg;
    Batch bt;
    bt.B = 1;
    bt.T = int64_t(full.size());
    bt.input_ids = full.data();
    const float* logits = m->forward(fg, bt, LossReduction::Mean).logits->value.f32();
    for (size_t i = 0; i < tokens.size(); ++i) {
      const float* row = logits + (int64_t(prompt.size()) - 1 + int64_t(i)) * V;
      double mx = row[0], z = 0, above = 0;
      for (int64_t v = 0; v < V; ++v) mx = std::max<double>(mx, row[v]);
      for (int64_t v = 0; v < V; ++v) z += std::exp(row[v] - mx);
      int r = 0;
      for (int64_t v = 0; v < V; ++v) {
        if (row[v] > row[tokens[i]]) {
          ++r;
          above += std::exp(row[v] - mx) / z;
        }
      }
      rank->push_back(r);
      mass_above->push_back(above);
    }
  };
  std::set<int> seen_ranks;
  for (const GeneratedSequence& s : a.sequences) {
    std::vector<int> rk;
    std::vector<double> above;
    ranks(s.tokens, &rk, &above);
    for (int r : rk) {
      CHECK_MSG(r < 2, "top_k = 2 drew a token of rank " + std::to_string(r));
      seen_ranks.insert(r);
    }
  }
  CHECK_MSG(seen_ranks.size() == 2, "top_k = 2 should draw both ranks somewhere in 48 draws");

  // top_p = 0.5: a token is kept only while the mass of the tokens above it is < 0.5.
  c.top_k = 0;
  c.top_p = 0.5f;
  c.seed = 7;
  for (const GeneratedSequence& s : generate(*m, g, cache, in, c).sequences) {
    std::vector<int> rk;
    std::vector<double> above;
    ranks(s.tokens, &rk, &above);
    for (double mass : above) CHECK_MSG(mass < 0.5 + 1e-5, "top_p = 0.5 drew outside the nucleus");
  }

  // A very low temperature concentrates everything on the argmax: sampling equals greedy.
  c.top_p = 1.0f;
  c.temperature = 0.01f;
  c.num_return_sequences = 1;
  GenerationConfig gc = c;
  gc.do_sample = false;
  CHECK(generate(*m, g, cache, in, c).sequences[0].tokens ==
        generate(*m, g, cache, in, gc).sequences[0].tokens);
  // A high temperature spreads the draws: more distinct tokens than at temperature 1.
  auto distinct = [&](float temperature) {
    GenerationConfig tc = c;
    tc.temperature = temperature;
    tc.num_return_sequences = 8;
    std::set<int32_t> d;
    for (const GeneratedSequence& s : generate(*m, g, cache, in, tc).sequences) d.insert(s.tokens.begin(), s.tokens.end());
    return d.size();
  };
  CHECK(distinct(3.0f) > distinct(0.3f));
}

TEST(cancel_stops_generation_and_streams_tokens_in_order) {
  std::unique_ptr<Model> m = load_fixture("llama-gqa");
  Graph g;
  KVCache cache;
  GenerationConfig c = folder_defaults("llama-gqa");
  c.eos_token_ids.clear();
  c.max_new_tokens = 50;
  std::atomic<bool> cancel{false};
  std::vector<int32_t> streamed;
  GenerateHooks hooks;
  hooks.cancel = &cancel;
  hooks.on_tokens = [&](const int32_t* pairs, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
      CHECK(pairs[2 * i] == 0);
      streamed.push_back(pairs[2 * i + 1]);
    }
    if (streamed.size() == 5) cancel = true;
  };
  const GenerateResult r = generate(*m, g, cache, {{1, 5, 6, 7}}, c, hooks);
  CHECK(r.sequences.size() == 1);
  CHECK(r.sequences[0].finish == FinishReason::Aborted);
  CHECK(r.sequences[0].tokens.size() == 5);
  CHECK(streamed == r.sequences[0].tokens);
  // Cancelled before the start: nothing runs.
  const GenerateResult none = generate(*m, g, cache, {{1, 5}}, c, hooks);
  CHECK(none.sequences[0].tokens.empty() && none.sequences[0].finish == FinishReason::Aborted);
  // Beam search checks the flag too (here before its first step: nothing runs).
  c.num_beams = 3;
  c.num_return_sequences = 2;
  const GenerateResult br = generate(*m, g, cache, {{1, 5, 6, 7}}, c, hooks);
  CHECK(br.sequences.size() == 2 && br.sequences[0].finish == FinishReason::Aborted);
}

// GenerateHooks::mask_logits (what a JSON-schema constraint plugs into): it sees the processed
// scores and the last step's tokens, runs before the warpers (so top_k = 1 sampling under a mask
// equals greedy under it), a one-token mask forces that token with log-prob 0, and beam search
// refuses it.
TEST(mask_logits_runs_between_processors_and_warpers) {
  std::unique_ptr<Model> m = load_fixture("gpt2");
  Graph g;
  KVCache cache;
  GenerationConfig c = folder_defaults("gpt2");
  c.eos_token_ids.clear();
  c.pad_token_id = 95;  // the prompts differ in length
  c.max_new_tokens = 6;
  const int64_t V = m->config().vocab_size;
  const std::vector<std::vector<int32_t>> in = {{10, 20, 30}, {40}};
  // Forced: row r, step k must take token (7k + 3r + 1) mod V; `last` echoes the previous one.
  int64_t step = 0;
  bool last_ok = true;
  GenerateHooks forced;
  forced.mask_logits = [&](float* scores, int64_t R, int64_t V_, const int32_t* last) {
    for (int64_t r = 0; r < R; ++r) {
      const int32_t want_last = step == 0 ? -1 : int32_t((7 * (step - 1) + 3 * r + 1) % V_);
      last_ok = last_ok && last[r] == want_last;
      const int64_t keep = (7 * step + 3 * r + 1) % V_;
      for (int64_t v = 0; v < V_; ++v) {
        if (v != keep) scores[r * V_ + v] = -std::numeric_limits<float>::infinity();
      }
    }
    ++step;
  };
  const GenerateResult r = generate(*m, g, cache, in, c, forced);
  CHECK(last_ok);
  for (int64_t row = 0; row < 2; ++row) {
    const GeneratedSequence& s = r.sequences[size_t(row)];
    CHECK(s.tokens.size() == 6);
    for (size_t k = 0; k < s.tokens.size(); ++k) {
      CHECK(s.tokens[k] == int32_t((7 * int64_t(k) + 3 * row + 1) % V));
      CHECK(std::fabs(s.token_logprobs[k]) < 1e-6f);
    }
  }
  // Before the warpers: a mask banning each step's unmasked argmax, then top_k = 1 sampling,
  // must pick the best allowed token, as greedy under the same mask does.
  GenerateHooks ban_best;
  ban_best.mask_logits = [&](float* scores, int64_t R, int64_t V_, const int32_t*) {
    for (int64_t row = 0; row < R; ++row) scores[row * V_ + argmax_row(scores + row * V_, V_)] = -INFINITY;
  };
  const GenerateResult greedy = generate(*m, g, cache, in, c, ban_best);
  const GenerateResult plain = generate(*m, g, cache, in, c);
  GenerationConfig sc = c;
  sc.do_sample = true;
  sc.top_k = 1;
  sc.seed = 5;
  const GenerateResult sampled = generate(*m, g, cache, in, sc, ban_best);
  for (size_t row = 0; row < 2; ++row) {
    CHECK(sampled.sequences[row].tokens == greedy.sequences[row].tokens);
    CHECK(greedy.sequences[row].tokens[0] != plain.sequences[row].tokens[0]);
  }
  GenerationConfig bc = c;
  bc.num_beams = 2;
  try {
    generate(*m, g, cache, in, bc, ban_best);
    s2s_test::record_failure(__FILE__, __LINE__, "beam search with mask_logits should be refused");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("expected num_beams 1") != std::string::npos);
  }
}

TEST(generate_rejects_bad_settings_with_the_field_name) {
  std::unique_ptr<Model> m = load_fixture("gpt2");
  Graph g;
  KVCache cache;
  GenerationConfig c = folder_defaults("gpt2");
  auto fails_with = [&](const GenerationConfig& cfg, const std::vector<std::vector<int32_t>>& in,
                        const std::string& needle) {
    try {
      generate(*m, g, cache, in, cfg);
      s2s_test::record_failure(__FILE__, __LINE__, "expected an error mentioning " + needle);
    } catch (const Error& e) {
      CHECK_MSG(std::string(e.what()).find(needle) != std::string::npos,
                std::string("error '") + e.what() + "' should mention " + needle);
    }
  };
  GenerationConfig x = c;
  x.num_return_sequences = 2;
  fails_with(x, {{1, 2}}, "num_return_sequences");
  x = c;
  x.num_beams = 2;
  x.num_return_sequences = 3;
  fails_with(x, {{1, 2}}, "num_return_sequences <= num_beams");
  x = c;
  x.max_length = 3;
  fails_with(x, {{1, 2, 3}}, "max_length");
  x = c;
  x.max_new_tokens = 100;  // 64 positions in the fixture GPT-2
  fails_with(x, {{1, 2, 3}}, "n_positions");
  x = c;
  x.bad_words_ids = {{}};
  fails_with(x, {{1}}, "bad_words_ids[0]");
  x = c;
  x.eos_token_ids = {500};
  fails_with(x, {{1}}, "eos_token_id");
  fails_with(c, {{1, 999}}, "input 0");
  x = c;
  x.temperature = 0.0f;
  x.do_sample = true;
  fails_with(x, {{1}}, "temperature");
}
