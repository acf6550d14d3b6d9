// create_model: config.arch -> the architecture's factory (registry.h).
#include "models/registry.h"

namespace s2s {

std::unique_ptr<Model> create_model(const ModelConfig& config) {
  switch (config.arch) {
    case Architecture::Gpt2: return create_gpt2(config);
    case Architecture::Llama:
    case Architecture::Qwen2: return create_llama(config);
    case Architecture::T5: return create_t5(config);
  }
  fail(code::kConfig, "model", "model_type '", config.model_type, "' has no implementation yet");
}

}  // namespace s2s
