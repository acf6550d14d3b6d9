// optimizer_step: gradient scaling, global-norm clipping, AdamW, the bf16 compute copies and
// zeroing the gradients, in two passes over the parameters: scaled_grad_norm (read-only), then
// adamw_fused_update (scale, clip, update, re-cast and zero in one sweep). Same bits as running
// those steps one after another.
#include "s2s/train/optimizer.h"

#include <cmath>
#include <cstring>

#include "s2s/ops/adamw.h"
#include "s2s/ops/grad_norm.h"

namespace s2s {

void ensure_moments(Param& p) {
  if (p.owned_moments) return;
  // Both moments in one zeroed allocation.
  const int64_t n = p.value.numel();
  p.owned_moments = make_aligned<float>(static_cast<size_t>(2 * n));
  std::memset(p.owned_moments.get(), 0, sizeof(float) * static_cast<size_t>(2 * n));
  p.exp_avg = Tensor::contiguous(p.owned_moments.get(), DType::F32, p.value.ndim, p.value.shape);
  p.exp_avg_sq =
      Tensor::contiguous(p.owned_moments.get() + n, DType::F32, p.value.ndim, p.value.shape);
}

OptimizerStepStats optimizer_step(ParamStore& params, const OptimizerConfig& config,
                                  int64_t step, double lr, float grad_scale) {
  S2S_REQUIRE(step >= 1, code::kArgument, "optimizer_step", "expected step >= 1, got ", step);
  std::vector<Param*> trainable = params.trainable();
  std::vector<Tensor> grads;
  for (Param* p : trainable) grads.push_back(p->grad);
  OptimizerStepStats stats;
  // The norm of float(grad * grad_scale), as if the gradients had been scaled in place first.
  stats.grad_norm = scaled_grad_norm(grads, grad_scale);
  stats.finite = std::isfinite(stats.grad_norm);
  if (!stats.finite) {
    params.zero_grads();
    return stats;
  }
  const float clip_coef =
      config.max_grad_norm > 0 ? clip_coefficient(stats.grad_norm, config.max_grad_norm) : 1.0f;
  std::vector<AdamWFusedTensor> tensors;
  tensors.reserve(trainable.size());
  for (Param* p : trainable) {
    ensure_moments(*p);  // created on the first step
    // compute is the bf16 copy ParamStore::refresh_compute would re-cast (data == nullptr: none).
    tensors.push_back({p->value, p->grad, p->exp_avg, p->exp_avg_sq, p->compute, p->decay});
  }
  AdamWOptions o = config.adamw;
  o.lr = lr;
  adamw_fused_update(tensors, step, o, grad_scale, clip_coef);
  return stats;
}

}  // namespace s2s
