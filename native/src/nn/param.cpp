// ParamStore: creation, loading with dtype conversion, binding outside memory, trainability,
// and the move of every tensor to another backend's memory.
#include "s2s/nn/param.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "s2s/ops/cast.h"

namespace s2s {

Buffer ParamStore::zeroed(int64_t n) {
  const size_t bytes = sizeof(float) * static_cast<size_t>(n > 0 ? n : 1);
  Buffer b = backend_->allocate(bytes);
  backend_->fill_zero(b.data(), sizeof(float) * static_cast<size_t>(n));
  return b;
}

Param& ParamStore::create(const std::string& name, std::initializer_list<int64_t> shape,
                          bool decay) {
  S2S_REQUIRE(by_name_.count(name) == 0, code::kArgument, "params", "parameter '", name,
              "' is defined twice");
  params_.emplace_back();
  Param& p = params_.back();
  p.name = name;
  p.decay = decay;
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  p.owned_value = zeroed(n);
  p.value = Tensor::contiguous(p.owned_value.data(), DType::F32, shape);
  by_name_[name] = &p;
  return p;
}

Param* ParamStore::find(const std::string& name) {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

Param& ParamStore::get(const std::string& name) {
  Param* p = find(name);
  if (p == nullptr) fail(code::kArgument, "params", "no parameter named '", name, "'");
  return *p;
}

static void expect_same_shape(const Param& p, const Tensor& src, const char* op) {
  bool same = p.value.ndim == src.ndim;
  for (int i = 0; same && i < src.ndim; ++i) same = p.value.shape[i] == src.shape[i];
  S2S_REQUIRE(same, code::kShape, op, "expected '", p.name, "' of shape ",
              p.value.shape_string(), ", got ", src.shape_string());
}

void ParamStore::load(Param& p, const Tensor& src) {
  expect_same_shape(p, src, "load");
  expect_contiguous(src, "load", p.name.c_str());
  if (!p.owned_value || p.value.dtype != DType::F32) {
    p.owned_value = zeroed(p.value.numel());
    p.value = Tensor::contiguous(p.owned_value.data(), DType::F32, p.value.ndim, p.value.shape);
  }
  if (backend_->is_host()) {
    cast_forward(p.value, src);
  } else {
    // src is host memory: widen on the host, then one upload.
    std::vector<float> wide(static_cast<size_t>(p.value.numel()));
    cast_forward(Tensor::contiguous(wide.data(), DType::F32, p.value.ndim, p.value.shape), src);
    backend_->upload(p.value.data, wide.data(), sizeof(float) * wide.size());
  }
  sync_compute(p);
}

void ParamStore::bind(Param& p, const Tensor& view) {
  expect_same_shape(p, view, "bind");
  expect_contiguous(view, "bind", p.name.c_str());
  set_trainable(p, false);
  p.owned_value.reset();
  if (backend_->is_host()) {
    p.value = view;
  } else {
    p.owned_value = backend_->allocate(tensor_bytes(view));
    backend_->upload(p.owned_value.data(), view.data, tensor_bytes(view));
    p.value = Tensor::contiguous(p.owned_value.data(), view.dtype, view.ndim, view.shape);
  }
  sync_compute(p);
}

void ParamStore::set_trainable(Param& p, bool trainable) {
  if (trainable) {
    if (p.value.dtype != DType::F32 || !p.owned_value) {
      // Trained values are fp32 master copies the store owns.
      Buffer copy = zeroed(p.value.numel());
      Tensor t = Tensor::contiguous(copy.data(), DType::F32, p.value.ndim, p.value.shape);
      backend_->cast(t, p.value);
      p.owned_value = std::move(copy);
      p.value = t;
    }
    if (!p.owned_grad) {
      p.owned_grad = zeroed(p.value.numel());
      p.grad = Tensor::contiguous(p.owned_grad.data(), DType::F32, p.value.ndim, p.value.shape);
    }
  } else {
    p.owned_grad.reset();
    p.owned_moments.reset();
    p.grad = Tensor{};
    p.exp_avg = Tensor{};
    p.exp_avg_sq = Tensor{};
  }
  p.trainable = trainable;
  sync_compute(p);
}

void ParamStore::set_compute_dtype(Param& p, DType dtype) {
  if (p.compute_dtype == dtype) return;
  p.compute_dtype = dtype;
  p.owned_compute.reset();  // a copy of the old dtype (the same size, but say what it is)
  p.compute = Tensor{};
  sync_compute(p);
}

void ParamStore::sync_compute(Param& p) {
  // A value already in the compute dtype is multiplied as it is (a bf16 view under bf16
  // compute, an f16 view under f16 compute: no copy). Any other value gets a copy in the compute
  // dtype, an f16 view under bf16 compute included: multiplied as it is, it would round the
  // activations and, in backward, the gradients to fp16 (linear's f16 path), with fp16's range
  // and without the loss scaling bf16 compute does not do, so small gradients would flush to
  // zero and activations past 65504 to inf. The bf16 copy is what bf16 compute promises (weights
  // rounded to bf16 once, bf16 range), at 2 bytes per weight beside the mapped view.
  if (p.compute_dtype == DType::F32 || p.value.dtype == p.compute_dtype) {
    p.owned_compute.reset();
    p.compute = Tensor{};
    return;
  }
  if (!p.owned_compute) {  // shapes never change
    p.owned_compute = backend_->allocate(
        sizeof(uint16_t) * static_cast<size_t>(std::max<int64_t>(1, p.value.numel())));
  }
  p.compute =
      Tensor::contiguous(p.owned_compute.data(), p.compute_dtype, p.value.ndim, p.value.shape);
  backend_->cast(p.compute, p.value);
}

void ParamStore::refresh_compute(Param& p) {
  if (p.compute.data != nullptr) backend_->cast(p.compute, p.value);
}

void ParamStore::ensure_moments(Param& p) {
  if (p.owned_moments) return;
  const int64_t n = p.value.numel();
  p.owned_moments = zeroed(2 * n);
  float* m = p.owned_moments.f32();
  p.exp_avg = Tensor::contiguous(m, DType::F32, p.value.ndim, p.value.shape);
  p.exp_avg_sq = Tensor::contiguous(m + n, DType::F32, p.value.ndim, p.value.shape);
}

// Moves one owned tensor (or a view of outside memory) into `to`: a new buffer holding t's bytes,
// with t re-pointed at it. Empty tensors stay empty.
static void move_tensor(Backend& to, Buffer& owner, Tensor& t) {
  if (t.data == nullptr) return;
  Buffer moved = to.allocate(tensor_bytes(t));
  to.upload(moved.data(), t.data, tensor_bytes(t));
  t.data = moved.data();
  owner = std::move(moved);
}

void ParamStore::move_to(std::shared_ptr<Backend> to) {
  S2S_REQUIRE(to != nullptr, code::kArgument, "params", "expected a backend to move to");
  if (to == backend_) return;
  S2S_REQUIRE(backend_->is_host(), code::kArgument, "params", "expected the params on the host ",
              "before moving them, got them on ", backend_->name());
  for (Param& p : params_) {
    move_tensor(*to, p.owned_value, p.value);
    if (p.trainable) move_tensor(*to, p.owned_grad, p.grad);
    if (p.owned_moments) {
      // Both moments share one allocation: exp_avg first, then exp_avg_sq.
      const int64_t n = p.value.numel();
      Buffer moved = to->allocate(2 * sizeof(float) * static_cast<size_t>(n));
      to->upload(moved.data(), p.owned_moments.data(), 2 * sizeof(float) * static_cast<size_t>(n));
      p.owned_moments = std::move(moved);
      p.exp_avg.data = p.owned_moments.f32();
      p.exp_avg_sq.data = p.owned_moments.f32() + n;
    }
    move_tensor(*to, p.owned_compute, p.compute);
  }
  optimizer_norm_.reset();  // the old backend's; a step's norm does not outlive the step
  backend_ = std::move(to);
}

int64_t ParamStore::compute_bytes() const {
  int64_t n = 0;
  for (const Param& p : params_) {
    if (p.compute.data != nullptr) n += 2 * p.compute.numel();
  }
  return n;
}

ParamStore::MemoryUse ParamStore::memory_use() const {
  MemoryUse m;
  for (const Param& p : params_) {
    if (p.owned_value) m.values += int64_t(p.owned_value.bytes());
    else if (p.value.data != nullptr) m.mapped_values += int64_t(tensor_bytes(p.value));
    m.grads += int64_t(p.owned_grad.bytes());
    m.moments += int64_t(p.owned_moments.bytes());
    m.compute += int64_t(p.owned_compute.bytes());
  }
  return m;
}

std::vector<Param*> ParamStore::all() {
  std::vector<Param*> out;
  for (Param& p : params_) out.push_back(&p);
  return out;
}

std::vector<Param*> ParamStore::trainable() {
  std::vector<Param*> out;
  for (Param& p : params_) {
    if (p.trainable) out.push_back(&p);
  }
  return out;
}

double* ParamStore::optimizer_norm() {
  if (!optimizer_norm_) optimizer_norm_ = backend_->allocate(sizeof(double));
  return static_cast<double*>(optimizer_norm_.data());
}

void ParamStore::zero_grads() {
  for (Param& p : params_) {
    if (p.trainable) backend_->fill_zero(p.grad.data, sizeof(float) * p.grad.numel());
  }
}

int64_t ParamStore::count_elements(bool trainable_only) const {
  int64_t n = 0;
  for (const Param& p : params_) {
    if (!trainable_only || p.trainable) n += p.value.numel();
  }
  return n;
}

}  // namespace s2s
