// Decoder-only models (GPT-2, Llama with GQA, Qwen2): config parsing, whole-model gradients
// against finite differences on tiny random configs, weight loading (aliases, prefixes, missing
// and misshapen tensors, bf16 views), left-padding invariance, and parity with the PyTorch
// fixtures in test/fixtures/models/{gpt2,llama-gqa,qwen2}: logits, loss, every gradient and ten
// AdamW training steps.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "harness.h"
#include "s2s/io/safetensors.h"
#include "s2s/models/model.h"
#include "s2s/models/weights.h"
#include "s2s/ops/cast.h"
#include "s2s/thread_pool.h"
#include "s2s/train/optimizer.h"
#include "fixture_model.h"

using s2s_test::repo_root;
using s2s_test::fixture_dir;
using s2s_test::read_text;

using namespace s2s;

namespace {

// Tiny configs: GPT-2 with n_inner null (-> 4 * n_embd); Llama with 4 query / 2 kv heads and an
// untied head; Qwen2 with 2 / 1 heads, q/k/v biases and a tied head.
const char* kTinyGpt2 =
    R"({"model_type": "gpt2", "vocab_size": 13, "n_embd": 8, "n_layer": 2, "n_head": 2,
        "n_positions": 8, "n_inner": null, "activation_function": "gelu_new"})";
const char* kTinyLlama =
    R"({"model_type": "llama", "vocab_size": 13, "hidden_size": 16, "intermediate_size": 12,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "rope_theta": 500000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": false,
        "hidden_act": "silu", "rope_scaling": null})";
const char* kTinyQwen2 =
    R"({"model_type": "qwen2", "vocab_size": 13, "hidden_size": 16, "intermediate_size": 12,
        "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
        "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": true})";

std::unique_ptr<Model> tiny_model(const char* json, uint64_t seed) {
  std::unique_ptr<Model> m = create_model(parse_model_config(json, "tiny/config.json"));
  uint64_t s = seed;
  for (Param* p : m->params().all()) {
    const bool gain = p->name.find("norm") != std::string::npos ||
                      p->name.find("ln_") != std::string::npos;
    const bool bias = p->value.ndim == 1 && !gain;
    std::vector<float> v = s2s_test::random_vector(p->value.numel(), ++s, -0.5f, 0.5f);
    for (float& x : v) x = gain ? 1.0f + 0.6f * x : bias ? 0.2f * x : x;
    m->params().load(*p, Tensor::contiguous(v.data(), DType::F32, p->value.ndim, p->value.shape));
    m->params().set_trainable(*p, true);
  }
  return m;
}

// B = 2, T = 6: row 0 has a one-token prompt (label -100), row 1 is right-padded by two.
struct TinyBatch {
  static constexpr int64_t B = 2, T = 6;
  std::vector<int32_t> ids, mask, labels;
  TinyBatch() {
    s2s_test::Rng rng(77);
    for (int64_t i = 0; i < B * T; ++i) {
      ids.push_back(static_cast<int32_t>(rng.next() % 13));
      const bool pad = i >= T + 4;
      mask.push_back(pad ? 0 : 1);
      labels.push_back(pad || i == 0 ? -100 : ids.back());
    }
  }
  Batch batch() const {
    Batch b;
    b.B = B;
    b.T = T;
    b.input_ids = ids.data();
    b.attention_mask = mask.data();
    b.labels = labels.data();
    return b;
  }
};

