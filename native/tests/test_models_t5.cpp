// T5 (v1.0 ReLU + tied head, v1.1 gated-GELU + untied head): whole-model gradients against finite
// differences on tiny random configs (encoder padding, -100 labels, the shared relative-position
// tables), HF semantics checks (shift-right, names, LoRA module paths, dropout only in training).
#include <cmath>
#include <cstring>
#include <set>

#include "harness.h"
#include "s2s/models/t5.h"
#include "s2s/nn/functional.h"
#include "s2s/thread_pool.h"

using namespace s2s;

namespace {

ModelConfig tiny_config(bool gated) {
  ModelConfig c;
  c.model_type = "t5";
  c.arch = Architecture::T5;
  c.vocab_size = 13;
  c.hidden_size = 8;
  c.num_heads = 2;
  c.head_dim = 4;
  c.intermediate_size = 12;
  c.num_layers = 2;
  c.num_decoder_layers = gated ? 1 : 2;  // v1.1 test also covers num_decoder_layers != num_layers
  c.relative_attention_num_buckets = 8;
  c.relative_attention_max_distance = 12;
  c.norm_eps = 1e-6f;
  c.gated_act = gated;
  c.hidden_act = gated ? "gelu_new" : "relu";
  c.tie_word_embeddings = !gated;
  c.pad_token_id = 0;
  c.eos_token_id = 1;
  c.decoder_start_token_id = 0;
  return c;
}

// Random weights (norm weights around 1) and a batch: B=2, T=6 with the second row padded after
// 4 tokens; Td=5 with -100 labels (the padded tail of row 1 and one inside row 0).
struct Fixture {
  static constexpr int64_t B = 2, T = 6, Td = 5;
  std::unique_ptr<T5Model> model;
  std::vector<int32_t> ids, mask, labels;

  Fixture(bool gated, uint64_t seed) : model(std::make_unique<T5Model>(tiny_config(gated))) {
    ParamStore& ps = model->params();
    uint64_t s = seed;
    for (Param* p : ps.all()) {
      const bool norm = p->name.find("layer_norm") != std::string::npos;
      auto v = s2s_test::random_vector(p->value.numel(), ++s, norm ? 0.6f : -0.7f, norm ? 1.4f : 0.7f);
      ps.load(*p, Tensor::contiguous(v.data(), DType::F32, p->value.ndim, p->value.shape));
      ps.set_trainable(*p, true);
    }
    s2s_test::Rng rng(seed + 1000);
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t t = 0; t < T; ++t) {
        const bool pad = b == 1 && t >= 4;
        ids.push_back(pad ? 0 : 2 + static_cast<int32_t>(rng.next() % 11));
        mask.push_back(pad ? 0 : 1);
      }
      for (int64_t t = 0; t < Td; ++t) {
        const bool ignored = (b == 1 && t >= 3) || (b == 0 && t == 2);
        labels.push_back(ignored ? -100 : 1 + static_cast<int32_t>(rng.next() % 12));
      }
    }
  }

  Batch batch() const {
    Batch b;
    b.B = B;
    b.T = T;
    b.Td = Td;
    b.input_ids = ids.data();
    b.attention_mask = mask.data();
    b.labels = labels.data();
    return b;
  }

  double loss() {
    Graph g;
    return model->forward(g, batch(), LossReduction::Mean).loss->value.f32()[0];
  }
};

// Central differences on a few elements of every param (all of the small relative-bias tables);
// returns the worst |numeric - analytic| / max(1, |numeric|, |analytic|).
double check_gradients(Fixture& f, float eps, double tol, int per_param) {
  Graph g;
  ForwardResult r = f.model->forward(g, f.batch(), LossReduction::Mean);
  g.backward(r.loss);
  double worst = 0;
  s2s_test::Rng rng(7);
  for (Param* p : f.model->params().all()) {
    const int64_t n = p->value.numel();
    std::vector<int64_t> idx;
    if (p->name.find("relative_attention_bias") != std::string::npos) {
      for (int64_t i = 0; i < n; ++i) idx.push_back(i);
    } else {
      for (int k = 0; k < per_param; ++k) idx.push_back(static_cast<int64_t>(rng.next() % n));
    }
    double err_p = 0;
    for (int64_t i : idx) {
      float* w = p->value.f32() + i;
      const float saved = *w;
      *w = saved + eps;
      const double up = f.loss();
      *w = saved - eps;
      const double down = f.loss();
      *w = saved;
      const double numeric = (up - down) / (2.0 * eps);
      const double analytic = p->grad.f32()[i];
      const double scale = std::fmax(1.0, std::fmax(std::fabs(numeric), std::fabs(analytic)));
      err_p = std::fmax(err_p, std::fabs(numeric - analytic) / scale);
    }
    CHECK_ERR(err_p, tol, "gradient of " + p->name);
    worst = std::fmax(worst, err_p);
  }
  return worst;
}

