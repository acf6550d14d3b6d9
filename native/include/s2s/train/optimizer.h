// The optimizer step of training: scale the accumulated gradients (1 / counted tokens when the
// loss was summed over micro-batches), clip by global norm, AdamW on every trainable param
// (weight decay only where Param::decay), re-cast the bf16 compute copies (Param::compute) of the
// updated params, zero the gradients. A skipped step (non-finite gradient) changes no value.
#pragma once
#include <cstdint>

#include "s2s/nn/param.h"
#include "s2s/ops/adamw.h"

namespace s2s {

struct OptimizerConfig {
  AdamWOptions adamw;          // lr is per call (schedulers live in TypeScript)
  double max_grad_norm = 1.0;  // <= 0: no clipping
};

struct OptimizerStepStats {
  double grad_norm = 0;  // after scaling, before clipping (what HF Trainer logs)
  bool finite = true;    // false: the step was skipped (NaN/Inf gradient) and grads zeroed
};

// `step` counts optimizer steps from 1 (AdamW bias correction).
OptimizerStepStats optimizer_step(ParamStore& params, const OptimizerConfig& config,
                                  int64_t step, double lr, float grad_scale);

}  // namespace s2s
