// host_copy: a CPU model holding a device model's current weights, for the work that only runs
// on the host (generation: its KV cache and decoding loop are host code). Same architecture,
// compute dtype and LoRA adapters (attached, unmerged); every value is downloaded from the
// device once. A param the device holds in bf16/f16 (a frozen base weight kept in its file
// dtype) stays in that dtype, bound to memory the copy owns, so the copy multiplies exactly
// what the device model multiplies: its logits are the device model's up to the backends' own
// differences (bit for bit on the checked host backend, native/tests/test_models_device.cpp).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "s2s/models/lora.h"
#include "s2s/models/model.h"

namespace s2s {

struct HostCopy {
  std::vector<std::vector<uint8_t>> storage;  // first: destroyed after the model's views of it
  std::unique_ptr<Model> model;
  std::unique_ptr<LoraAdapter> adapter;  // when an unmerged adapter was given
};

// `adapter`: the one attached to `model` (nullptr or merged: none). Works from any backend
// (a CPU model is copied too). Throws what allocation or the backend's download throws.
HostCopy host_copy(Model& model, const LoraAdapter* adapter);

}  // namespace s2s
