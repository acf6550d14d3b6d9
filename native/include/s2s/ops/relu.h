// relu: max(x, 0) elementwise (T5 v1.0 feed-forward), forward, backward and reference loops.
// Shapes: any; shown as (N,H), N rows = B*T, H hidden. NaN in -> NaN out (as torch.relu).
#pragma once
#include "s2s/tensor.h"

namespace s2s {

// out (N,H) = relu(inp (N,H)). f32, contiguous, same shape. out may be inp (in place).
void relu_forward(const Tensor& out, const Tensor& inp);

// dinp (N,H) += dout * (inp > 0). ACCUMULATES; dinp.data == nullptr: nothing to do.
// The gradient at exactly 0 is 0 (PyTorch's choice). overwrite = true: dinp is written (=)
// instead of accumulated and may hold garbage (a fresh gradient: no zero-fill pass, no read).
void relu_backward(const Tensor& dinp, const Tensor& dout, const Tensor& inp,
                   bool overwrite = false);

void relu_forward_reference(const Tensor& out, const Tensor& inp);
void relu_backward_reference(const Tensor& dinp, const Tensor& dout, const Tensor& inp);

}  // namespace s2s
