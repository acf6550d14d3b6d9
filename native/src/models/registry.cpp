// create_model: the one switch from a parsed config to its architecture.
#include <memory>

#include "s2s/error.h"
#include "s2s/models/model.h"
#include "s2s/models/t5.h"

namespace s2s {

std::unique_ptr<Model> create_model(const ModelConfig& config) {
  switch (config.arch) {
    case Architecture::T5: return std::make_unique<T5Model>(config);
    default: break;
  }
  fail(code::kArgument, "create_model", "expected a supported model_type, got '",
       config.model_type, "'");
}

}  // namespace s2s
