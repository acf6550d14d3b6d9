// Graph: Var allocation in the arena, lazy gradients, views, and the reverse run of the tape.
#include "s2s/nn/graph.h"

#include <cstring>
#include <new>

#include "s2s/ops/cast.h"

namespace s2s {

Graph::Graph(size_t arena_block_bytes) : arena_(arena_block_bytes) {}

void Graph::reset() {
  tape_.clear();
  arena_.reset();
  dropout_offset = 0;
}

Var* Graph::new_var() {
  void* mem = arena_.allocate(sizeof(Var));
  return new (mem) Var();  // Var is trivially destructible: the arena reset releases it
}

Var* Graph::constant(const Tensor& t) {
  Var* v = new_var();
  v->value = t;
  return v;
}

Var* Graph::param(Param& p) {
  Var* v = new_var();
  v->value = p.value;
  v->param = &p;
  v->requires_grad = tracks(&p);
  return v;
}

Var* Graph::output(int ndim, const int64_t* shape, bool requires_grad) {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= shape[i];
  Var* v = new_var();
  v->value = Tensor::contiguous(arena_.allocate(sizeof(float) * static_cast<size_t>(n)),
                                DType::F32, ndim, shape);
  v->requires_grad = requires_grad;
  return v;
}

Var* Graph::output(std::initializer_list<int64_t> shape, bool requires_grad) {
  return output(static_cast<int>(shape.size()), shape.begin(), requires_grad);
}

Var* Graph::view(Var* v, std::initializer_list<int64_t> shape) {
  Var* out = new_var();
  out->value = Tensor::contiguous(v->value.data, v->value.dtype, shape);
  S2S_REQUIRE(out->value.numel() == v->value.numel(), code::kShape, "view", "expected ",
              v->value.numel(), " elements like ", v->value.shape_string(), ", got ",
              out->value.shape_string());
  out->requires_grad = v->requires_grad;
  out->base = v->base ? v->base : v;
  return out;
}

static Tensor reshaped(const Tensor& storage, const Tensor& like) {
  if (storage.data == nullptr) return Tensor{};
  return Tensor::contiguous(storage.data, storage.dtype, like.ndim, like.shape);
}

void Graph::widen_if_bf16(Var* owner) {
  if (owner->grad.data == nullptr || owner->grad.dtype != DType::BF16) return;
  const int64_t n = owner->value.numel();
  float* mem = static_cast<float*>(arena_.allocate(sizeof(float) * static_cast<size_t>(n)));
  cast_bf16_to_f32(mem, owner->grad.u16(), n);
  owner->grad = Tensor::contiguous(mem, DType::F32, owner->value.ndim, owner->value.shape);
}

Tensor Graph::grad(Var* v) {
  if (!v->requires_grad) return Tensor{};
  if (v->base) return reshaped(grad(v->base), v->value);
  if (v->param) return v->param->grad;
  widen_if_bf16(v);
  if (v->grad.data == nullptr) {
    const size_t bytes = sizeof(float) * static_cast<size_t>(v->value.numel());
    void* mem = arena_.allocate(bytes);
    std::memset(mem, 0, bytes);
    v->grad = Tensor::contiguous(mem, DType::F32, v->value.ndim, v->value.shape);
  }
  return v->grad;
}

Graph::GradBuffer Graph::grad_for_write(Var* v) {
  if (!v->requires_grad) return {};
  if (v->base) {
    // A view has its base's element count (checked in view()): a full write of one is a full
    // write of the other.
    const GradBuffer b = grad_for_write(v->base);
    return {reshaped(b.grad, v->value), b.fresh};
  }
  if (v->param) return {v->param->grad, false};
  widen_if_bf16(v);
  if (v->grad.data != nullptr) return {v->grad, false};
  const size_t bytes = sizeof(float) * static_cast<size_t>(v->value.numel());
  v->grad = Tensor::contiguous(arena_.allocate(bytes), DType::F32, v->value.ndim, v->value.shape);
  return {v->grad, true};
}

Graph::GradBuffer Graph::grad_for_write_bf16(Var* v) {
  if (!bf16_gradients || !v->requires_grad || v->base != nullptr || v->param != nullptr ||
      !v->grad_bf16_ok || v->grad.data != nullptr) {
    return grad_for_write(v);
  }
  const size_t bytes = sizeof(uint16_t) * static_cast<size_t>(v->value.numel());
  v->grad = Tensor::contiguous(arena_.allocate(bytes), DType::BF16, v->value.ndim, v->value.shape);
  return {v->grad, true};
}

bool Graph::adopt_grad(Var* v, const Tensor& src) {
  if (!v->requires_grad || v->param != nullptr || src.data == nullptr) return false;
  Var* owner = v->base ? v->base : v;  // a view's gradient is its base's
  if (owner->param != nullptr || owner->grad.data != nullptr) return false;
  S2S_REQUIRE(src.numel() == owner->value.numel() && src.dtype == DType::F32, code::kShape,
              "adopt_grad", "expected a float32 gradient of ", owner->value.numel(),
              " elements, got ", src.shape_string());
  owner->grad = Tensor::contiguous(src.data, DType::F32, owner->value.ndim, owner->value.shape);
  return true;
}

Tensor Graph::grad_if_present(Var* v) {
  if (!v->requires_grad) return Tensor{};
  if (v->base) return reshaped(grad_if_present(v->base), v->value);
  if (v->param) return v->param->grad;
  return v->grad;
}

void Graph::on_backward(std::function<void()> fn) { tape_.push_back(std::move(fn)); }

void Graph::backward(Var* loss, float dloss) {
  S2S_REQUIRE(loss->value.numel() == 1, code::kShape, "backward",
              "expected a one-element loss, got ", loss->value.shape_string());
  S2S_REQUIRE(loss->requires_grad, code::kArgument, "backward",
              "expected a loss that depends on a trainable parameter (are all params frozen?)");
  Tensor d = grad(loss);
  d.f32()[0] += dloss;
  for (auto it = tape_.rbegin(); it != tape_.rend(); ++it) (*it)();
}

}  // namespace s2s
