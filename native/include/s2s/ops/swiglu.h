// swiglu: the Llama gated MLP product out = silu(gate) * up, with gate and up separate tensors
// (the outputs of gate_proj and up_proj); forward, backward, reference loops.
// Shapes: (N,H), N rows = B*T, H intermediate size; any shape works as long as all agree.
#pragma once
#include "s2s/tensor.h"

namespace s2s {

// out (N,H) = silu(gate (N,H)) * up (N,H). f32, contiguous, same shape. out may alias gate or up.
void swiglu_forward(const Tensor& out, const Tensor& gate, const Tensor& up);

// dgate += dout * up * silu'(gate);  dup += dout * silu(gate).
// ACCUMULATES into both; either gradient with data == nullptr is not needed and skipped.
// Gradients must not alias the inputs. overwrite = true: both are written (=) instead of
// accumulated and may hold garbage (fresh gradients: no zero-fill pass, no read).
// Overwritten gradients may be bf16 (both present ones alike): the f32 values rounded to nearest
// even, what a bf16 linear's backward rounds them to (gate_proj and up_proj without a bias).
void swiglu_backward(const Tensor& dgate, const Tensor& dup, const Tensor& dout,
                     const Tensor& gate, const Tensor& up, bool overwrite = false);

void swiglu_forward_reference(const Tensor& out, const Tensor& gate, const Tensor& up);
void swiglu_backward_reference(const Tensor& dgate, const Tensor& dup, const Tensor& dout,
                               const Tensor& gate, const Tensor& up);

}  // namespace s2s
