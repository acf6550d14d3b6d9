// The CPU backend: every op is the CPU op of s2s/ops/*.h called with the same arguments, tensor
// memory is 64-byte aligned host memory, copies are memcpy. Also Buffer, host_tensor and
// make_backend (which asks the CUDA backend for a GPU model where it is built in).
#include <cmath>
#include <cstring>

#include "s2s/arena.h"
#include "s2s/gemm.h"
#include "s2s/nn/backend.h"
#include "s2s/ops/cast.h"
#include "s2s/ops/dropout.h"
#include "s2s/ops/elementwise.h"
#include "s2s/ops/embedding.h"
#include "s2s/ops/geglu.h"
#include "s2s/ops/grad_norm.h"
#include "s2s/ops/layernorm.h"
#include "s2s/ops/lora_merge.h"
#include "s2s/ops/relu.h"
#include "s2s/ops/rmsnorm.h"
#include "s2s/ops/rope.h"
#include "s2s/ops/silu.h"
#include "s2s/ops/swiglu.h"

#if S2S_HAVE_CUDA
#include "backends/cuda/cuda_backend.h"
#endif

namespace s2s {

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    reset();
    owner_ = o.owner_;
    data_ = o.data_;
    bytes_ = o.bytes_;
    o.data_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}

namespace {

class CpuBackend final : public Backend {
 public:
  const char* name() const override { return "cpu"; }
  DeviceKind kind() const override { return DeviceKind::Cpu; }
  bool is_host() const override { return true; }
  bool supports_bf16_gradients() const override { return true; }