// Samples a few elements of every param and compares d(loss) with central differences.
double sampled_gradient_check(Model& m, const Batch& batch, int per_param, std::string* worst_name) {
  Graph g;
  m.params().zero_grads();
  g.backward(m.forward(g, batch, LossReduction::Mean).loss);
  const auto loss_at = [&] {
    g.reset();
    return double(m.forward(g, batch, LossReduction::Mean).loss->value.f32()[0]);
  };
  double worst = 0;
  s2s_test::Rng rng(5);
  const float eps = 1e-2f;
  for (Param* p : m.params().all()) {
    const int64_t n = p->value.numel();
    for (int k = 0; k < per_param; ++k) {
      const int64_t i = static_cast<int64_t>(rng.next() % static_cast<uint64_t>(n));
      float* x = p->value.f32() + i;
      const float saved = *x;
      *x = saved + eps;
      const double up = loss_at();
      *x = saved - eps;
      const double down = loss_at();
      *x = saved;
      const double numeric = (up - down) / (2.0 * eps);
      const double analytic = p->grad.f32()[i];
      const double scale = std::fmax(1.0, std::fmax(std::fabs(numeric), std::fabs(analytic)));
      const double err = std::fabs(numeric - analytic) / scale;
      CHECK_ERR(err, 3e-3, m.config().model_type + " gradient of " + p->name + "[" +
                               std::to_string(i) + "]");
      if (err > worst) {
        worst = err;
        if (worst_name) *worst_name = p->name;
      }
    }
  }
  return worst;
}

void check_gradients(const char* json, const char* label) {
  set_num_threads(2);
  std::unique_ptr<Model> m = tiny_model(json, 11);
  TinyBatch tb;
  std::string name;
  const double worst = sampled_gradient_check(*m, tb.batch(), 4, &name);
  std::printf("    %s: worst finite-difference error %.2e (%s)\n", label, worst, name.c_str());
}

// The message of the s2s::Error thrown by fn, or "" (and a failure) when none is thrown.
template <typename Fn>
std::string error_of(Fn fn, const char* expected_code) {
  try {
    fn();
  } catch (const Error& e) {
    CHECK_MSG(e.code() == expected_code,
              std::string("expected ") + expected_code + ", got " + e.code() + ": " + e.what());
    return e.what();
  }
  CHECK_MSG(false, std::string("expected an error ") + expected_code);
  return "";
}

bool contains(const std::string& s, const std::string& part) {
  const bool ok = s.find(part) != std::string::npos;
  if (!ok) std::fprintf(stderr, "    message was: %s\n", s.c_str());
  return ok;
}

std::string tmp_path(const std::string& name) {
  return "/tmp/s2s_test_models_" + std::to_string(static_cast<long>(::getpid())) + "_" + name;
}

