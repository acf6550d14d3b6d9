// Model::head_and_loss: the LM head and the loss every architecture's forward() ends with, whole
// or chunked (Model::set_chunked_loss, or one chunk with padded rows: Graph::loss_only);
// Model::counted_labels, the count that loss will report.
#include <algorithm>

#include "s2s/models/model.h"

namespace s2s {

namespace {
constexpr int32_t kIgnored = -100;  // a label that is no target (Batch::labels, as HF's)
}

ForwardResult Model::head_and_loss(Graph& g, Var* x, const nn::LinearWeights& head,
                                   const int32_t* labels, int64_t N,
                                   LossReduction reduction) const {
  ForwardResult r;
  CrossEntropyOptions o;
  o.ignore_index = kIgnored;
  o.reduction = reduction;
  if (labels != nullptr && head.lora == nullptr && head.bias == nullptr) {
    if (chunked_loss_) {
      r.loss = nn::linear_cross_entropy(g, x, head, labels, N, o, &r.count, loss_chunk_rows_);
      return r;
    }
    // Only the loss is read, on a backend whose GEMMs want the logits' rows padded: one chunk,
    // laid out so (Graph::loss_only).
    const int64_t V = head.out_features();
    if (g.loss_only && g.ops().aligned_row_stride(V) != V) {
      const int64_t one_chunk = std::max<int64_t>(N, 1);
      r.loss = nn::linear_cross_entropy(g, x, head, labels, N, o, &r.count, one_chunk);
      return r;
    }
  }
  r.logits = nn::linear(g, x, head);  // (N,V)
  if (labels != nullptr) {
    r.loss = nn::cross_entropy(g, r.logits, g.indices(labels, N), N, o, &r.count, labels);
  }
  return r;
}

int64_t Model::counted_labels(const Batch& batch) const {
  if (batch.labels == nullptr) return 0;
  // A decoder predicts token t + 1 at position t (decoder::shifted_labels): each row's first
  // label is never a target. T5's decoder input is the shifted sequence, its labels are not.
  const bool shifted = !is_encoder_decoder();
  const int64_t rows = batch.B, cols = shifted ? batch.T : batch.Td;
  int64_t count = 0;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t t = shifted ? 1 : 0; t < cols; ++t) {
      count += batch.labels[r * cols + t] != kIgnored;
    }
  }
  return count;
}

}  // namespace s2s
