// gelu: the GELU activation, elementwise, exact (erf) or tanh-approximated; forward, backward
// and the plain reference loops the tests compare them with.
// Shapes: any; shown as (N,H) with N rows = B*T and H the hidden size.
#pragma once
#include <cstdint>

#include "s2s/tensor.h"

namespace s2s {

// Which GELU. None: PyTorch gelu(approximate='none'), 0.5 x (1 + erf(x / sqrt 2)).
// Tanh: gelu(approximate='tanh') = HF gelu_new / gelu_pytorch_tanh,
//       0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
enum class GeluApprox : uint8_t { None = 0, Tanh = 1 };

// out (N,H) = gelu(inp (N,H)). f32, contiguous, same shape. out may be inp (in place).
void gelu_forward(const Tensor& out, const Tensor& inp, GeluApprox approximate);

// dinp (N,H) += dout (N,H) * gelu'(inp (N,H)). ACCUMULATES (the caller zeroes dinp);
// dinp.data == nullptr means the gradient is not needed and the call does nothing.
// dinp must not alias dout or inp. overwrite = true: dinp is written (=) instead of accumulated
// and may hold garbage (a fresh gradient: no zero-fill pass, no read).
void gelu_backward(const Tensor& dinp, const Tensor& dout, const Tensor& inp,
                   GeluApprox approximate, bool overwrite = false);

// Plain loops in double with libm erf/tanh: the test oracles. Same arguments and semantics.
void gelu_forward_reference(const Tensor& out, const Tensor& inp, GeluApprox approximate);
void gelu_backward_reference(const Tensor& dinp, const Tensor& dout, const Tensor& inp,
                             GeluApprox approximate);

}  // namespace s2s
