// nn::linear: y = x W^T + b (or x W + b for GPT-2's Conv1D layout), plus LoRA when attached.
// The matmuls read weight->matmul_value(): the bf16 compute copy when the param has one (bf16
// compute dtype; the f32 gradient is then computed from bf16-rounded operands), else the value.
// LoRA's branch is nn/lora_branch.h. linear_output (nn/forward_parts.h) is the forward alone, for
// the fused pairs (nn::linear_gelu, nn::linear_split).
#include "nn/forward_parts.h"
#include "nn/lora_branch.h"

namespace s2s {
namespace nn {

namespace {

// The output Var of x through weight (out_features from the layout), not yet computed.
Var* output_of(Graph& g, Var* x, const Tensor& w, WeightLayout layout, bool requires_grad) {
  const int64_t out_features = layout == WeightLayout::OutIn ? w.shape[0] : w.shape[1];
  int64_t shape[kMaxDims];
  for (int i = 0; i < x->value.ndim; ++i) shape[i] = x->value.shape[i];
  shape[x->value.ndim - 1] = out_features;
  return g.output(x->value.ndim, shape, requires_grad);
}

}  // namespace

const Tensor& matmul_operand(const Var* x, DType t) {
  const Tensor& copy = x->matmul_copy;
  return copy.data != nullptr && copy.dtype == t ? copy : x->value;
}

void share_matmul_input(Graph& g, Var* x, const std::vector<const LinearWeights*>& readers) {
  const Tensor& xv = x->value;
  if (xv.dtype != DType::F32 || x->matmul_copy.data != nullptr || !g.share_matmul_inputs ||
      !g.half_activations || !g.ops().takes_half_activations()) {
    return;
  }
  // The readers' common 16-bit dtype; LoRA or not (its adapter reads x, its base the copy), and
  // f32 readers aside (they read x).
  DType t = DType::F32;
  int sharing = 0;
  for (const LinearWeights* w : readers) {
    const DType d = w->weight->matmul_value().dtype;
    if (d == DType::F32) continue;
    if (t != DType::F32 && d != t) return;
    t = d;
    ++sharing;
  }
  if (sharing < 2) return;
  const Tensor flat = g.tensor(t, {xv.numel()});
  x->matmul_copy = Tensor::contiguous(flat.data, t, xv.ndim, xv.shape);
  g.ops().cast(x->matmul_copy, xv);
}

Var* linear_output(Graph& g, Var* x, const LinearWeights& w) {
  const Tensor& wt = w.weight->matmul_value();
  Var* y = output_of(g, x, wt, w.layout, /*requires_grad=*/false);
  g.ops().linear_forward(y->value, matmul_operand(x, wt.dtype), wt,
                         w.bias ? w.bias->value : Tensor{}, w.layout);
  return y;
}

std::vector<Var*> linear_parts_output(Graph& g, Var* x, const LinearWeights& w,
                                      const std::vector<int64_t>& sizes, DType out,
                                      bool requires_grad) {
  const Tensor& wt = w.weight->matmul_value();
  const bool out_in = w.layout == WeightLayout::OutIn;
  int64_t total = 0;
  for (int64_t s : sizes) total += s;
  S2S_REQUIRE(total == w.out_features(), code::kShape, "linear_split",
              "expected sizes summing to ", w.out_features(), ", got ", total);
  const size_t esize = dtype_size(wt.dtype);
  std::vector<Var*> parts;
  int64_t col0 = 0;
  for (int64_t width : sizes) {
    // The part's weight: rows col0.. of (OC, IC), or columns col0.. of (IC, OC) (a 2-D view with
    // the whole matrix's row stride).
    Tensor wp = wt;
    wp.data = static_cast<char*>(wt.data) + size_t(out_in ? col0 * wt.shape[1] : col0) * esize;
    wp.shape[out_in ? 0 : 1] = width;
    Tensor bp;
    if (w.bias != nullptr) {
      bp = Tensor::contiguous(w.bias->value.f32() + col0, DType::F32, {width});
    }
    int64_t shape[kMaxDims];
    for (int i = 0; i < x->value.ndim; ++i) shape[i] = x->value.shape[i];
    shape[x->value.ndim - 1] = width;
    Var* part = g.output(x->value.ndim, shape, requires_grad, out);
    g.ops().linear_forward(part->value, matmul_operand(x, wt.dtype), wp, bp, w.layout);
    parts.push_back(part);
    col0 += width;
  }
  return parts;
}

// x as both GEMMs that read it take it: its shared copy (share_matmul_input); else an f32 x
// under a 16-bit weight whose gradient is tracked is rounded once here and kept for the
// backward's dW, on a backend that takes 16-bit inputs, instead of being rounded by the forward
// and again by the backward (the same bits; as autocast keeps its bf16 copy of the input).
// Otherwise x itself: the backend rounds it where needed (the forward only, when dW is not
// tracked: frozen bases under LoRA).
static Tensor matmul_input(Graph& g, Var* x, const Tensor& w, Param* weight) {
  const Tensor& xv = matmul_operand(x, w.dtype);
  if (xv.dtype != DType::F32 || w.dtype == DType::F32 || !g.tracks(weight) ||
      !g.half_activations || !g.ops().takes_half_activations()) {
    return xv;
  }
  const Tensor flat = g.tensor(w.dtype, {xv.numel()});
  const Tensor rounded = Tensor::contiguous(flat.data, w.dtype, xv.ndim, xv.shape);
  g.ops().cast(rounded, xv);
  return rounded;
}

static Var* base_linear(Graph& g, Var* x, Param* weight, Param* bias, WeightLayout layout) {
  const Tensor& w = weight->matmul_value();
  const bool needs_grad =
      x->requires_grad || g.tracks(weight) || g.tracks(bias);
  Var* y = output_of(g, x, w, layout, needs_grad);
  // A bf16 weight rounds dy to bf16 in both backward GEMMs; without a bias nothing else reads
  // dy, so its first writer may store it as bf16 (cleared again below when LoRA reads dy).
  y->grad_bf16_ok = w.dtype == DType::BF16 && bias == nullptr;
  const Tensor b = bias ? bias->value : Tensor{};
  const Tensor xm = matmul_input(g, x, w, weight);
  g.ops().linear_forward(y->value, xm, w, b, layout);
  if (needs_grad) {
    g.on_backward([&g, x, xm, y, weight, bias, layout] {
      const Tensor dy = g.grad_if_present(y);
      if (dy.data == nullptr) return;
      const Tensor db = bias != nullptr ? bias->grad : Tensor{};
      // The first writer of x's gradient overwrites it (gemm beta 0) instead of zero-filling it
      // and accumulating; a later writer (x used twice: residuals, LoRA) accumulates.
      const Graph::GradBuffer dx = g.grad_for_write(x);
      g.ops().linear_backward(dx.grad, weight->grad, db, dy, xm, weight->matmul_value(),
                              layout, dx.fresh);
    });
  }
  return y;
}

DType matmul_input_dtype(const Graph& g, std::initializer_list<const LinearWeights*> readers) {
  if (!g.half_activations || !g.ops().takes_half_activations() || readers.size() == 0) {
    return DType::F32;
  }
  const DType t = (*readers.begin())->weight->matmul_value().dtype;
  for (const LinearWeights* w : readers) {
    if (w->lora != nullptr || w->weight->matmul_value().dtype != t) return DType::F32;
  }
  return t;
}

// The fused pair: y = x + linear(a, w) in one op, with the pair's backward (the linear's from
// dy, then x sharing dy as residual_add's x does).
static Var* fused_linear_residual(Graph& g, Var* x, Var* a, const LinearWeights& w) {
  Param* weight = w.weight;
  Param* bias = w.bias;
  const Tensor& wt = weight->matmul_value();
  const bool branch_grad = a->requires_grad || g.tracks(weight) || g.tracks(bias);
  Var* y = output_of(g, a, wt, w.layout, x->requires_grad || branch_grad);
  S2S_REQUIRE(y->value.numel() == x->value.numel() && y->value.ndim == x->value.ndim,
              code::kShape, "linear_residual", "expected the residual ", x->value.shape_string(),
              " to have the linear's output shape ", y->value.shape_string());
  const Tensor xm = matmul_input(g, a, wt, weight);
  g.ops().linear_residual_forward(y->value, xm, wt, bias ? bias->value : Tensor{}, x->value,
                                  w.layout);
  if (y->requires_grad) {
    g.on_backward([&g, x, a, xm, y, weight, bias, layout = w.layout, branch_grad] {
      const Tensor dy = g.grad_if_present(y);
      if (dy.data == nullptr) return;
      // The branch's linear reads dy before x shares it (residual_add's contract: x's other
      // gradients arrive later, from ops recorded before this one).
      if (branch_grad) {
        const Graph::GradBuffer da = g.grad_for_write(a);
        g.ops().linear_backward(da.grad, weight->grad, bias != nullptr ? bias->grad : Tensor{},
                                dy, xm, weight->matmul_value(), layout, da.fresh);
      }
      residual_gradient(g, x, dy);
    });
  }
  return y;
}

Var* linear_residual(Graph& g, Var* x, Var* a, const LinearWeights& w, float dropout_p) {
  const bool dropped = g.training && dropout_p > 0.0f;
  if (dropped || w.lora != nullptr || !g.fuse_linear_residual ||
      !g.ops().fuses_linear_residual() || x->value.dtype != DType::F32) {
    return dropout_residual_add(g, x, linear(g, a, w), dropout_p);
  }
  return fused_linear_residual(g, x, a, w);
}

Var* linear(Graph& g, Var* x, const LinearWeights& w) {
  Var* y = base_linear(g, x, w.weight, w.bias, w.layout);
  if (w.lora == nullptr) return y;
  y->grad_bf16_ok = false;  // the LoRA step below reads dy in fp32
  const LoraBranch branch = lora_forward(g, x, *w.lora, y->value);
  if (branch.needs_grad) {
    y->requires_grad = true;
    g.on_backward([&g, y, branch] {
      const Tensor dy = g.grad_if_present(y);
      if (dy.data != nullptr) lora_backward(g, branch, dy, 0);
    });
  }
  return y;
}

}  // namespace nn
}  // namespace s2s
