// GPT-2 (transformers' GPT2LMHeadModel, eager attention, its dropout sites in training)
// composed from nn layers, with its Hugging Face weight names. Legend: B batch, T time, C n_embd, H heads, D = C/H,
// F n_inner, V vocab, N = B*T.
#include <string>
#include <vector>

#include "models/decoder_common.h"
#include "models/registry.h"
#include "s2s/models/model.h"

namespace s2s {

namespace {

class Gpt2 final : public Model {
 public:
  explicit Gpt2(const ModelConfig& config) : Model(config) {
    const int64_t C = config.hidden_size, F = config.intermediate_size;
    const std::string root = "transformer.";
    wte_ = &params_.create(root + "wte.weight", {config.vocab_size, C});
    wpe_ = &params_.create(root + "wpe.weight", {config.max_positions, C});
    blocks_.resize(static_cast<size_t>(config.num_layers));
    for (int64_t i = 0; i < config.num_layers; ++i) {
      Block& b = blocks_[static_cast<size_t>(i)];
      const std::string p = root + "h." + std::to_string(i) + ".";
      b.ln_1_w = &params_.create(p + "ln_1.weight", {C}, false);
      b.ln_1_b = &params_.create(p + "ln_1.bias", {C}, false);
      b.c_attn = conv1d(p + "attn.c_attn", C, 3 * C);
      b.attn_proj = conv1d(p + "attn.c_proj", C, C);
      b.ln_2_w = &params_.create(p + "ln_2.weight", {C}, false);
      b.ln_2_b = &params_.create(p + "ln_2.bias", {C}, false);
      b.c_fc = conv1d(p + "mlp.c_fc", C, F);
      b.mlp_proj = conv1d(p + "mlp.c_proj", F, C);
    }
    ln_f_w_ = &params_.create(root + "ln_f.weight", {C}, false);
    ln_f_b_ = &params_.create(root + "ln_f.bias", {C}, false);
    lm_head_.weight = config.tie_word_embeddings
                          ? wte_
                          : &params_.create("lm_head.weight", {config.vocab_size, C});
    lm_head_.layout = WeightLayout::OutIn;
    gelu_ = config.hidden_act == "gelu" ? GeluApprox::None : GeluApprox::Tanh;
  }

  ForwardResult forward(Graph& g, const Batch& batch, LossReduction reduction) override {
    decoder::check_batch(batch, "gpt2", config_.max_positions);
    expect_graph_backend(g, "gpt2");
    const int64_t B = batch.B, T = batch.T, C = config_.hidden_size;
    const float eps = config_.norm_eps;
    const uint8_t* mask = decoder::key_mask(g, batch);
    AttentionOptions attn;
    attn.causal = true;  // scale 1/sqrt(D)
    attn.products = attention_products();
    // transformers' GPT-2 dropout sites (training only; nn::dropout / nn::attention check).
    attn.dropout_p = config_.attention_dropout;
    const float resid = config_.resid_dropout;

    Var* x = nn::embedding(g, g.indices(batch.input_ids, B * T), B, T, wte_, wpe_,
                           g.indices(batch.position_ids, B * T));  // (B,T,C)
    x = nn::dropout(g, x, config_.embd_dropout);
    for (const Block& b : blocks_) {
      x = run_block(g, [this, &b, x, mask, attn, resid, B, T](Graph& g) {
        return block(g, b, x, mask, attn, resid, B, T);
      });
    }
    x = nn::layernorm(g, x, ln_f_w_, ln_f_b_, eps, nn::matmul_input_dtype(g, {&lm_head_}));
    return head_and_loss(g, g.view(x, {B * T, C}), lm_head_, decoder::shifted_labels(g, batch),
                         B * T, reduction);
  }

  bool decoding_step_replayable() const override { return true; }

  KVCacheShape self_cache_shape() const override {
    return {config_.num_layers, config_.num_heads, config_.head_dim};
  }

