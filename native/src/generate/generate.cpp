// generate(): validation, transformers' length resolution (_prepare_generated_length), input
// preparation (left padding + positions for decoder-only models, right padding + encoder run for
// T5), the prefill and step calls over the KV cache, and the dispatch to the strategy.
// Legend: B inputs, R rows, V vocab, P input length, ML max_length.
#include "s2s/generate/generate.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "generate/decoding.h"
#include "s2s/error.h"

namespace s2s {

namespace {
constexpr const char* kOp = "generate";

// Restores the graph's pass settings whatever happens.
struct InferenceMode {
  Graph& g;
  bool no_grad, training;
  explicit InferenceMode(Graph& graph) : g(graph), no_grad(g.no_grad), training(g.training) {
    g.no_grad = true;
    g.training = false;
  }
  ~InferenceMode() {
    g.reset();
    g.no_grad = no_grad;
    g.training = training;
  }
};

void check_token(int64_t id, int64_t V, const char* field) {
  S2S_REQUIRE(id >= 0 && id < V, code::kArgument, kOp, "expected ", field,
              " to be a token id in [0, ", V, "), got ", id);
}
}  // namespace

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::Eos: return "eos";
    case FinishReason::Length: return "length";
    case FinishReason::Aborted: return "aborted";
  }
  return "?";
}

void validate_generation_config(const GenerationConfig& c, int64_t V, bool encoder_decoder) {
  S2S_REQUIRE(c.max_new_tokens == -1 || c.max_new_tokens >= 1, code::kArgument, kOp,
              "expected max_new_tokens >= 1, got ", c.max_new_tokens);
  S2S_REQUIRE(c.max_length >= 1, code::kArgument, kOp, "expected max_length >= 1, got ",
              c.max_length);
  S2S_REQUIRE(c.min_new_tokens >= -1 && c.min_length >= 0, code::kArgument, kOp,
              "expected min_length and min_new_tokens >= 0, got ", c.min_length, " and ",
              c.min_new_tokens);
  S2S_REQUIRE(std::isfinite(c.temperature) && c.temperature > 0.0f, code::kArgument, kOp,
              "expected temperature > 0, got ", c.temperature,
              " (for greedy decoding set do_sample false)");
  S2S_REQUIRE(c.top_k >= 0, code::kArgument, kOp, "expected top_k >= 0, got ", c.top_k);
  S2S_REQUIRE(c.top_p > 0.0f && c.top_p <= 1.0f, code::kArgument, kOp,
              "expected top_p in (0, 1], got ", c.top_p);
  S2S_REQUIRE(c.num_beams >= 1, code::kArgument, kOp, "expected num_beams >= 1, got ",
              c.num_beams);
  S2S_REQUIRE(c.num_return_sequences >= 1, code::kArgument, kOp,
              "expected num_return_sequences >= 1, got ", c.num_return_sequences);
  if (c.num_beams > 1) {
    S2S_REQUIRE(c.num_return_sequences <= c.num_beams, code::kArgument, kOp,
                "expected num_return_sequences <= num_beams (", c.num_beams, "), got ",
                c.num_return_sequences);
  } else {
    S2S_REQUIRE(c.do_sample || c.num_return_sequences == 1, code::kArgument, kOp,
                "greedy search returns one sequence per input: expected num_return_sequences "
                "1 (or do_sample / num_beams > 1), got ",
                c.num_return_sequences);
  }
  S2S_REQUIRE(std::isfinite(c.length_penalty), code::kArgument, kOp,
              "expected a finite length_penalty, got ", c.length_penalty);
  S2S_REQUIRE(std::isfinite(c.repetition_penalty) && c.repetition_penalty > 0.0f,
              code::kArgument, kOp, "expected repetition_penalty > 0, got ",
              c.repetition_penalty);
  S2S_REQUIRE(c.no_repeat_ngram_size >= 0, code::kArgument, kOp,
              "expected no_repeat_ngram_size >= 0, got ", c.no_repeat_ngram_size);
  for (size_t i = 0; i < c.bad_words_ids.size(); ++i) {
    S2S_REQUIRE(!c.bad_words_ids[i].empty(), code::kArgument, kOp, "expected bad_words_ids[", i,
                "] to hold at least one token id, got an empty list");
    for (int32_t t : c.bad_words_ids[i]) check_token(t, V, "every bad_words_ids entry");
  }
  for (int32_t e : c.eos_token_ids) check_token(e, V, "eos_token_id");
  if (c.pad_token_id != -1) check_token(c.pad_token_id, V, "pad_token_id");
  if (c.bos_token_id != -1) check_token(c.bos_token_id, V, "bos_token_id");
  if (c.decoder_start_token_id != -1) {
    check_token(c.decoder_start_token_id, V, "decoder_start_token_id");
  }
  if (encoder_decoder) {
    S2S_REQUIRE(c.decoder_start_token_id >= 0 || c.bos_token_id >= 0, code::kArgument, kOp,
                "an encoder-decoder model needs decoder_start_token_id (or bos_token_id)");
  }
}

