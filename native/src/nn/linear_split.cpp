// nn::linear_split: split_last(linear(x)), GPT-2's c_attn and its q, k, v, as one backward step
// where the backend fuses them (Backend::linear_split_backward): the linear's backward reads the
// parts' gradients where their consumers left them (the dbias column sum, which also writes the
// GEMMs' bf16 copy) instead of split_last's backward assembling them into an (N, 3C) f32
// gradient first, written and read once more.
#include "nn/forward_parts.h"

namespace s2s {
namespace nn {

std::vector<Var*> linear_split(Graph& g, Var* x, const LinearWeights& w,
                               const std::vector<int64_t>& sizes, DType out) {
  Param* weight = w.weight;
  Param* bias = w.bias;
  const bool needs_grad = x->requires_grad || g.tracks(weight) || g.tracks(bias);
  // LoRA reads the output's f32 gradient for its own products: the plain pair then.
  if (!needs_grad || w.lora != nullptr || !g.fuse_linear_split ||
      !g.ops().fuses_linear_split_backward() || sizes.empty() ||
      sizes.size() > size_t(Backend::kMaxLinearSplitParts)) {
    return split_last(g, linear(g, x, w), sizes, out);
  }
  // The linear's output: read by the split only, its gradient never made.
  Var* y = linear_output(g, x, w);
  std::vector<Var*> parts = split_columns(g, y->value, sizes, out, /*requires_grad=*/true);
  const WeightLayout layout = w.layout;
  g.on_backward([&g, x, parts, sizes, weight, bias, layout] {
    std::vector<Tensor> dparts;
    bool any = false;
    for (Var* part : parts) {
      dparts.push_back(g.grad_if_present(part));
      any = any || dparts.back().data != nullptr;
    }
    if (!any) return;
    const Tensor db = bias != nullptr ? bias->grad : Tensor{};
    const Graph::GradBuffer dx = g.grad_for_write(x);
    g.ops().linear_split_backward(dx.grad, weight->grad, db, dparts, sizes, x->value,
                                  weight->matmul_value(), layout, dx.fresh);
  });
  return parts;
}

}  // namespace nn
}  // namespace s2s
