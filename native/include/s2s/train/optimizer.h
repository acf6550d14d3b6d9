// The optimizer step of training: scale the accumulated gradients (1 / counted tokens when the
// loss was summed over micro-batches), clip by global norm, AdamW on every trainable param
// (weight decay only where Param::decay), re-cast the bf16 compute copies (Param::compute) of the
// updated params, zero the gradients. A skipped step (non-finite gradient) changes no value.
// fp16 training passes its DynamicLossScaler: the gradients were computed from a loss scaled by
// scaler->scale(), so they are unscaled on the way (grad_scale times the inverse scale, as
// GradScaler.unscale_), a non-finite one skips the step, and the scaler updates its scale.
#pragma once
#include <cstdint>

#include "s2s/nn/param.h"
#include "s2s/ops/adamw.h"
#include "s2s/train/loss_scaler.h"

namespace s2s {

struct OptimizerConfig {
  AdamWOptions adamw;          // lr is per call (schedulers live in TypeScript)
  double max_grad_norm = 1.0;  // <= 0: no clipping
};

struct OptimizerStepStats {
  double grad_norm = 0;  // after scaling (and unscaling), before clipping (what HF Trainer logs)
  bool finite = true;    // false: the step was skipped (NaN/Inf gradient) and grads zeroed
};

// `step` counts applied optimizer steps from 1 (AdamW bias correction; a skipped step does not
// advance it, as torch's Adam state does not advance under a skipping GradScaler).
// scaler: nullptr, or the loss scaler whose scale() multiplied dloss in the backward passes
// since the last step; it is updated (update(!finite)) before this returns.
OptimizerStepStats optimizer_step(ParamStore& params, const OptimizerConfig& config,
                                  int64_t step, double lr, float grad_scale,
                                  DynamicLossScaler* scaler = nullptr);

// optimizer_step in two halves, for a caller that queues a step's work and then waits once (the
// trainer's step: forward, backward and update queued, then the loss and the norm read): the
// first queues the update on the params' backend without waiting for the norm
// (Backend::clipped_adamw_update: it stays in ParamStore::optimizer_norm); the second waits,
// raises what the device's kernels reported (a bad batch: then no weight has changed and the
// scaler is as it was), reads the norm and updates the scaler. optimizer_step is the two in turn.
void queue_optimizer_step(ParamStore& params, const OptimizerConfig& config, int64_t step,
                          double lr, float grad_scale, const DynamicLossScaler* scaler = nullptr);
OptimizerStepStats finish_optimizer_step(ParamStore& params, DynamicLossScaler* scaler = nullptr);

}  // namespace s2s
