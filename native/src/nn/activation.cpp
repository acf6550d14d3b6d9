// nn activations: gelu, relu, silu, the gated products (SwiGLU, GeGLU) and dropout. Their
// backward ops write a gradient nothing has written yet (Graph::grad_for_write's fresh one)
// instead of zero-filling it and accumulating: one pass over it instead of three.
#include "nn/forward_parts.h"
#include "s2s/nn/functional.h"

namespace s2s {
namespace nn {

// One-input elementwise layer: forward(ops, out, x), backward(ops, dx, dy, x, overwrite).
// bf16_grad: the op can write x's gradient in bf16 (Graph::grads_for_write's bf16_ok).
template <typename Forward, typename Backward>
static Var* unary(Graph& g, Var* x, Forward forward, Backward backward,
                  DType out = DType::F32, bool bf16_grad = false) {
  Var* y = g.output(x->value.ndim, x->value.shape, x->requires_grad, out);
  forward(g.ops(), y->value, x->value);
  if (x->requires_grad) {
    g.on_backward([&g, x, y, backward, bf16_grad] {
      const Tensor dy = g.grad_if_present(y);
      if (dy.data == nullptr) return;
      Tensor dx;
      const bool overwrite = g.grads_for_write({x}, &dx, bf16_grad);
      backward(g.ops(), dx, dy, x->value, overwrite);
    });
  }
  return y;
}

Var* gelu(Graph& g, Var* x, GeluApprox approximate, DType out) {
  return unary(
      g, x,
      [approximate](Backend& ops, const Tensor& o, const Tensor& i) {
        ops.gelu_forward(o, i, approximate);
      },
      [approximate](Backend& ops, const Tensor& dx, const Tensor& dy, const Tensor& i,
                    bool overwrite) { ops.gelu_backward(dx, dy, i, approximate, overwrite); },
      out);
}

Var* relu(Graph& g, Var* x, DType out) {
  return unary(
      g, x, [](Backend& ops, const Tensor& o, const Tensor& i) { ops.relu_forward(o, i); },
      [](Backend& ops, const Tensor& dx, const Tensor& dy, const Tensor& i, bool overwrite) {
        ops.relu_backward(dx, dy, i, overwrite);
      },
      out, /*bf16_grad=*/true);
}

Var* silu(Graph& g, Var* x) {
  return unary(
      g, x, [](Backend& ops, const Tensor& o, const Tensor& i) { ops.silu_forward(o, i); },
      [](Backend& ops, const Tensor& dx, const Tensor& dy, const Tensor& i, bool overwrite) {
        ops.silu_backward(dx, dy, i, overwrite);
      });
}

Var* swiglu(Graph& g, Var* gate, Var* up, DType out) {
  const bool needs_grad = gate->requires_grad || up->requires_grad;
  Var* y = g.output(gate->value.ndim, gate->value.shape, needs_grad, out);
  g.ops().swiglu_forward(y->value, gate->value, up->value);
  if (needs_grad) {
    g.on_backward([&g, gate, up, y] {
      const Tensor dy = g.grad_if_present(y);
      if (dy.data == nullptr) return;
      Tensor d[2];
      const bool overwrite = g.grads_for_write({gate, up}, d, /*bf16_ok=*/true);
      g.ops().swiglu_backward(d[0], d[1], dy, gate->value, up->value, overwrite);
    });
  }
  return y;
}

Var* geglu(Graph& g, Var* gate, Var* up, GeluApprox approximate, DType out) {
  const bool needs_grad = gate->requires_grad || up->requires_grad;
  Var* y = g.output(gate->value.ndim, gate->value.shape, needs_grad, out);
  g.ops().geglu_forward(y->value, gate->value, up->value, approximate);
  if (needs_grad) {
    g.on_backward([&g, gate, up, y, approximate] {
      const Tensor dy = g.grad_if_present(y);
      if (dy.data == nullptr) return;
      Tensor d[2];
      const bool overwrite = g.grads_for_write({gate, up}, d, /*bf16_ok=*/true);
      g.ops().geglu_backward(d[0], d[1], dy, gate->value, up->value, approximate, overwrite);
    });
  }
  return y;
}

Var* dropout_residual_add(Graph& g, Var* x, Var* branch, float p) {
  if (!g.training || p == 0.0f || !g.fuse_dropout_add || !g.ops().fuses_dropout_add() ||
      x->value.dtype != DType::F32 || branch->value.dtype != DType::F32) {
    return residual_add(g, x, dropout(g, branch, p));
  }
  S2S_REQUIRE(x->value.numel() == branch->value.numel(), code::kShape, "dropout_residual_add",
              "expected the branch ", branch->value.shape_string(),
              " to have the residual's shape ", x->value.shape_string());
  // The Philox stream advances as dropout's does, by one per element of the branch.
  const DropoutSeed seed = g.dropout_key();
  const uint64_t offset = g.dropout_offset;
  g.dropout_offset += static_cast<uint64_t>(branch->value.numel());
  Var* y = g.output(x->value.ndim, x->value.shape, x->requires_grad || branch->requires_grad);
  g.ops().dropout_add_forward(y->value, x->value, branch->value, p, seed, offset);
  if (y->requires_grad) {
    g.on_backward([&g, x, branch, y, p, seed, offset] {
      const Tensor dy = g.grad_if_present(y);
      if (dy.data == nullptr) return;
      // The branch's gradient from dy first, then x shares dy (residual_add's contract).
      const Graph::GradBuffer db = g.grad_for_write(branch);
      if (db.grad.data != nullptr) {
        g.ops().dropout_backward(db.grad, dy, p, seed, offset, db.fresh);
      }
      residual_gradient(g, x, dy);
    });
  }
  return y;
}

Var* dropout(Graph& g, Var* x, float p, DType out) {
  if (!g.training || p == 0.0f) return x;
  const DropoutSeed seed = g.dropout_key();
  const uint64_t offset = g.dropout_offset;
  g.dropout_offset += static_cast<uint64_t>(x->value.numel());
  Var* y = g.output(x->value.ndim, x->value.shape, x->requires_grad, out);
  g.ops().dropout_forward(y->value, x->value, p, seed, offset);
  if (x->requires_grad) {
    g.on_backward([&g, x, y, p, seed, offset] {
      const Tensor dy = g.grad_if_present(y);
      if (dy.data == nullptr) return;
      const Graph::GradBuffer dx = g.grad_for_write(x);
      g.ops().dropout_backward(dx.grad, dy, p, seed, offset, dx.fresh);
    });
  }
  return y;
}

}  // namespace nn
}  // namespace s2s
