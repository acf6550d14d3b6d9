// optimizer_step: gradient scaling, global-norm clipping and AdamW over a ParamStore, then the
// bf16 compute copies of the updated masters re-cast.
#include "s2s/train/optimizer.h"

#include <cmath>
#include <cstring>

#include "s2s/ops/elementwise.h"
#include "s2s/ops/grad_norm.h"

namespace s2s {

OptimizerStepStats optimizer_step(ParamStore& params, const OptimizerConfig& config,
                                  int64_t step, double lr, float grad_scale) {
  S2S_REQUIRE(step >= 1, code::kArgument, "optimizer_step", "expected step >= 1, got ", step);
  std::vector<Param*> trainable = params.trainable();
  std::vector<Tensor> grads;
  for (Param* p : trainable) {
    if (grad_scale != 1.0f) scale_forward(p->grad, p->grad, grad_scale);
    grads.push_back(p->grad);
  }
  OptimizerStepStats stats;
  stats.grad_norm = config.max_grad_norm > 0 ? clip_grad_norm(grads, config.max_grad_norm)
                                             : grad_norm(grads);
  stats.finite = std::isfinite(stats.grad_norm);
  if (stats.finite) {
    for (Param* p : trainable) {
      if (!p->owned_moments) {
        // Both moments in one zeroed allocation, created on the first step.
        const int64_t n = p->value.numel();
        p->owned_moments = make_aligned<float>(static_cast<size_t>(2 * n));
        std::memset(p->owned_moments.get(), 0, sizeof(float) * static_cast<size_t>(2 * n));
        p->exp_avg = Tensor::contiguous(p->owned_moments.get(), DType::F32, p->value.ndim,
                                        p->value.shape);
        p->exp_avg_sq = Tensor::contiguous(p->owned_moments.get() + n, DType::F32,
                                           p->value.ndim, p->value.shape);
      }
      AdamWOptions o = config.adamw;
      o.lr = lr;
      if (!p->decay) o.weight_decay = 0;
      adamw_update(p->value, p->grad, p->exp_avg, p->exp_avg_sq, step, o);
      params.refresh_compute(*p);  // bf16 compute copy = cast(updated master)
    }
  }
  params.zero_grads();
  return stats;
}

}  // namespace s2s
