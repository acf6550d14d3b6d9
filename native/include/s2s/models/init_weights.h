// Random initialisation of a freshly created model, for training from scratch. Each family
// follows its transformers `_init_weights` (what `AutoModel.from_config` starts from):
//   t5:           shared / untied lm_head N(0, f); q N(0, f (C D)^-1/2); k, v N(0, f C^-1/2);
//                 o N(0, f (H D)^-1/2); relative_attention_bias N(0, f C^-1/2);
//                 wi, wi_0, wi_1 N(0, f C^-1/2); wo N(0, f F^-1/2); layer norms f
//                 (f = initializer_factor, C d_model, D d_kv, H num_heads, F d_ff);
//   gpt2:         every weight N(0, r), the two c_proj weights N(0, r / sqrt(2 n_layer)) (GPT-2's
//                 residual scaling); biases 0; LayerNorm weight 1, bias 0 (r = initializer_range);
//   llama, qwen2: every weight N(0, r); biases 0; RMSNorm weight 1.
// Values come from the Philox stream keyed by the seed (torch's generator is not reproduced), so
// one seed gives the same weights on every machine and thread count; the distributions match.
#pragma once
#include <cstdint>

#include "s2s/models/model.h"

namespace s2s {

// Overwrites every parameter of `model` (fp32, owned) with the family's initial values.
// S2S_ARGUMENT when a parameter is not fp32-owned (a bound frozen view) or its name is not one
// the family's scheme knows (so a new architecture cannot be initialised by accident).
void init_weights(Model& model, uint64_t seed);

// The k-th N(0, 1) sample of the Philox stream keyed by `seed` (Box-Muller over words 2k, 2k+1).
float philox_normal(uint64_t seed, uint64_t k);

}  // namespace s2s
