// transformers' dropout sites in the models, on the parity fixtures with their dropout rates
// turned up (the fixtures themselves have 0): GPT-2 embd_pdrop / resid_pdrop / attn_pdrop,
// Llama attention_dropout, T5 dropout_rate (which drops the attention probabilities too).
// Checked: eval mode is the no-dropout model bit for bit; each rate alone changes a training
// forward (so each site is live); the masks are a function of the seed alone (same seed, same
// bits; another seed, other bits); and the training-mode backward is the gradient of the
// training-mode forward with its masks held fixed (central finite differences). PyTorch's
// dropout draws from another generator, so its masks cannot be matched: the op-level tests
// check the mask function and the dropout math (test_ops_attention, test_ops_dropout).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "fixture_model.h"
#include "harness.h"
#include "s2s/models/model.h"
#include "s2s/models/weights.h"
#include "s2s/thread_pool.h"

using s2s_test::fixture_dir;

using namespace s2s;

namespace {

// `name`'s fixture model with these config.json rates, every param trainable.
std::unique_ptr<Model> with_config(const std::string& name,
                                   const std::vector<std::pair<std::string, std::string>>& set) {
  std::unique_ptr<Model> m = s2s_test::fixture_model_with_config(name, set);
  for (Param* p : m->params().all()) m->params().set_trainable(*p, true);
  return m;
}

float loss_of(Model& m, const Batch& batch, bool training, uint64_t seed, Graph& g) {
  g.reset();
  g.training = training;
  g.dropout_seed = seed;
  ForwardResult r = m.forward(g, batch, LossReduction::Mean);
  return r.loss->value.f32()[0];
}

// Every rate in `sites` at 0.1 together, then each alone.
void check_sites(const std::string& name,
                 const std::vector<std::pair<std::string, std::string>>& sites) {
  set_num_threads(2);
  s2s_test::FixtureBatch fx(fixture_dir(name));
  std::unique_ptr<Model> plain = with_config(name, {});
  std::unique_ptr<Model> drop = with_config(name, sites);
  Graph g;
  const float base = loss_of(*plain, fx.batch, false, 0, g);
  CHECK_MSG(loss_of(*drop, fx.batch, false, 0, g) == base,
            name + ": dropout changed an eval-mode forward");
  CHECK_MSG(loss_of(*plain, fx.batch, true, 7, g) == base,
            name + ": the fixture itself has dropout (expected rates of 0)");
  const float a = loss_of(*drop, fx.batch, true, 7, g);
  CHECK_MSG(a != base, name + ": training-mode dropout changed nothing");
  CHECK_MSG(loss_of(*drop, fx.batch, true, 7, g) == a, name + ": same seed, other loss");
  CHECK_MSG(loss_of(*drop, fx.batch, true, 8, g) != a, name + ": another seed, same loss");
  for (const auto& site : sites) {
    std::unique_ptr<Model> one = with_config(name, {site});
    CHECK_MSG(loss_of(*one, fx.batch, true, 7, g) != base,
              name + ": " + site.first + " alone changed nothing in training");
  }
  std::printf("    %s: eval %.6f, training with dropout %.6f (seed 7)\n", name.c_str(), base, a);
}

// The training-mode backward against finite differences of the training-mode loss (the seed is
// fixed, so the masks are too), on a few elements of each weight family.
void check_gradients(const std::string& name,
                     const std::vector<std::pair<std::string, std::string>>& sites,
                     const std::vector<std::string>& params, float eps) {
  set_num_threads(2);
  s2s_test::FixtureBatch fx(fixture_dir(name));
  std::unique_ptr<Model> m = with_config(name, sites);
  Graph g;
  {
    g.reset();
    g.training = true;
    g.dropout_seed = 11;
    ForwardResult r = m->forward(g, fx.batch, LossReduction::Mean);
    g.backward(r.loss);
  }
  double worst = 0;
  for (const std::string& pn : params) {
    Param& p = m->params().get(pn);
    // The 8 largest-gradient elements (small ones are all noise in a finite difference).
    std::vector<int64_t> idx(static_cast<size_t>(p.value.numel()));
    for (size_t i = 0; i < idx.size(); ++i) idx[i] = int64_t(i);
    std::partial_sort(idx.begin(), idx.begin() + 8, idx.end(), [&](int64_t x, int64_t y) {
      return std::fabs(p.grad.f32()[x]) > std::fabs(p.grad.f32()[y]);
    });
    std::vector<float> vals, analytic;
    for (int k = 0; k < 8; ++k) {
      vals.push_back(p.value.f32()[idx[k]]);
      analytic.push_back(p.grad.f32()[idx[k]]);
    }
    auto loss = [&]() -> double {
      for (int k = 0; k < 8; ++k) p.value.f32()[idx[k]] = vals[k];
      return loss_of(*m, fx.batch, true, 11, g);
    };
    const double err = s2s_test::gradient_check(vals, analytic, loss, eps);
    for (int k = 0; k < 8; ++k) p.value.f32()[idx[k]] = vals[k];
    CHECK_ERR(err, 3e-2, name + " training-mode grad of " + pn + " vs finite differences");
    worst = std::fmax(worst, err);
  }
  std::printf("    %s: worst finite-difference error with dropout %.2e\n", name.c_str(), worst);
}

}  // namespace

