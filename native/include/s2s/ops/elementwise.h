// elementwise: the small arithmetic the graph needs between layers — residual adds, scaling,
// gradient accumulation, copies of strided column blocks. Shapes: any, same for every argument.
#pragma once
#include <cstdint>

#include "s2s/tensor.h"

namespace s2s {

// out = a + b. out may alias a or b.
void add_forward(const Tensor& out, const Tensor& a, const Tensor& b);
// dst += alpha * src (the backward of add and scale: gradients ACCUMULATE).
void axpy(const Tensor& dst, float alpha, const Tensor& src);
// out = x * s. out may alias x.
void scale_forward(const Tensor& out, const Tensor& x, float s);
// dst = src (a gradient's first writer copies instead of zero-filling and accumulating).
void copy_values(const Tensor& dst, const Tensor& src);

// Column blocks of row-major matrices: for each of `rows` rows,
//   copy_columns:       dst[r, 0:width] = src[r, col0:col0+width]   (src row stride src_cols)
//   add_to_columns:     dst[r, col0:col0+width] += src[r, 0:width]  (dst row stride dst_cols)
//   set_columns:        dst[r, col0:col0+width]  = src[r, 0:width], or 0 when src is null
// (GPT-2's fused q|k|v projection is split this way, and its gradient put back.)
void copy_columns(float* dst, const float* src, int64_t rows, int64_t src_cols, int64_t col0,
                  int64_t width);
void add_to_columns(float* dst, const float* src, int64_t rows, int64_t dst_cols, int64_t col0,
                    int64_t width);
void set_columns(float* dst, const float* src, int64_t rows, int64_t dst_cols, int64_t col0,
                 int64_t width);

}  // namespace s2s