  Buffer allocate(size_t bytes) override {
    return Buffer(this, aligned_alloc_bytes(bytes > 0 ? bytes : 1), bytes);
  }
  void release_buffer(void* p, size_t) override { AlignedFree()(p); }
  void* activation_allocate(size_t) override {
    fail(code::kInternal, "cpu backend",
         "activations of a host backend come from the graph's arena");
  }
  void activation_reset() override {}
  void* segment_allocate(size_t) override {
    fail(code::kInternal, "cpu backend",
         "checkpointed segments of a host backend use the graph's segment arena");
  }
  void segment_reset() override {}
  void* input_allocate(size_t) override {
    fail(code::kInternal, "cpu backend", "a host backend's ops read a pass's inputs in place");
  }
  void upload(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void download(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void fill_zero(void* dst, size_t bytes) override { std::memset(dst, 0, bytes); }
  void set_scalar(float* dst, float value) override { *dst = value; }
  void synchronize() override {}

  void embedding_forward(const Tensor& out, const Tensor& wte, const Tensor& wpe,
                         const int32_t* ids, int64_t num_ids, const int32_t* pos,
                         int64_t num_pos) override {
    s2s::embedding_forward(out, wte, wpe, ids, num_ids, pos, num_pos);
  }
  void embedding_backward(const Tensor& dwte, const Tensor& dwpe, const Tensor& dout,
                          const int32_t* ids, int64_t num_ids, const int32_t* pos,
                          int64_t num_pos) override {
    s2s::embedding_backward(dwte, dwpe, dout, ids, num_ids, pos, num_pos);
  }
  void layernorm_forward(const Tensor& out, const Tensor& mean, const Tensor& rstd,
                         const Tensor& inp, const Tensor& weight, const Tensor& bias,
                         float eps) override {
    s2s::layernorm_forward(out, mean, rstd, inp, weight, bias, eps);
  }
  void layernorm_backward(const Tensor& dinp, const Tensor& dweight, const Tensor& dbias,
                          const Tensor& dout, const Tensor& inp, const Tensor& weight,
                          const Tensor& mean, const Tensor& rstd, bool overwrite_dinp) override {
    s2s::layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, overwrite_dinp);
  }
  void rmsnorm_forward(const Tensor& out, const Tensor& rstd, const Tensor& inp,
                       const Tensor& weight, float eps) override {
    s2s::rmsnorm_forward(out, rstd, inp, weight, eps);
  }
  void rmsnorm_backward(const Tensor& dinp, const Tensor& dweight, const Tensor& dout,
                        const Tensor& inp, const Tensor& weight, const Tensor& rstd,
                        bool overwrite_dinp) override {
    s2s::rmsnorm_backward(dinp, dweight, dout, inp, weight, rstd, overwrite_dinp);
  }
  void linear_forward(const Tensor& out, const Tensor& inp, const Tensor& weight,
                      const Tensor& bias, WeightLayout layout) override {
    s2s::linear_forward(out, inp, weight, bias, layout);
  }
  void linear_backward(const Tensor& dinp, const Tensor& dweight, const Tensor& dbias,
                       const Tensor& dout, const Tensor& inp, const Tensor& weight,
                       WeightLayout layout, bool overwrite_dinp) override {
    s2s::linear_backward(dinp, dweight, dbias, dout, inp, weight, layout, overwrite_dinp);
  }
  void matmul(const Tensor& c, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b,
              float alpha, float beta) override {
    s2s::matmul(c, a, b, trans_a, trans_b, alpha, beta);
  }
  void gelu_forward(const Tensor& out, const Tensor& inp, GeluApprox approximate) override {
    s2s::gelu_forward(out, inp, approximate);
  }
  void gelu_backward(const Tensor& dinp, const Tensor& dout, const Tensor& inp,
                     GeluApprox approximate, bool overwrite) override {
    s2s::gelu_backward(dinp, dout, inp, approximate, overwrite);
  }
  void relu_forward(const Tensor& out, const Tensor& inp) override { s2s::relu_forward(out, inp); }
  void relu_backward(const Tensor& dinp, const Tensor& dout, const Tensor& inp,
                     bool overwrite) override {
    s2s::relu_backward(dinp, dout, inp, overwrite);
  }
  void silu_forward(const Tensor& out, const Tensor& inp) override { s2s::silu_forward(out, inp); }
  void silu_backward(const Tensor& dinp, const Tensor& dout, const Tensor& inp,
                     bool overwrite) override {
    s2s::silu_backward(dinp, dout, inp, overwrite);
  }
  void swiglu_forward(const Tensor& out, const Tensor& gate, const Tensor& up) override {
    s2s::swiglu_forward(out, gate, up);
  }
  void swiglu_backward(const Tensor& dgate, const Tensor& dup, const Tensor& dout,
                       const Tensor& gate, const Tensor& up, bool overwrite) override {
    s2s::swiglu_backward(dgate, dup, dout, gate, up, overwrite);
  }
  void geglu_forward(const Tensor& out, const Tensor& gate, const Tensor& up,
                     GeluApprox approximate) override {
    s2s::geglu_forward(out, gate, up, approximate);
  }
  void geglu_backward(const Tensor& dgate, const Tensor& dup, const Tensor& dout,
                      const Tensor& gate, const Tensor& up, GeluApprox approximate,
                      bool overwrite) override {
    s2s::geglu_backward(dgate, dup, dout, gate, up, approximate, overwrite);
  }
  void dropout_forward(const Tensor& out, const Tensor& inp, float p, DropoutSeed seed,
                       uint64_t offset) override {
    s2s::dropout_forward(out, inp, p, seed, offset);
  }
  void dropout_backward(const Tensor& dinp, const Tensor& dout, float p, DropoutSeed seed,
                        uint64_t offset, bool overwrite) override {
    s2s::dropout_backward(dinp, dout, p, seed, offset, overwrite);
  }
  void cast(const Tensor& out, const Tensor& inp) override { s2s::cast_forward(out, inp); }
  void add(const Tensor& out, const Tensor& a, const Tensor& b) override {
    s2s::add_forward(out, a, b);
  }
  void axpy(const Tensor& dst, float alpha, const Tensor& src) override {
    s2s::axpy(dst, alpha, src);
  }
  void scale(const Tensor& out, const Tensor& x, float s) override {
    s2s::scale_forward(out, x, s);
  }
  void copy_values(const Tensor& dst, const Tensor& src) override { s2s::copy_values(dst, src); }
  void copy_columns(float* dst, const float* src, int64_t rows, int64_t src_cols, int64_t col0,
                    int64_t width) override {
    s2s::copy_columns(dst, src, rows, src_cols, col0, width);
  }
  void add_to_columns(float* dst, const float* src, int64_t rows, int64_t dst_cols, int64_t col0,
                      int64_t width) override {
    s2s::add_to_columns(dst, src, rows, dst_cols, col0, width);
  }
  void set_columns(float* dst, const float* src, int64_t rows, int64_t dst_cols, int64_t col0,
                   int64_t width) override {
    s2s::set_columns(dst, src, rows, dst_cols, col0, width);
  }
  void attention_forward(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k,
                         const Tensor& v, const Tensor& bias, const uint8_t* key_mask,
                         int64_t key_mask_size, const AttentionOptions& options) override {
    s2s::attention_forward(out, lse, q, k, v, bias, key_mask, key_mask_size, options);
  }
  void attention_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv,
                          const Tensor& dbias, const Tensor& dout, const Tensor& q,
                          const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                          const Tensor& bias, const uint8_t* key_mask, int64_t key_mask_size,
                          const AttentionOptions& options, bool overwrite) override {
    s2s::attention_backward(dq, dk, dv, dbias, dout, q, k, v, out, lse, bias, key_mask,
                            key_mask_size, options, overwrite);
  }
  void attention_cached_forward(const Tensor& out, const Tensor& q, const Tensor& k_cache,
                                const Tensor& v_cache, const int32_t* slot,
                                const int32_t* key_begin, const int32_t* key_end,
                                const Tensor& bias, const AttentionOptions& options) override {
    s2s::attention_cached_forward(out, q, k_cache, v_cache, slot, key_begin, key_end, bias,
                                  options);
  }
  void kv_cache_append(const Tensor& k_cache, const Tensor& v_cache, const Tensor& k,
                       const Tensor& v, const int32_t* slot, const int32_t* key_end) override {
    s2s::kv_cache_append(k_cache, v_cache, k, v, slot, key_end);
  }