TEST(gpt2_dropout_sites) {
  check_sites("gpt2", {{"embd_pdrop", "0.1"}, {"resid_pdrop", "0.1"}, {"attn_pdrop", "0.1"}});
}

TEST(llama_attention_dropout) { check_sites("llama-gqa", {{"attention_dropout", "0.1"}}); }

TEST(t5_dropout_rate_includes_attention_probabilities) {
  check_sites("t5-relu-tied", {{"dropout_rate", "0.1"}});
}

TEST(dropout_gradients_match_finite_differences) {
  check_gradients("gpt2", {{"embd_pdrop", "0.1"}, {"resid_pdrop", "0.1"}, {"attn_pdrop", "0.1"}},
                  {"transformer.h.0.attn.c_attn.weight", "transformer.h.1.mlp.c_proj.weight",
                   "transformer.wte.weight"},
                  1e-2f);
  check_gradients("llama-gqa", {{"attention_dropout", "0.2"}},
                  {"model.layers.0.self_attn.q_proj.weight", "model.layers.1.self_attn.v_proj.weight"},
                  1e-2f);
  check_gradients("t5-relu-tied", {{"dropout_rate", "0.1"}},
                  {"encoder.block.0.layer.0.SelfAttention.k.weight",
                   "decoder.block.1.layer.1.EncDecAttention.v.weight"},
                  2e-3f);  // ReLU: a smaller step crosses fewer kinks
}

TEST(config_reads_gpt2_and_llama_dropout_rates) {
  const std::string gpt2 = R"({"model_type": "gpt2", "n_embd": 8, "n_head": 2, "n_layer": 1)";
  ModelConfig c = parse_model_config(gpt2 + "}", "inline");
  CHECK(c.embd_dropout == 0.1f && c.resid_dropout == 0.1f && c.attention_dropout == 0.1f);
  c = parse_model_config(gpt2 + R"(, "attn_pdrop": 0.0, "resid_pdrop": 0.25})", "inline");
  CHECK(c.attention_dropout == 0.0f && c.resid_dropout == 0.25f && c.embd_dropout == 0.1f);
  CHECK_THROWS_CODE(parse_model_config(gpt2 + R"(, "attn_pdrop": 1})", "inline"), code::kConfig);
  CHECK_THROWS_CODE(parse_model_config(gpt2 + R"(, "embd_pdrop": "x"})", "inline"), code::kConfig);
  const std::string llama =
      R"({"model_type": "llama", "hidden_size": 8, "num_attention_heads": 2, "num_hidden_layers": 1)";
  CHECK(parse_model_config(llama + "}", "inline").attention_dropout == 0.0f);
  CHECK(parse_model_config(llama + R"(, "attention_dropout": 0.1})", "inline").attention_dropout ==
        0.1f);
  const std::string t5 = R"({"model_type": "t5", "d_model": 8, "num_heads": 2, "d_kv": 4)";
  CHECK(parse_model_config(t5 + R"(, "dropout_rate": 0.2})", "inline").attention_dropout == 0.2f);
}
