// Dynamic loss scaling for fp16 training, with the semantics of torch.cuda.amp.GradScaler
// (torch/amp/grad_scaler.py and the _amp_update_scale_ kernel in aten/.../AmpKernels.cu):
// multiply the loss (in practice dloss) by scale(), backpropagate, then look at the scaled
// gradients. If any is Inf/NaN the optimizer step is skipped and the scale is multiplied by
// backoff_factor; after growth_interval consecutive good steps it is multiplied by growth_factor
// (unless that would overflow fp32). Plain host arithmetic: the same object drives the CPU and
// CUDA paths, and bf16 training (fp32 range) does not need it (enabled = false: scale 1, never
// skips).
#pragma once
#include <cstdint>

namespace s2s {

struct LossScalerOptions {
  bool enabled = true;
  float init_scale = 65536.0f;  // 2^16, torch's default
  float growth_factor = 2.0f;   // > 1
  float backoff_factor = 0.5f;  // in (0, 1)
  int64_t growth_interval = 2000;  // >= 1
};

// What a checkpoint saves to resume the same scale schedule (GradScaler.state_dict's
// "scale" and "_growth_tracker").
struct LossScalerState {
  float scale = 65536.0f;
  int64_t growth_tracker = 0;
};

class DynamicLossScaler {
 public:
  // Throws S2S_ARGUMENT for a non-finite or non-positive init_scale, growth_factor <= 1,
  // backoff_factor outside (0, 1) or growth_interval < 1.
  explicit DynamicLossScaler(const LossScalerOptions& options = {});

  // The factor the loss (dloss) is multiplied by: 1 when disabled.
  float scale() const { return options_.enabled ? state_.scale : 1.0f; }
  // The factor that unscales the gradients, as an fp32 operand (GradScaler.unscale_ multiplies
  // by the fp32 reciprocal of the fp32 scale): pass it to the optimizer as grad_scale.
  float inverse_scale() const;

  // After a backward: found_inf = some scaled gradient is Inf/NaN (e.g. a non-finite grad norm).
  // Returns true when the optimizer step must be applied, false when it must be skipped; then
  // updates the scale as GradScaler.update() does. Disabled: always true, nothing changes.
  bool update(bool found_inf);

  int64_t skipped_steps() const { return skipped_; }  // steps refused since construction
  const LossScalerState& state() const { return state_; }
  // Restores a checkpointed state (scale finite and > 0, tracker in [0, growth_interval)).
  void load_state(const LossScalerState& state);
  const LossScalerOptions& options() const { return options_; }

 private:
  LossScalerOptions options_;
  LossScalerState state_;
  int64_t skipped_ = 0;
};

}  // namespace s2s
