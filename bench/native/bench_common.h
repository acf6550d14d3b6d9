// What the native benchmarks share: a steady clock, the fixed random token ids they feed the
// models (throughput does not depend on the text), and the option-reading helpers of their
// hand-written argument loops.
#pragma once
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace s2s_bench {

inline double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// config.json text of a GPT-2 (gelu_new, tied head) with these sizes, at least 1024 positions,
// and no dropout (the PyTorch anchors' GPT-2 has none; LoRA's own dropout stays where set).
inline std::string gpt2_config_json(int64_t vocab, int64_t channels, int64_t layers, int64_t heads,
                                    int64_t positions) {
  char config[512];
  std::snprintf(config, sizeof config,
                "{\"model_type\": \"gpt2\", \"vocab_size\": %lld, \"n_embd\": %lld, "
                "\"n_layer\": %lld, \"n_head\": %lld, \"n_positions\": %lld, "
                "\"activation_function\": \"gelu_new\", \"embd_pdrop\": 0.0, "
                "\"resid_pdrop\": 0.0, \"attn_pdrop\": 0.0}",
                (long long)vocab, (long long)channels, (long long)layers, (long long)heads,
                (long long)(positions > 1024 ? positions : 1024));
  return config;
}

// A Llama-family config (SmolLM's: SiLU gate, RMSNorm, rope theta 10000, tied embeddings, no
// biases); kv_heads < heads is grouped-query attention.
inline std::string llama_config_json(int64_t vocab, int64_t channels, int64_t layers,
                                     int64_t heads, int64_t kv_heads, int64_t intermediate,
                                     int64_t positions) {
  char config[512];
  std::snprintf(config, sizeof config,
                "{\"model_type\": \"llama\", \"vocab_size\": %lld, \"hidden_size\": %lld, "
                "\"num_hidden_layers\": %lld, \"num_attention_heads\": %lld, "
                "\"num_key_value_heads\": %lld, \"intermediate_size\": %lld, "
                "\"max_position_embeddings\": %lld, \"hidden_act\": \"silu\", "
                "\"rms_norm_eps\": 1e-5, \"rope_theta\": 10000.0, "
                "\"tie_word_embeddings\": true}",
                (long long)vocab, (long long)channels, (long long)layers, (long long)heads,
                (long long)kv_heads, (long long)intermediate,
                (long long)(positions > 2048 ? positions : 2048));
  return config;
}

// n ids in [0, vocab) from a xorshift64 stream started at `seed`.
inline std::vector<int32_t> random_token_ids(int64_t n, int64_t vocab, uint64_t seed) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  uint64_t s = seed;
  for (int32_t& id : ids) {
    s ^= s << 13; s ^= s >> 7; s ^= s << 17;
    id = int32_t(s % uint64_t(vocab));
  }
  return ids;
}

// argv[i + 1], the value of option argv[i] (advancing i), or exits 2 naming the bench.
inline const char* option_value(const char* bench, int argc, char** argv, int& i) {
  if (i + 1 >= argc) {
    std::fprintf(stderr, "%s: %s needs a value\n", bench, argv[i]);
    std::exit(2);
  }
  return argv[++i];
}

[[noreturn]] inline void unknown_option(const char* bench, const std::string& option) {
  std::fprintf(stderr, "%s: unknown option %s\n", bench, option.c_str());
  std::exit(2);
}

}  // namespace s2s_bench