// Writes the model's params (fp32, or bf16) under their names, renamed/dropped/added by `edit`.
void save_params(Model& m, const std::string& path, const char* dtype,
                 const std::function<void(std::vector<SafetensorsWriteEntry>&)>& edit = {}) {
  std::vector<std::vector<uint16_t>> halves;
  std::vector<SafetensorsWriteEntry> entries;
  for (Param* p : m.params().all()) {
    SafetensorsWriteEntry e;
    e.name = p->name;
    e.dtype = dtype;
    e.shape.assign(p->value.shape, p->value.shape + p->value.ndim);
    if (std::string(dtype) == "BF16") {
      halves.emplace_back(static_cast<size_t>(p->value.numel()));
      cast_forward(Tensor::contiguous(halves.back().data(), DType::BF16, p->value.ndim,
                                      p->value.shape),
                   p->value);
      e.data = halves.back().data();
      e.nbytes = halves.back().size() * 2;
    } else {
      e.data = p->value.data;
      e.nbytes = static_cast<size_t>(p->value.numel()) * 4;
    }
    entries.push_back(e);
  }
  if (edit) edit(entries);
  write_safetensors(path, entries, {});
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Config parsing

TEST(config_parses_gpt2_llama_qwen2_t5_with_hf_defaults) {
  ModelConfig g = parse_model_config(kTinyGpt2, "g.json");
  CHECK(g.arch == Architecture::Gpt2 && g.hidden_size == 8 && g.num_layers == 2);
  CHECK(g.intermediate_size == 32 && g.head_dim == 4 && g.num_kv_heads == 2);  // n_inner null
  CHECK(g.tie_word_embeddings && g.max_positions == 8 && g.hidden_act == "gelu_new");
  CHECK(g.bos_token_id == 50256 && g.eos_token_id == 50256);
  CHECK(std::fabs(g.norm_eps - 1e-5f) < 1e-12f);

  ModelConfig l = parse_model_config(kTinyLlama, "l.json");
  CHECK(l.arch == Architecture::Llama && l.num_heads == 4 && l.num_kv_heads == 2 && l.head_dim == 4);
  CHECK(!l.tie_word_embeddings && !l.attention_bias && l.rope_theta == 500000.0f);
  CHECK(l.bos_token_id == 1 && l.eos_token_id == 2 && l.max_positions == 2048);

  ModelConfig l2 = parse_model_config(
      R"({"model_type": "llama", "hidden_size": 64, "num_attention_heads": 8, "head_dim": 16,
          "attention_bias": true, "eos_token_id": [128001, 128009]})", "l2.json");
  CHECK(l2.num_kv_heads == 8 && l2.head_dim == 16 && l2.attention_bias && l2.eos_token_id == 128001);
  CHECK(l2.tie_word_embeddings == false && l2.vocab_size == 32000);

  ModelConfig q = parse_model_config(kTinyQwen2, "q.json");
  CHECK(q.arch == Architecture::Qwen2 && q.attention_bias && q.tie_word_embeddings);
  CHECK(q.rope_theta == 1e6f && q.num_kv_heads == 1 && q.head_dim == 8);

  ModelConfig t = parse_model_config(
      R"({"model_type": "t5", "vocab_size": 96, "d_model": 32, "d_kv": 12, "d_ff": 64,
          "num_layers": 2, "num_decoder_layers": 3, "num_heads": 4,
          "relative_attention_num_buckets": 16, "relative_attention_max_distance": 10,
          "feed_forward_proj": "gated-gelu", "tie_word_embeddings": false,
          "decoder_start_token_id": 0, "pad_token_id": 0, "eos_token_id": 1})", "t.json");
  CHECK(t.arch == Architecture::T5 && t.hidden_size == 32 && t.head_dim == 12);
  CHECK(t.num_layers == 2 && t.num_decoder_layers == 3 && t.intermediate_size == 64);
  CHECK(t.gated_act && t.hidden_act == "gelu_new" && !t.tie_word_embeddings);
  CHECK(t.relative_attention_num_buckets == 16 && t.relative_attention_max_distance == 10);
  CHECK(t.decoder_start_token_id == 0 && t.pad_token_id == 0 && t.eos_token_id == 1);
  ModelConfig t1 = parse_model_config(R"({"model_type": "t5", "num_layers": 4})", "t1.json");
  CHECK(t1.num_decoder_layers == 4 && !t1.gated_act && t1.hidden_act == "relu");
  CHECK(t1.tie_word_embeddings && std::fabs(t1.norm_eps - 1e-6f) < 1e-12f);

  // The fixture configs parse too.
  for (const char* name : {"gpt2", "llama-gqa", "qwen2", "t5-gated", "t5-relu-tied"}) {
    const std::string path = fixture_dir(name) + "/config.json";
    ModelConfig c = parse_model_config(read_text(path), path);
    CHECK(c.vocab_size == 96 && c.hidden_size == 32);
  }
}

