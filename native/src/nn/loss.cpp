// nn::cross_entropy: fused log-softmax + cross-entropy, the loss every model ends with.
#include "nn/host_labels.h"
#include "s2s/nn/functional.h"

namespace s2s {
namespace nn {

Var* cross_entropy(Graph& g, Var* logits, const int32_t* labels, int64_t num_labels,
                   const CrossEntropyOptions& options, int64_t* count_out,
                   const int32_t* host_labels) {
  const int64_t N = logits->value.shape[0];
  Var* loss = g.output({1}, logits->requires_grad);
  Tensor lse = g.tensor(DType::F32, {N});
  // The backward's seed known already (Graph::known_dloss): the logits' gradient is written with
  // the loss, from the same read of the logits (Backend::cross_entropy_forward_backward). Usually
  // the only writer of the (N,V) logits gradient: overwritten, in bf16 when the head only rounds
  // it to bf16 anyway (bf16 compute). The loss's backward runs first, so writing it now is
  // writing it first.
  const bool ahead = logits->requires_grad && g.known_dloss.has_value();
  const Graph::GradBuffer dlogits =
      ahead ? g.grad_for_write_bf16(logits) : Graph::GradBuffer{};
  if (g.loss_on_device && host_labels != nullptr && logits->value.ndim == 2 && num_labels == N) {
    // The loss stays in tensor memory (Graph::loss_on_device): the rows' lse and label logits,
    // then their sum where they lie; the calls of cross_entropy_forward(_backward), to the bit.
    const int64_t count = check_and_count_labels(host_labels, N, logits->value.shape[1],
                                                 options.ignore_index, "nn.cross_entropy");
    if (count_out) *count_out = count;
    const Tensor label_logit = g.tensor(DType::F32, {N});
    if (ahead && dlogits.fresh) {
      // cross_entropy_backward's scale for Mean (rounded once), as a Sum's dloss.
      const float scale = options.reduction == LossReduction::Mean
                              ? static_cast<float>(double(*g.known_dloss) / double(count))
                              : *g.known_dloss;
      g.ops().cross_entropy_rows_backward(lse, label_logit, dlogits.grad, logits->value, labels,
                                          N, options.ignore_index, scale);
    } else {
      g.ops().cross_entropy_rows(lse, label_logit, logits->value, labels, N,
                                 options.ignore_index);
    }
    g.ops().cross_entropy_loss(loss->value, lse, label_logit, labels, N, options);
  } else {
    const CrossEntropyResult r =
        ahead && dlogits.fresh
            ? g.ops().cross_entropy_forward_backward(lse, dlogits.grad, logits->value, labels,
                                                     num_labels, *g.known_dloss, options)
            : g.ops().cross_entropy_forward(lse, logits->value, labels, num_labels, options);
    g.write_scalar(loss, static_cast<float>(r.loss));
    if (count_out) *count_out = r.count;
  }
  if (!logits->requires_grad) return loss;
  if (ahead && dlogits.fresh) {
    g.on_backward([&g, loss, planned = *g.known_dloss] {
      // The gradient is in already: a backward seeded otherwise would leave it wrong.
      const bool seeded = g.grad_if_present(loss).data != nullptr;
      const float d = g.grad_scalar(loss);
      S2S_REQUIRE(seeded && d == planned, code::kInternal, "nn.cross_entropy",
                  "the backward's seed ", d, " is not the ", planned,
                  " Graph::known_dloss promised the forward");
    });
    return loss;
  }
  g.on_backward([&g, logits, loss, lse, labels, num_labels, options] {
    const Tensor dloss = g.grad_if_present(loss);
    if (dloss.data == nullptr) return;
    const Graph::GradBuffer dlogits = g.grad_for_write_bf16(logits);
    g.ops().cross_entropy_backward(dlogits.grad, logits->value, lse, labels, num_labels,
                                   g.grad_scalar(loss), options, dlogits.fresh);
  });
  return loss;
}

}  // namespace nn
}  // namespace s2s
