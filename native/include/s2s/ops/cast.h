// cast: element type conversion between f32, bf16 and f16 (round to nearest even, NaN stays
// NaN, f16 overflow to Inf, subnormals kept), forward, backward, reference loops, and the raw
// pointer converters other ops use for scratch buffers (e.g. linear's bf16 path).
// Shapes: any; out and inp have the same shape.
#pragma once
#include <cstdint>

#include "s2s/tensor.h"

namespace s2s {

// out = inp converted to out.dtype. Any pair of {f32, bf16, f16}; equal dtypes copy. Both
// contiguous, same shape. bf16 <-> f16 goes through f32 exactly (one rounding).
void cast_forward(const Tensor& out, const Tensor& inp);

// dinp (f32) += dout converted to f32. dinp must be f32 (a bf16/f16 tensor gets no gradient);
// dout any dtype, same shape. ACCUMULATES; dinp.data == nullptr: nothing to do.
void cast_backward(const Tensor& dinp, const Tensor& dout);

// Element-at-a-time loops with dtype.h's scalar conversions: the test oracles.
void cast_forward_reference(const Tensor& out, const Tensor& inp);
void cast_backward_reference(const Tensor& dinp, const Tensor& dout);

// Raw converters (multi-threaded, vectorised, bit-identical to dtype.h's scalar functions).
void cast_f32_to_bf16(uint16_t* dst, const float* src, int64_t n);
void cast_bf16_to_f32(float* dst, const uint16_t* src, int64_t n);
void cast_f32_to_f16(uint16_t* dst, const float* src, int64_t n);
void cast_f16_to_f32(float* dst, const uint16_t* src, int64_t n);

}  // namespace s2s
