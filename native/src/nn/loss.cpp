// nn::cross_entropy: fused log-softmax + cross-entropy, the loss every model ends with.
#include "s2s/nn/functional.h"

namespace s2s {
namespace nn {

Var* cross_entropy(Graph& g, Var* logits, const int32_t* labels, int64_t num_labels,
                   const CrossEntropyOptions& options, int64_t* count_out) {
  const int64_t N = logits->value.shape[0];
  Var* loss = g.output({1}, logits->requires_grad);
  Tensor lse = g.tensor(DType::F32, {N});
  const CrossEntropyResult r =
      g.ops().cross_entropy_forward(lse, logits->value, labels, num_labels, options);
  const float loss_value = static_cast<float>(r.loss);
  g.ops().upload(loss->value.data, &loss_value, sizeof(float));
  if (count_out) *count_out = r.count;
  if (logits->requires_grad) {
    g.on_backward([&g, logits, loss, lse, labels, num_labels, options] {
      const Tensor dloss = g.grad_if_present(loss);
      if (dloss.data == nullptr) return;
      // Usually the only writer of the (N,V) logits gradient: overwrite it when fresh, in bf16
      // when the head only rounds it to bf16 anyway (bf16 compute).
      const Graph::GradBuffer dlogits = g.grad_for_write_bf16(logits);
      g.ops().cross_entropy_backward(dlogits.grad, logits->value, lse, labels, num_labels,
                             g.read_scalar(dloss), options, dlogits.fresh);
    });
  }
  return loss;
}

}  // namespace nn
}  // namespace s2s
