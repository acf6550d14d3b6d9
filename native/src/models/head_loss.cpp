// Model::head_and_loss: the LM head and the loss every architecture's forward() ends with, whole
// or chunked (Model::set_chunked_loss).
#include "s2s/models/model.h"

namespace s2s {

ForwardResult Model::head_and_loss(Graph& g, Var* x, const nn::LinearWeights& head,
                                   const int32_t* labels, int64_t N,
                                   LossReduction reduction) const {
  ForwardResult r;
  CrossEntropyOptions o;
  o.ignore_index = -100;
  o.reduction = reduction;
  if (labels != nullptr && chunked_loss_ && head.lora == nullptr && head.bias == nullptr) {
    r.loss = nn::linear_cross_entropy(g, x, head, labels, N, o, &r.count, loss_chunk_rows_);
    return r;
  }
  r.logits = nn::linear(g, x, head);  // (N,V)
  if (labels != nullptr) {
    r.loss = nn::cross_entropy(g, r.logits, g.indices(labels, N), N, o, &r.count);
  }
  return r;
}

}  // namespace s2s