  // forward() over a KV cache: the same blocks, attention through the cache, and only each
  // row's last position goes through ln_f and the head.
  Var* forward_cached(Graph& g, const int32_t* tokens, const int32_t* positions, int64_t R,
                      int64_t T, KVCache& cache) override {
    expect_graph_backend(g, "forward_cached");
    nn::expect_cache_on_graph_backend(g, cache, "forward_cached");
    const int64_t C = config_.hidden_size, H = config_.num_heads, D = config_.head_dim;
    const float eps = config_.norm_eps;
    AttentionOptions attn;
    attn.causal = true;
    Var* x = nn::embedding(g, tokens, R, T, wte_, wpe_, positions);  // (R,T,C)
    for (size_t l = 0; l < blocks_.size(); ++l) {
      Block& b = blocks_[l];
      x = run_cached_block(g, T, [&](Graph& g) {
        Var* h = nn::layernorm(g, x, b.ln_1_w, b.ln_1_b, eps,
                               nn::matmul_input_dtype(g, {&b.c_attn}));
        std::vector<Var*> qkv =
            nn::split_heads(g, nn::linear(g, h, b.c_attn), {H, H, H}, D, cache);
        Var* a = nn::cached_attention(g, qkv[0], qkv[1], qkv[2], cache, int64_t(l), nullptr, attn);
        Var* y = nn::add(g, x, nn::linear(g, g.view(a, {R, T, C}), b.attn_proj));
        h = nn::layernorm(g, y, b.ln_2_w, b.ln_2_b, eps, nn::matmul_input_dtype(g, {&b.c_fc}));
        Var* m = nn::linear_gelu(g, h, b.c_fc, gelu_, nn::matmul_input_dtype(g, {&b.mlp_proj}));
        return nn::add(g, y, nn::linear(g, m, b.mlp_proj));
      });
    }
    x = nn::layernorm(g, nn::last_position(g, x), ln_f_w_, ln_f_b_, eps,
                      nn::matmul_input_dtype(g, {&lm_head_}));  // (R,C)
    return nn::linear(g, x, lm_head_);                                    // (R,V)
  }

  std::vector<LinearModule> linear_modules() override {
    std::vector<LinearModule> out;
    for (size_t i = 0; i < blocks_.size(); ++i) {
      const std::string p = "transformer.h." + std::to_string(i) + ".";
      Block& b = blocks_[i];
      out.push_back({p + "attn.c_attn", &b.c_attn});
      out.push_back({p + "attn.c_proj", &b.attn_proj});
      out.push_back({p + "mlp.c_fc", &b.c_fc});
      out.push_back({p + "mlp.c_proj", &b.mlp_proj});
    }
    out.push_back({"lm_head", &lm_head_});
    return out;
  }

  std::vector<std::pair<std::string, std::string>> tied_aliases() const override {
    if (!config_.tie_word_embeddings) return {};
    return {{"lm_head.weight", "transformer.wte.weight"}};
  }

 private:
  struct Block {
    Param *ln_1_w, *ln_1_b, *ln_2_w, *ln_2_b;
    nn::LinearWeights c_attn, attn_proj, c_fc, mlp_proj;  // Conv1D: weight (in, out)
  };

  // One block of forward(): x (B,T,C) -> (B,T,C), with transformers' attention and residual
  // dropout sites.
  Var* block(Graph& g, const Block& b, Var* x, const uint8_t* mask, const AttentionOptions& attn,
             float resid, int64_t B, int64_t T) const {
    const int64_t C = config_.hidden_size, H = config_.num_heads, D = config_.head_dim;
    const float eps = config_.norm_eps;
    // Each norm / activation output feeds one linear only: stored in its matmul dtype where the
    // backend takes that (nn::matmul_input_dtype).
    Var* h = nn::layernorm(g, x, b.ln_1_w, b.ln_1_b, eps, nn::matmul_input_dtype(g, {&b.c_attn}));
    // q, k, v only feed attention: in its 16-bit operand dtype where it rounds to that anyway.
    std::vector<Var*> qkv = nn::linear_split(g, h, b.c_attn, {C, C, C},
                                             nn::attention_input_dtype(g, attn, D));
    Var* q = g.view(qkv[0], {B, T, H, D});
    Var* k = g.view(qkv[1], {B, T, H, D});
    Var* v = g.view(qkv[2], {B, T, H, D});
    // Its output only feeds attn_proj: in that linear's 16-bit dtype where it would round it so.
    Var* a = g.view(nn::attention(g, q, k, v, nullptr, mask, attn,
                                  nn::attention_output_dtype(g, attn, D, {&b.attn_proj})),
                    {B, T, C});
    x = nn::linear_residual(g, x, a, b.attn_proj, resid);
    h = nn::layernorm(g, x, b.ln_2_w, b.ln_2_b, eps, nn::matmul_input_dtype(g, {&b.c_fc}));
    Var* m = nn::linear_gelu(g, h, b.c_fc, gelu_,
                             nn::matmul_input_dtype(g, {&b.mlp_proj}));  // (B,T,F)
    return nn::linear_residual(g, x, m, b.mlp_proj, resid);
  }

  nn::LinearWeights conv1d(const std::string& path, int64_t in, int64_t out) {
    nn::LinearWeights w;
    w.weight = &params_.create(path + ".weight", {in, out});
    w.bias = &params_.create(path + ".bias", {out}, false);
    w.layout = WeightLayout::InOut;
    return w;
  }

  Param *wte_, *wpe_, *ln_f_w_, *ln_f_b_;
  std::vector<Block> blocks_;
  nn::LinearWeights lm_head_;
  GeluApprox gelu_ = GeluApprox::Tanh;
};

}  // namespace

std::unique_ptr<Model> create_gpt2(const ModelConfig& config) {
  return std::make_unique<Gpt2>(config);
}

}  // namespace s2s
