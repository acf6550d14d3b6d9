// LoRA's branch of a linear layer (PEFT: y = base(x) + lora_B(lora_A(dropout(x))) * scaling) as
// a forward and a backward half, so that nn::linear and nn::linear_split share it: linear hands
// the backward its output's whole gradient, linear_split each part's gradient where its consumer
// left it (the columns of B and of its gradient that the part covers).
#pragma once

#include "s2s/nn/functional.h"

namespace s2s {
namespace nn {

struct LoraBranch {
  Var* xa = nullptr;  // lora_A(dropout(x)), (..., r)
  Param* B = nullptr;
  float scaling = 0.0f;
  // Whether the backward half has anything to make (A's or B's gradient).
  bool needs_grad = false;
};

// Whether LoRA's branch on a layer reading x makes a gradient (A's, B's or x's); false without
// LoRA.
inline bool lora_needs_grad(const Graph& g, const Var* x, const Lora* lora) {
  return lora != nullptr && (x->requires_grad || g.tracks(lora->A) || g.tracks(lora->B));
}

// Adds scaling * lora_A(dropout(x)) B^T into y, the base layer's f32 output (..., out), in one
// GEMM with beta = 1 rather than three more activations (xa B^T, its scaled copy, the sum) and
// their gradients. y's gradient is then the sum's gradient, which the base layer's backward reads
// too; nothing reads y's value backwards.
LoraBranch lora_forward(Graph& g, Var* x, const Lora& lora, const Tensor& y);

// The branch's products for the gradient dy of the output's columns [col, col + dy's last dim):
// dB[col:] += scaling * dy^T xa and d(xa) += scaling * dy B[col:]. dy is f32 and contiguous.
void lora_backward(Graph& g, const LoraBranch& branch, const Tensor& dy, int64_t col);

}  // namespace nn
}  // namespace s2s
