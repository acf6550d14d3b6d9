// nn::add, nn::scale, nn::split_last: residuals, rescaling and splitting fused projections
// (split_columns, split_last's forward, is shared with nn::linear_split).
#include "nn/forward_parts.h"
#include "s2s/nn/functional.h"

namespace s2s {
namespace nn {

namespace {

// a + b with the backward of add (or of residual_add when `share`).
Var* add_of(Graph& g, Var* a, Var* b, bool share) {
  const bool needs_grad = a->requires_grad || b->requires_grad;
  Var* y = g.output(a->value.ndim, a->value.shape, needs_grad);
  g.ops().add(y->value, a->value, b->value);
  if (needs_grad) {
    g.on_backward([&g, a, b, y, share] {
      const Tensor dy = g.grad_if_present(y);
      if (dy.data == nullptr) return;
      // y's gradient is final here and nothing else reads it: b takes its buffer when b has no
      // gradient yet (the residual branch, usually), a gets a copy when its gradient is fresh;
      // only inputs that already hold a gradient accumulate. (a == b: b adopts dy, then a
      // accumulates dy onto it, 2 dy.) residual_add's a takes the buffer too where b did or
      // needs none: its contract makes b's producer read it before a's other gradients arrive.
      const bool b_adopted = b->requires_grad && g.adopt_grad(b, dy);
      const bool a_adopted = a->requires_grad && share && a != b &&
                             (b_adopted || !b->requires_grad) && g.adopt_grad(a, dy);
      if (a->requires_grad && !a_adopted) {
        const Graph::GradBuffer da = g.grad_for_write(a);
        if (da.fresh) g.ops().copy_values(da.grad, dy);
        else g.ops().axpy(da.grad, 1.0f, dy);
      }
      if (b->requires_grad && !b_adopted) {
        // Not adopted: b already has a gradient, or b is a checkpointed segment's input
        // (Graph::adopt_grad); a fresh one is a copy, so dy's bits either way.
        const Graph::GradBuffer db = g.grad_for_write(b);
        if (db.fresh) g.ops().copy_values(db.grad, dy);
        else g.ops().axpy(db.grad, 1.0f, dy);
      }
    });
  }
  return y;
}

}  // namespace

Var* add(Graph& g, Var* a, Var* b) { return add_of(g, a, b, false); }

Var* residual_add(Graph& g, Var* x, Var* branch) {
  return add_of(g, x, branch, g.share_residual_gradient);
}

void residual_gradient(Graph& g, Var* x, const Tensor& dy) {
  if (!x->requires_grad || (g.share_residual_gradient && g.adopt_grad(x, dy))) return;
  const Graph::GradBuffer dx = g.grad_for_write(x);
  if (dx.fresh) g.ops().copy_values(dx.grad, dy);
  else g.ops().axpy(dx.grad, 1.0f, dy);
}

Var* scale(Graph& g, Var* x, float s) {
  Var* y = g.output(x->value.ndim, x->value.shape, x->requires_grad);
  g.ops().scale(y->value, x->value, s);
  if (x->requires_grad) {
    g.on_backward([&g, x, y, s] {
      const Tensor dy = g.grad_if_present(y);
      if (dy.data == nullptr) return;
      const Graph::GradBuffer dx = g.grad_for_write(x);
      if (dx.fresh) g.ops().scale(dx.grad, dy, s);
      else g.ops().axpy(dx.grad, s, dy);
    });
  }
  return y;
}

std::vector<Var*> split_columns(Graph& g, const Tensor& xv, const std::vector<int64_t>& sizes,
                                DType out, bool requires_grad) {
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
    Var* part = g.output(xv.ndim, shape, requires_grad, out);
    if (out == DType::F32) {
      g.ops().copy_columns(part->value.f32(), xv.f32(), rows, cols, col0, width);
    } else {
      g.ops().copy_columns_rounded(part->value, xv.f32(), rows, cols, col0, width);
    }
    parts.push_back(part);
    col0 += width;
  }
  return parts;
}

std::vector<Var*> split_last(Graph& g, Var* x, const std::vector<int64_t>& sizes, DType out) {
  std::vector<Var*> parts = split_columns(g, x->value, sizes, out, x->requires_grad);
  const int64_t cols = x->value.shape[x->value.ndim - 1];
  const int64_t rows = x->value.numel() / cols;
  if (x->requires_grad) {
    // One step for all parts (recorded before their consumers, so it runs after them): the
    // parts' gradients tile x's columns, so a fresh x gradient is written column block by
    // column block (zeros where a part got none) instead of zero-filled and accumulated.
    g.on_backward([&g, x, parts, rows, cols] {
      std::vector<Tensor> dps;
      bool any = false;
      for (Var* part : parts) {
        dps.push_back(g.grad_if_present(part));
        any = any || dps.back().data != nullptr;
      }
      if (!any) return;
      const Graph::GradBuffer dx = g.grad_for_write(x);
      int64_t c0 = 0;
      for (size_t i = 0; i < parts.size(); ++i) {
        const int64_t width = parts[i]->value.shape[parts[i]->value.ndim - 1];
        const float* dp = dps[i].data != nullptr ? dps[i].f32() : nullptr;
        if (dx.fresh) g.ops().set_columns(dx.grad.f32(), dp, rows, cols, c0, width);
        else if (dp != nullptr) g.ops().add_to_columns(dx.grad.f32(), dp, rows, cols, c0, width);
        c0 += width;
      }
    });
  }
  return parts;
}

}  // namespace nn
}  // namespace s2s
