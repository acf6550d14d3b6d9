// optimizer_step: gradient scaling, global-norm clipping, AdamW, the bf16 compute copies and
// zeroing the gradients, in two passes over the parameters: scaled_grad_norm (read-only), then
// adamw_fused_update (scale, clip, update, re-cast and zero in one sweep). Same bits as running
// those steps one after another. Both run on the params' backend (the norm waits for it).
#include "s2s/train/optimizer.h"

#include <cmath>

#include "s2s/ops/adamw.h"
#include "s2s/ops/grad_norm.h"

namespace s2s {

OptimizerStepStats optimizer_step(ParamStore& params, const OptimizerConfig& config,
                                  int64_t step, double lr, float grad_scale,
                                  DynamicLossScaler* scaler) {
  S2S_REQUIRE(step >= 1, code::kArgument, "optimizer_step", "expected step >= 1, got ", step);
  std::vector<Param*> trainable = params.trainable();
  std::vector<Tensor> grads;
  for (Param* p : trainable) grads.push_back(p->grad);
  OptimizerStepStats stats;
  // The norm of float(grad * grad_scale), as if the gradients had been scaled in place first.
  if (scaler != nullptr) grad_scale *= scaler->inverse_scale();
  Backend& ops = params.backend();
  stats.grad_norm = ops.scaled_grad_norm(grads, grad_scale);
  stats.finite = std::isfinite(stats.grad_norm);
  if (scaler != nullptr) scaler->update(!stats.finite);  // backs off or grows the scale
  if (!stats.finite) {
    params.zero_grads();
    return stats;
  }
  const float clip_coef =
      config.max_grad_norm > 0 ? clip_coefficient(stats.grad_norm, config.max_grad_norm) : 1.0f;
  std::vector<AdamWFusedTensor> tensors;
  tensors.reserve(trainable.size());
  for (Param* p : trainable) {
    params.ensure_moments(*p);  // created on the first step
    // compute is the bf16 copy ParamStore::refresh_compute would re-cast (data == nullptr: none).
    tensors.push_back({p->value, p->grad, p->exp_avg, p->exp_avg_sq, p->compute, p->decay});
  }
  AdamWOptions o = config.adamw;
  o.lr = lr;
  ops.adamw_fused_update(tensors, step, o, grad_scale, clip_coef);
  return stats;
}

}  // namespace s2s
