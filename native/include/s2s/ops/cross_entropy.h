// cross_entropy: fused log-softmax + negative log-likelihood over vocabulary logits, as
// torch.nn.functional.cross_entropy(logits, labels, ignore_index, reduction); forward, backward
// and plain reference loops (tests only). Legend: N tokens (rows), V vocabulary size.
#pragma once
#include <cstdint>

#include "s2s/tensor.h"

namespace s2s {

enum class LossReduction { Mean, Sum };

struct CrossEntropyOptions {
  int32_t ignore_index = -100;  // rows with this label are not counted and get no gradient
  // Mean: sum over counted rows / count (PyTorch's default; NaN when count == 0, as PyTorch).
  // Sum: the plain sum; for gradient accumulation over micro-batches, use Sum on each and scale
  // dloss by 1 / (total count over the micro-batches).
  LossReduction reduction = LossReduction::Mean;
};

struct CrossEntropyResult {
  double loss;    // as chosen by reduction (rows summed in double, in row order)
  int64_t count;  // rows whose label != ignore_index
};

// logits (N,V) float32, contiguous or with padded rows (a 2-D view whose row stride is >= V,
// unit column stride: the chunked loss lays its logits out at Backend::aligned_row_stride; the
// pads are never read); dlogits below likewise (the pads never written); labels int32 (N,),
// num_labels must equal N, each in [0, V) or equal to
// ignore_index (the first offending row is named otherwise, S2S_ARGUMENT).
// lse (N,) float32, written: logsumexp of each counted row (0 for ignored rows), for backward.
// Streams each row once (chunked online logsumexp) without any (N,V) scratch.
CrossEntropyResult cross_entropy_forward(const Tensor& lse, const Tensor& logits,
                                         const int32_t* labels, int64_t num_labels,
                                         const CrossEntropyOptions& options = {});

// The forward's rows without their sum, for a caller that sums them itself and must not wait
// for each call (the chunked loss on a GPU: one download for every chunk, not one per chunk).
// lse as above; label_logit (N,) float32, written: logits[i, labels[i]] (0 for ignored rows).
// Labels are checked as above on the CPU; on a GPU a bad one is raised at the next synchronise.
void cross_entropy_rows(const Tensor& lse, const Tensor& label_logit, const Tensor& logits,
                        const int32_t* labels, int64_t num_labels, int32_t ignore_index);
// The sum of the counted rows' losses, double(lse_i) - double(label_logit_i), in row order (host
// arrays): the sum cross_entropy_forward reduces, to the bit.
double cross_entropy_row_sum(const float* lse, const float* label_logit, const int32_t* labels,
                             int64_t num_labels, int32_t ignore_index);
// The loss cross_entropy_forward returns, made from cross_entropy_rows' values and written to
// loss (one float32) where they lie, for a caller that reads it later (a GPU then sums on the
// device and nothing waits): cross_entropy_row_sum, divided by the counted rows for Mean (NaN
// when none), rounded to float32 once.
void cross_entropy_loss(const Tensor& loss, const Tensor& lse, const Tensor& label_logit,
                        const int32_t* labels, int64_t num_labels,
                        const CrossEntropyOptions& options = {});

// dlogits (N,V) += (softmax(logits) - onehot(label)) * dloss / count   (Mean)
//               += (softmax(logits) - onehot(label)) * dloss           (Sum)
// for counted rows; ignored rows are left untouched (their gradient is zero). ACCUMULATES into
// dlogits (the caller zeroes it); dlogits with data == nullptr is skipped. dlogits must not be
// the logits buffer (checked). With Mean and count == 0 nothing is added.
// overwrite = true: dlogits is write-only instead (=, not +=; ignored rows, and every row when
// count == 0, are written with zeros), for a fresh uninitialised gradient buffer.
// dlogits may be bfloat16 when overwrite is true: each value is computed in fp32 exactly as
// above and rounded to nearest even (cast_f32_to_bf16), for a consumer that would round the
// fp32 gradient to bf16 anyway (a bf16-compute linear layer); half the bytes written and read.
void cross_entropy_backward(const Tensor& dlogits, const Tensor& logits, const Tensor& lse,
                            const int32_t* labels, int64_t num_labels, float dloss,
                            const CrossEntropyOptions& options = {}, bool overwrite = false);

// Plain double-precision loops (tests only); same conventions.
CrossEntropyResult cross_entropy_forward_reference(const Tensor& lse, const Tensor& logits,
                                                   const int32_t* labels, int64_t num_labels,
                                                   const CrossEntropyOptions& options = {});
void cross_entropy_backward_reference(const Tensor& dlogits, const Tensor& logits,
                                      const int32_t* labels, int64_t num_labels, float dloss,
                                      const CrossEntropyOptions& options = {});

}  // namespace s2s
