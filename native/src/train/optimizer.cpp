// optimizer_step: gradient scaling, global-norm clipping, AdamW, the bf16 compute copies and
// zeroing the gradients, in two passes over the parameters: the scaled norm (read-only), then
// the fused update (scale, clip, update, re-cast and zero in one sweep), both queued by
// Backend::clipped_adamw_update. Same bits as running those steps one after another. The host
// waits once, after queueing both, to read the norm (finish_optimizer_step).
#include "s2s/train/optimizer.h"

#include <cmath>

#include "s2s/ops/adamw.h"

namespace s2s {

void queue_optimizer_step(ParamStore& params, const OptimizerConfig& config, int64_t step,
                          double lr, float grad_scale, const DynamicLossScaler* scaler) {
  S2S_REQUIRE(step >= 1, code::kArgument, "optimizer_step", "expected step >= 1, got ", step);
  // The norm of float(grad * grad_scale), as if the gradients had been scaled in place first.
  if (scaler != nullptr) grad_scale *= scaler->inverse_scale();
  std::vector<AdamWFusedTensor> tensors;
  for (Param* p : params.trainable()) {
    // Created on the first step (zeros, as a skipped first step's state would save them).
    params.ensure_moments(*p);
    // compute is the bf16 copy ParamStore::refresh_compute would re-cast (data == nullptr: none).
    tensors.push_back({p->value, p->grad, p->exp_avg, p->exp_avg_sq, p->compute, p->decay});
  }
  AdamWOptions o = config.adamw;
  o.lr = lr;
  params.backend().clipped_adamw_update(tensors, step, o, grad_scale, config.max_grad_norm,
                                        params.optimizer_norm());
}

OptimizerStepStats finish_optimizer_step(ParamStore& params, DynamicLossScaler* scaler) {
  Backend& ops = params.backend();
  ops.synchronize();  // raises a bad batch before the scaler changes
  OptimizerStepStats stats;
  ops.download(&stats.grad_norm, params.optimizer_norm(), sizeof(stats.grad_norm));
  stats.finite = std::isfinite(stats.grad_norm);
  if (scaler != nullptr) scaler->update(!stats.finite);  // backs off or grows the scale
  return stats;
}

OptimizerStepStats optimizer_step(ParamStore& params, const OptimizerConfig& config,
                                  int64_t step, double lr, float grad_scale,
                                  DynamicLossScaler* scaler) {
  queue_optimizer_step(params, config, step, lr, grad_scale, scaler);
  return finish_optimizer_step(params, scaler);
}

}  // namespace s2s
