// T5ForConditionalGeneration (transformers' modeling_t5.py) as a composition of nn/ layers:
// parameters by Hugging Face name, the encoder/decoder stacks, the (tied or untied) LM head and the
// unshifted cross-entropy. No backward code: the graph records it.
// Legend: B batch, T encoder length, Td decoder length, C d_model, H heads, D d_kv, F d_ff,
//         V vocab, NB relative_attention_num_buckets.
#include "s2s/models/t5.h"

#include <cmath>

#include "models/registry.h"
#include "s2s/error.h"
#include "s2s/nn/functional.h"

namespace s2s {

namespace {

constexpr const char* kOp = "t5";

// int32 (n,) 1 = token / 0 = padding -> the uint8 key mask attention takes (any non-zero is a
// token, as HF's (1 - mask) * min), in the graph's tensor memory. Null stays null (no padding).
const uint8_t* to_key_mask(Graph& g, const int32_t* mask, int64_t n) {
  if (mask == nullptr) return nullptr;
  uint8_t* out = g.scratch<uint8_t>(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[i] = mask[i] != 0 ? 1 : 0;
  return g.indices(out, n);
}

}  // namespace

T5Model::T5Model(ModelConfig config) : Model(std::move(config)) {
  ModelConfig& c = config_;
  S2S_REQUIRE(c.vocab_size > 0, code::kArgument, kOp, "expected vocab_size > 0, got ", c.vocab_size);
  S2S_REQUIRE(c.hidden_size > 0, code::kArgument, kOp, "expected d_model > 0, got ", c.hidden_size);
  S2S_REQUIRE(c.num_heads > 0, code::kArgument, kOp, "expected num_heads > 0, got ", c.num_heads);
  S2S_REQUIRE(c.head_dim > 0, code::kArgument, kOp, "expected d_kv > 0, got ", c.head_dim);
  S2S_REQUIRE(c.intermediate_size > 0, code::kArgument, kOp, "expected d_ff > 0, got ",
              c.intermediate_size);
  S2S_REQUIRE(c.num_layers > 0, code::kArgument, kOp, "expected num_layers > 0, got ",
              c.num_layers);
  if (c.num_decoder_layers <= 0) c.num_decoder_layers = c.num_layers;  // HF: None -> num_layers
  S2S_REQUIRE(c.relative_attention_num_buckets >= 4, code::kArgument, kOp,
              "expected relative_attention_num_buckets >= 4, got ",
              c.relative_attention_num_buckets);
  S2S_REQUIRE(c.relative_attention_max_distance > c.relative_attention_num_buckets / 4,
              code::kArgument, kOp, "expected relative_attention_max_distance > ",
              c.relative_attention_num_buckets / 4, ", got ", c.relative_attention_max_distance);
  S2S_REQUIRE(c.dropout_rate >= 0.0f && c.dropout_rate < 1.0f, code::kArgument, kOp,
              "expected dropout_rate in [0, 1), got ", c.dropout_rate);

  // The activation, as T5Config derives dense_act_fn from feed_forward_proj: "relu" and
  // "gated-gelu" (which HF maps to gelu_new, the tanh approximation) are the released ones.
  std::string act = c.hidden_act;
  if (act.rfind("gated-", 0) == 0) {
    c.gated_act = true;
    act = act.substr(6);
    if (act == "gelu") act = "gelu_new";
  }
  if (act.empty()) act = c.gated_act ? "gelu_new" : "relu";
  if (act == "relu") {
    act_ = Act::Relu;
  } else if (act == "gelu") {
    act_ = Act::Gelu;
  } else if (act == "gelu_new" || act == "gelu_pytorch_tanh") {
    act_ = Act::GeluTanh;
  } else if (act == "silu" || act == "swish") {
    act_ = Act::Silu;
  } else {
    fail(code::kArgument, kOp, "expected dense_act_fn relu, gelu, gelu_new or silu, got '",
         c.hidden_act, "'");
  }
  S2S_REQUIRE(!(c.gated_act && act_ == Act::Relu), code::kArgument, kOp,
              "gated-relu feed-forward is not supported (expected relu, gated-gelu or gated-silu)");

  // Parameters in the order of HF's state_dict.
  const int64_t C = c.hidden_size;
  shared_ = &params_.create("shared.weight", {c.vocab_size, C});
  encoder_.resize(static_cast<size_t>(c.num_layers));
  for (int64_t i = 0; i < c.num_layers; ++i) {
    create_block(encoder_[i], "encoder.block." + std::to_string(i), false);
  }
  enc_final_norm_ = &params_.create("encoder.final_layer_norm.weight", {C}, false);
  decoder_.resize(static_cast<size_t>(c.num_decoder_layers));
  for (int64_t i = 0; i < c.num_decoder_layers; ++i) {
    create_block(decoder_[i], "decoder.block." + std::to_string(i), true);
  }
  dec_final_norm_ = &params_.create("decoder.final_layer_norm.weight", {C}, false);
  lm_head_.layout = WeightLayout::OutIn;
  lm_head_.weight = c.tie_word_embeddings ? shared_
                                          : &params_.create("lm_head.weight", {c.vocab_size, C});
}

T5Model::Attention T5Model::create_attention(const std::string& path) {
  const int64_t C = config_.hidden_size, HD = config_.num_heads * config_.head_dim;
  Attention a;
  a.q.weight = &params_.create(path + ".q.weight", {HD, C});
  a.k.weight = &params_.create(path + ".k.weight", {HD, C});
  a.v.weight = &params_.create(path + ".v.weight", {HD, C});
  a.o.weight = &params_.create(path + ".o.weight", {C, HD});
  return a;
}

void T5Model::create_block(Block& b, const std::string& prefix, bool decoder) {
  const int64_t C = config_.hidden_size, F = config_.intermediate_size;
  const bool first = &b == (decoder ? &decoder_[0] : &encoder_[0]);
  b.prefix = prefix;
  b.self_attn = create_attention(prefix + ".layer.0.SelfAttention");
  if (first) {
    // Only block 0 owns the table; every block of the stack reuses its bias. HF Trainer puts
    // every name containing "bias" in the no-decay group, this one included.
    Param& table = params_.create(prefix + ".layer.0.SelfAttention.relative_attention_bias.weight",
                                  {config_.relative_attention_num_buckets, config_.num_heads},
                                  false);
    (decoder ? dec_rel_bias_ : enc_rel_bias_) = &table;
  }
  b.self_norm = &params_.create(prefix + ".layer.0.layer_norm.weight", {C}, false);
  std::string ff = prefix + ".layer.1";
  if (decoder) {
    b.cross_attn = create_attention(prefix + ".layer.1.EncDecAttention");
    b.cross_norm = &params_.create(prefix + ".layer.1.layer_norm.weight", {C}, false);
    ff = prefix + ".layer.2";
  }
  const std::string dense = ff + ".DenseReluDense";
  if (config_.gated_act) {
    b.ff.wi_0.weight = &params_.create(dense + ".wi_0.weight", {F, C});
    b.ff.wi_1.weight = &params_.create(dense + ".wi_1.weight", {F, C});
  } else {
    b.ff.wi.weight = &params_.create(dense + ".wi.weight", {F, C});
  }
  b.ff.wo.weight = &params_.create(dense + ".wo.weight", {C, F});
  b.ff_norm = &params_.create(ff + ".layer_norm.weight", {C}, false);
}

// x (B,Tq,C) attends kv (B,Tk,C): o(attention(q(x), k(kv), v(kv))) with T5's unscaled scores.
// In training the attention probabilities are dropped with dropout_rate, as T5Attention does.
Var* T5Model::attend(Graph& g, const Attention& a, Var* x, Var* kv, Var* bias,
                     const uint8_t* key_mask, bool causal) {
  const int64_t B = x->value.shape[0], Tq = x->value.shape[1], Tk = kv->value.shape[1];
  const int64_t H = config_.num_heads, D = config_.head_dim;
  AttentionOptions options;
  options.causal = causal;
  options.scale = 1.0f;  // Mesh TensorFlow initialisation folds 1/sqrt(D) into q
  options.dropout_p = config_.attention_dropout;
  options.products = attention_products();
  // q, k and v only feed attention: straight from their GEMMs in its 16-bit operand dtype
  // where it rounds them to that anyway (nn::linear_for_attention).
  const DType in = nn::attention_input_dtype(g, options, D);
  Var* q = g.view(nn::linear_for_attention(g, x, a.q, in), {B, Tq, H, D});
  Var* k = g.view(nn::linear_for_attention(g, kv, a.k, in), {B, Tk, H, D});
  Var* v = g.view(nn::linear_for_attention(g, kv, a.v, in), {B, Tk, H, D});
  // The output only feeds o: in its 16-bit dtype where it would round it so.
  Var* out = nn::attention(g, q, k, v, bias, key_mask, options,
                           nn::attention_output_dtype(g, options, D, {&a.o}));  // (B,Tq,H,D)
  return nn::linear(g, g.view(out, {B, Tq, H * D}), a.o);
}

DType T5Model::self_attention_input(const Graph& g, const Attention& a) {
  return nn::matmul_input_dtype(g, {&a.q, &a.k, &a.v});
}

DType T5Model::feed_forward_input(const Graph& g, const FeedForward& f) const {
  return config_.gated_act ? nn::matmul_input_dtype(g, {&f.wi_0, &f.wi_1})
                           : nn::matmul_input_dtype(g, {&f.wi});
}

void T5Model::share_attention_input(Graph& g, Var* n, const Attention& a) {
  nn::share_matmul_input(g, n, {&a.q, &a.k, &a.v});
}

void T5Model::share_feed_forward_input(Graph& g, Var* n, const FeedForward& f) const {
  if (config_.gated_act) nn::share_matmul_input(g, n, {&f.wi_0, &f.wi_1});
}

// x (B,T,C) -> (B,T,C): wo(dropout(act(wi x))) or wo(dropout(act(wi_0 x) * wi_1 x)). Whichever
// of the activation and the dropout writes wo's input last writes it in wo's 16-bit dtype where
// the backend takes that (nn::matmul_input_dtype).
Var* T5Model::feed_forward(Graph& g, const FeedForward& f, Var* x) {
  const float p = config_.dropout_rate;
  const DType wo_in = nn::matmul_input_dtype(g, {&f.wo});
  const DType act_out = g.training && p > 0.0f ? DType::F32 : wo_in;
  Var* h = nullptr;
  if (config_.gated_act) {
    Var* gate = nn::linear(g, x, f.wi_0);
    Var* up = nn::linear(g, x, f.wi_1);
    h = act_ == Act::Silu
            ? nn::swiglu(g, gate, up, act_out)
            : nn::geglu(g, gate, up, act_ == Act::GeluTanh ? GeluApprox::Tanh : GeluApprox::None,
                        act_out);
  } else {
    h = nn::linear(g, x, f.wi);
    switch (act_) {
      case Act::Relu: h = nn::relu(g, h, act_out); break;
      case Act::Gelu: h = nn::gelu(g, h, GeluApprox::None, act_out); break;
      case Act::GeluTanh: h = nn::gelu(g, h, GeluApprox::Tanh, act_out); break;
      case Act::Silu: h = nn::silu(g, h); break;  // f32 (silu has no 16-bit output)
    }
  }
  h = nn::dropout(g, h, p, wo_in);
  return nn::linear(g, h, f.wo);
}

// One encoder block: h (B,T,C) -> (B,T,C); bias (H,T,T) is the stack's shared position bias.
Var* T5Model::encoder_block(Graph& g, const Block& b, Var* h, Var* bias, const uint8_t* mask) {
  const float eps = config_.norm_eps, p = config_.dropout_rate;
  Var* n = nn::rmsnorm(g, h, b.self_norm, eps, self_attention_input(g, b.self_attn));
  share_attention_input(g, n, b.self_attn);
  h = nn::dropout_residual_add(g, h, attend(g, b.self_attn, n, n, bias, mask, false), p);
  n = nn::rmsnorm(g, h, b.ff_norm, eps, feed_forward_input(g, b.ff));
  share_feed_forward_input(g, n, b.ff);
  return nn::dropout_residual_add(g, h, feed_forward(g, b.ff, n), p);
}

// One decoder block: h (B,Td,C) -> (B,Td,C), attending itself causally (bias (H,Td,Td)) and
// the encoder's output (B,T,C).
Var* T5Model::decoder_block(Graph& g, const Block& b, Var* h, Var* bias,
                            const uint8_t* decoder_mask, Var* encoder_out,
                            const uint8_t* encoder_mask) {
  const float eps = config_.norm_eps, p = config_.dropout_rate;
  Var* n = nn::rmsnorm(g, h, b.self_norm, eps, self_attention_input(g, b.self_attn));
  share_attention_input(g, n, b.self_attn);
  h = nn::dropout_residual_add(g, h, attend(g, b.self_attn, n, n, bias, decoder_mask, true), p);
  // Cross-attention: no position bias, the encoder's padding mask.
  n = nn::rmsnorm(g, h, b.cross_norm, eps, nn::matmul_input_dtype(g, {&b.cross_attn.q}));
  h = nn::dropout_residual_add(
      g, h, attend(g, b.cross_attn, n, encoder_out, nullptr, encoder_mask, false), p);
  n = nn::rmsnorm(g, h, b.ff_norm, eps, feed_forward_input(g, b.ff));
  share_feed_forward_input(g, n, b.ff);
  return nn::dropout_residual_add(g, h, feed_forward(g, b.ff, n), p);
}

void T5Model::check_encoder_batch(const Graph& g, const Batch& batch) const {
  S2S_REQUIRE(batch.B > 0 && batch.T > 0, code::kArgument, kOp,
              "expected B > 0 and T > 0, got B=", batch.B, ", T=", batch.T);
  S2S_REQUIRE(batch.input_ids != nullptr, code::kArgument, kOp, "expected input_ids, got none");
  expect_graph_backend(g, kOp);
}

Var* T5Model::encode(Graph& g, const Batch& batch) {
  check_encoder_batch(g, batch);
  return encode_masked(g, batch, to_key_mask(g, batch.attention_mask, batch.B * batch.T));
}

Var* T5Model::encode_masked(Graph& g, const Batch& batch, const uint8_t* mask) {
  const int64_t B = batch.B, T = batch.T;
  const ModelConfig& c = config_;
  const float eps = c.norm_eps, p = c.dropout_rate;
  Var* h = nn::dropout(
      g, nn::embedding(g, g.indices(batch.input_ids, B * T), B, T, shared_, nullptr, nullptr), p);
  // (H,T,T), bidirectional, computed once from block 0's table and shared by every block.
  Var* bias = nn::t5_position_bias(g, enc_rel_bias_, T, T, /*bidirectional=*/true,
                                   c.relative_attention_max_distance, 0);
  for (const Block& b : encoder_) {
    h = run_block(g, [this, &b, h, bias, mask](Graph& g) {
      return encoder_block(g, b, h, bias, mask);
    });
  }
  Var* out = nn::dropout(g, nn::rmsnorm(g, h, enc_final_norm_, eps), p);
  // Every decoder block's cross-attention k and v read it: rounded once for all their GEMMs.
  std::vector<const nn::LinearWeights*> readers;
  for (const Block& b : decoder_) {
    readers.push_back(&b.cross_attn.k);
    readers.push_back(&b.cross_attn.v);
  }
  nn::share_matmul_input(g, out, readers);
  return out;
}

Var* T5Model::decode(Graph& g, Var* encoder_out, const uint8_t* encoder_mask,
                     const int32_t* decoder_ids, const uint8_t* decoder_mask, int64_t B,
                     int64_t Td) {
  const ModelConfig& c = config_;
  const float eps = c.norm_eps, p = c.dropout_rate;
  const int64_t C = c.hidden_size;
  Var* h = nn::dropout(
      g, nn::embedding(g, g.indices(decoder_ids, B * Td), B, Td, shared_, nullptr, nullptr), p);
  // (H,Td,Td), unidirectional (only keys at or before the query get distinct buckets).
  Var* bias = nn::t5_position_bias(g, dec_rel_bias_, Td, Td, /*bidirectional=*/false,
                                   c.relative_attention_max_distance, 0);
  for (const Block& b : decoder_) {
    h = run_block(g, [this, &b, h, bias, decoder_mask, encoder_out, encoder_mask](Graph& g) {
      return decoder_block(g, b, h, bias, decoder_mask, encoder_out, encoder_mask);
    });
  }
  // Untied, the final norm (or the dropout after it) writes the head's 16-bit input; tied, the
  // rescale comes between.
  const DType head_in =
      c.tie_word_embeddings ? DType::F32 : nn::matmul_input_dtype(g, {&lm_head_});
  const DType norm_out = g.training && p > 0.0f ? DType::F32 : head_in;
  Var* s = nn::dropout(g, nn::rmsnorm(g, h, dec_final_norm_, eps, norm_out), p, head_in);
  if (c.tie_word_embeddings) {
    // Mesh TensorFlow's rescale before the tied projection: d_model ** -0.5 (a Python float,
    // which torch applies to an fp32 tensor as an fp32 scalar).
    s = nn::scale(g, s, static_cast<float>(std::pow(static_cast<double>(C), -0.5)));
  }
  return g.view(s, {B * Td, C});
}

ForwardResult T5Model::forward(Graph& g, const Batch& batch, LossReduction reduction) {
  const int64_t B = batch.B, T = batch.T, Td = batch.Td;
  S2S_REQUIRE(Td > 0, code::kArgument, kOp, "expected Td > 0 (the decoder length), got ", Td);
  S2S_REQUIRE(batch.decoder_input_ids != nullptr || batch.labels != nullptr, code::kArgument, kOp,
              "expected decoder_input_ids or labels, got neither");
  check_encoder_batch(g, batch);
  // One key mask for the encoder's self-attention and the decoder's cross-attention.
  const uint8_t* enc_mask = to_key_mask(g, batch.attention_mask, B * T);
  Var* enc = encode_masked(g, batch, enc_mask);

  const int32_t* dec_ids = batch.decoder_input_ids;
  if (dec_ids == nullptr) {
    // HF _shift_right: [decoder_start_token_id, labels[:-1]] with -100 -> pad_token_id.
    S2S_REQUIRE(config_.decoder_start_token_id >= 0 && config_.pad_token_id >= 0, code::kArgument,
                kOp, "shifting labels right needs decoder_start_token_id and pad_token_id, got ",
                config_.decoder_start_token_id, " and ", config_.pad_token_id);
    int32_t* shifted = g.scratch<int32_t>(static_cast<size_t>(B * Td));
    for (int64_t b = 0; b < B; ++b) {
      const int32_t* l = batch.labels + b * Td;
      int32_t* s = shifted + b * Td;
      s[0] = config_.decoder_start_token_id;
      for (int64_t t = 1; t < Td; ++t) s[t] = l[t - 1] == -100 ? config_.pad_token_id : l[t - 1];
    }
    dec_ids = shifted;
  }
  const uint8_t* dec_mask = to_key_mask(g, batch.decoder_attention_mask, B * Td);

  // The labels are not shifted: T5's decoder input is the shifted sequence.
  return head_and_loss(g, decode(g, enc, enc_mask, dec_ids, dec_mask, B, Td), lm_head_,
                       batch.labels, B * Td, reduction);
}

std::vector<LinearModule> T5Model::linear_modules() {
  std::vector<LinearModule> out;
  auto add_attention = [&out](const std::string& path, Attention& a) {
    out.push_back({path + ".q", &a.q});
    out.push_back({path + ".k", &a.k});
    out.push_back({path + ".v", &a.v});
    out.push_back({path + ".o", &a.o});
  };
  auto add_blocks = [&](std::vector<Block>& blocks, bool decoder) {
    for (Block& b : blocks) {
      add_attention(b.prefix + ".layer.0.SelfAttention", b.self_attn);
      if (decoder) add_attention(b.prefix + ".layer.1.EncDecAttention", b.cross_attn);
      const std::string dense = b.prefix + (decoder ? ".layer.2" : ".layer.1") + ".DenseReluDense";
      if (config_.gated_act) {
        out.push_back({dense + ".wi_0", &b.ff.wi_0});
        out.push_back({dense + ".wi_1", &b.ff.wi_1});
      } else {
        out.push_back({dense + ".wi", &b.ff.wi});
      }
      out.push_back({dense + ".wo", &b.ff.wo});
    }
  };
  add_blocks(encoder_, false);
  add_blocks(decoder_, true);
  out.push_back({"lm_head", &lm_head_});  // shared.weight when tied
  return out;
}

std::unique_ptr<Model> create_t5(const ModelConfig& config) {
  return std::make_unique<T5Model>(config);
}

std::vector<std::pair<std::string, std::string>> T5Model::tied_aliases() const {
  std::vector<std::pair<std::string, std::string>> out = {
      {"encoder.embed_tokens.weight", "shared.weight"},
      {"decoder.embed_tokens.weight", "shared.weight"}};
  if (config_.tie_word_embeddings) out.push_back({"lm_head.weight", "shared.weight"});
  return out;
}

}  // namespace s2s
