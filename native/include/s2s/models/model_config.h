// ModelConfig: the fields of a Hugging Face config.json the engine uses, normalised across
// families (GPT-2's n_embd and T5's d_model are both hidden_size). Parsed from the JSON text in
// C++ so native tests and the N-API layer read configs the same way; TypeScript validates the
// file with zod first for friendlier errors.
#pragma once
#include <cstdint>
#include <string>

namespace s2s {

enum class Architecture { Gpt2, Llama, Qwen2, T5 };

struct ModelConfig {
  std::string model_type;  // "gpt2" | "llama" | "qwen2" | "t5" (also "mistral"-free: see parser)
  Architecture arch = Architecture::Gpt2;

  int64_t vocab_size = 0;
  int64_t hidden_size = 0;        // n_embd | hidden_size | d_model
  int64_t num_layers = 0;         // n_layer | num_hidden_layers | num_layers (T5 encoder)
  int64_t num_heads = 0;          // n_head | num_attention_heads | num_heads
  int64_t num_kv_heads = 0;       // num_key_value_heads (= num_heads when absent)
  int64_t head_dim = 0;           // hidden_size / num_heads, or T5's d_kv
  int64_t intermediate_size = 0;  // n_inner (4 * n_embd when null) | intermediate_size | d_ff
  int64_t max_positions = 0;      // n_positions | max_position_embeddings (0: unbounded, T5)
  float norm_eps = 1e-5f;         // layer_norm_epsilon | rms_norm_eps | layer_norm_epsilon
  float rope_theta = 10000.0f;
  bool tie_word_embeddings = true;
  bool attention_bias = false;    // q/k/v (and o for llama's attention_bias) projections biased
  std::string hidden_act;         // "gelu_new" | "silu" | "relu" | "gelu" ...

  // T5
  int64_t num_decoder_layers = 0;
  int64_t relative_attention_num_buckets = 32;
  int64_t relative_attention_max_distance = 128;
  bool gated_act = false;         // feed_forward_proj "gated-gelu" (v1.1 / flan)
  float dropout_rate = 0.0f;      // dropout_rate (HF default 0.1); applied only in training

  // Dropout in training, transformers' sites and defaults (identity in eval and generation):
  float embd_dropout = 0.0f;       // GPT-2 embd_pdrop (0.1): after wte + wpe
  float resid_dropout = 0.0f;      // GPT-2 resid_pdrop (0.1): after attn.c_proj and mlp.c_proj
  // On the attention probabilities: GPT-2 attn_pdrop (0.1), Llama/Qwen2 attention_dropout (0.0),
  // T5 dropout_rate.
  float attention_dropout = 0.0f;

  // Random initialisation (init_weights): std of GPT-2 / Llama weights, T5's scale factor.
  float initializer_range = 0.02f;   // initializer_range (gpt2, llama, qwen2)
  float initializer_factor = 1.0f;   // initializer_factor (t5)

  int32_t bos_token_id = -1, eos_token_id = -1, pad_token_id = -1;
  int32_t decoder_start_token_id = -1;
};

// Parses config.json text. `source` (the file path) is named in every error, with the field and
// what was expected; an unsupported model_type lists the supported ones.
ModelConfig parse_model_config(const std::string& json_text, const std::string& source);

}  // namespace s2s