TEST(config_errors_name_the_file_the_field_and_the_expectation) {
  const auto parse = [](const char* json) { return [json] { parse_model_config(json, "/m/config.json"); }; };
  CHECK(contains(error_of(parse(R"({"model_type": "bert"})"), code::kConfig),
                 "[config] /m/config.json: model_type 'bert' is not supported; supported: gpt2, llama, qwen2, t5"));
  CHECK(contains(error_of(parse(R"({"n_embd": 8})"), code::kConfig), "'model_type' is missing"));
  CHECK(contains(error_of(parse(R"({"model_type": "gpt2", "n_embd": "8"})"), code::kConfig),
                 "/m/config.json: field 'n_embd' expected an integer, got string"));
  CHECK(contains(error_of(parse(R"({"model_type": "gpt2", "n_layer": 0})"), code::kConfig),
                 "field 'n_layer' expected a positive integer, got 0"));
  CHECK(contains(error_of(parse(R"({"model_type": "gpt2", "n_embd": 10, "n_head": 4})"), code::kConfig),
                 "multiple of n_head"));
  CHECK(contains(error_of(parse(R"({"model_type": "gpt2", "activation_function": "relu"})"), code::kConfig),
                 "activation_function 'relu' is not supported"));
  CHECK(contains(error_of(parse(R"({"model_type": "llama", "rope_scaling": {"rope_type": "llama3", "factor": 8.0}})"),
                          code::kConfig),
                 "/m/config.json: rope_scaling (type 'llama3') is not supported yet"));
  CHECK(contains(error_of(parse(R"({"model_type": "llama", "hidden_act": "gelu"})"), code::kConfig),
                 "hidden_act 'gelu' is not supported; supported: silu"));
  CHECK(contains(error_of(parse(R"({"model_type": "llama", "num_attention_heads": 6, "num_key_value_heads": 4})"),
                          code::kConfig),
                 "multiple of num_key_value_heads"));
  CHECK(contains(error_of(parse(R"({"model_type": "qwen2", "use_sliding_window": true})"), code::kConfig),
                 "use_sliding_window"));
  CHECK(contains(error_of(parse(R"({"model_type": "t5", "feed_forward_proj": "gated-silu"})"), code::kConfig),
                 "feed_forward_proj 'gated-silu' is not supported; supported: relu, gated-gelu"));
  CHECK(contains(error_of(parse(R"({"model_type": "llama", "rms_norm_eps": "x"})"), code::kConfig),
                 "field 'rms_norm_eps' expected a number"));
  CHECK(contains(error_of(parse(R"({"model_type": "gpt2",})"), code::kConfig),
                 "/m/config.json: not valid JSON at byte"));
  CHECK(contains(error_of(parse(R"([1, 2])"), code::kConfig), "expected a JSON object, got array"));
}

// ---------------------------------------------------------------------------------------------
// Structure and invariants on tiny random models

TEST(models_declare_hf_names_decay_linear_modules_and_tied_aliases) {
  std::unique_ptr<Model> g = tiny_model(kTinyGpt2, 1);
  CHECK(g->params().find("transformer.h.1.attn.c_attn.weight") != nullptr);
  CHECK(g->params().get("transformer.h.0.attn.c_attn.weight").value.shape[1] == 24);  // (in, 3C)
  CHECK(g->params().find("lm_head.weight") == nullptr);  // tied
  CHECK(g->params().get("transformer.h.0.ln_1.weight").decay == false);
  CHECK(g->params().get("transformer.h.0.mlp.c_fc.bias").decay == false);
  CHECK(g->params().get("transformer.wte.weight").decay == true);
  CHECK(g->linear_modules().size() == 2 * 4 + 1);
  CHECK(g->linear_modules()[0].path == "transformer.h.0.attn.c_attn");
  CHECK(g->tied_aliases().size() == 1 && g->tied_aliases()[0].first == "lm_head.weight");
  CHECK(g->params().all().size() == 2 + 2 * 12 + 2);

  std::unique_ptr<Model> l = tiny_model(kTinyLlama, 2);
  CHECK(l->params().get("model.layers.1.self_attn.k_proj.weight").value.shape[0] == 8);  // Hkv*D
  CHECK(l->params().find("model.layers.0.self_attn.q_proj.bias") == nullptr);
  CHECK(l->params().find("lm_head.weight") != nullptr && l->tied_aliases().empty());
  CHECK(l->params().get("model.norm.weight").decay == false);
  CHECK(l->linear_modules().size() == 2 * 7 + 1);

  std::unique_ptr<Model> q = tiny_model(kTinyQwen2, 3);
  CHECK(q->params().get("model.layers.0.self_attn.v_proj.bias").decay == false);
  CHECK(q->params().find("model.layers.0.self_attn.o_proj.bias") == nullptr);
  CHECK(q->params().find("lm_head.weight") == nullptr);
  CHECK(q->tied_aliases().size() == 1 && q->tied_aliases()[0].second == "model.embed_tokens.weight");
}

TEST(gpt2_gradients_match_finite_differences) { check_gradients(kTinyGpt2, "gpt2"); }
TEST(llama_gqa_gradients_match_finite_differences) { check_gradients(kTinyLlama, "llama-gqa"); }
TEST(qwen2_gradients_match_finite_differences) { check_gradients(kTinyQwen2, "qwen2"); }