namespace gen {

Decoding::Decoding(Model& model, Graph& graph, KVCache& cache, const GenerationConfig& config,
                   const std::vector<std::vector<int32_t>>& inputs, int64_t per_input,
                   const GenerateHooks& hooks)
    : model_(model), graph_(graph), cache_(cache), config_(config), inputs_(inputs),
      hooks_(hooks), B_(int64_t(inputs.size())), per_input_(per_input), R_(B_ * per_input),
      V_(model.config().vocab_size), start_(std::chrono::steady_clock::now()) {
  const bool enc_dec = model.is_encoder_decoder();
  // transformers' _prepare_special_tokens: pad falls back to the first EOS id.
  pad_ = config.pad_token_id >= 0 ? config.pad_token_id
                                  : (config.eos_token_ids.empty() ? -1 : config.eos_token_ids[0]);
  int64_t longest = 0;
  for (size_t b = 0; b < inputs.size(); ++b) {
    for (int32_t t : inputs[b]) {
      S2S_REQUIRE(t >= 0 && t < V_, code::kArgument, kOp, "expected input ", b,
                  " to hold token ids in [0, ", V_, "), got ", t);
    }
    S2S_REQUIRE(!inputs[b].empty() || (!enc_dec && config.bos_token_id >= 0), code::kArgument,
                kOp, "expected input ", b, " to hold at least one token",
                enc_dec ? "" : " (or a bos_token_id to start from)");
    longest = std::max<int64_t>(longest, std::max<size_t>(inputs[b].size(), 1));
  }
  P_ = enc_dec ? 1 : longest;
  // _prepare_generated_length.
  if (config.max_new_tokens >= 0) {
    max_length_ = P_ + config.max_new_tokens;
  } else if (config.default_length) {
    max_length_ = P_ + 20;
    const int64_t cap = model.config().max_positions;
    if (cap > 0) max_length_ = std::min(max_length_, cap);
  } else {
    max_length_ = config.max_length;
  }
  min_length_ = config.min_new_tokens >= 0 ? P_ + config.min_new_tokens : config.min_length;
  // _validate_generated_length.
  S2S_REQUIRE(P_ < max_length_, code::kArgument, kOp, "input length of ",
              enc_dec ? "decoder_input_ids" : "input_ids", " is ", P_,
              ", but max_length is set to ", max_length_,
              "; increase max_length or, better, set max_new_tokens");
  if (model.config().arch == Architecture::Gpt2) {
    const int64_t n_pos = model.config().max_positions;
    S2S_REQUIRE(max_length_ <= n_pos, code::kArgument, kOp, "expected max_length <= ", n_pos,
                " (n_positions: GPT-2 has no position embedding beyond it), got ", max_length_);
  }
  history_.assign(size_t(R_ * max_length_), 0);
  tokens_.resize(size_t(enc_dec ? R_ : B_ * P_));
  positions_.resize(std::max(tokens_.size(), size_t(R_)));  // prefill (B,P), then one per row
  logits_.resize(size_t(R_ * V_));
}

bool Decoding::is_eos(int32_t t) const {
  for (int32_t e : config_.eos_token_ids) {
    if (e == t) return true;
  }
  return false;
}

double Decoding::decode_ms() const {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - prefilled_)
      .count();
}

void Decoding::copy_logits(const Tensor& logits) {
  S2S_REQUIRE(logits.numel() == R_ * V_, code::kInternal, kOp, "expected logits (", R_, ", ", V_,
              "), got ", logits.shape_string());
  // A memcpy on the CPU; from a GPU model, the download the host-side processing needs.
  graph_.ops().download(logits_.data(), logits.data, sizeof(float) * size_t(R_ * V_));
}

