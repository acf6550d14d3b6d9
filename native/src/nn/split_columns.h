// split_columns: the forward of nn::split_last, shared with nn::linear_split, whose backward is
// its own: xv's last dimension cut into parts of `sizes` columns, fresh Vars written in `out`.
#pragma once
#include <vector>

#include "s2s/nn/graph.h"

namespace s2s {
namespace nn {

std::vector<Var*> split_columns(Graph& g, const Tensor& xv, const std::vector<int64_t>& sizes,
                                DType out, bool requires_grad);

}  // namespace nn
}  // namespace s2s
