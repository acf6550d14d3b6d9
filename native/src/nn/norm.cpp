// nn::layernorm and nn::rmsnorm: the ops plus the saved statistics their backward needs. The
// backward reads x, never y, so y may be stored in a linear's 16-bit dtype.
#include "s2s/nn/functional.h"

namespace s2s {
namespace nn {

static int64_t rows_of(const Tensor& x) { return x.numel() / x.shape[x.ndim - 1]; }

Var* layernorm(Graph& g, Var* x, Param* weight, Param* bias, float eps, DType out) {
  const bool needs_grad =
      x->requires_grad || g.tracks(weight) || g.tracks(bias);
  Var* y = g.output(x->value.ndim, x->value.shape, needs_grad, out);
  const int64_t n = rows_of(x->value);
  Tensor mean = g.tensor(DType::F32, {n});
  Tensor rstd = g.tensor(DType::F32, {n});
  g.ops().layernorm_forward(y->value, mean, rstd, x->value, weight->value,
                    bias ? bias->value : Tensor{}, eps);
  if (needs_grad) {
    g.on_backward([&g, x, y, weight, bias, mean, rstd] {
      const Tensor dy = g.grad_if_present(y);
      if (dy.data == nullptr) return;
      const Graph::GradBuffer dx = g.grad_for_write(x);  // fresh: written, not zero-filled
      g.ops().layernorm_backward(dx.grad, weight->grad, bias ? bias->grad : Tensor{}, dy,
                                 x->value, weight->value, mean, rstd, dx.fresh);
    });
  }
  return y;
}

Var* rmsnorm(Graph& g, Var* x, Param* weight, float eps, DType out) {
  const bool needs_grad = x->requires_grad || g.tracks(weight);
  Var* y = g.output(x->value.ndim, x->value.shape, needs_grad, out);
  Tensor rstd = g.tensor(DType::F32, {rows_of(x->value)});
  g.ops().rmsnorm_forward(y->value, rstd, x->value, weight->value, eps);
  if (needs_grad) {
    g.on_backward([&g, x, y, weight, rstd] {
      const Tensor dy = g.grad_if_present(y);
      if (dy.data == nullptr) return;
      const Graph::GradBuffer dx = g.grad_for_write(x);
      g.ops().rmsnorm_backward(dx.grad, weight->grad, dy, x->value, weight->value, rstd,
                               dx.fresh);
    });
  }
  return y;
}

}  // namespace nn
}  // namespace s2s