TEST(sum_reduction_is_mean_times_count_and_no_labels_gives_no_loss) {
  for (const char* json : {kTinyGpt2, kTinyLlama}) {
    std::unique_ptr<Model> m = tiny_model(json, 4);
    TinyBatch tb;
    Graph g;
    ForwardResult mean = m->forward(g, tb.batch(), LossReduction::Mean);
    const float mean_loss = mean.loss->value.f32()[0];
    g.reset();
    ForwardResult sum = m->forward(g, tb.batch(), LossReduction::Sum);
    CHECK(mean.count == 8 && sum.count == 8);  // 5 + 3 shifted labels
    CHECK_ERR(std::fabs(sum.loss->value.f32()[0] - mean_loss * 8) / (mean_loss * 8), 1e-6,
              m->config().model_type + " sum vs mean");
    Batch nb = tb.batch();
    nb.labels = nullptr;
    g.reset();
    ForwardResult none = m->forward(g, nb, LossReduction::Mean);
    CHECK(none.loss == nullptr && none.logits->value.shape[0] == 12 &&
          none.logits->value.shape[1] == 13);
  }
}

// A left-padded row with transformers' generation positions gives the same logits at its real
// tokens as the row alone (so batched generation matches one-by-one).
TEST(left_padding_with_generation_positions_is_invisible) {
  for (const char* json : {kTinyGpt2, kTinyLlama, kTinyQwen2}) {
    std::unique_ptr<Model> m = tiny_model(json, 5);
    const std::vector<int32_t> real{3, 7, 1, 12};
    std::vector<int32_t> ids{0, 0, 3, 7, 1, 12}, mask{0, 0, 1, 1, 1, 1}, pos(6);
    position_ids_from_attention_mask(mask.data(), 1, 6, pos.data());
    CHECK(pos[0] == 1 && pos[1] == 1 && pos[2] == 0 && pos[5] == 3);
    Batch padded;
    padded.B = 1;
    padded.T = 6;
    padded.input_ids = ids.data();
    padded.attention_mask = mask.data();
    padded.position_ids = pos.data();
    Batch alone;
    alone.B = 1;
    alone.T = 4;
    alone.input_ids = real.data();
    Graph g1, g2;
    const float* a = m->forward(g1, padded, LossReduction::Mean).logits->value.f32();
    const float* b = m->forward(g2, alone, LossReduction::Mean).logits->value.f32();
    CHECK_ERR(s2s_test::max_abs_error(a + 2 * 13, b, 4 * 13), 1e-5,
              m->config().model_type + " left-padded logits");
  }
}

TEST(batch_errors_are_clear) {
  std::unique_ptr<Model> g = tiny_model(kTinyGpt2, 6);
  std::vector<int32_t> ids(9, 1);
  Batch b;
  b.B = 1;
  b.T = 9;
  b.input_ids = ids.data();
  Graph graph;
  CHECK(contains(error_of([&] { g->forward(graph, b, LossReduction::Mean); }, code::kArgument),
                 "[gpt2] expected T <= 8 (n_positions), got 9"));
  std::vector<int32_t> mask(9, 2);
  b.T = 4;
  b.attention_mask = mask.data();
  CHECK(contains(error_of([&] { g->forward(graph, b, LossReduction::Mean); }, code::kArgument),
                 "[attention_mask] expected 0 or 1, got 2 at index 0"));
}

// ---------------------------------------------------------------------------------------------
// Weight loading

TEST(load_weights_round_trips_and_reports_extras_aliases_and_prefixes) {
  std::unique_ptr<Model> src = tiny_model(kTinyGpt2, 7);
  const std::string path = tmp_path("gpt2.safetensors");
  // As GPT-2 checkpoints do: the bare model's names (no "transformer."), the attention-mask
  // buffers, and an explicit tied lm_head.weight.
  save_params(*src, path, "F32", [](std::vector<SafetensorsWriteEntry>& e) {
    for (auto& x : e) x.name = x.name.substr(std::string("transformer.").size());
    static const float buf[4] = {1, 0, 1, 1};
    e.push_back({"h.0.attn.bias", "F32", {1, 1, 2, 2}, buf, sizeof(buf)});
    e.push_back({"lm_head.weight", e[0].dtype, e[0].shape, e[0].data, e[0].nbytes});
  });
  std::unique_ptr<Model> dst = create_model(src->config());
  LoadReport r = load_weights(*dst, {SafetensorsFile::open(path)});
  CHECK(r.loaded == static_cast<int64_t>(dst->params().all().size()) && r.bound == 0);
  CHECK(r.unused.size() == 1 && r.unused[0] == "h.0.attn.bias");
  for (Param* p : dst->params().all()) {
    Param& s = src->params().get(p->name);
    CHECK_MSG(std::memcmp(p->value.data, s.value.data, 4 * p->value.numel()) == 0, p->name);
  }
  std::remove(path.c_str());
}

