// init_weights: each family's transformers `_init_weights` (see the header), by parameter name.
// The rule for a name is decided first for every parameter, so an unknown name fails before
// anything is written.
#include "s2s/models/init_weights.h"

#include <cmath>
#include <string>
#include <vector>

#include "core/philox.h"
#include "s2s/error.h"

namespace s2s {

namespace {

constexpr const char* kOp = "init_weights";

bool ends_with(const std::string& s, const char* suffix) {
  const std::string t(suffix);
  return s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0;
}

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

// What one parameter starts as: N(0, std) when normal, else every element = fill.
struct Rule {
  bool normal = false;
  double std = 0;
  float fill = 0;
};

Rule normal(double std) { return Rule{true, std, 0.0f}; }
Rule constant(float value) { return Rule{false, 0, value}; }

Rule t5_rule(const ModelConfig& c, const std::string& name) {
  const double f = c.initializer_factor;
  const double C = static_cast<double>(c.hidden_size), D = static_cast<double>(c.head_dim),
               H = static_cast<double>(c.num_heads), F = static_cast<double>(c.intermediate_size);
  if (ends_with(name, "layer_norm.weight")) return constant(static_cast<float>(f));
  if (name == "shared.weight" || name == "lm_head.weight") return normal(f);
  if (ends_with(name, "relative_attention_bias.weight")) return normal(f / std::sqrt(C));
  if (ends_with(name, ".q.weight")) return normal(f / std::sqrt(C * D));
  if (ends_with(name, ".k.weight") || ends_with(name, ".v.weight")) return normal(f / std::sqrt(C));
  if (ends_with(name, ".o.weight")) return normal(f / std::sqrt(H * D));
  if (ends_with(name, ".wi.weight") || ends_with(name, ".wi_0.weight") ||
      ends_with(name, ".wi_1.weight")) {
    return normal(f / std::sqrt(C));
  }
  if (ends_with(name, ".wo.weight")) return normal(f / std::sqrt(F));
  fail(code::kArgument, kOp, "t5: no initialisation rule for parameter '", name, "'");
}

Rule gpt2_rule(const ModelConfig& c, const std::string& name) {
  const double r = c.initializer_range;
  if (contains(name, "ln_")) return constant(ends_with(name, ".weight") ? 1.0f : 0.0f);
  if (ends_with(name, ".bias")) return constant(0.0f);
  if (ends_with(name, "c_proj.weight")) {
    return normal(r / std::sqrt(2.0 * static_cast<double>(c.num_layers)));
  }
  if (ends_with(name, ".weight")) return normal(r);  // wte, wpe, c_attn, c_fc, lm_head
  fail(code::kArgument, kOp, "gpt2: no initialisation rule for parameter '", name, "'");
}

Rule llama_rule(const ModelConfig& c, const std::string& name) {
  if (contains(name, "norm.weight")) return constant(1.0f);  // input/post_attention_layernorm, model.norm
  if (ends_with(name, ".bias")) return constant(0.0f);
  if (ends_with(name, ".weight")) return normal(c.initializer_range);
  fail(code::kArgument, kOp, c.model_type, ": no initialisation rule for parameter '", name, "'");
}

Rule rule_for(const ModelConfig& c, const std::string& name) {
  switch (c.arch) {
    case Architecture::T5: return t5_rule(c, name);
    case Architecture::Gpt2: return gpt2_rule(c, name);
    case Architecture::Llama:
    case Architecture::Qwen2: return llama_rule(c, name);
  }
  fail(code::kArgument, kOp, "no initialisation scheme for model_type '", c.model_type, "'");
}

}  // namespace

float philox_normal(uint64_t seed, uint64_t k) {
  // Uniforms in (0, 1]: (24-bit word + 1) * 2^-24, so log() never sees 0.
  const double u1 = (static_cast<double>(philox_word(seed, 2 * k) >> 8) + 1.0) / 16777216.0;
  const double u2 = static_cast<double>(philox_word(seed, 2 * k + 1) >> 8) / 16777216.0;
  return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2));
}

void init_weights(Model& model, uint64_t seed) {
  std::vector<Param*> params = model.params().all();
  std::vector<Rule> rules;
  rules.reserve(params.size());
  for (Param* p : params) {
    S2S_REQUIRE(p->value.dtype == DType::F32 && p->owned_value &&
                    model.params().backend().is_host(),
                code::kArgument, kOp, "expected parameter '", p->name,
                "' to be an fp32 tensor the model owns ",
                "(initialise a freshly created model on the host, not one bound to a file or moved "
                "to a device)");
    rules.push_back(rule_for(model.config(), p->name));
  }
  // Each parameter draws from its own stretch of the stream, in parameter order.
  uint64_t offset = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    float* w = params[i]->value.f32();
    const int64_t n = params[i]->value.numel();
    const Rule& r = rules[i];
    for (int64_t j = 0; j < n; ++j) {
      w[j] = r.normal ? static_cast<float>(r.std) * philox_normal(seed, offset + static_cast<uint64_t>(j))
                      : r.fill;
    }
    offset += static_cast<uint64_t>(n);
    model.params().refresh_compute(*params[i]);
  }
}

}  // namespace s2s
