// ParamStore: creation, loading with dtype conversion, binding outside memory, trainability.
#include "s2s/nn/param.h"

#include <algorithm>
#include <cstring>

#include "s2s/ops/cast.h"

namespace s2s {

namespace {
AlignedPtr<float> zeroed(int64_t n) {
  AlignedPtr<float> p = make_aligned<float>(static_cast<size_t>(n > 0 ? n : 1));
  std::memset(p.get(), 0, sizeof(float) * static_cast<size_t>(n));
  return p;
}
}  // namespace

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
  p.value = Tensor::contiguous(p.owned_value.get(), DType::F32, shape);
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
  if (!p.owned_value) {
    p.owned_value = zeroed(p.value.numel());
    p.value = Tensor::contiguous(p.owned_value.get(), DType::F32, p.value.ndim, p.value.shape);
  }
  cast_forward(p.value, src);
  sync_compute(p);
}

void ParamStore::bind(Param& p, const Tensor& view) {
  expect_same_shape(p, view, "bind");
  expect_contiguous(view, "bind", p.name.c_str());
  set_trainable(p, false);
  p.owned_value.reset();
  p.value = view;
  sync_compute(p);
}

void ParamStore::set_trainable(Param& p, bool trainable) {
  if (trainable) {
    if (p.value.dtype != DType::F32 || !p.owned_value) {
      // Trained values are fp32 master copies the store owns.
      AlignedPtr<float> copy = zeroed(p.value.numel());
      Tensor t = Tensor::contiguous(copy.get(), DType::F32, p.value.ndim, p.value.shape);
      cast_forward(t, p.value);
      p.owned_value = std::move(copy);
      p.value = t;
    }
    if (!p.owned_grad) {
      p.owned_grad = zeroed(p.value.numel());
      p.grad = Tensor::contiguous(p.owned_grad.get(), DType::F32, p.value.ndim, p.value.shape);
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

void ParamStore::set_compute_bf16(Param& p, bool on) {
  p.compute_bf16 = on;
  sync_compute(p);
}

void ParamStore::sync_compute(Param& p) {
  if (!p.compute_bf16 || p.value.dtype != DType::F32) {
    p.owned_compute.reset();
    p.compute = Tensor{};
    return;
  }
  if (!p.owned_compute) {  // shapes never change
    p.owned_compute = make_aligned<uint16_t>(static_cast<size_t>(std::max<int64_t>(1, p.value.numel())));
  }
  p.compute = Tensor::contiguous(p.owned_compute.get(), DType::BF16, p.value.ndim, p.value.shape);
  cast_forward(p.compute, p.value);
}

void ParamStore::refresh_compute(Param& p) {
  if (p.compute.data != nullptr) cast_forward(p.compute, p.value);
}

int64_t ParamStore::compute_bytes() const {
  int64_t n = 0;
  for (const Param& p : params_) {
    if (p.compute.data != nullptr) n += 2 * p.compute.numel();
  }
  return n;
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

void ParamStore::zero_grads() {
  for (Param& p : params_) {
    if (p.trainable) std::memset(p.grad.data, 0, sizeof(float) * p.grad.numel());
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
