// Param and ParamStore: a model's weights by their Hugging Face names, with the gradient and
// AdamW moments of the trainable ones. Trainable values are fp32 master copies the store owns;
// frozen values may be views of other memory (a memory-mapped safetensors file) in any dtype the
// layers accept (bf16/f16 for linear and embedding weights). Frozen params hold no gradient.
// A matmul weight may also carry a bf16 or f16 compute copy of its fp32 value (the bf16 / fp16
// compute dtypes): the store keeps it equal to cast(value) through load/bind/set_trainable, and
// optimizer_step refreshes it after each update.
// Every tensor of a param is memory of the store's Backend (s2s/nn/backend.h): host memory on
// the CPU, device memory after move_to(a GPU backend). The store reads and writes it only through
// the backend (loads are uploads from host memory, casts and zero-fills are backend ops).
#pragma once
#include <cstdint>
#include <deque>
#include <initializer_list>
#include <string>
#include <unordered_map>
#include <vector>

#include "s2s/nn/backend.h"
#include "s2s/tensor.h"

namespace s2s {

struct Param {
  std::string name;          // e.g. "transformer.h.0.attn.c_attn.weight"
  Tensor value;              // f32 when trainable
  Tensor grad;               // f32, same shape; data == nullptr when frozen
  Tensor exp_avg, exp_avg_sq;  // AdamW moments; allocated at the first optimizer step
  bool trainable = false;
  bool decay = true;         // AdamW weight decay applies (HF Trainer: not biases, not norms)

  // bf16 / fp16 compute: when `compute_dtype` is BF16 or F16 (ParamStore::set_compute_dtype)
  // and value is in another dtype, `compute` is a tensor of that dtype and value's shape holding
  // cast(value) (round to nearest even), which nn::linear multiplies with instead of value (the
  // gradient still goes to the f32 grad). data == nullptr otherwise: no copy when value already
  // is in the compute dtype (a bound frozen view), and none at all in fp32 compute.
  Tensor compute;
  DType compute_dtype = DType::F32;

  // Owned storage behind value/grad/moments/compute, in the store's backend (empty when value is
  // a view of outside memory).
  Buffer owned_value, owned_grad, owned_moments, owned_compute;

  // The tensor a matmul reads: compute when present, else value.
  const Tensor& matmul_value() const { return compute.data != nullptr ? compute : value; }
};

class ParamStore {
 public:
  ParamStore() : backend_(cpu_backend_shared()) {}
  ParamStore(const ParamStore&) = delete;
  ParamStore& operator=(const ParamStore&) = delete;

  // Where the params' memory is (the CPU unless move_to was called).
  Backend& backend() const { return *backend_; }
  const std::shared_ptr<Backend>& backend_shared() const { return backend_; }
  // Copies every param's tensors (value, gradient, moments, compute copy) into `to`'s memory and
  // frees the host copies; views of outside memory become owned copies in their dtype. From a
  // host backend only (S2S_ARGUMENT otherwise). Gradients and moments keep their values.
  void move_to(std::shared_ptr<Backend> to);

  // A new fp32 param, zero-filled, owned by the store. Names are unique (S2S_ARGUMENT otherwise).
  Param& create(const std::string& name, std::initializer_list<int64_t> shape, bool decay = true);
  Param* find(const std::string& name);
  Param& get(const std::string& name);  // S2S_ARGUMENT naming the param when absent

  // Copies src (HOST memory, f32/bf16/f16, same shape) into p's own fp32 storage; the error
  // names p and both shapes.
  void load(Param& p, const Tensor& src);
  // Uses outside host memory (kept alive by the caller) as p's value and freezes p. On a device
  // backend the view is copied to an owned device tensor of its dtype instead.
  void bind(Param& p, const Tensor& view);
  // AdamW moments of p (both zero, one allocation) unless it has them.
  void ensure_moments(Param& p);
  // Trainable params get a zeroed fp32 gradient (and an owned fp32 copy of a bound value);
  // frozen ones drop gradient and moments.
  void set_trainable(Param& p, bool trainable);

  // The dtype p (a matmul weight) is multiplied in: BF16 or F16 allocates p.compute =
  // cast(p.value) when p.value is in another dtype (a trainable fp32 master, a frozen fp32 base,
  // a frozen bf16 view under fp16 compute, a frozen f16 view under bf16 compute); F32 frees it. load, bind and set_trainable keep the
  // copy in step with the value from then on.
  void set_compute_dtype(Param& p, DType dtype);
  // Re-casts p.compute from p.value (no-op without a copy). Call after writing p.value directly
  // (optimizer_step and merge_lora do).
  void refresh_compute(Param& p);
  // Bytes held by bf16 / f16 compute copies (0 in fp32 compute).
  int64_t compute_bytes() const;
  // Bytes behind the params, by role: values the store owns (in the backend's memory), values
  // that are views of outside memory (a memory-mapped frozen base), gradients, AdamW moments
  // (allocated at the first optimizer step) and compute copies.
  struct MemoryUse {
    int64_t values = 0, mapped_values = 0, grads = 0, moments = 0, compute = 0;
  };
  MemoryUse memory_use() const;

  std::vector<Param*> all();
  std::vector<Param*> trainable();
  void zero_grads();
  int64_t count_elements(bool trainable_only) const;
  // A double of the backend's memory where the optimizer step leaves the gradients' norm
  // (Backend::clipped_adamw_update), allocated on the first call.
  double* optimizer_norm();

 private:
  void sync_compute(Param& p);  // compute = cast(value), allocated or freed as the flags say
  Buffer zeroed(int64_t n);     // n fp32 zeros in the backend's memory
  // Declared before params_: the buffers are released (by params_'s destructor) first.
  std::shared_ptr<Backend> backend_;
  std::deque<Param> params_;  // deque: addresses stay valid as params are added
  std::unordered_map<std::string, Param*> by_name_;
  Buffer optimizer_norm_;
};

}  // namespace s2s
