// silu: x * sigmoid(x) elementwise (torch.nn.functional.silu), forward, backward, references.
// Shapes: any; shown as (N,H), N rows = B*T, H hidden.
#pragma once
#include "s2s/tensor.h"

namespace s2s {

// out (N,H) = silu(inp (N,H)). f32, contiguous, same shape. out may be inp (in place).
void silu_forward(const Tensor& out, const Tensor& inp);

// dinp += dout * s (1 + x (1 - s)), s = sigmoid(x). ACCUMULATES; dinp.data == nullptr: skip.
// overwrite = true: dinp is written (=) instead of accumulated and may hold garbage (a fresh
// gradient: no zero-fill pass, no read).
void silu_backward(const Tensor& dinp, const Tensor& dout, const Tensor& inp,
                   bool overwrite = false);

void silu_forward_reference(const Tensor& out, const Tensor& inp);
void silu_backward_reference(const Tensor& dinp, const Tensor& dout, const Tensor& inp);

}  // namespace s2s
