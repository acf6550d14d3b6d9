// grad_norm / clip_grad_norm: the global L2 norm over a list of gradient tensors and
// torch.nn.utils.clip_grad_norm_-style clipping, plus reference loops (tests only).
#pragma once
#include <vector>

#include "s2s/tensor.h"

namespace s2s {

// sqrt(sum of squares over every element of every tensor), accumulated in double over fixed
// 64K-element blocks that are added in list-then-block order: the same bits at any thread count.
// Tensors must be float32 and contiguous; any shape. A Tensor with data == nullptr is skipped
// (a parameter without a gradient). NaN/Inf in a gradient give a NaN/Inf norm.
// (torch computes the norm in fp32; ours is the double result rounded once, within ~1e-7.)
double grad_norm(const std::vector<Tensor>& grads);

// grad_norm of the gradients as if each had first been multiplied by `scale` in fp32
// (scale_forward), without writing them: every element is squared as double(float(g * scale)),
// over the same blocks in the same order, so the result has the same bits as scale_forward on
// every gradient followed by grad_norm. scaled_grad_norm(grads, 1.0f) == grad_norm(grads).
double scaled_grad_norm(const std::vector<Tensor>& grads, float scale);

// The fp32 factor clip_grad_norm multiplies by for a finite total norm: float(max_norm /
// (total_norm + 1e-6)) when that is < 1, else 1.0f (multiplying by 1.0f changes no bits).
// max_norm must be finite and > 0 (S2S_ARGUMENT).
float clip_coefficient(double total_norm, double max_norm);

// Returns the total norm before clipping (as torch). When it is finite and
// clip_coef = max_norm / (total_norm + 1e-6) < 1, every gradient is multiplied by clip_coef
// (as float). A non-finite total norm is returned as is and the gradients are left untouched
// (the trainer stops on it). max_norm must be finite and > 0 (S2S_ARGUMENT).
double clip_grad_norm(const std::vector<Tensor>& grads, double max_norm);

// Plain loops in double (tests only).
double grad_norm_reference(const std::vector<Tensor>& grads);
double clip_grad_norm_reference(const std::vector<Tensor>& grads, double max_norm);

}  // namespace s2s
