// Llama and Qwen2 (transformers' LlamaForCausalLM / Qwen2ForCausalLM, eager attention, fp32)
// composed from nn layers, with their Hugging Face weight names. Qwen2 is Llama with biases on
// q/k/v_proj; Llama's attention_bias puts biases on q/k/v/o_proj. SmolLM and TinyLlama are Llama.
// Legend: B batch, T time, C hidden_size, Hq query heads, Hkv key/value heads, D head_dim,
// F intermediate_size, V vocab, N = B*T.
#include <string>
#include <vector>

#include "models/decoder_common.h"
#include "models/registry.h"
#include "s2s/models/model.h"

namespace s2s {

namespace {

class Llama final : public Model {
 public:
  explicit Llama(const ModelConfig& config) : Model(config) {
    const int64_t C = config.hidden_size, F = config.intermediate_size, D = config.head_dim;
    const int64_t Hq = config.num_heads, Hkv = config.num_kv_heads;
    const bool qkv_bias = config.attention_bias;
    const bool o_bias = config.attention_bias && config.arch == Architecture::Llama;
    embed_ = &params_.create("model.embed_tokens.weight", {config.vocab_size, C});
    layers_.resize(static_cast<size_t>(config.num_layers));
    for (int64_t i = 0; i < config.num_layers; ++i) {
      Layer& l = layers_[static_cast<size_t>(i)];
      const std::string p = "model.layers." + std::to_string(i) + ".";
      l.input_norm = &params_.create(p + "input_layernorm.weight", {C}, false);
      l.q_proj = linear(p + "self_attn.q_proj", C, Hq * D, qkv_bias);
      l.k_proj = linear(p + "self_attn.k_proj", C, Hkv * D, qkv_bias);
      l.v_proj = linear(p + "self_attn.v_proj", C, Hkv * D, qkv_bias);
      l.o_proj = linear(p + "self_attn.o_proj", Hq * D, C, o_bias);
      l.post_norm = &params_.create(p + "post_attention_layernorm.weight", {C}, false);
      l.gate_proj = linear(p + "mlp.gate_proj", C, F, false);
      l.up_proj = linear(p + "mlp.up_proj", C, F, false);
      l.down_proj = linear(p + "mlp.down_proj", F, C, false);
    }
    norm_ = &params_.create("model.norm.weight", {C}, false);
    lm_head_.weight = config.tie_word_embeddings
                          ? embed_
                          : &params_.create("lm_head.weight", {config.vocab_size, C});
  }

  ForwardResult forward(Graph& g, const Batch& batch, LossReduction reduction) override {
    const char* name = config_.arch == Architecture::Qwen2 ? "qwen2" : "llama";
    decoder::check_batch(batch, name, 0);  // RoPE has no table: no length bound
    expect_graph_backend(g, name);
    const int64_t B = batch.B, T = batch.T, C = config_.hidden_size;
    const float eps = config_.norm_eps;
    const int32_t* pos = g.indices(batch.position_ids, B * T);  // null: 0..T-1
    const uint8_t* mask = decoder::key_mask(g, batch);
    AttentionOptions attn;
    attn.causal = true;  // scale 1/sqrt(D)
    attn.dropout_p = config_.attention_dropout;  // training only (nn::attention)
    attn.products = attention_products();

    Var* x = nn::embedding(g, g.indices(batch.input_ids, B * T), B, T, embed_, nullptr,
                           nullptr);  // (B,T,C)
    for (const Layer& l : layers_) {
      x = run_block(g, [this, &l, x, pos, mask, attn, B, T](Graph& g) {
        return layer(g, l, x, pos, mask, attn, B, T);
      });
    }
    x = nn::rmsnorm(g, x, norm_, eps, nn::matmul_input_dtype(g, {&lm_head_}));
    return head_and_loss(g, g.view(x, {B * T, C}), lm_head_, decoder::shifted_labels(g, batch),
                         B * T, reduction);
  }

  bool decoding_step_replayable() const override { return true; }

  KVCacheShape self_cache_shape() const override {
    return {config_.num_layers, config_.num_kv_heads, config_.head_dim};
  }

  // forward() over a KV cache: RoPE at the given positions, grouped-query attention through the
  // cache, and only each row's last position goes through the final norm and the head.
  Var* forward_cached(Graph& g, const int32_t* tokens, const int32_t* positions, int64_t R,
                      int64_t T, KVCache& cache) override {
    expect_graph_backend(g, "forward_cached");
    nn::expect_cache_on_graph_backend(g, cache, "forward_cached");
    const int64_t D = config_.head_dim, Hq = config_.num_heads, Hkv = config_.num_kv_heads;
    const float eps = config_.norm_eps, theta = config_.rope_theta;
    AttentionOptions attn;
    attn.causal = true;
    Var* x = nn::embedding(g, tokens, R, T, embed_, nullptr, nullptr);  // (R,T,C)
    for (size_t i = 0; i < layers_.size(); ++i) {
      Layer& l = layers_[i];
      x = run_cached_block(g, T, [&](Graph& g) {
        Var* h = nn::rmsnorm(g, x, l.input_norm, eps,
                             nn::matmul_input_dtype(g, {&l.q_proj, &l.k_proj, &l.v_proj}));
        nn::share_matmul_input(g, h, {&l.q_proj, &l.k_proj, &l.v_proj});
        Var* q =
            nn::rope(g, g.view(nn::linear(g, h, l.q_proj), {R, T, Hq, D}), positions, theta);
        Var* k =
            nn::rope(g, g.view(nn::linear(g, h, l.k_proj), {R, T, Hkv, D}), positions, theta);
        Var* v = g.view(nn::linear(g, h, l.v_proj), {R, T, Hkv, D});
        Var* a = nn::cached_attention(g, q, k, v, cache, int64_t(i), nullptr, attn);
        Var* y = nn::add(g, x, nn::linear(g, g.view(a, {R, T, Hq * D}), l.o_proj));
        h = nn::rmsnorm(g, y, l.post_norm, eps,
                        nn::matmul_input_dtype(g, {&l.gate_proj, &l.up_proj}));
        nn::share_matmul_input(g, h, {&l.gate_proj, &l.up_proj});
        Var* m = nn::swiglu(g, nn::linear(g, h, l.gate_proj), nn::linear(g, h, l.up_proj),
                            nn::matmul_input_dtype(g, {&l.down_proj}));
        return nn::add(g, y, nn::linear(g, m, l.down_proj));
      });
    }
    x = nn::rmsnorm(g, nn::last_position(g, x), norm_, eps,
                    nn::matmul_input_dtype(g, {&lm_head_}));  // (R,C)
    return nn::linear(g, x, lm_head_);                       // (R,V)
  }