double abs_sum(const Tensor& t) {
  double s = 0;
  for (int64_t i = 0; i < t.numel(); ++i) s += std::fabs(t.f32()[i]);
  return s;
}

}  // namespace

TEST(t5_relu_tied_gradients_match_finite_differences) {
  set_num_threads(2);
  Fixture f(false, 1);
  const double worst = check_gradients(f, 1e-3f, 3e-3, 6);
  std::printf("    v1.0 (relu, tied) worst finite-difference error %.2e\n", worst);
  // Both tables receive gradient (the bias reaches the loss through every block).
  CHECK(abs_sum(f.model->params()
                    .get("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight")
                    .grad) > 0);
  CHECK(abs_sum(f.model->params()
                    .get("decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight")
                    .grad) > 0);
}

TEST(t5_gated_untied_gradients_match_finite_differences) {
  Fixture f(true, 2);
  const double worst = check_gradients(f, 1e-3f, 3e-3, 6);
  std::printf("    v1.1 (gated-gelu, untied) worst finite-difference error %.2e\n", worst);
}

TEST(t5_param_names_and_shapes_are_huggingface_ones) {
  Fixture tied(false, 3), gated(true, 3);
  ParamStore& a = tied.model->params();
  CHECK(a.find("shared.weight") != nullptr && a.find("lm_head.weight") == nullptr);
  CHECK(a.find("encoder.block.1.layer.1.DenseReluDense.wi.weight") != nullptr);
  CHECK(a.find("decoder.block.1.layer.1.EncDecAttention.o.weight") != nullptr);
  CHECK(a.find("decoder.block.1.layer.2.layer_norm.weight") != nullptr);
  CHECK(a.find("encoder.final_layer_norm.weight") != nullptr);
  CHECK(a.find("encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight") == nullptr);
  CHECK(a.get("decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight").value.shape[0] == 8);
  CHECK(a.get("encoder.block.0.layer.0.SelfAttention.o.weight").value.shape[1] == 8);
  // Tied v1.0: 2 x (4 q,k,v,o + table + 2 norms + wi + wo) - 1 table, and the decoder adds
  // cross-attention (4 + norm) per block; plus shared and two final norms.
  CHECK(a.all().size() == size_t(1 + (2 * 8 + 1) + 1 + (2 * 13 + 1) + 1));
  ParamStore& b = gated.model->params();
  CHECK(b.find("lm_head.weight") != nullptr);
  CHECK(b.find("decoder.block.0.layer.2.DenseReluDense.wi_0.weight") != nullptr);
  CHECK(b.find("decoder.block.0.layer.2.DenseReluDense.wi_1.weight") != nullptr);
  CHECK(b.find("decoder.block.1.layer.0.SelfAttention.q.weight") == nullptr);  // 1 decoder layer
  for (Param* p : b.all()) {
    const bool no_decay = p->name.find("layer_norm") != std::string::npos ||
                          p->name.find("relative_attention_bias") != std::string::npos;
    CHECK_MSG(p->decay == !no_decay, "decay flag of " + p->name);
  }
  // LoRA targets by HF module path, each pointing at its own weight.
  auto mods = gated.model->linear_modules();
  std::set<std::string> paths;
  for (const auto& m : mods) {
    paths.insert(m.path);
    CHECK_MSG(b.find(m.path + ".weight") == m.weights->weight, "module " + m.path);
  }
  CHECK(paths.size() == mods.size());
  CHECK(mods.size() == size_t(2 * (4 + 3) + 1 * (8 + 3)));
  CHECK(paths.count("decoder.block.0.layer.1.EncDecAttention.k") == 1);
  CHECK(paths.count("encoder.block.1.layer.1.DenseReluDense.wi_1") == 1);
  auto aliases = tied.model->tied_aliases();
  CHECK(aliases.size() == 3 && aliases[2].first == "lm_head.weight");
  CHECK(gated.model->tied_aliases().size() == 2);
}