void Decoding::prefill() {
  Graph& g = graph_;
  g.reset();
  const int64_t ML = max_length_;
  if (model_.is_encoder_decoder()) {
    // Encoder inputs right-padded to the longest; the mask hides the padding.
    int64_t Te = 0;
    for (const auto& in : inputs_) Te = std::max<int64_t>(Te, int64_t(in.size()));
    std::vector<int32_t> ids(size_t(B_ * Te), pad_ >= 0 ? pad_ : 0), mask(size_t(B_ * Te), 0);
    for (int64_t b = 0; b < B_; ++b) {
      const auto& in = inputs_[size_t(b)];
      for (size_t t = 0; t < in.size(); ++t) {
        ids[size_t(b * Te) + t] = in[t];
        mask[size_t(b * Te) + t] = 1;
      }
    }
    cache_.reset(model_.self_cache_shape(), R_, ML);
    cache_.reset_cross(model_.cross_cache_shape(), B_, Te, per_input_);
    Batch enc;
    enc.B = B_;
    enc.T = Te;
    enc.input_ids = ids.data();
    enc.attention_mask = mask.data();
    model_.encode_to_cache(g, enc, cache_);
    // _prepare_decoder_input_ids_for_generation: decoder_start_token_id, else bos_token_id.
    const int32_t start =
        config_.decoder_start_token_id >= 0 ? config_.decoder_start_token_id : config_.bos_token_id;
    for (int64_t r = 0; r < R_; ++r) {
      tokens_[size_t(r)] = start;
      history_[size_t(r * ML)] = start;
    }
    g.reset();
    copy_logits(
        model_.forward_cached(g, g.indices(tokens_.data(), R_), nullptr, R_, 1, cache_)->value);
    cache_.advance(1);
  } else {
    S2S_REQUIRE(pad_ >= 0 || std::all_of(inputs_.begin(), inputs_.end(),
                                         [&](const auto& in) { return int64_t(in.size()) == P_; }),
                code::kArgument, kOp,
                "prompts of different lengths are left-padded with pad_token_id, but the model "
                "has neither pad_token_id nor eos_token_id; set padTokenId");
    // Each prompt runs once; its rows (beams, return sequences) then copy its cache.
    cache_.reset(model_.self_cache_shape(), B_, ML, R_);
    std::vector<int32_t> mask(size_t(B_ * P_));
    for (int64_t b = 0; b < B_; ++b) {
      std::vector<int32_t> in = inputs_[size_t(b)];
      if (in.empty()) in.push_back(config_.bos_token_id);  // _maybe_initialize_input_ids_for_generation
      const int64_t pad = P_ - int64_t(in.size());
      cache_.key_begin()[b] = int32_t(pad);
      for (int64_t t = 0; t < P_; ++t) {
        tokens_[size_t(b * P_ + t)] = t < pad ? pad_ : in[size_t(t - pad)];
        mask[size_t(b * P_ + t)] = t < pad ? 0 : 1;
      }
      for (int64_t k = 0; k < per_input_; ++k) {
        std::copy_n(&tokens_[size_t(b * P_)], P_, &history_[size_t((b * per_input_ + k) * ML)]);
      }
    }
    position_ids_from_attention_mask(mask.data(), B_, P_, positions_.data());
    const Var* logits = model_.forward_cached(g, g.indices(tokens_.data(), B_ * P_),
                                              g.indices(positions_.data(), B_ * P_), B_, P_,
                                              cache_);
    S2S_REQUIRE(logits->value.numel() == B_ * V_, code::kInternal, kOp, "expected prefill logits (",
                B_, ", ", V_, "), got ", logits->value.shape_string());
    for (int64_t r = 0; r < R_; ++r) {
      g.ops().download(&logits_[size_t(r * V_)], logits->value.f32() + (r / per_input_) * V_,
                       sizeof(float) * size_t(V_));
    }
    cache_.advance(P_);
    cache_.expand(per_input_);
  }
  prefilled_ = std::chrono::steady_clock::now();
  prefill_ms_ = std::chrono::duration<double, std::milli>(prefilled_ - start_).count();
}

std::pair<const int32_t*, const int32_t*> Decoding::step_inputs(const int32_t* tokens) {
  if (graph_.ops().is_host()) return {tokens, positions_.data()};
  const size_t R = size_t(R_);
  staged_inputs_.resize(2 * R);
  std::copy_n(tokens, R, staged_inputs_.begin());
  std::copy_n(positions_.begin(), R, staged_inputs_.begin() + std::ptrdiff_t(R));
  if (!step_inputs_) step_inputs_ = graph_.backend()->allocate(sizeof(int32_t) * 2 * R);
  graph_.ops().upload(step_inputs_.data(), staged_inputs_.data(), sizeof(int32_t) * 2 * R);
  const int32_t* on_device = static_cast<const int32_t*>(step_inputs_.data());
  return {on_device, on_device + R_};
}

