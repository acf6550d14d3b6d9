// nn::add, nn::scale, nn::split_last: residuals, rescaling and splitting fused projections.
#include "s2s/nn/functional.h"
#include "s2s/ops/elementwise.h"

namespace s2s {
namespace nn {

Var* add(Graph& g, Var* a, Var* b) {
  const bool needs_grad = a->requires_grad || b->requires_grad;
  Var* y = g.output(a->value.ndim, a->value.shape, needs_grad);
  add_forward(y->value, a->value, b->value);
  if (needs_grad) {
    g.on_backward([&g, a, b, y] {
      const Tensor dy = g.grad_if_present(y);
      if (dy.data == nullptr) return;
      if (a->requires_grad) axpy(g.grad(a), 1.0f, dy);
      if (b->requires_grad) axpy(g.grad(b), 1.0f, dy);
    });
  }
  return y;
}

Var* scale(Graph& g, Var* x, float s) {
  Var* y = g.output(x->value.ndim, x->value.shape, x->requires_grad);
  scale_forward(y->value, x->value, s);
  if (x->requires_grad) {
    g.on_backward([&g, x, y, s] {
      const Tensor dy = g.grad_if_present(y);
      if (dy.data != nullptr) axpy(g.grad(x), s, dy);
    });
  }
  return y;
}

std::vector<Var*> split_last(Graph& g, Var* x, const std::vector<int64_t>& sizes) {
  const Tensor& xv = x->value;
  const int64_t cols = xv.shape[xv.ndim - 1];
  const int64_t rows = xv.numel() / cols;
  int64_t total = 0;
  for (int64_t s : sizes) total += s;
  S2S_REQUIRE(total == cols, code::kShape, "split_last", "expected sizes summing to ", cols,
              ", got ", total);
  std::vector<Var*> parts;
  int64_t col0 = 0;
  for (int64_t width : sizes) {
    int64_t shape[kMaxDims];
    for (int i = 0; i < xv.ndim; ++i) shape[i] = xv.shape[i];
    shape[xv.ndim - 1] = width;
    Var* part = g.output(xv.ndim, shape, x->requires_grad);
    copy_columns(part->value.f32(), xv.f32(), rows, cols, col0, width);
    if (x->requires_grad) {
      g.on_backward([&g, x, part, rows, cols, col0, width] {
        const Tensor dp = g.grad_if_present(part);
        if (dp.data != nullptr) add_to_columns(g.grad(x).f32(), dp.f32(), rows, cols, col0, width);
      });
    }
    parts.push_back(part);
    col0 += width;
  }
  return parts;
}

}  // namespace nn
}  // namespace s2s
