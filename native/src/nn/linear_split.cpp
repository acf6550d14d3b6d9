// nn::linear_split: split_last(linear(x)), GPT-2's c_attn and its q, k, v, as one backward step
// where the backend fuses them (Backend::linear_split_backward): the linear's backward reads the
// parts' gradients where their consumers left them (the dbias column sum, which also writes the
// GEMMs' bf16 copy) instead of split_last's backward assembling them into an (N, 3C) f32
// gradient first, written and read once more. Under LoRA the branch's products read the parts
// too, each against the rows of B that its columns come from (nn/lora_branch.h). Where the parts
// are wanted in 16 bits (the tensor-core attention's q, k, v) and there is no LoRA, each part
// comes from its own GEMM, written in 16 bits (nn::linear_parts_output), and the (N, 3C) f32
// output is never made. nn::linear_for_attention is the one-part case (Llama's v, T5's q, k, v).
#include "nn/forward_parts.h"
#include "nn/lora_branch.h"

namespace s2s {
namespace nn {

std::vector<Var*> linear_split(Graph& g, Var* x, const LinearWeights& w,
                               const std::vector<int64_t>& sizes, DType out) {
  Param* weight = w.weight;
  Param* bias = w.bias;
  const bool base_needs_grad = x->requires_grad || g.tracks(weight) || g.tracks(bias);
  const Lora* lora = w.lora;
  // Each part from its own GEMM, written in the 16-bit `out` its consumers read (the values the
  // split would round the f32 output to): the (N, sum) f32 output is never written and read
  // back (GPT-2 124M at 16 x 1024 tokens: 0.3 GB a layer). Without gradients, nothing more.
  const bool parts_from_gemms = lora == nullptr && out != DType::F32;
  if (parts_from_gemms && !base_needs_grad && g.fuse_linear_split) {
    return linear_parts_output(g, x, w, sizes, out, /*requires_grad=*/false);
  }
  if ((!base_needs_grad && !lora_needs_grad(g, x, lora)) || !g.fuse_linear_split ||
      !g.ops().fuses_linear_split_backward() || sizes.empty() ||
      sizes.size() > size_t(Backend::kMaxLinearSplitParts)) {
    return split_last(g, linear(g, x, w), sizes, out);
  }
  std::vector<Var*> parts;
  LoraBranch branch;
  if (parts_from_gemms) {
    parts = linear_parts_output(g, x, w, sizes, out, /*requires_grad=*/true);
  } else {
    // The linear's output: read by the split only, its gradient never made.
    Var* y = linear_output(g, x, w);
    if (lora != nullptr) branch = lora_forward(g, x, *lora, y->value);
    parts = split_columns(g, y->value, sizes, out, /*requires_grad=*/true);
  }
  const WeightLayout layout = w.layout;
  g.on_backward([&g, x, parts, sizes, weight, bias, layout, base_needs_grad, branch] {
    std::vector<Tensor> dparts;
    bool any = false;
    for (Var* part : parts) {
      dparts.push_back(g.grad_if_present(part));
      any = any || dparts.back().data != nullptr;
    }
    if (!any) return;
    if (base_needs_grad) {
      const Tensor db = bias != nullptr ? bias->grad : Tensor{};
      const Graph::GradBuffer dx = g.grad_for_write(x);
      const Tensor& wt = weight->matmul_value();
      g.ops().linear_split_backward(dx.grad, weight->grad, db, dparts, sizes,
                                    matmul_operand(x, wt.dtype), wt, layout, dx.fresh);
    }
    if (branch.needs_grad) {
      int64_t col = 0;
      for (size_t i = 0; i < dparts.size(); ++i) {
        if (dparts[i].data != nullptr) lora_backward(g, branch, dparts[i], col);
        col += sizes[i];
      }
    }
  });
  return parts;
}

Var* linear_for_attention(Graph& g, Var* x, const LinearWeights& w, DType out) {
  if (out == DType::F32 || w.lora != nullptr) return linear(g, x, w);
  return linear_split(g, x, w, {w.out_features()}, out)[0];
}

}  // namespace nn
}  // namespace s2s
