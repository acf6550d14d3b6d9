// TracedBackend's folding of the argument types that are not plain values.
#include "nn/traced_backend.h"

namespace s2s {

uint64_t TracedBackend::fingerprint() const {
  // xxHash64's merge and avalanche over the four lanes and the word count: every lane's every
  // bit reaches every bit of the result.
  uint64_t h = rotl(lanes_[0], 1) + rotl(lanes_[1], 7) + rotl(lanes_[2], 12) + rotl(lanes_[3], 18);
  for (const uint64_t lane : lanes_) {
    h ^= rotl(lane * kP2, 31) * kP1;
    h = h * kP1 + 0x85EBCA77C2B2AE63ull;
  }
  h += words_;
  h ^= h >> 33;
  h *= kP2;
  h ^= h >> 29;
  h *= 0x165667B19E3779F9ull;
  return h ^ (h >> 32);
}

void TracedBackend::mix(const Tensor& t) {
  mix(t.data);
  // dtype, rank and layout in one word; row-major strides (every one, size-1 dims' too, which
  // Tensor::is_contiguous lets differ) follow from the shape.
  bool contiguous = true;
  int64_t stride = 1;
  for (int i = t.ndim - 1; i >= 0; --i) {
    contiguous = contiguous && t.strides[i] == stride;
    stride *= t.shape[i];
  }
  mix_word(uint64_t(t.dtype) | uint64_t(uint32_t(t.ndim)) << 8 | uint64_t(contiguous) << 40);
  for (int i = 0; i < t.ndim; ++i) mix(t.shape[i]);
  if (!contiguous) {
    for (int i = 0; i < t.ndim; ++i) mix(t.strides[i]);
  }
}

void TracedBackend::mix(const DropoutSeed& s) {
  // A seed in device memory is an input, as an uploaded array is: its address is the call's.
  mix(s.on_device != nullptr);
  if (s.on_device != nullptr) {
    mix(s.on_device);
  } else {
    mix(s.value);
  }
}

void TracedBackend::mix(const AttentionOptions& o) {
  mix(o.causal);
  mix(o.scale.has_value());
  mix(o.scale.value_or(0.0f));
  mix(o.dropout_p);
  mix(o.dropout_seed);
  mix(o.dropout_offset);
  mix(o.products);
}

void TracedBackend::mix(const CrossEntropyOptions& o) {
  mix(o.ignore_index);
  mix(o.reduction);
}

void TracedBackend::mix(const T5RelativePositionOptions& o) {
  mix(o.bidirectional);
  mix(o.max_distance);
  mix(o.q_offset);
}

void TracedBackend::mix(const AdamWOptions& o) {
  mix(o.lr);
  mix(o.beta1);
  mix(o.beta2);
  mix(o.eps);
  mix(o.weight_decay);
}

void TracedBackend::mix(const AdamWFusedTensor& t) {
  mix(t.param);
  mix(t.grad);
  mix(t.exp_avg);
  mix(t.exp_avg_sq);
  mix(t.compute);
  mix(t.decay);
}

}  // namespace s2s