  void rope_forward(const Tensor& out, const Tensor& inp, const int32_t* positions,
                    int64_t num_positions, float theta) override {
    s2s::rope_forward(out, inp, positions, num_positions, theta);
  }
  void rope_backward(const Tensor& dinp, const Tensor& dout, const int32_t* positions,
                     int64_t num_positions, float theta, bool overwrite) override {
    s2s::rope_backward(dinp, dout, positions, num_positions, theta, overwrite);
  }
  void t5_relative_position_forward(const Tensor& bias, const Tensor& table,
                                    const T5RelativePositionOptions& options) override {
    s2s::t5_relative_position_forward(bias, table, options);
  }
  void t5_relative_position_backward(const Tensor& dtable, const Tensor& dbias,
                                     const T5RelativePositionOptions& options) override {
    s2s::t5_relative_position_backward(dtable, dbias, options);
  }
  void t5_relative_position_decoding_forward(const Tensor& bias, const Tensor& table,
                                             const int32_t* key_end,
                                             const T5RelativePositionOptions& options) override {
    s2s::t5_relative_position_decoding_forward(bias, table, key_end, options);
  }
  CrossEntropyResult cross_entropy_forward(const Tensor& lse, const Tensor& logits,
                                           const int32_t* labels, int64_t num_labels,
                                           const CrossEntropyOptions& options) override {
    return s2s::cross_entropy_forward(lse, logits, labels, num_labels, options);
  }
  void cross_entropy_rows(const Tensor& lse, const Tensor& label_logit, const Tensor& logits,
                          const int32_t* labels, int64_t num_labels,
                          int32_t ignore_index) override {
    s2s::cross_entropy_rows(lse, label_logit, logits, labels, num_labels, ignore_index);
  }
  void cross_entropy_backward(const Tensor& dlogits, const Tensor& logits, const Tensor& lse,
                              const int32_t* labels, int64_t num_labels, float dloss,
                              const CrossEntropyOptions& options, bool overwrite) override {
    s2s::cross_entropy_backward(dlogits, logits, lse, labels, num_labels, dloss, options,
                                overwrite);
  }
  void cross_entropy_loss(const Tensor& loss, const Tensor& lse, const Tensor& label_logit,
                          const int32_t* labels, int64_t num_labels,
                          const CrossEntropyOptions& options) override {
    s2s::cross_entropy_loss(loss, lse, label_logit, labels, num_labels, options);
  }
  double scaled_grad_norm(const std::vector<Tensor>& grads, float scale) override {
    return s2s::scaled_grad_norm(grads, scale);
  }
  void adamw_fused_update(const std::vector<AdamWFusedTensor>& tensors, int64_t step,
                          const AdamWOptions& options, float grad_scale,
                          float clip_coef) override {
    s2s::adamw_fused_update(tensors, step, options, grad_scale, clip_coef);
  }
  void lora_merge(const Tensor& weight, const Tensor& A, const Tensor& B, float scaling,
                  WeightLayout layout) override {
    s2s::lora_merge_forward(weight, A, B, scaling, layout);
  }
};

CpuBackend& cpu_instance() {
  static CpuBackend* b = new CpuBackend();  // never destroyed: buffers may outlive statics
  return *b;
}

}  // namespace