TEST(load_weights_errors_name_file_tensor_and_shapes) {
  std::unique_ptr<Model> src = tiny_model(kTinyLlama, 8);
  const std::string missing = tmp_path("missing.safetensors");
  save_params(*src, missing, "F32", [](std::vector<SafetensorsWriteEntry>& e) {
    for (size_t i = 0; i < e.size(); ++i) {
      if (e[i].name == "model.layers.1.mlp.up_proj.weight") e.erase(e.begin() + long(i));
    }
  });
  std::unique_ptr<Model> dst = create_model(src->config());
  CHECK(contains(error_of([&] { load_weights(*dst, {SafetensorsFile::open(missing)}); }, code::kFormat),
                 "[weights] " + missing + ": tensor 'model.layers.1.mlp.up_proj.weight' is missing"));
  const std::string wrong = tmp_path("wrong.safetensors");
  save_params(*src, wrong, "F32", [](std::vector<SafetensorsWriteEntry>& e) {
    for (auto& x : e) {
      if (x.name == "model.norm.weight") x.shape = {4, 4};
    }
  });
  CHECK(contains(error_of([&] { load_weights(*dst, {SafetensorsFile::open(wrong)}); }, code::kShape),
                 wrong + ": tensor 'model.norm.weight' has shape (4, 4), expected (16,)"));
  // Two shards holding the same tensor.
  CHECK(contains(error_of([&] {
                   load_weights(*dst, {SafetensorsFile::open(wrong), SafetensorsFile::open(missing)});
                 }, code::kFormat),
                 "appears in both"));
  std::remove(missing.c_str());
  std::remove(wrong.c_str());
  CHECK(contains(error_of([] { open_weight_files("/nonexistent-folder"); }, code::kIO),
                 "found neither model.safetensors nor model.safetensors.index.json"));
}

TEST(load_weights_binds_frozen_bf16_linear_and_embedding_weights) {
  std::unique_ptr<Model> src = tiny_model(kTinyQwen2, 9);
  const std::string path = tmp_path("qwen2-bf16.safetensors");
  save_params(*src, path, "BF16");
  auto file = SafetensorsFile::open(path);
  // Copy everything: all fp32, and the reference for the bound model.
  std::unique_ptr<Model> copied = create_model(src->config());
  CHECK(load_weights(*copied, {file}).bound == 0);
  std::unique_ptr<Model> bound = create_model(src->config());
  LoadOptions o;
  o.keep_frozen_in_file_dtype = true;
  LoadReport r = load_weights(*bound, {file}, o);
  CHECK(r.bound == 1 + 2 * 7);  // embed_tokens (tied head) + 7 linears per layer
  CHECK(bound->params().get("model.embed_tokens.weight").value.dtype == DType::BF16);
  CHECK(bound->params().get("model.layers.0.self_attn.q_proj.bias").value.dtype == DType::F32);
  CHECK(bound->params().get("model.norm.weight").value.dtype == DType::F32);
  TinyBatch tb;
  Graph g1, g2;
  const Var* a = copied->forward(g1, tb.batch(), LossReduction::Mean).logits;
  const Var* b = bound->forward(g2, tb.batch(), LossReduction::Mean).logits;
  // bf16 weights make linear round its inputs to bf16 too: close, not equal.
  const double err = s2s_test::max_normalized_error(b->value.f32(), a->value.f32(), a->value.numel());
  CHECK_ERR(err, 5e-2, "bf16-bound vs fp32-copied logits");
  std::remove(path.c_str());
}

// ---------------------------------------------------------------------------------------------
// Parity with the PyTorch fixtures

