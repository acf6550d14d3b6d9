// init_weights (random initialisation for training from scratch): the Philox normal sampler's
// moments, T5's per-tensor scheme, determinism by seed, and refusals (a bound view, a parameter
// no scheme knows).
#include <cmath>
#include <string>
#include <vector>

#include "harness.h"
#include "s2s/error.h"
#include "s2s/models/init_weights.h"
#include "s2s/models/lora.h"
#include "s2s/models/model.h"
#include "s2s/models/model_config.h"

using namespace s2s;

namespace {

struct Moments {
  double mean = 0, var = 0, kurtosis = 0;
};

Moments moments(const float* x, int64_t n) {
  Moments m;
  for (int64_t i = 0; i < n; ++i) m.mean += x[i];
  m.mean /= static_cast<double>(n);
  double m2 = 0, m4 = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = x[i] - m.mean;
    m2 += d * d;
    m4 += d * d * d * d;
  }
  m.var = m2 / static_cast<double>(n);
  m.kurtosis = (m4 / static_cast<double>(n)) / (m.var * m.var);
  return m;
}

const char* kT5 = R"({"model_type": "t5", "vocab_size": 300, "d_model": 64, "d_kv": 16, "d_ff": 256,
  "num_layers": 2, "num_heads": 4, "feed_forward_proj": "relu", "initializer_factor": 1.0})";

}  // namespace

TEST(philox_normal_is_standard_normal) {
  const int64_t n = 1 << 20;
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) x[static_cast<size_t>(i)] = philox_normal(123, static_cast<uint64_t>(i));
  const Moments m = moments(x.data(), n);
  // Standard errors at n = 2^20: mean 0.001, variance 0.0014, kurtosis ~0.005.
  CHECK(std::fabs(m.mean) < 0.005);
  CHECK(std::fabs(m.var - 1.0) < 0.007);
  CHECK(std::fabs(m.kurtosis - 3.0) < 0.03);
  CHECK(philox_normal(123, 5) == x[5]);
  CHECK(philox_normal(124, 5) != x[5]);
}

TEST(t5_scheme_and_seed) {
  const ModelConfig config = parse_model_config(kT5, "t5 test config");
  auto a = create_model(config);
  auto b = create_model(config);
  auto c = create_model(config);
  init_weights(*a, 9);
  init_weights(*b, 9);
  init_weights(*c, 10);
  const double C = 64, D = 16, H = 4, F = 256;
  const std::vector<std::pair<std::string, double>> expected = {
      {"shared.weight", 1.0},
      {"encoder.block.0.layer.0.SelfAttention.q.weight", 1.0 / std::sqrt(C * D)},
      {"encoder.block.1.layer.0.SelfAttention.k.weight", 1.0 / std::sqrt(C)},
      {"decoder.block.0.layer.1.EncDecAttention.v.weight", 1.0 / std::sqrt(C)},
      {"decoder.block.1.layer.0.SelfAttention.o.weight", 1.0 / std::sqrt(H * D)},
      {"encoder.block.0.layer.1.DenseReluDense.wi.weight", 1.0 / std::sqrt(C)},
      {"decoder.block.0.layer.2.DenseReluDense.wo.weight", 1.0 / std::sqrt(F)},
  };
  for (const auto& [name, std] : expected) {
    Param& p = a->params().get(name);
    const Moments m = moments(p.value.f32(), p.value.numel());
    CHECK_MSG(std::fabs(std::sqrt(m.var) / std - 1.0) < 0.05, name + ": std " + std::to_string(std::sqrt(m.var)));
    CHECK_MSG(std::fabs(m.mean) < 0.05 * std, name + ": mean " + std::to_string(m.mean));
  }
  bool same = true, differs = false;
  for (Param* p : a->params().all()) {
    const float* pa = p->value.f32();
    const float* pb = b->params().get(p->name).value.f32();
    const float* pc = c->params().get(p->name).value.f32();
    for (int64_t i = 0; i < p->value.numel(); ++i) {
      same = same && pa[i] == pb[i];
      differs = differs || pa[i] != pc[i];
    }
    if (p->name.find("layer_norm") != std::string::npos) {
      for (int64_t i = 0; i < p->value.numel(); ++i) CHECK(pa[i] == 1.0f);
    }
  }
  CHECK(same);
  CHECK(differs);
}

TEST(refuses_bound_views) {
  const ModelConfig config = parse_model_config(kT5, "t5 test config");
  auto m = create_model(config);
  Param& norm = m->params().get("encoder.final_layer_norm.weight");
  std::vector<float> outside(static_cast<size_t>(norm.value.numel()), 1.0f);
  m->params().bind(norm, Tensor::contiguous(outside.data(), DType::F32, norm.value.ndim, norm.value.shape));
  bool threw = false;
  try {
    init_weights(*m, 0);
  } catch (const Error& e) {
    threw = std::string(e.what()).find("encoder.final_layer_norm.weight") != std::string::npos &&
            e.code() == code::kArgument;
  }
  CHECK(threw);
  CHECK(outside[0] == 1.0f);
}

TEST(refuses_unknown_parameters) {
  const ModelConfig config = parse_model_config(kT5, "t5 test config");
  auto m = create_model(config);
  LoraAdapter adapter = apply_lora(*m, parse_lora_config(R"({"r": 2, "lora_alpha": 4, "target_modules": ["q"]})", "lora"), 0);
  bool threw = false;
  try {
    init_weights(*m, 0);
  } catch (const Error& e) {
    threw = std::string(e.what()).find("no initialisation rule") != std::string::npos;
  }
  CHECK(threw);
}
