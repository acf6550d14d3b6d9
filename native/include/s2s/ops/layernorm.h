// layernorm: PyTorch nn.LayerNorm over the last dimension (GPT-2's ln_1/ln_2/ln_f), forward,
// backward and reference loops. Legend: N rows = B*T, C channels (the normalised last dim);
// inp may be (N,C) or (B,T,C) - any leading dims flatten to N rows.
#pragma once
#include "s2s/tensor.h"

namespace s2s {

// out = (inp - mean) * rstd * weight + bias, with mean and biased variance over C and
// rstd = 1 / sqrt(var + eps).
//   out    (N,C) f32, same shape as inp; may be inp (in place)
//   mean   (N,)  f32 written for the backward (any shape with N elements, e.g. (B,T));
//   rstd   (N,)  f32 likewise. Either may have data == nullptr when no backward follows.
//   inp    (N,C) f32;  weight (C,) f32;  bias (C,) f32 or data == nullptr for no bias.
//   eps >= 0 and finite (PyTorch default 1e-5), else S2S_ARGUMENT.
void layernorm_forward(const Tensor& out, const Tensor& mean, const Tensor& rstd,
                       const Tensor& inp, const Tensor& weight, const Tensor& bias, float eps);

// Gradients from dout (N,C), the forward's inp, weight and saved mean and rstd (N,).
// ACCUMULATES (+=) into dinp (N,C), dweight (C,), dbias (C,); the caller zeroes them. Any of
// them with data == nullptr is not needed and skipped (frozen norm, no bias, first layer).
// dweight/dbias sum over rows in per-thread chunks added in chunk order: bit-identical for a
// fixed thread count. overwrite_dinp = true: dinp is written (=) instead of accumulated and
// may hold garbage (a fresh gradient); dweight and dbias always accumulate.
void layernorm_backward(const Tensor& dinp, const Tensor& dweight, const Tensor& dbias,
                        const Tensor& dout, const Tensor& inp, const Tensor& weight,
                        const Tensor& mean, const Tensor& rstd, bool overwrite_dinp = false);

// Plain loops in double: the test oracles. Same arguments and semantics.
void layernorm_forward_reference(const Tensor& out, const Tensor& mean, const Tensor& rstd,
                                 const Tensor& inp, const Tensor& weight, const Tensor& bias,
                                 float eps);
void layernorm_backward_reference(const Tensor& dinp, const Tensor& dweight, const Tensor& dbias,
                                  const Tensor& dout, const Tensor& inp, const Tensor& weight,
                                  const Tensor& mean, const Tensor& rstd);

}  // namespace s2s
