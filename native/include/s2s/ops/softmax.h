// softmax along the last dimension (numerically stable: the row max is subtracted first);
// forward, backward, reference loops. Shapes: (N,C) = any leading dims flattened to N rows,
// C = the last dimension (e.g. (B,T,V) logits or (B,NH,T,T) attention scores).
#pragma once
#include "s2s/tensor.h"

namespace s2s {

// out (N,C) = softmax(inp (N,C)) row by row. f32, contiguous, same shape; out may be inp.
// A row holding NaN gives NaN; a row of all -inf gives NaN (as PyTorch).
void softmax_forward(const Tensor& out, const Tensor& inp);

// dinp (N,C) += out * (dout - sum_row(dout * out)), from the forward's output `out`.
// ACCUMULATES; dinp.data == nullptr: nothing to do. dinp must not alias dout or out.
void softmax_backward(const Tensor& dinp, const Tensor& dout, const Tensor& out);

void softmax_forward_reference(const Tensor& out, const Tensor& inp);
void softmax_backward_reference(const Tensor& dinp, const Tensor& dout, const Tensor& out);

}  // namespace s2s
