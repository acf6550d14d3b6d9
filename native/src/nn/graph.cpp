// Graph: Var allocation in the arena, lazy gradients, views, and the reverse run of the tape.
#include "s2s/nn/graph.h"

#include <cstring>
#include <new>


namespace s2s {

Graph::Graph(size_t arena_block_bytes)
    : arena_(arena_block_bytes), backend_(cpu_backend_shared()), ops_(backend_.get()) {}

void Graph::reset() {
  tape_.clear();
  arena_.reset();
  if (!ops_->is_host()) ops_->activation_reset();
  dropout_offset = 0;
}

void Graph::set_backend(std::shared_ptr<Backend> backend) {
  S2S_REQUIRE(backend != nullptr, code::kArgument, "Graph::set_backend", "expected a backend");
  reset();
  backend_ = std::move(backend);
  ops_ = backend_.get();
}

void* Graph::tensor_memory(size_t bytes) {
  return ops_->is_host() ? arena_.allocate(bytes) : ops_->activation_allocate(bytes);
}

Tensor Graph::tensor(DType dtype, std::initializer_list<int64_t> shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return Tensor::contiguous(tensor_memory(dtype_size(dtype) * static_cast<size_t>(n)), dtype,
                            shape);
}

float Graph::read_scalar(const Tensor& t) const {
  float v = 0;
  ops_->download(&v, t.data, sizeof(float));
  return v;
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
  v->value = Tensor::contiguous(tensor_memory(sizeof(float) * static_cast<size_t>(n)),
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
  const Tensor wide = Tensor::contiguous(tensor_memory(sizeof(float) * static_cast<size_t>(n)),
                                         DType::F32, owner->value.ndim, owner->value.shape);
  ops_->cast(wide, owner->grad);  // bf16 -> f32 widening is exact
  owner->grad = wide;
}

Tensor Graph::grad(Var* v) {
  if (!v->requires_grad) return Tensor{};
  if (v->base) return reshaped(grad(v->base), v->value);
  if (v->param) return v->param->grad;
  widen_if_bf16(v);
  if (v->grad.data == nullptr) {
    const size_t bytes = sizeof(float) * static_cast<size_t>(v->value.numel());
    void* mem = tensor_memory(bytes);
    ops_->fill_zero(mem, bytes);
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
  v->grad = Tensor::contiguous(tensor_memory(bytes), DType::F32, v->value.ndim, v->value.shape);
  return {v->grad, true};
}

Graph::GradBuffer Graph::grad_for_write_bf16(Var* v) {
  if (!bf16_gradients || !ops_->supports_bf16_gradients() || !v->requires_grad ||
      v->base != nullptr || v->param != nullptr || !v->grad_bf16_ok || v->grad.data != nullptr) {
    return grad_for_write(v);
  }
  const size_t bytes = sizeof(uint16_t) * static_cast<size_t>(v->value.numel());
  v->grad = Tensor::contiguous(tensor_memory(bytes), DType::BF16, v->value.ndim, v->value.shape);
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
  float seed = read_scalar(d);  // d(loss) += dloss, through the backend's copies
  seed += dloss;
  ops_->upload(d.data, &seed, sizeof(float));
  for (auto it = tape_.rbegin(); it != tape_.rend(); ++it) (*it)();
}

}  // namespace s2s
