// parse_model_config: config.json text -> ModelConfig for gpt2, llama, qwen2 and t5. Absent
// fields take the defaults of the transformers config class (GPT2Config, LlamaConfig,
// Qwen2Config, T5Config), so a config loads here exactly as AutoConfig would read it; options
// the engine does not implement (rope_scaling, sliding windows, other activations) are errors,
// never silently ignored. Every error is S2S_CONFIG naming the file, the field and the
// expectation.
#include <cmath>
#include <string>

#include "io/json.h"
#include "s2s/error.h"
#include "s2s/models/model_config.h"

namespace s2s {

namespace {

constexpr const char* kSupported = "gpt2, llama, qwen2, t5";

// Reads typed fields from the top-level object, naming `source` and the field in every error.
class Fields {
 public:
  Fields(const json::Value& root, const std::string& source) : root_(root), source_(source) {}

  template <typename... Parts>
  [[noreturn]] void error(const Parts&... parts) const {
    fail(code::kConfig, "config", source_, ": ", parts...);
  }

  // The member, or nullptr when absent or null (transformers treats both as "use the default").
  const json::Value* get(const char* key) const {
    const json::Value* v = root_.find(key);
    return (v == nullptr || v->is(json::Kind::Null)) ? nullptr : v;
  }

  // A positive integer (sizes, counts). Integral doubles such as 768.0 are accepted.
  int64_t positive(const char* key, int64_t fallback) const {
    const json::Value* v = get(key);
    if (v == nullptr) return fallback;
    const int64_t n = integral(key, *v);
    if (n <= 0) error("field '", key, "' expected a positive integer, got ", n);
    return n;
  }

  float positive_number(const char* key, double fallback) const {
    const json::Value* v = get(key);
    if (v == nullptr) return static_cast<float>(fallback);
    if (!v->is(json::Kind::Int) && !v->is(json::Kind::Double)) {
      error("field '", key, "' expected a number, got ", json::kind_name(v->kind));
    }
    if (!(v->number > 0) || !std::isfinite(v->number)) {
      error("field '", key, "' expected a positive number, got ", v->number);
    }
    return static_cast<float>(v->number);
  }

  // A probability in [0, 1) (dropout rates).
  float probability(const char* key, double fallback) const {
    const json::Value* v = get(key);
    if (v == nullptr) return static_cast<float>(fallback);
    const bool number = v->is(json::Kind::Int) || v->is(json::Kind::Double);
    if (!number || !(v->number >= 0) || !(v->number < 1)) {
      error("field '", key, "' expected a number in [0, 1), got ",
            number ? std::to_string(v->number) : json::kind_name(v->kind));
    }
    return static_cast<float>(v->number);
  }

  bool boolean(const char* key, bool fallback) const {
    const json::Value* v = get(key);
    if (v == nullptr) return fallback;
    if (!v->is(json::Kind::Bool)) {
      error("field '", key, "' expected true or false, got ", json::kind_name(v->kind));
    }
    return v->boolean;
  }

  std::string string(const char* key, const std::string& fallback) const {
    const json::Value* v = get(key);
    if (v == nullptr) return fallback;
    if (!v->is(json::Kind::String)) {
      error("field '", key, "' expected a string, got ", json::kind_name(v->kind));
    }
    return v->string;
  }

  // A token id: a non-negative integer, or a list of them (Llama 3 lists several eos ids; the
  // first is kept). Absent / null -> fallback (-1 means none).
  int32_t token(const char* key, int32_t fallback) const {
    const json::Value* v = get(key);
    if (v == nullptr) return fallback;
    if (v->is(json::Kind::Array)) {
      if (v->array.empty()) return fallback;
      v = &v->array[0];
    }
    const int64_t id = integral(key, *v);
    if (id < 0 || id > INT32_MAX) error("field '", key, "' expected a token id >= 0, got ", id);
    return static_cast<int32_t>(id);
  }

 private:
  int64_t integral(const char* key, const json::Value& v) const {
    if (v.is(json::Kind::Int)) return v.integer;
    if (v.is(json::Kind::Double) && std::floor(v.number) == v.number && std::fabs(v.number) < 9e15) {
      return static_cast<int64_t>(v.number);
    }
    if (v.is(json::Kind::Double)) error("field '", key, "' expected an integer, got ", v.number);
    error("field '", key, "' expected an integer, got ", json::kind_name(v.kind));
  }

