// adamw: one torch.optim.AdamW step (decoupled weight decay, bias-corrected moments), in place
// on fp32 tensors, plus a double-precision reference loop (tests only).
#pragma once
#include <cstdint>
#include <vector>

#include "s2s/tensor.h"

namespace s2s {

// Hyperparameters as Python floats (double); PyTorch's defaults.
struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;  // pass 0 for tensors excluded from decay (biases, norms)
};

// For every element, with t = step (1 for the first update):
//   p *= 1 - lr * wd
//   m  = beta1 m + (1 - beta1) g              (exp_avg)
//   v  = beta2 v + (1 - beta2) g^2            (exp_avg_sq)
//   p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// i.e. m_hat / (sqrt(v_hat) + eps), computed as PyTorch's CPU kernels do: bias corrections and
// step size in double, the per-element arithmetic in fp32 with the fused multiply-adds of its
// add_/addcmul_ kernels. The result equals torch 1.13's single-tensor AdamW bit for bit (on an
// FMA CPU; see test_ops_train.cpp) and is the same on every ISA path.
// param, grad, exp_avg, exp_avg_sq: float32, contiguous, one shape; param, exp_avg, exp_avg_sq
// are updated in place (moments start at zero). Throws S2S_ARGUMENT for step < 1, lr < 0,
// beta outside [0, 1), eps < 0 or weight_decay < 0 (as torch's constructor does).
// Elementwise and split into fixed chunks: deterministic at any thread count.
void adamw_update(const Tensor& param, const Tensor& grad, const Tensor& exp_avg,
                  const Tensor& exp_avg_sq, int64_t step, const AdamWOptions& options);

// One tensor of a fused optimizer step. param, grad, exp_avg, exp_avg_sq as for adamw_update;
// compute: a bf16 or f16 tensor of param's shape (contiguous) re-cast from the updated param, or
// data == nullptr for none; decay false: weight_decay 0 for this tensor.
struct AdamWFusedTensor {
  Tensor param, grad, exp_avg, exp_avg_sq;
  Tensor compute;
  bool decay = true;
};

// The optimizer step's per-parameter work in one pass over memory. For every tensor, with the
// same bits as the unfused sequence
//   scale_forward(grad, grad, grad_scale)               (skipped by callers when 1: same bits)
//   grad *= clip_coef  (fp32, as clip_grad_norm; clip_coef 1.0f when not clipping)
//   adamw_update(param, grad, exp_avg, exp_avg_sq, step, options with decay applied)
//   cast_forward(compute, param)                         (when compute.data != nullptr)
//   grad = 0
// i.e. g = float(float(grad * grad_scale) * clip_coef) feeds adamw_update's arithmetic. Runs as
// one parallel_for over fixed 32K-element blocks of all tensors; elementwise, so the result is
// the same at any thread count and on every ISA path. Validates every tensor first (as
// adamw_update, plus compute: bf16 or f16, param's shape, contiguous) and writes nothing on an
// error.
void adamw_fused_update(const std::vector<AdamWFusedTensor>& tensors, int64_t step,
                        const AdamWOptions& options, float grad_scale, float clip_coef);

// The formula above in double, element by element (tests only).
void adamw_update_reference(const Tensor& param, const Tensor& grad, const Tensor& exp_avg,
                            const Tensor& exp_avg_sq, int64_t step, const AdamWOptions& options);

}  // namespace s2s
