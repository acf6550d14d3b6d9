// nn::linear_gelu: gelu(linear(x)), GPT-2's c_fc and its activation, as one backward step where
// the backend fuses them (Backend::linear_gelu_backward): gelu's gradient is made as the linear's
// backward reads it (the dbias column sum, which also writes the GEMMs' bf16 copy) instead of
// being written in f32 and read back, the largest gradient of the block after the logits'.
#include "nn/forward_parts.h"

namespace s2s {
namespace nn {

Var* linear_gelu(Graph& g, Var* x, const LinearWeights& w, GeluApprox approximate, DType out) {
  Param* weight = w.weight;
  Param* bias = w.bias;
  const bool needs_grad = x->requires_grad || g.tracks(weight) || g.tracks(bias);
  // LoRA reads the pre-activation's f32 gradient for its own products: the plain pair then.
  if (!needs_grad || w.lora != nullptr || !g.fuse_linear_gelu ||
      !g.ops().fuses_linear_gelu_backward()) {
    return gelu(g, linear(g, x, w), approximate, out);
  }
  // The pre-activation: kept for the backward, its gradient never made.
  Var* pre = linear_output(g, x, w);
  Var* y = g.output(pre->value.ndim, pre->value.shape, /*requires_grad=*/true, out);
  g.ops().gelu_forward(y->value, pre->value, approximate);
  const WeightLayout layout = w.layout;
  g.on_backward([&g, x, y, pre, weight, bias, layout, approximate] {
    const Tensor dy = g.grad_if_present(y);
    if (dy.data == nullptr) return;
    const Tensor db = bias != nullptr ? bias->grad : Tensor{};
    const Graph::GradBuffer dx = g.grad_for_write(x);
    g.ops().linear_gelu_backward(dx.grad, weight->grad, db, dy, pre->value, x->value,
                                 weight->matmul_value(), layout, approximate, dx.fresh);
  });
  return y;
}

}  // namespace nn
}  // namespace s2s