namespace {

using Fixture = s2s_test::FixtureBatch;

void check_parity(const std::string& name) {
  set_num_threads(2);
  const std::string dir = fixture_dir(name);
  std::unique_ptr<Model> m =
      create_model(parse_model_config(read_text(dir + "/config.json"), dir + "/config.json"));
  LoadReport report = load_weights(*m, open_weight_files(dir));
  CHECK_MSG(report.unused.empty(), name + ": unexpected tensors in the checkpoint");
  for (Param* p : m->params().all()) {
    m->params().set_trainable(*p, true);
    // The fixture's AdamW decays every tensor (biases and norms too), unlike HF Trainer's rule.
    p->decay = true;
  }
  Fixture fx(dir);

  // Logits, loss, gradients.
  Graph g;
  ForwardResult r = m->forward(g, fx.batch, LossReduction::Mean);
  const Tensor ref_logits = fx.file->view("logits");
  CHECK(ref_logits.numel() == r.logits->value.numel());
  const double logits_err =
      s2s_test::max_abs_error(r.logits->value.f32(), ref_logits.f32(), ref_logits.numel());
  CHECK_ERR(logits_err, 1e-4, name + " logits");
  const double loss_err = std::fabs(double(r.loss->value.f32()[0]) - fx.file->view("loss").f32()[0]);
  CHECK_ERR(loss_err, 1e-5, name + " loss");
  g.backward(r.loss);
  double worst_ratio = 0, worst_abs = 0;
  std::string worst_name;
  int checked = 0;
  for (Param* p : m->params().all()) {
    const std::string gname = "grad." + p->name;
    if (fx.file->find(gname) == nullptr) {
      CHECK_MSG(false, name + ": fixture has no " + gname);
      continue;
    }
    const Tensor ref = fx.file->view(gname);
    CHECK_MSG(ref.numel() == p->grad.numel(), name + " " + gname + " size");
    double max_ref = 0;
    for (int64_t i = 0; i < ref.numel(); ++i) max_ref = std::fmax(max_ref, std::fabs(ref.f32()[i]));
    const double err = s2s_test::max_abs_error(p->grad.f32(), ref.f32(), ref.numel());
    const double tol = 1e-5 + 1e-3 * max_ref;
    CHECK_ERR(err, tol, name + " " + gname);
    if (err / tol > worst_ratio) {
      worst_ratio = err / tol;
      worst_abs = err;
      worst_name = p->name;
    }
    ++checked;
  }
  CHECK(checked == static_cast<int>(m->params().all().size()));

  // Ten AdamW steps on the same batch (loss before each update; grad norm before clipping).
  m->params().zero_grads();
  OptimizerConfig oc;
  oc.adamw.beta1 = 0.9;
  oc.adamw.beta2 = 0.999;
  oc.adamw.eps = 1e-8;
  oc.adamw.weight_decay = 0.01;
  oc.max_grad_norm = 1.0;
  const Tensor ref_losses = fx.file->view("train.losses");
  const Tensor ref_norms = fx.file->view("train.grad_norms");
  double train_err = 0, norm_err = 0;
  for (int64_t step = 1; step <= ref_losses.numel(); ++step) {
    g.reset();
    ForwardResult s = m->forward(g, fx.batch, LossReduction::Mean);
    const double loss = s.loss->value.f32()[0];
    g.backward(s.loss);
    const OptimizerStepStats stats = optimizer_step(m->params(), oc, step, 1e-2, 1.0f);
    const double ref = ref_losses.f32()[step - 1], ref_norm = ref_norms.f32()[step - 1];
    train_err = std::fmax(train_err, std::fabs(loss - ref));
    norm_err = std::fmax(norm_err, std::fabs(stats.grad_norm - ref_norm) / ref_norm);
    CHECK_ERR(std::fabs(loss - ref), 1e-4, name + " train.losses[" + std::to_string(step - 1) + "]");
    CHECK_ERR(std::fabs(stats.grad_norm - ref_norm) / ref_norm, 1e-3,
              name + " train.grad_norms[" + std::to_string(step - 1) + "] (relative)");
  }
  std::printf("    %s: logits %.2e, loss %.2e, worst grad %.2e = %.3f of tolerance (%s), "
              "train losses %.2e, grad norms %.2e relative\n",
              name.c_str(), logits_err, loss_err, worst_abs, worst_ratio, worst_name.c_str(),
              train_err, norm_err);
}

// LoRA through linear_modules(): PEFT's adapter on every targeted module (suffix match), base
// frozen; logits, loss, adapter gradients and ten adapter-only AdamW steps against the fixture.
// Checks that the modules' LinearWeights are the ones forward runs.
void check_lora_parity(const std::string& name, const std::vector<std::string>& targets) {
  set_num_threads(2);
  const std::string dir = fixture_dir(name);
  std::unique_ptr<Model> m = s2s_test::load_fixture_model(dir);
  Fixture fx(dir);
  s2s_test::FixtureLora lora;
  s2s_test::attach_fixture_lora(*m, *fx.file, targets, lora);
  const std::vector<Param*>& adapters = lora.adapters;
  for (Param* p : m->params().all()) m->params().set_trainable(*p, false);
  for (Param* p : adapters) m->params().set_trainable(*p, true);

  Graph g;
  ForwardResult r = m->forward(g, fx.batch, LossReduction::Mean);
  const Tensor ref_logits = fx.file->view("lora.logits");
  const double logits_err =
      s2s_test::max_abs_error(r.logits->value.f32(), ref_logits.f32(), ref_logits.numel());
  CHECK_ERR(logits_err, 1e-4, name + " lora.logits");
  CHECK_ERR(std::fabs(double(r.loss->value.f32()[0]) - fx.file->view("lora.loss").f32()[0]), 1e-5,
            name + " lora.loss");
  g.backward(r.loss);
  double worst_ratio = 0;
  for (Param* p : adapters) {
    const Tensor ref = fx.file->view("lora.grad." + p->name);
    double max_ref = 0;
    for (int64_t i = 0; i < ref.numel(); ++i) max_ref = std::fmax(max_ref, std::fabs(ref.f32()[i]));
    const double err = s2s_test::max_abs_error(p->grad.f32(), ref.f32(), ref.numel());
    const double tol = 1e-5 + 1e-3 * max_ref;
    CHECK_ERR(err, tol, name + " lora.grad." + p->name);
    worst_ratio = std::fmax(worst_ratio, err / tol);
  }
  m->params().zero_grads();
  OptimizerConfig oc;  // AdamW defaults (lr per call, wd 0.01 on A and B), clip 1.0
  oc.max_grad_norm = 1.0;
  const Tensor ref_losses = fx.file->view("lora.train.losses");
  double train_err = 0;
  for (int64_t step = 1; step <= ref_losses.numel(); ++step) {
    g.reset();
    ForwardResult s = m->forward(g, fx.batch, LossReduction::Mean);
    const double err = std::fabs(double(s.loss->value.f32()[0]) - ref_losses.f32()[step - 1]);
    CHECK_ERR(err, 1e-4, name + " lora.train.losses[" + std::to_string(step - 1) + "]");
    train_err = std::fmax(train_err, err);
    g.backward(s.loss);
    optimizer_step(m->params(), oc, step, 1e-2, 1.0f);
  }
  std::printf("    %s LoRA (%zu adapters): logits %.2e, worst grad %.3f of tolerance, "
              "train losses %.2e\n",
              name.c_str(), adapters.size() / 2, logits_err, worst_ratio, train_err);
}

}  // namespace

TEST(parity_gpt2_logits_loss_grads_and_training) { check_parity("gpt2"); }
TEST(parity_llama_gqa_logits_loss_grads_and_training) { check_parity("llama-gqa"); }
TEST(parity_qwen2_logits_loss_grads_and_training) { check_parity("qwen2"); }

TEST(parity_lora_through_linear_modules) {
  const std::vector<std::string> llama{"q_proj", "k_proj", "v_proj", "o_proj",
                                       "gate_proj", "up_proj", "down_proj"};
  check_lora_parity("gpt2", {"c_attn", "c_proj", "c_fc"});
  check_lora_parity("llama-gqa", llama);
  check_lora_parity("qwen2", llama);
}