  const json::Value& root_;
  const std::string& source_;
};

void parse_gpt2(const Fields& f, ModelConfig& c) {
  c.arch = Architecture::Gpt2;
  c.vocab_size = f.positive("vocab_size", 50257);
  c.hidden_size = f.positive("n_embd", 768);
  c.num_layers = f.positive("n_layer", 12);
  c.num_heads = f.positive("n_head", 12);
  c.num_kv_heads = c.num_heads;
  if (c.hidden_size % c.num_heads != 0) {
    f.error("field 'n_embd' (", c.hidden_size, ") expected a multiple of n_head (", c.num_heads,
            ")");
  }
  c.head_dim = c.hidden_size / c.num_heads;
  c.intermediate_size = f.positive("n_inner", 4 * c.hidden_size);
  c.max_positions = f.positive("n_positions", 1024);
  c.norm_eps = f.positive_number("layer_norm_epsilon", 1e-5);
  c.hidden_act = f.string("activation_function", "gelu_new");
  if (c.hidden_act != "gelu_new" && c.hidden_act != "gelu_pytorch_tanh" && c.hidden_act != "gelu") {
    f.error("activation_function '", c.hidden_act,
            "' is not supported; supported: gelu_new, gelu_pytorch_tanh, gelu");
  }
  c.tie_word_embeddings = f.boolean("tie_word_embeddings", true);
  c.initializer_range = f.positive_number("initializer_range", 0.02);
  c.attention_bias = true;
  if (!f.boolean("scale_attn_weights", true)) {
    f.error("scale_attn_weights false is not supported (attention is scaled by 1/sqrt(head_dim))");
  }
  if (f.boolean("scale_attn_by_inverse_layer_idx", false)) {
    f.error("scale_attn_by_inverse_layer_idx true is not supported");
  }
  if (f.boolean("add_cross_attention", false)) f.error("add_cross_attention true is not supported");
  c.embd_dropout = f.probability("embd_pdrop", 0.1);  // GPT2Config's defaults
  c.resid_dropout = f.probability("resid_pdrop", 0.1);
  c.attention_dropout = f.probability("attn_pdrop", 0.1);
  c.bos_token_id = f.token("bos_token_id", 50256);
  c.eos_token_id = f.token("eos_token_id", 50256);
  c.pad_token_id = f.token("pad_token_id", -1);
}

// Llama and Qwen2 share the field names; the defaults differ.
void parse_llama_like(const Fields& f, ModelConfig& c, bool qwen2) {
  c.arch = qwen2 ? Architecture::Qwen2 : Architecture::Llama;
  c.vocab_size = f.positive("vocab_size", qwen2 ? 151936 : 32000);
  c.hidden_size = f.positive("hidden_size", 4096);
  c.intermediate_size = f.positive("intermediate_size", qwen2 ? 22016 : 11008);
  c.num_layers = f.positive("num_hidden_layers", 32);
  c.num_heads = f.positive("num_attention_heads", 32);
  c.num_kv_heads = f.positive("num_key_value_heads", c.num_heads);
  if (c.num_heads % c.num_kv_heads != 0) {
    f.error("field 'num_attention_heads' (", c.num_heads,
            ") expected a multiple of num_key_value_heads (", c.num_kv_heads, ")");
  }
  if (f.get("head_dim") == nullptr && c.hidden_size % c.num_heads != 0) {
    f.error("field 'hidden_size' (", c.hidden_size, ") expected a multiple of num_attention_heads (",
            c.num_heads, ") when head_dim is not given");
  }
  c.head_dim = f.positive("head_dim", c.hidden_size / c.num_heads);
  if (c.head_dim % 2 != 0) f.error("field 'head_dim' expected an even number (RoPE), got ", c.head_dim);
  c.max_positions = f.positive("max_position_embeddings", qwen2 ? 32768 : 2048);
  c.norm_eps = f.positive_number("rms_norm_eps", 1e-6);
  c.rope_theta = f.positive_number("rope_theta", 10000.0);
  c.tie_word_embeddings = f.boolean("tie_word_embeddings", false);
  c.initializer_range = f.positive_number("initializer_range", 0.02);
  // Qwen2's q/k/v projections always carry biases (o_proj none); Llama's follow attention_bias
  // (q/k/v and o alike).
  c.attention_bias = qwen2 ? true : f.boolean("attention_bias", false);
  c.hidden_act = f.string("hidden_act", "silu");
  if (c.hidden_act != "silu") {
    f.error("hidden_act '", c.hidden_act, "' is not supported; supported: silu");
  }
  if (const json::Value* rs = f.get("rope_scaling")) {
    std::string kind = "?";
    if (rs->is(json::Kind::Object)) {
      const json::Value* t = rs->find("rope_type");
      if (t == nullptr || !t->is(json::Kind::String)) t = rs->find("type");
      if (t != nullptr && t->is(json::Kind::String)) kind = t->string;
    }
    f.error("rope_scaling (type '", kind, "') is not supported yet; expected null or absent");
  }
  if (!qwen2 && f.boolean("mlp_bias", false)) f.error("mlp_bias true is not supported");
  if (qwen2 && f.boolean("use_sliding_window", false)) {
    f.error("use_sliding_window true is not supported (full causal attention only)");
  }
  c.attention_dropout = f.probability("attention_dropout", 0.0);
  c.bos_token_id = f.token("bos_token_id", qwen2 ? -1 : 1);
  c.eos_token_id = f.token("eos_token_id", qwen2 ? -1 : 2);
  c.pad_token_id = f.token("pad_token_id", -1);
}

void parse_t5(const Fields& f, ModelConfig& c) {
  c.arch = Architecture::T5;
  c.vocab_size = f.positive("vocab_size", 32128);
  c.hidden_size = f.positive("d_model", 512);
  c.head_dim = f.positive("d_kv", 64);
  c.intermediate_size = f.positive("d_ff", 2048);
  c.num_layers = f.positive("num_layers", 6);
  c.num_decoder_layers = f.positive("num_decoder_layers", c.num_layers);
  c.num_heads = f.positive("num_heads", 8);
  c.num_kv_heads = c.num_heads;
  c.relative_attention_num_buckets = f.positive("relative_attention_num_buckets", 32);
  c.relative_attention_max_distance = f.positive("relative_attention_max_distance", 128);
  c.max_positions = 0;
  c.norm_eps = f.positive_number("layer_norm_epsilon", 1e-6);
  const std::string proj = f.string("feed_forward_proj", "relu");
  if (proj == "relu") {
    c.gated_act = false;
    c.hidden_act = "relu";
  } else if (proj == "gated-gelu") {
    c.gated_act = true;
    c.hidden_act = "gelu_new";  // transformers maps gated-gelu to gelu_new
  } else {
    f.error("feed_forward_proj '", proj, "' is not supported; supported: relu, gated-gelu");
  }
  c.tie_word_embeddings = f.boolean("tie_word_embeddings", true);
  c.initializer_factor = f.positive_number("initializer_factor", 1.0);
  c.dropout_rate = f.probability("dropout_rate", 0.1);  // T5Config's default
  c.attention_dropout = c.dropout_rate;  // T5Attention drops its weights with dropout_rate too
  c.pad_token_id = f.token("pad_token_id", 0);
  c.eos_token_id = f.token("eos_token_id", 1);
  c.bos_token_id = f.token("bos_token_id", -1);
  // T5 starts decoding from the pad token; configs say so explicitly (0 for t5/flan-t5).
  c.decoder_start_token_id = f.token("decoder_start_token_id", c.pad_token_id);
  if (!f.boolean("is_encoder_decoder", true)) f.error("is_encoder_decoder false is not supported");
}

}  // namespace

ModelConfig parse_model_config(const std::string& json_text, const std::string& source) {
  json::Value root;
  try {
    root = json::parse(json_text);
  } catch (const json::ParseError& e) {
    fail(code::kConfig, "config", source, ": not valid JSON at byte ", e.offset(), ": ", e.what());
  }
  Fields f(root, source);
  if (!root.is(json::Kind::Object)) {
    f.error("expected a JSON object, got ", json::kind_name(root.kind));
  }
  const json::Value* type = root.find("model_type");
  if (type == nullptr || type->is(json::Kind::Null)) {
    f.error("field 'model_type' is missing; supported: ", kSupported);
  }
  if (!type->is(json::Kind::String)) {
    f.error("field 'model_type' expected a string, got ", json::kind_name(type->kind));
  }
  ModelConfig c;
  c.model_type = type->string;
  if (c.model_type == "gpt2") {
    parse_gpt2(f, c);
  } else if (c.model_type == "llama") {
    parse_llama_like(f, c, false);
  } else if (c.model_type == "qwen2") {
    parse_llama_like(f, c, true);
  } else if (c.model_type == "t5") {
    parse_t5(f, c);
  } else {
    f.error("model_type '", c.model_type, "' is not supported; supported: ", kSupported);
  }
  return c;
}

}  // namespace s2s
