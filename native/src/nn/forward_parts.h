// The forward halves that the fused pairs (nn::linear_gelu, nn::linear_split) share with the
// plain ops, whose backward steps the pairs replace with their own.
#pragma once
#include <vector>

#include "s2s/nn/functional.h"

namespace s2s {
namespace nn {

// linear(x, w)'s output without a gradient of its own (nn::linear's forward, LoRA aside).
Var* linear_output(Graph& g, Var* x, const LinearWeights& w);

// split_last's forward: xv's last dimension cut into parts of `sizes` columns, fresh Vars
// written in `out`.
std::vector<Var*> split_columns(Graph& g, const Tensor& xv, const std::vector<int64_t>& sizes,
                                DType out, bool requires_grad);

}  // namespace nn
}  // namespace s2s
