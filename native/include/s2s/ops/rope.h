// rope: rotary position embedding in Hugging Face's rotate-half layout (Llama, Qwen2, SmolLM),
// forward and backward, plus plain reference loops (tests only).
// Legend: B batch, T time, H heads, D head dim (even), D/2 rotation pairs (i, i + D/2).
#pragma once
#include <cstdint>

#include "s2s/tensor.h"

namespace s2s {

// inv_freq[i] = 1 / theta^(2i/D) for i < D/2, in fp32 exactly as transformers builds it:
// (2i as fp32) / D in fp32, then powf, then 1/x in fp32.
void rope_inv_freq(float* inv_freq, int64_t D, float theta);

// out = x * cos + rotate_half(x) * sin, rotate_half(x) = cat(-x2, x1), with
// cos/sin = cos/sin(cat(freqs, freqs)), freqs[i] = pos * inv_freq[i].
// Angles as transformers computes them: pos and inv_freq in fp32, their product rounded to fp32
// (this matters at large positions); cos and sin of that fp32 angle are taken in double and
// rounded, i.e. within 1 ulp of torch's fp32 cos/sin.
//   out, inp   (B,T,H,D) float32 contiguous. out may be the same tensor as inp (in place);
//              partial overlap is not allowed.
//   positions  optional int32 (B,T), num_positions == B*T: the position of each token
//              (left-padded batches have shifted positions); nullptr (num_positions 0) means
//              0..T-1 for every row. Values must lie in
//              [0, 2^24) (exact in fp32); the offending index is named otherwise.
//   theta      rope_theta from config.json (10000 for Llama 2, 1e6 for Qwen2), > 0 and finite.
void rope_forward(const Tensor& out, const Tensor& inp, const int32_t* positions,
                  int64_t num_positions, float theta);

// dinp += R^T dout: the inverse rotation (angle -> -angle) applied to dout, ACCUMULATED into dinp
// (the caller zeroes it); dinp with data == nullptr is skipped. dinp must not overlap dout.
// overwrite = true: dinp is written (=) instead of accumulated and may hold garbage (a fresh
// gradient: no zero-fill pass, no read).
void rope_backward(const Tensor& dinp, const Tensor& dout, const int32_t* positions,
                   int64_t num_positions, float theta, bool overwrite = false);

// Plain loops in double over explicit (D,) cos/sin vectors and rotate_half (tests only).
void rope_forward_reference(const Tensor& out, const Tensor& inp, const int32_t* positions,
                            int64_t num_positions, float theta);
void rope_backward_reference(const Tensor& dinp, const Tensor& dout, const int32_t* positions,
                             int64_t num_positions, float theta);

}  // namespace s2s
