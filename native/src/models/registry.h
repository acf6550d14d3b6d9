// One factory per architecture; create_model (registry.cpp) switches over them. Internal.
#pragma once
#include <memory>

#include "s2s/models/model.h"

namespace s2s {

std::unique_ptr<Model> create_gpt2(const ModelConfig& config);
std::unique_ptr<Model> create_llama(const ModelConfig& config);  // Llama and Qwen2
std::unique_ptr<Model> create_t5(const ModelConfig& config);

}  // namespace s2s
