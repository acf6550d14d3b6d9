// Loading a Hugging Face checkpoint (one model.safetensors, or the shards listed by
// model.safetensors.index.json) into a Model's ParamStore, by the params' HF names.
// Every param must be found (under its name, a tied alias, or without the base-model prefix
// "transformer." / "model." that checkpoints saved from the bare model lack); extra tensors
// (GPT-2's attn.bias / attn.masked_bias buffers) are ignored and reported.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "s2s/io/safetensors.h"
#include "s2s/models/model.h"

namespace s2s {

struct LoadOptions {
  // false (default): every param gets an fp32 copy it owns (files may be closed after loading).
  // true: linear and embedding weights of FROZEN params are bound as views of the mapped files
  // in the file's dtype (F32, BF16 or F16: linear multiplies an F16 weight with the input
  // rounded to fp16, fp32 accumulation), saving the copy; the caller must then keep `files`
  // alive as long as the model.
  // Norm gains and biases are always copied to fp32. Trainable params are always copied.
  bool keep_frozen_in_file_dtype = false;
  // With keep_frozen_in_file_dtype: whether F16 LINEAR weights are bound too. Set it for fp16
  // compute only: an F16 weight makes linear round its output gradient to fp16, which is safe
  // under the loss scaler of fp16 training and loses small gradients without it (fp32 and bf16
  // compute widen F16 linear weights to fp32 instead). F16 embedding tables are bound either way.
  bool f16_linear_views = false;
};

struct LoadReport {
  int64_t loaded = 0;               // params filled
  int64_t bound = 0;                // of which bound as views (keep_frozen_in_file_dtype)
  std::vector<std::string> unused;  // tensors in the files no param took, in file order
};

// Fills every param of `model` from `files` (several files: shards of one checkpoint).
// Errors (messages start "[weights] <file, or folder of the shards>: "):
//   S2S_FORMAT  a param's tensor is missing (names the tensor, the aliases tried and the files),
//               or a tensor appears in two files;
//   S2S_SHAPE   shape mismatch (names the file, the tensor, both shapes);
//   S2S_DTYPE   a param's tensor is not F32 / BF16 / F16.
LoadReport load_weights(Model& model, const std::vector<std::shared_ptr<SafetensorsFile>>& files,
                        const LoadOptions& options = {});

// Opens a model folder's weights: the shards named by model.safetensors.index.json's weight_map
// (in order of first appearance) when that file exists, else model.safetensors. S2S_IO when
// neither exists or a shard cannot be opened, S2S_FORMAT for a malformed index.
std::vector<std::shared_ptr<SafetensorsFile>> open_weight_files(const std::string& folder);

}  // namespace s2s