  std::vector<LinearModule> linear_modules() override {
    std::vector<LinearModule> out;
    for (size_t i = 0; i < layers_.size(); ++i) {
      const std::string p = "model.layers." + std::to_string(i) + ".";
      Layer& l = layers_[i];
      out.push_back({p + "self_attn.q_proj", &l.q_proj});
      out.push_back({p + "self_attn.k_proj", &l.k_proj});
      out.push_back({p + "self_attn.v_proj", &l.v_proj});
      out.push_back({p + "self_attn.o_proj", &l.o_proj});
      out.push_back({p + "mlp.gate_proj", &l.gate_proj});
      out.push_back({p + "mlp.up_proj", &l.up_proj});
      out.push_back({p + "mlp.down_proj", &l.down_proj});
    }
    out.push_back({"lm_head", &lm_head_});
    return out;
  }

  std::vector<std::pair<std::string, std::string>> tied_aliases() const override {
    if (!config_.tie_word_embeddings) return {};
    return {{"lm_head.weight", "model.embed_tokens.weight"}};
  }

 private:
  struct Layer {
    Param *input_norm, *post_norm;
    nn::LinearWeights q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj;
  };

  // One decoder layer of forward(): x (B,T,C) -> (B,T,C).
  Var* layer(Graph& g, const Layer& l, Var* x, const int32_t* pos, const uint8_t* mask,
             const AttentionOptions& attn, int64_t B, int64_t T) const {
    const int64_t D = config_.head_dim, Hq = config_.num_heads, Hkv = config_.num_kv_heads;
    const float eps = config_.norm_eps, theta = config_.rope_theta;
    // Each norm / activation output feeds linears only: stored in their matmul dtype where the
    // backend takes that (nn::matmul_input_dtype).
    Var* h = nn::rmsnorm(g, x, l.input_norm, eps,
                         nn::matmul_input_dtype(g, {&l.q_proj, &l.k_proj, &l.v_proj}));
    // Kept in f32 (LoRA on one of them): rounded once for the three GEMMs.
    nn::share_matmul_input(g, h, {&l.q_proj, &l.k_proj, &l.v_proj});
    // The rotated q and k only feed attention, and v too: in its 16-bit operand dtype where it
    // rounds to that anyway (v straight from its GEMM, nn::linear_for_attention).
    const DType qk = nn::attention_input_dtype(g, attn, D);
    Var* q = nn::rope(g, g.view(nn::linear(g, h, l.q_proj), {B, T, Hq, D}), pos, theta, qk);
    Var* k = nn::rope(g, g.view(nn::linear(g, h, l.k_proj), {B, T, Hkv, D}), pos, theta, qk);
    Var* v = g.view(nn::linear_for_attention(g, h, l.v_proj, qk), {B, T, Hkv, D});
    // Its output only feeds o_proj: in that linear's 16-bit dtype where it would round it so.
    Var* a = g.view(nn::attention(g, q, k, v, nullptr, mask, attn,
                                  nn::attention_output_dtype(g, attn, D, {&l.o_proj})),
                    {B, T, Hq * D});
    x = nn::linear_residual(g, x, a, l.o_proj);
    h = nn::rmsnorm(g, x, l.post_norm, eps, nn::matmul_input_dtype(g, {&l.gate_proj, &l.up_proj}));
    nn::share_matmul_input(g, h, {&l.gate_proj, &l.up_proj});
    Var* m = nn::swiglu(g, nn::linear(g, h, l.gate_proj), nn::linear(g, h, l.up_proj),
                        nn::matmul_input_dtype(g, {&l.down_proj}));  // (B,T,F)
    return nn::linear_residual(g, x, m, l.down_proj);
  }

  nn::LinearWeights linear(const std::string& path, int64_t in, int64_t out, bool bias) {
    nn::LinearWeights w;
    w.weight = &params_.create(path + ".weight", {out, in});
    if (bias) w.bias = &params_.create(path + ".bias", {out}, false);
    w.layout = WeightLayout::OutIn;
    return w;
  }

  Param *embed_, *norm_;
  std::vector<Layer> layers_;
  nn::LinearWeights lm_head_;
};

}  // namespace

std::unique_ptr<Model> create_llama(const ModelConfig& config) {
  return std::make_unique<Llama>(config);
}

}  // namespace s2s
