// The optimizer's state on disk, so a resumed run continues with the same AdamW moments: one
// safetensors file holding "<param name>.exp_avg" and "<param name>.exp_avg_sq" (F32, the
// param's shape) for every trainable param, and the optimizer step in the metadata
// ("step", plus "format": "s2s-train/adamw"). Written atomically (temporary file, fsync, rename).
#pragma once
#include <cstdint>
#include <string>

#include "s2s/nn/param.h"

namespace s2s {

// Writes the moments of every trainable param (zeros for a param that has not been stepped yet,
// which is what its first step would start from). `step` is the last optimizer step taken.
void save_optimizer_state(const std::string& path, ParamStore& params, int64_t step);

// Reads a file written by save_optimizer_state into the trainable params' moments (allocating
// them) and returns its step. The file must hold exactly the trainable params, each with both
// moments: S2S_FORMAT names the file and the missing or unexpected tensor (and a missing or bad
// "step"), S2S_SHAPE a shape that disagrees, S2S_DTYPE a tensor that is not F32, S2S_IO an
// unreadable file. Nothing is changed when an error is thrown.
int64_t load_optimizer_state(const std::string& path, ParamStore& params);

}  // namespace s2s
