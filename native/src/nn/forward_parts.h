// The forward halves that the fused pairs (nn::linear_gelu, nn::linear_split) share with the
// plain ops, whose backward steps the pairs replace with their own; and the residual's side of
// the fused residual adds' backward (nn::linear_residual, nn::dropout_residual_add).
#pragma once
#include <vector>

#include "s2s/nn/functional.h"

namespace s2s {
namespace nn {

// x as the GEMMs of a linear multiplying in dtype t read it: its shared rounded copy where it has
// one in t (nn::share_matmul_input), else its value.
const Tensor& matmul_operand(const Var* x, DType t);

// linear(x, w)'s output without a gradient of its own (nn::linear's forward, LoRA aside).
Var* linear_output(Graph& g, Var* x, const LinearWeights& w);

// split_columns(linear_output(x, w)) without the whole output: part p's columns from their own
// GEMM (the weight's columns of that part, its bias's slice), written in `out`. For a 16-bit
// out (the parts' consumers' dtype) the same values as rounding the whole f32 output, and the
// (N, sum) f32 output is neither written nor read back.
std::vector<Var*> linear_parts_output(Graph& g, Var* x, const LinearWeights& w,
                                      const std::vector<int64_t>& sizes, DType out,
                                      bool requires_grad);

// split_last's forward: xv's last dimension cut into parts of `sizes` columns, fresh Vars
// written in `out`.
std::vector<Var*> split_columns(Graph& g, const Tensor& xv, const std::vector<int64_t>& sizes,
                                DType out, bool requires_grad);

// x's gradient from the output gradient dy of a fused x + branch, after the branch's own
// backward has read dy: x takes dy's buffer as residual_add's x does (g.share_residual_gradient),
// else a copy, or dy added onto the gradient x already has.
void residual_gradient(Graph& g, Var* x, const Tensor& dy);

}  // namespace nn
}  // namespace s2s