TEST(t5_shifts_labels_right_and_counts_only_real_labels) {
  Fixture f(false, 4);
  Graph g1;
  ForwardResult r1 = f.model->forward(g1, f.batch(), LossReduction::Mean);
  CHECK(r1.count == 2 * 5 - 3);
  CHECK(r1.logits->value.shape[0] == 10 && r1.logits->value.shape[1] == 13);
  // HF _shift_right by hand: start token, previous label, -100 -> pad.
  std::vector<int32_t> dec(f.labels.size());
  for (int64_t b = 0; b < 2; ++b) {
    dec[b * 5] = 0;
    for (int64_t t = 1; t < 5; ++t) {
      const int32_t l = f.labels[b * 5 + t - 1];
      dec[b * 5 + t] = l == -100 ? 0 : l;
    }
  }
  Batch explicit_ids = f.batch();
  explicit_ids.decoder_input_ids = dec.data();
  Graph g2;
  ForwardResult r2 = f.model->forward(g2, explicit_ids, LossReduction::Sum);
  CHECK(std::memcmp(r1.logits->value.data, r2.logits->value.data, sizeof(float) * 10 * 13) == 0);
  CHECK_ERR(std::fabs(r2.loss->value.f32()[0] / r2.count - r1.loss->value.f32()[0]), 1e-6,
            "sum / count vs mean");
  // Padding is masked: changing a padded encoder token leaves every logit unchanged.
  f.ids[1 * 6 + 5] = 9;
  Graph g3;
  ForwardResult r3 = f.model->forward(g3, f.batch(), LossReduction::Mean);
  CHECK(std::memcmp(r1.logits->value.data, r3.logits->value.data, sizeof(float) * 10 * 13) == 0);
  // Causality: changing the last decoder input changes only the last position's logits.
  dec[0 * 5 + 4] = 7;
  Graph g4;
  ForwardResult r4 = f.model->forward(g4, explicit_ids, LossReduction::Mean);
  CHECK(std::memcmp(r2.logits->value.data, r4.logits->value.data, sizeof(float) * 4 * 13) == 0);
  CHECK(std::memcmp(r2.logits->value.f32() + 4 * 13, r4.logits->value.f32() + 4 * 13,
                    sizeof(float) * 13) != 0);
}

TEST(t5_dropout_only_in_training) {
  ModelConfig c = tiny_config(true);
  c.dropout_rate = 0.1f;
  Fixture f(true, 5);
  T5Model m(c);
  for (Param* p : f.model->params().all()) {
    m.params().load(m.params().get(p->name), p->value);
    m.params().set_trainable(m.params().get(p->name), true);
  }
  Graph g0, g1, g2;
  const float base = f.model->forward(g0, f.batch(), LossReduction::Mean).loss->value.f32()[0];
  const float eval = m.forward(g1, f.batch(), LossReduction::Mean).loss->value.f32()[0];
  CHECK(eval == base);
  g2.training = true;
  g2.dropout_seed = 42;
  ForwardResult r = m.forward(g2, f.batch(), LossReduction::Mean);
  CHECK(r.loss->value.f32()[0] != base);
  g2.backward(r.loss);
  CHECK(abs_sum(m.params().get("lm_head.weight").grad) > 0);
}

TEST(t5_rejects_bad_configs_and_batches) {
  ModelConfig c = tiny_config(false);
  c.hidden_act = "gated-relu";
  CHECK_THROWS_CODE(T5Model m(c), code::kArgument);
  c = tiny_config(false);
  c.head_dim = 0;
  CHECK_THROWS_CODE(T5Model m(c), code::kArgument);
  c = tiny_config(false);
  c.hidden_act = "gated-gelu";  // HF feed_forward_proj spelling: gated, gelu_new
  T5Model gated(c);
  CHECK(gated.params().find("encoder.block.0.layer.1.DenseReluDense.wi_0.weight") != nullptr);
  Fixture f(false, 6);
  Batch b = f.batch();
  b.labels = nullptr;
  Graph g;
  CHECK_THROWS_CODE(f.model->forward(g, b, LossReduction::Mean), code::kArgument);
}
