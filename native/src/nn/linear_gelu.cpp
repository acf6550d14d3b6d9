// nn::linear_gelu: gelu(linear(x)), GPT-2's c_fc and its activation, as one backward step where
// the backend fuses them (Backend::linear_gelu_backward): gelu's gradient is made as the linear's
// backward reads it (the dbias column sum, which also writes the GEMMs' bf16 copy) instead of
// being written in f32 and read back, the largest gradient of the block after the logits'.
// Under LoRA the same pass stores that gradient in f32 too, for the branch's products only
// (nn/lora_branch.h), instead of gelu's backward writing it and the linear's reading it back.
#include "nn/forward_parts.h"
#include "nn/lora_branch.h"

namespace s2s {
namespace nn {

Var* linear_gelu(Graph& g, Var* x, const LinearWeights& w, GeluApprox approximate, DType out) {
  Param* weight = w.weight;
  Param* bias = w.bias;
  const bool base_needs_grad = x->requires_grad || g.tracks(weight) || g.tracks(bias);
  const Lora* lora = w.lora;
  if ((!base_needs_grad && !lora_needs_grad(g, x, lora)) || !g.fuse_linear_gelu ||
      !g.ops().fuses_linear_gelu_backward()) {
    return gelu(g, linear(g, x, w), approximate, out);
  }
  // The pre-activation (LoRA's product added in): kept for the backward, its gradient made there
  // only as the linear's backward reads it, and stored in f32 only for LoRA's products.
  Var* pre = linear_output(g, x, w);
  LoraBranch branch;
  if (lora != nullptr) branch = lora_forward(g, x, *lora, pre->value);
  Var* y = g.output(pre->value.ndim, pre->value.shape, /*requires_grad=*/true, out);
  g.ops().gelu_forward(y->value, pre->value, approximate);
  const WeightLayout layout = w.layout;
  g.on_backward([&g, x, y, pre, weight, bias, layout, approximate, base_needs_grad, branch] {
    const Tensor dy = g.grad_if_present(y);
    if (dy.data == nullptr) return;
    const Tensor db = bias != nullptr ? bias->grad : Tensor{};
    const Graph::GradBuffer dx =
        base_needs_grad ? g.grad_for_write(x) : Graph::GradBuffer{};
    Tensor dpre;  // the pre-activation's f32 gradient, for LoRA's products only
    if (branch.needs_grad) {
      const Tensor flat = g.tensor(DType::F32, {pre->value.numel()});
      dpre = Tensor::contiguous(flat.data, DType::F32, pre->value.ndim, pre->value.shape);
    }
    const Tensor& wt = weight->matmul_value();
    g.ops().linear_gelu_backward(dx.grad, weight->grad, db, dpre, dy, pre->value,
                                 matmul_operand(x, wt.dtype), wt, layout, approximate, dx.fresh);
    if (branch.needs_grad) lora_backward(g, branch, dpre, 0);
  });
  return y;
}

}  // namespace nn
}  // namespace s2s