void Buffer::reset() {
  if (data_ != nullptr) owner_->release_buffer(data_, bytes_);
  data_ = nullptr;
  bytes_ = 0;
}

void Backend::clipped_adamw_update(const std::vector<AdamWFusedTensor>& tensors, int64_t step,
                                   const AdamWOptions& options, float grad_scale,
                                   double max_grad_norm, double* norm_out) {
  std::vector<Tensor> grads;
  grads.reserve(tensors.size());
  for (const AdamWFusedTensor& x : tensors) grads.push_back(x.grad);
  const double norm = scaled_grad_norm(grads, grad_scale);
  upload(norm_out, &norm, sizeof(norm));
  if (!std::isfinite(norm)) {
    for (const Tensor& g : grads) fill_zero(g.data, tensor_bytes(g));
    return;
  }
  const float clip_coef = max_grad_norm > 0 ? clip_coefficient(norm, max_grad_norm) : 1.0f;
  adamw_fused_update(tensors, step, options, grad_scale, clip_coef);
}

Backend& cpu_backend() { return cpu_instance(); }

std::shared_ptr<Backend> cpu_backend_shared() {
  static std::shared_ptr<Backend> shared(&cpu_instance(), [](Backend*) {});
  return shared;
}

std::shared_ptr<Backend> make_backend(const Device& device, const char* what,
                                      const BackendOptions& options) {
  if (device.kind == DeviceKind::Cpu) return cpu_backend_shared();
#if S2S_HAVE_CUDA
  cuda::ContextOptions co;
  co.device = device.index;
  co.allow_tf32 = options.allow_tf32;
  return cuda::make_cuda_backend(co, what);
#else
  (void)options;
  fail(code::kDevice, what, "CUDA backend not built into this binary (device '", device.name(),
       "' was asked for; rebuild with nvcc and cuBLASLt installed, S2S_CUDA=ON, or use device "
       "'cpu')");
#endif
}

size_t tensor_bytes(const Tensor& t) {
  return static_cast<size_t>(t.numel()) * dtype_size(t.dtype);
}

Tensor host_tensor(Backend& backend, const Tensor& t, std::vector<uint8_t>& storage) {
  if (backend.is_host() || t.data == nullptr) return t;
  storage.resize(tensor_bytes(t));
  backend.download(storage.data(), t.data, storage.size());
  Tensor h = t;
  h.data = storage.data();
  return h;
}

}  // namespace s2s
