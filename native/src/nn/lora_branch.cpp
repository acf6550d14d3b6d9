// LoRA's branch of a linear layer: the forward GEMM into the base output and the backward
// products (nn/lora_branch.h). A and B have no compute copy (Model::set_compute_dtype marks base
// weights only): their matmuls are tiny and stay fp32.
#include "nn/lora_branch.h"

namespace s2s {
namespace nn {

namespace {

// Rows [begin, begin + n) of a contiguous f32 matrix with `cols` columns (device memory too:
// the pointer is only offset).
Tensor f32_rows(const Tensor& m, int64_t begin, int64_t n, int64_t cols) {
  return Tensor::contiguous(static_cast<float*>(m.data) + begin * cols, DType::F32, {n, cols});
}

}  // namespace

LoraBranch lora_forward(Graph& g, Var* x, const Lora& lora, const Tensor& y) {
  S2S_REQUIRE(x->value.dtype == DType::F32, code::kDType, "nn.linear",
              "expected a float32 input under LoRA (its A product reads x), got ",
              dtype_name(x->value.dtype));
  // A (r, in) and B (out, r) are nn.Linear weights: the OutIn layout whatever the base layer's.
  LinearWeights a;
  a.weight = lora.A;
  Var* xa = linear(g, dropout(g, x, lora.dropout), a);
  LoraBranch br;
  br.xa = xa;
  br.B = lora.B;
  br.scaling = lora.scaling;
  br.needs_grad = xa->requires_grad || g.tracks(lora.B);
  const int64_t r = lora.B->value.shape[1], out = lora.B->value.shape[0];
  const int64_t n = xa->value.numel() / r;
  g.ops().matmul(f32_rows(y, 0, n, out), f32_rows(xa->value, 0, n, r), lora.B->value, false,
                 true, lora.scaling, 1.0f);
  return br;
}

void lora_backward(Graph& g, const LoraBranch& br, const Tensor& dy, int64_t col) {
  const int64_t r = br.B->value.shape[1], width = dy.shape[dy.ndim - 1];
  const int64_t n = dy.numel() / width;
  const Tensor dy2 = f32_rows(dy, 0, n, width);
  const Tensor xa = f32_rows(br.xa->value, 0, n, r);
  const float s = br.scaling;
  if (br.B->trainable) {
    g.ops().matmul(f32_rows(br.B->grad, col, width, r), dy2, xa, true, false, s, 1.0f);
  }
  const Tensor dxa = g.grad(br.xa);
  if (dxa.data != nullptr) {
    g.ops().matmul(f32_rows(dxa, 0, n, r), dy2, f32_rows(br.B->value, col, width, r), false,
                   false, s, 1.0f);
  }
}

}  // namespace nn
}  // namespace s2s
