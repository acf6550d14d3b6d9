// nn::embedding: token (+ learned position) lookup.
#include "s2s/nn/functional.h"

namespace s2s {
namespace nn {

Var* embedding(Graph& g, const int32_t* ids, int64_t B, int64_t T, Param* wte, Param* wpe,
               const int32_t* positions) {
  const bool needs_grad = g.tracks(wte) || g.tracks(wpe);
  Var* y = g.output({B, T, wte->value.shape[1]}, needs_grad);
  const Tensor pos_table = wpe ? wpe->value : Tensor{};
  const int64_t num_pos = positions ? B * T : 0;
  g.ops().embedding_forward(y->value, wte->value, pos_table, ids, B * T, positions, num_pos);
  if (needs_grad) {
    g.on_backward([&g, y, wte, wpe, ids, B, T, positions, num_pos] {
      const Tensor dy = g.grad_if_present(y);
      if (dy.data == nullptr) return;
      g.ops().embedding_backward(wte->grad, wpe ? wpe->grad : Tensor{}, dy, ids, B * T, positions,
                         num_pos);
    });
  }
  return y;
}

}  // namespace nn
}  // namespace s2s
