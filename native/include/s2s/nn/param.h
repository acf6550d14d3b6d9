// Param and ParamStore: a model's weights by their Hugging Face names, with the gradient and
// AdamW moments of the trainable ones. Trainable values are fp32 master copies the store owns;
// frozen values may be views of other memory (a memory-mapped safetensors file) in any dtype the
// layers accept (bf16/f16 for linear and embedding weights). Frozen params hold no gradient.
#pragma once
#include <cstdint>
#include <deque>
#include <initializer_list>
#include <string>
#include <unordered_map>
#include <vector>

#include "s2s/arena.h"
#include "s2s/tensor.h"

namespace s2s {

struct Param {
  std::string name;          // e.g. "transformer.h.0.attn.c_attn.weight"
  Tensor value;              // f32 when trainable
  Tensor grad;               // f32, same shape; data == nullptr when frozen
  Tensor exp_avg, exp_avg_sq;  // AdamW moments; allocated at the first optimizer step
  bool trainable = false;
  bool decay = true;         // AdamW weight decay applies (HF Trainer: not biases, not norms)

  // Owned storage behind value/grad/moments (empty when value is a view of outside memory).
  AlignedPtr<float> owned_value, owned_grad, owned_moments;
};

class ParamStore {
 public:
  // A new fp32 param, zero-filled, owned by the store. Names are unique (S2S_ARGUMENT otherwise).
  Param& create(const std::string& name, std::initializer_list<int64_t> shape, bool decay = true);
  Param* find(const std::string& name);
  Param& get(const std::string& name);  // S2S_ARGUMENT naming the param when absent

  // Copies src (f32/bf16/f16, same shape) into p's own fp32 storage; the error names p and both
  // shapes.
  void load(Param& p, const Tensor& src);
  // Uses outside memory (kept alive by the caller) as p's value and freezes p.
  void bind(Param& p, const Tensor& view);
  // Trainable params get a zeroed fp32 gradient (and an owned fp32 copy of a bound value);
  // frozen ones drop gradient and moments.
  void set_trainable(Param& p, bool trainable);

  std::vector<Param*> all();
  std::vector<Param*> trainable();
  void zero_grads();
  int64_t count_elements(bool trainable_only) const;

 private:
  std::deque<Param> params_;  // deque: addresses stay valid as params are added
  std::unordered_map<std::string, Param*> by_name_;
};

}  // namespace s2s