// The first step runs as usual (it loads kernels, plans GEMMs, grows the arena); the second is
// recorded when at least a few more may follow, the recording costing about a step's host work.
bool Decoding::should_record() const {
  constexpr int64_t kMinStepsAfter = 3;
  return graph_.replay_decoding_steps && !record_tried_ && steps_ >= 1 &&
         !graph_.ops().is_host() && model_.decoding_step_replayable() &&
         max_length_ - (cache_.length() + 1) >= kMinStepsAfter;
}

void Decoding::step(const int32_t* tokens) {
  Graph& g = graph_;
  const int32_t* begin = cache_.key_begin();
  for (int64_t r = 0; r < R_; ++r) {
    // cumsum(attention_mask) - 1 at the new position: the real tokens before it.
    positions_[size_t(r)] = int32_t(cache_.length() - begin[r]);
  }
  // Every per-step value reaches the device here, before a recording or a replay: the tokens and
  // positions, and the cache's key ranges (which the forward then finds already uploaded).
  const auto [ids, pos] = step_inputs(tokens);
  cache_.ranges(1);
  if (recorded_ != nullptr) {
    recorded_->replay();  // the recorded step's activations are still where it put them
    ++replayed_;
  } else {
    g.reset();
    auto forward = [&] { step_logits_ = model_.forward_cached(g, ids, pos, R_, 1, cache_)->value; };
    if (should_record()) {
      record_tried_ = true;
      recorded_ = g.backend()->record(forward);
      if (recorded_ != nullptr) {
        recorded_->replay();
        ++replayed_;
      } else {
        g.reset();  // nothing ran: run the step as usual (and meet any error it raised)
        forward();
      }
    } else {
      forward();
    }
  }
  copy_logits(step_logits_);
  cache_.advance(1);
  ++steps_;
}

}  // namespace gen

GenerateResult generate(Model& model, Graph& graph, KVCache& cache,
                        const std::vector<std::vector<int32_t>>& inputs,
                        const GenerationConfig& config, const GenerateHooks& hooks) {
  S2S_REQUIRE(!inputs.empty(), code::kArgument, kOp, "expected at least one input");
  // The model decodes on its backend: KV cache, forward and attention there, each step's logits
  // downloaded for the host-side processing.
  S2S_REQUIRE(graph.backend().get() == &model.backend(), code::kArgument, kOp,
              "expected a graph on the model's backend (", model.backend().name(), "), got one on ",
              graph.ops().name());
  cache.set_backend(graph.backend());
  // Under 16-bit compute the keys and values are kept in that type (Model::attention_products),
  // as transformers keeps the bf16 ones an autocast linear made: half the memory, and half the
  // bytes each decoding step reads, most of a step at long contexts. On a GPU, the same rounding
  // the prompt's tensor-core attention gave them; the CPU widens each row as it streams it.
  cache.set_dtype(model.attention_products());
  validate_generation_config(config, model.config().vocab_size, model.is_encoder_decoder());
  S2S_REQUIRE(!hooks.mask_logits || config.num_beams == 1, code::kArgument, kOp,
              "a logits mask (a constraint such as a JSON schema) needs greedy search or "
              "sampling: expected num_beams 1, got ", config.num_beams);
  InferenceMode mode(graph);
  const bool beams = config.num_beams > 1;
  gen::Decoding d(model, graph, cache, config, inputs,
                  beams ? config.num_beams : config.num_return_sequences, hooks);
  if (d.cancelled()) {  // aborted before anything ran
    GenerateResult r;
    for (int64_t b = 0; b < d.inputs(); ++b) {
      for (int64_t k = 0; k < config.num_return_sequences; ++k) {
        GeneratedSequence s;
        s.input_index = b;
        s.finish = FinishReason::Aborted;
        r.sequences.push_back(std::move(s));
      }
    }
    return r;
  }
  d.prefill();
  GenerateResult r = beams ? gen::beam_search(d) : gen::sample_search(d);
  r.steps = d.steps();
  r.replayed_steps = d.replayed_steps();
  r.prefill_ms = d.prefill_ms();
  r.decode_ms = d.decode_ms();
  return r;
}

}  // namespace s2s
