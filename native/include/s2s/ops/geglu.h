// geglu: the T5 v1.1 / flan-T5 gated-GELU product out = gelu(gate) * up (gelu_new, i.e. the
// tanh approximation, by default), gate and up separate tensors (wi_0 and wi_1 outputs);
// forward, backward, reference loops.
// Shapes: (N,H), N rows = B*T, H d_ff; any shape works as long as all agree.
#pragma once
#include "s2s/ops/gelu.h"
#include "s2s/tensor.h"

namespace s2s {

// out (N,H) = gelu(gate (N,H)) * up (N,H). f32, contiguous, same shape. out may alias gate or up.
void geglu_forward(const Tensor& out, const Tensor& gate, const Tensor& up,
                   GeluApprox approximate = GeluApprox::Tanh);

// dgate += dout * up * gelu'(gate);  dup += dout * gelu(gate).
// ACCUMULATES; a gradient with data == nullptr is skipped. Gradients must not alias inputs.
// overwrite = true: both are written (=) instead, and may hold garbage, and may be bf16 (as
// swiglu_backward).
void geglu_backward(const Tensor& dgate, const Tensor& dup, const Tensor& dout,
                    const Tensor& gate, const Tensor& up,
                    GeluApprox approximate = GeluApprox::Tanh, bool overwrite = false);

void geglu_forward_reference(const Tensor& out, const Tensor& gate, const Tensor& up,
                             GeluApprox approximate = GeluApprox::Tanh);
void geglu_backward_reference(const Tensor& dgate, const Tensor& dup, const Tensor& dout,
                              const Tensor& gate, const Tensor& up,
                              GeluApprox approximate = GeluApprox::Tanh);

}  // namespace s2s
