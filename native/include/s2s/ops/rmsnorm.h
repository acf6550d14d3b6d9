// rmsnorm: HF LlamaRMSNorm / T5LayerNorm over the last dimension, out = x * rsqrt(mean(x^2) + eps)
// * weight (no mean subtraction, no bias); forward, backward and reference loops.
// Legend: N rows = B*T, C channels; inp may be (N,C) or (B,T,C).
#pragma once
#include "s2s/tensor.h"

namespace s2s {

//   out  (N,C) f32, same shape as inp; may be inp (in place)
//   rstd (N,)  f32 = 1 / sqrt(mean(x^2) + eps), saved for the backward (any shape with N
//              elements); data == nullptr when no backward follows.
//   inp  (N,C) f32;  weight (C,) f32.  eps >= 0 and finite (Llama 1e-5/1e-6, T5 1e-6).
void rmsnorm_forward(const Tensor& out, const Tensor& rstd, const Tensor& inp,
                     const Tensor& weight, float eps);

// ACCUMULATES into dinp (N,C) and dweight (C,); either with data == nullptr is skipped.
// dweight sums over rows in per-thread chunks added in chunk order (bit-identical for a fixed
// thread count). overwrite_dinp = true: dinp is written (=) instead of accumulated and may hold
// garbage (a fresh gradient); dweight always accumulates.
void rmsnorm_backward(const Tensor& dinp, const Tensor& dweight, const Tensor& dout,
                      const Tensor& inp, const Tensor& weight, const Tensor& rstd,
                      bool overwrite_dinp = false);

void rmsnorm_forward_reference(const Tensor& out, const Tensor& rstd, const Tensor& inp,
                               const Tensor& weight, float eps);
void rmsnorm_backward_reference(const Tensor& dinp, const Tensor& dweight, const Tensor& dout,
                                const Tensor& inp, const Tensor& weight, const Tensor& rstd);

}  // namespace s2s
