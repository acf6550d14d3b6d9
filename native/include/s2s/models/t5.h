// T5 family (transformers' T5ForConditionalGeneration): v1.0 (ReLU feed-forward, LM head tied to
// `shared` with the d_model^-0.5 rescale) and v1.1 / flan-t5 (gated-GELU feed-forward, untied
// `lm_head.weight`). Composition of nn/ layers over Hugging Face parameter names; no backward code.
// Legend: B batch, T encoder length, Td decoder length, C d_model, H num_heads, D d_kv,
//         F d_ff, V vocab, NB relative_attention_num_buckets.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "s2s/models/model.h"

namespace s2s {

class T5Model final : public Model {
 public:
  // Creates every parameter with its Hugging Face name (zero-filled, trainable = false; load or
  // initialise them next). Validates the T5 fields of config (S2S_ARGUMENT naming the field).
  explicit T5Model(ModelConfig config);

  // Encoder + decoder + head. batch.T is the encoder length; batch.Td and batch.labels (B,Td)
  // give the targets; decoder_input_ids default to labels shifted right (decoder_start_token_id
  // first, -100 -> pad_token_id). Loss: cross-entropy of logits (B*Td,V) against labels, no shift.
  ForwardResult forward(Graph& g, const Batch& batch, LossReduction reduction) override;

  // The encoder's last hidden state (B,T,C) (after final_layer_norm and dropout). `batch` needs
  // input_ids and (optionally) attention_mask.
  Var* encode(Graph& g, const Batch& batch);

  // The decoder over decoder_input_ids (B,Td) given the encoder output (B,T,C): the LM head's
  // input (B*Td,C) (after final_layer_norm, dropout and, with a tied head, the d_model ** -0.5
  // rescale); forward() puts it through the head. encoder_mask (B,T) / decoder_mask (B,Td): uint8 1 = token, or null; they and the ids must
  // stay valid until backward.
  Var* decode(Graph& g, Var* encoder_out, const uint8_t* encoder_mask, const int32_t* decoder_ids,
              const uint8_t* decoder_mask, int64_t B, int64_t Td);

  // q, k, v, o of every attention and wi / wi_0 / wi_1 / wo of every feed-forward, by HF module
  // path ("encoder.block.0.layer.0.SelfAttention.q", "decoder.block.1.layer.1.EncDecAttention.o",
  // "decoder.block.0.layer.2.DenseReluDense.wi_0"), then "lm_head" (whose weight is shared.weight
  // when tied), as the decoder-only models list theirs.
  std::vector<LinearModule> linear_modules() override;

  // Generation (t5_generation.cpp): the decoder's self-attention cache and the cross-attention
  // cache have num_decoder_layers layers of num_heads x d_kv.
  KVCacheShape self_cache_shape() const override;
  KVCacheShape cross_cache_shape() const override;
  // The decoder over T new tokens per row given the cached encoder keys/values; the relative
  // position bias is taken at the cache length (positions are ignored).
  // Its decoding step's position bias reads the length on the device: replayable.
  bool decoding_step_replayable() const override { return true; }
  Var* forward_cached(Graph& g, const int32_t* tokens, const int32_t* positions, int64_t rows,
                      int64_t T, KVCache& cache) override;
  // encode() then each decoder layer's EncDecAttention k and v of the encoder output, into the
  // cache; each item's valid length is its attention_mask's count of ones (right padding).
  void encode_to_cache(Graph& g, const Batch& batch, KVCache& cache) override;

  // (alias, param name): encoder.embed_tokens.weight and decoder.embed_tokens.weight are
  // shared.weight; lm_head.weight too when the embeddings are tied.
  std::vector<std::pair<std::string, std::string>> tied_aliases() const override;

 private:
  // encode()'s batch checks (and the graph's backend), and its body given the key mask (the
  // graph's tensor memory, or null), which forward() shares with the cross-attention.
  void check_encoder_batch(const Graph& g, const Batch& batch) const;
  Var* encode_masked(Graph& g, const Batch& batch, const uint8_t* key_mask);

  struct Attention {
    nn::LinearWeights q, k, v, o;
  };
  struct FeedForward {
    nn::LinearWeights wi, wi_0, wi_1, wo;  // wi (ReLU) or wi_0/wi_1 (gated)
  };
  struct Block {
    std::string prefix;          // "encoder.block.3" / "decoder.block.0"
    Param* self_norm = nullptr;  // layer.0.layer_norm
    Attention self_attn;         // layer.0.SelfAttention
    Param* cross_norm = nullptr; // decoder: layer.1.layer_norm
    Attention cross_attn;        // decoder: layer.1.EncDecAttention
    Param* ff_norm = nullptr;    // layer.1 (encoder) / layer.2 (decoder) .layer_norm
    FeedForward ff;              // .DenseReluDense
  };

  void create_block(Block& b, const std::string& prefix, bool decoder);
  Attention create_attention(const std::string& path);
  Var* attend(Graph& g, const Attention& a, Var* x, Var* kv, Var* bias, const uint8_t* key_mask,
              bool causal);
  Var* feed_forward(Graph& g, const FeedForward& f, Var* x);
  // The dtype of a norm's output that only these linears read (nn::matmul_input_dtype): a
  // self-attention's q, k, v; a feed-forward's wi or wi_0 and wi_1.
  static DType self_attention_input(const Graph& g, const Attention& a);
  DType feed_forward_input(const Graph& g, const FeedForward& f) const;
  // Those inputs, kept in f32 for a LoRA reader, rounded once for the GEMMs that read them
  // (nn::share_matmul_input).
  static void share_attention_input(Graph& g, Var* n, const Attention& a);
  void share_feed_forward_input(Graph& g, Var* n, const FeedForward& f) const;
  // One block of each stack (forward() runs them through Model::run_block).
  Var* encoder_block(Graph& g, const Block& b, Var* h, Var* bias, const uint8_t* mask);
  Var* decoder_block(Graph& g, const Block& b, Var* h, Var* bias, const uint8_t* decoder_mask,
                     Var* encoder_out, const uint8_t* encoder_mask);

  Param* shared_ = nullptr;       // shared.weight (V,C)
  Param* enc_rel_bias_ = nullptr; // encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight (NB,H)
  Param* dec_rel_bias_ = nullptr; // decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight (NB,H)
  Param* enc_final_norm_ = nullptr;
  Param* dec_final_norm_ = nullptr;
  nn::LinearWeights lm_head_;     // shared.weight (tied) or lm_head.weight (V,C)
  std::vector<Block> encoder_, decoder_;
  enum class Act : uint8_t { Relu, Gelu, GeluTanh, Silu };
  Act act_ = Act::Relu;           // dense_act_fn: relu (v1.0), gelu_new (gated-gelu), ...
};

}  // namespace s2s
