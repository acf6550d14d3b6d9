// CheckedHostBackend: a test-only Backend that stands in for a GPU on machines without one. It
// runs the CPU ops (so results must be bit-identical to the CPU backend), but every buffer it
// hands out (params, gradients, moments, compute copies, activations, index arrays) comes from
// its own reserved address range, "device memory", which is kept inaccessible (PROT_NONE)
// except while one of its own calls runs. So:
//   - an op handed a tensor or an index array outside the live device allocations throws
//     S2S_INTERNAL naming the op and the argument (host memory where a GPU needs device memory,
//     or a freed buffer);
//   - host code that reads or writes device memory outside the backend's calls (a layer
//     touching .f32() of an activation, a saver reading a param) dies with SIGSEGV, and the
//     handler installed here prints which address before the process ends.
// It also holds the model path to the CUDA ops' stricter dtype rules where the CPU ops are
// laxer (f32 gradients into linear_backward and out of cross_entropy_backward).
// What it cannot see: whether the CUDA kernels compute the right thing (test_cuda_ops and
// test_cuda_models do that on a GPU).
#pragma once
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>

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

namespace s2s_test {

class CheckedHostBackend final : public s2s::Backend {
 public:
  static constexpr size_t kReserve = size_t(1) << 30;  // address space only (MAP_NORESERVE)
  static constexpr size_t kAlign = 256;

  CheckedHostBackend() {
    void* p = mmap(nullptr, kReserve, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) s2s::fail(s2s::code::kOutOfMemory, "checked backend", "mmap failed");
    base_ = static_cast<uint8_t*>(p);
    // Params and the like from the bottom half, activations from the third quarter,
    // checkpointed segments' activations from the seventh eighth, a pass's inputs from the last.
    act_base_ = base_ + kReserve / 2;
    seg_base_ = base_ + kReserve / 4 * 3;
    in_base_ = base_ + kReserve / 8 * 7;
    install_segv_handler(base_, kReserve);
  }
  ~CheckedHostBackend() override { munmap(base_, kReserve); }

  const char* name() const override { return "checked-host"; }
  s2s::DeviceKind kind() const override { return s2s::DeviceKind::Cuda; }  // stands in for one
  bool is_host() const override { return false; }
  // As the CUDA ops: f32 gradients only (cross_entropy_backward, linear_backward check it below).
  bool supports_bf16_gradients() const override { return false; }
  // As the CUDA backend: the chunked loss's logits rows padded to a multiple of 64 elements, so
  // the CPU ops run on padded rows here and must give the CPU backend's bits.
  int64_t aligned_row_stride(int64_t cols) const override { return (cols + 63) / 64 * 64; }

  int64_t ops_run() const { return ops_run_; }
  bool contains(const void* p) const {
    const uint8_t* b = static_cast<const uint8_t*>(p);
    return b >= base_ && b < base_ + kReserve;
  }

  // ---- memory ----
  s2s::Buffer allocate(size_t bytes) override {
    const size_t size = round_up(bytes > 0 ? bytes : 1);
    S2S_REQUIRE(persistent_used_ + size <= kReserve / 2, s2s::code::kOutOfMemory, "checked backend",
                "out of reserved device space");
    uint8_t* p = base_ + persistent_used_;
    persistent_used_ += size;  // never reused: a use after free stays detectable
    live_[reinterpret_cast<uintptr_t>(p)] = bytes;
    poison(p, size);
    return s2s::Buffer(this, p, bytes);
  }
  void release_buffer(void* p, size_t) override { live_.erase(reinterpret_cast<uintptr_t>(p)); }
  void* activation_allocate(size_t bytes) override {
    return carve(act_base_, act_used_, kReserve / 4, bytes, "activation");
  }
  void activation_reset() override {
    act_used_ = 0;
    in_used_ = 0;
  }
  // A released segment's memory stops being device memory at once (as a freed buffer), so an
  // op still handed a piece of it fails.
  void* segment_allocate(size_t bytes) override {
    void* p = carve(seg_base_, seg_used_, kReserve / 8, bytes, "segment");
    segment_peak_ = seg_used_ > segment_peak_ ? seg_used_ : segment_peak_;
    return p;
  }
  void segment_reset() override { seg_used_ = 0; }
  void* input_allocate(size_t bytes) override {
    return carve(in_base_, in_used_, kReserve / 8, bytes, "input");
  }
  size_t segment_peak() const { return segment_peak_; }
  void upload(void* dst, const void* src, size_t bytes) override {
    Open open(*this);
    need(dst, bytes, "upload", "dst");
    host(src, "upload", "src");
    std::memcpy(dst, src, bytes);
  }
  void download(void* dst, const void* src, size_t bytes) override {
    Open open(*this);
    need(src, bytes, "download", "src");
    host(dst, "download", "dst");
    std::memcpy(dst, src, bytes);
  }
  void fill_zero(void* dst, size_t bytes) override {
    Open open(*this);
    need(dst, bytes, "fill_zero", "dst");
    std::memset(dst, 0, bytes);
  }
  void set_scalar(float* dst, float value) override {
    Open open(*this);
    need(dst, sizeof(float), "set_scalar", "dst");
    *dst = value;
  }
  void synchronize() override {}

  // ---- ops: check every argument, then the CPU op ----
  void embedding_forward(const s2s::Tensor& out, const s2s::Tensor& wte, const s2s::Tensor& wpe,
                         const int32_t* ids, int64_t num_ids, const int32_t* pos,
                         int64_t num_pos) override {
    Open o(*this, "embedding_forward");
    t(out, "out"); t(wte, "wte"); t(wpe, "wpe"); idx(ids, num_ids, "ids"); idx(pos, num_pos, "pos");
    s2s::embedding_forward(out, wte, wpe, ids, num_ids, pos, num_pos);
  }
  void embedding_backward(const s2s::Tensor& dwte, const s2s::Tensor& dwpe, const s2s::Tensor& dout,
                          const int32_t* ids, int64_t num_ids, const int32_t* pos,
                          int64_t num_pos) override {
    Open o(*this, "embedding_backward");
    t(dwte, "dwte"); t(dwpe, "dwpe"); t(dout, "dout"); idx(ids, num_ids, "ids"); idx(pos, num_pos, "pos");
    s2s::embedding_backward(dwte, dwpe, dout, ids, num_ids, pos, num_pos);
  }
  void layernorm_forward(const s2s::Tensor& out, const s2s::Tensor& mean, const s2s::Tensor& rstd,
                         const s2s::Tensor& inp, const s2s::Tensor& weight, const s2s::Tensor& bias,
                         float eps) override {
    Open o(*this, "layernorm_forward");
    t(out, "out"); t(mean, "mean"); t(rstd, "rstd"); t(inp, "inp"); t(weight, "weight"); t(bias, "bias");
    s2s::layernorm_forward(out, mean, rstd, inp, weight, bias, eps);
  }
  void layernorm_backward(const s2s::Tensor& dinp, const s2s::Tensor& dweight,
                          const s2s::Tensor& dbias, const s2s::Tensor& dout, const s2s::Tensor& inp,
                          const s2s::Tensor& weight, const s2s::Tensor& mean,
                          const s2s::Tensor& rstd, bool overwrite_dinp) override {
    Open o(*this, "layernorm_backward");
    t(dinp, "dinp"); t(dweight, "dweight"); t(dbias, "dbias"); t(dout, "dout"); t(inp, "inp");
    t(weight, "weight"); t(mean, "mean"); t(rstd, "rstd");
    s2s::layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, overwrite_dinp);
  }
  void rmsnorm_forward(const s2s::Tensor& out, const s2s::Tensor& rstd, const s2s::Tensor& inp,
                       const s2s::Tensor& weight, float eps) override {
    Open o(*this, "rmsnorm_forward");
    t(out, "out"); t(rstd, "rstd"); t(inp, "inp"); t(weight, "weight");
    s2s::rmsnorm_forward(out, rstd, inp, weight, eps);
  }
  void rmsnorm_backward(const s2s::Tensor& dinp, const s2s::Tensor& dweight, const s2s::Tensor& dout,
                        const s2s::Tensor& inp, const s2s::Tensor& weight,
                        const s2s::Tensor& rstd, bool overwrite_dinp) override {
    Open o(*this, "rmsnorm_backward");
    t(dinp, "dinp"); t(dweight, "dweight"); t(dout, "dout"); t(inp, "inp"); t(weight, "weight");
    t(rstd, "rstd");
    s2s::rmsnorm_backward(dinp, dweight, dout, inp, weight, rstd, overwrite_dinp);
  }
  void linear_forward(const s2s::Tensor& out, const s2s::Tensor& inp, const s2s::Tensor& weight,
                      const s2s::Tensor& bias, s2s::WeightLayout layout) override {
    Open o(*this, "linear_forward");
    t(out, "out"); t(inp, "inp"); t(weight, "weight"); t(bias, "bias");
    s2s::linear_forward(out, inp, weight, bias, layout);
  }
  void linear_backward(const s2s::Tensor& dinp, const s2s::Tensor& dweight, const s2s::Tensor& dbias,
                       const s2s::Tensor& dout, const s2s::Tensor& inp, const s2s::Tensor& weight,
                       s2s::WeightLayout layout, bool overwrite_dinp) override {
    Open o(*this, "linear_backward");
    f32_like_cuda(dout, "dout");
    t(dinp, "dinp"); t(dweight, "dweight"); t(dbias, "dbias"); t(dout, "dout"); t(inp, "inp");
    t(weight, "weight");
    s2s::linear_backward(dinp, dweight, dbias, dout, inp, weight, layout, overwrite_dinp);
  }
  void matmul(const s2s::Tensor& c, const s2s::Tensor& a, const s2s::Tensor& b, bool trans_a,
              bool trans_b, float alpha, float beta) override {
    Open o(*this, "matmul");
    t(c, "c"); t(a, "a"); t(b, "b");
    s2s::matmul(c, a, b, trans_a, trans_b, alpha, beta);
  }
  void gelu_forward(const s2s::Tensor& out, const s2s::Tensor& inp, s2s::GeluApprox ap) override {
    Open o(*this, "gelu_forward");
    t(out, "out"); t(inp, "inp");
    s2s::gelu_forward(out, inp, ap);
  }
  void gelu_backward(const s2s::Tensor& dinp, const s2s::Tensor& dout, const s2s::Tensor& inp,
                     s2s::GeluApprox ap, bool overwrite) override {
    Open o(*this, "gelu_backward");
    t(dinp, "dinp"); t(dout, "dout"); t(inp, "inp");
    s2s::gelu_backward(dinp, dout, inp, ap, overwrite);
  }
  void relu_forward(const s2s::Tensor& out, const s2s::Tensor& inp) override {
    Open o(*this, "relu_forward");
    t(out, "out"); t(inp, "inp");
    s2s::relu_forward(out, inp);
  }
  void relu_backward(const s2s::Tensor& dinp, const s2s::Tensor& dout, const s2s::Tensor& inp,
                     bool overwrite) override {
    Open o(*this, "relu_backward");
    t(dinp, "dinp"); t(dout, "dout"); t(inp, "inp");
    s2s::relu_backward(dinp, dout, inp, overwrite);
  }
  void silu_forward(const s2s::Tensor& out, const s2s::Tensor& inp) override {
    Open o(*this, "silu_forward");
    t(out, "out"); t(inp, "inp");
    s2s::silu_forward(out, inp);
  }
  void silu_backward(const s2s::Tensor& dinp, const s2s::Tensor& dout, const s2s::Tensor& inp,
                     bool overwrite) override {
    Open o(*this, "silu_backward");
    t(dinp, "dinp"); t(dout, "dout"); t(inp, "inp");
    s2s::silu_backward(dinp, dout, inp, overwrite);
  }
  void swiglu_forward(const s2s::Tensor& out, const s2s::Tensor& gate, const s2s::Tensor& up) override {
    Open o(*this, "swiglu_forward");
    t(out, "out"); t(gate, "gate"); t(up, "up");
    s2s::swiglu_forward(out, gate, up);
  }
  void swiglu_backward(const s2s::Tensor& dgate, const s2s::Tensor& dup, const s2s::Tensor& dout,
                       const s2s::Tensor& gate, const s2s::Tensor& up, bool overwrite) override {
    Open o(*this, "swiglu_backward");
    t(dgate, "dgate"); t(dup, "dup"); t(dout, "dout"); t(gate, "gate"); t(up, "up");
    s2s::swiglu_backward(dgate, dup, dout, gate, up, overwrite);
  }
  void geglu_forward(const s2s::Tensor& out, const s2s::Tensor& gate, const s2s::Tensor& up,
                     s2s::GeluApprox ap) override {
    Open o(*this, "geglu_forward");
    t(out, "out"); t(gate, "gate"); t(up, "up");
    s2s::geglu_forward(out, gate, up, ap);
  }
  void geglu_backward(const s2s::Tensor& dgate, const s2s::Tensor& dup, const s2s::Tensor& dout,
                      const s2s::Tensor& gate, const s2s::Tensor& up, s2s::GeluApprox ap,
                      bool overwrite) override {
    Open o(*this, "geglu_backward");
    t(dgate, "dgate"); t(dup, "dup"); t(dout, "dout"); t(gate, "gate"); t(up, "up");
    s2s::geglu_backward(dgate, dup, dout, gate, up, ap, overwrite);
  }
  void dropout_forward(const s2s::Tensor& out, const s2s::Tensor& inp, float p,
                       s2s::DropoutSeed seed, uint64_t offset) override {
    Open o(*this, "dropout_forward");
    t(out, "out"); t(inp, "inp");
    s2s::dropout_forward(out, inp, p, seed, offset);
  }
  void dropout_backward(const s2s::Tensor& dinp, const s2s::Tensor& dout, float p,
                        s2s::DropoutSeed seed, uint64_t offset, bool overwrite) override {
    Open o(*this, "dropout_backward");
    t(dinp, "dinp"); t(dout, "dout");
    s2s::dropout_backward(dinp, dout, p, seed, offset, overwrite);
  }
  void cast(const s2s::Tensor& out, const s2s::Tensor& inp) override {
    Open o(*this, "cast");
    t(out, "out"); t(inp, "inp");
    s2s::cast_forward(out, inp);
  }
  void add(const s2s::Tensor& out, const s2s::Tensor& a, const s2s::Tensor& b) override {
    Open o(*this, "add");
    t(out, "out"); t(a, "a"); t(b, "b");
    s2s::add_forward(out, a, b);
  }
  void axpy(const s2s::Tensor& dst, float alpha, const s2s::Tensor& src) override {
    Open o(*this, "axpy");
    t(dst, "dst"); t(src, "src");
    s2s::axpy(dst, alpha, src);
  }
  void scale(const s2s::Tensor& out, const s2s::Tensor& x, float s) override {
    Open o(*this, "scale");
    t(out, "out"); t(x, "x");
    s2s::scale_forward(out, x, s);
  }
  void copy_values(const s2s::Tensor& dst, const s2s::Tensor& src) override {
    Open o(*this, "copy_values");
    t(dst, "dst"); t(src, "src");
    s2s::copy_values(dst, src);
  }
  void copy_columns(float* dst, const float* src, int64_t rows, int64_t src_cols, int64_t col0,
                    int64_t width) override {
    Open o(*this, "copy_columns");
    need(dst, sizeof(float) * size_t(rows * width), "copy_columns", "dst");
    need(src, sizeof(float) * size_t(rows * src_cols), "copy_columns", "src");
    s2s::copy_columns(dst, src, rows, src_cols, col0, width);
  }
  void add_to_columns(float* dst, const float* src, int64_t rows, int64_t dst_cols, int64_t col0,
                      int64_t width) override {
    Open o(*this, "add_to_columns");
    need(dst, sizeof(float) * size_t(rows * dst_cols), "add_to_columns", "dst");
    need(src, sizeof(float) * size_t(rows * width), "add_to_columns", "src");
    s2s::add_to_columns(dst, src, rows, dst_cols, col0, width);
  }
  void set_columns(float* dst, const float* src, int64_t rows, int64_t dst_cols, int64_t col0,
                   int64_t width) override {
    Open o(*this, "set_columns");
    need(dst, sizeof(float) * size_t(rows * dst_cols), "set_columns", "dst");
    if (src != nullptr) need(src, sizeof(float) * size_t(rows * width), "set_columns", "src");
    s2s::set_columns(dst, src, rows, dst_cols, col0, width);
  }
  void attention_forward(const s2s::Tensor& out, const s2s::Tensor& lse, const s2s::Tensor& q,
                         const s2s::Tensor& k, const s2s::Tensor& v, const s2s::Tensor& bias,
                         const uint8_t* key_mask, int64_t key_mask_size,
                         const s2s::AttentionOptions& options) override {
    Open o(*this, "attention_forward");
    t(out, "out"); t(lse, "lse"); t(q, "q"); t(k, "k"); t(v, "v"); t(bias, "bias");
    idx(key_mask, key_mask_size, "key_mask");
    s2s::attention_forward(out, lse, q, k, v, bias, key_mask, key_mask_size, options);
  }
  void attention_backward(const s2s::Tensor& dq, const s2s::Tensor& dk, const s2s::Tensor& dv,
                          const s2s::Tensor& dbias, const s2s::Tensor& dout, const s2s::Tensor& q,
                          const s2s::Tensor& k, const s2s::Tensor& v, const s2s::Tensor& out,
                          const s2s::Tensor& lse, const s2s::Tensor& bias, const uint8_t* key_mask,
                          int64_t key_mask_size, const s2s::AttentionOptions& options,
                          bool overwrite) override {
    Open o(*this, "attention_backward");
    t(dq, "dq"); t(dk, "dk"); t(dv, "dv"); t(dbias, "dbias"); t(dout, "dout"); t(q, "q");
    t(k, "k"); t(v, "v"); t(out, "out"); t(lse, "lse"); t(bias, "bias");
    idx(key_mask, key_mask_size, "key_mask");
    s2s::attention_backward(dq, dk, dv, dbias, dout, q, k, v, out, lse, bias, key_mask,
                            key_mask_size, options, overwrite);
  }
  void attention_cached_forward(const s2s::Tensor& out, const s2s::Tensor& q,
                                const s2s::Tensor& k_cache, const s2s::Tensor& v_cache,
                                const int32_t* slot, const int32_t* key_begin,
                                const int32_t* key_end, const s2s::Tensor& bias,
                                const s2s::AttentionOptions& options) override {
    Open o(*this, "attention_cached_forward");
    t(out, "out"); t(q, "q"); t(k_cache, "k_cache"); t(v_cache, "v_cache"); t(bias, "bias");
    const int64_t R = q.ndim > 0 ? q.shape[0] : 0;
    idx(slot, R, "slot"); idx(key_begin, R, "key_begin"); idx(key_end, R, "key_end");
    s2s::attention_cached_forward(out, q, k_cache, v_cache, slot, key_begin, key_end, bias,
                                  options);
  }
  void kv_cache_append(const s2s::Tensor& k_cache, const s2s::Tensor& v_cache,
                       const s2s::Tensor& k, const s2s::Tensor& v, const int32_t* slot,
                       const int32_t* key_end) override {
    Open o(*this, "kv_cache_append");
    t(k_cache, "k_cache"); t(v_cache, "v_cache"); t(k, "k"); t(v, "v");
    const int64_t R = k.ndim > 0 ? k.shape[0] : 0;
    idx(slot, R, "slot"); idx(key_end, R, "key_end");
    s2s::kv_cache_append(k_cache, v_cache, k, v, slot, key_end);
  }

  void rope_forward(const s2s::Tensor& out, const s2s::Tensor& inp, const int32_t* positions,
                    int64_t num_positions, float theta) override {
    Open o(*this, "rope_forward");
    t(out, "out"); t(inp, "inp"); idx(positions, num_positions, "positions");
    s2s::rope_forward(out, inp, positions, num_positions, theta);
  }
  void rope_backward(const s2s::Tensor& dinp, const s2s::Tensor& dout, const int32_t* positions,
                     int64_t num_positions, float theta, bool overwrite) override {
    Open o(*this, "rope_backward");
    t(dinp, "dinp"); t(dout, "dout"); idx(positions, num_positions, "positions");
    s2s::rope_backward(dinp, dout, positions, num_positions, theta, overwrite);
  }
  void t5_relative_position_forward(const s2s::Tensor& bias, const s2s::Tensor& table,
                                    const s2s::T5RelativePositionOptions& options) override {
    Open o(*this, "t5_relative_position_forward");
    t(bias, "bias"); t(table, "table");
    s2s::t5_relative_position_forward(bias, table, options);
  }
  void t5_relative_position_backward(const s2s::Tensor& dtable, const s2s::Tensor& dbias,
                                     const s2s::T5RelativePositionOptions& options) override {
    Open o(*this, "t5_relative_position_backward");
    t(dtable, "dtable"); t(dbias, "dbias");
    s2s::t5_relative_position_backward(dtable, dbias, options);
  }
  void t5_relative_position_decoding_forward(
      const s2s::Tensor& bias, const s2s::Tensor& table, const int32_t* key_end,
      const s2s::T5RelativePositionOptions& options) override {
    Open o(*this, "t5_relative_position_decoding_forward");
    t(bias, "bias"); t(table, "table"); idx(key_end, 1, "key_end");
    s2s::t5_relative_position_decoding_forward(bias, table, key_end, options);
  }
  s2s::CrossEntropyResult cross_entropy_forward(const s2s::Tensor& lse, const s2s::Tensor& logits,
                                                const int32_t* labels, int64_t num_labels,
                                                const s2s::CrossEntropyOptions& options) override {
    Open o(*this, "cross_entropy_forward");
    t(lse, "lse"); t(logits, "logits"); idx(labels, num_labels, "labels");
    return s2s::cross_entropy_forward(lse, logits, labels, num_labels, options);
  }
  void cross_entropy_rows(const s2s::Tensor& lse, const s2s::Tensor& label_logit,
                          const s2s::Tensor& logits, const int32_t* labels, int64_t num_labels,
                          int32_t ignore_index) override {
    Open o(*this, "cross_entropy_rows");
    t(lse, "lse"); t(label_logit, "label_logit"); t(logits, "logits");
    idx(labels, num_labels, "labels");
    s2s::cross_entropy_rows(lse, label_logit, logits, labels, num_labels, ignore_index);
  }
  void cross_entropy_backward(const s2s::Tensor& dlogits, const s2s::Tensor& logits,
                              const s2s::Tensor& lse, const int32_t* labels, int64_t num_labels,
                              float dloss, const s2s::CrossEntropyOptions& options,
                              bool overwrite) override {
    Open o(*this, "cross_entropy_backward");
    f32_like_cuda(dlogits, "dlogits");
    t(dlogits, "dlogits"); t(logits, "logits"); t(lse, "lse"); idx(labels, num_labels, "labels");
    s2s::cross_entropy_backward(dlogits, logits, lse, labels, num_labels, dloss, options, overwrite);
  }
  void cross_entropy_loss(const s2s::Tensor& loss, const s2s::Tensor& lse,
                          const s2s::Tensor& label_logit, const int32_t* labels,
                          int64_t num_labels, const s2s::CrossEntropyOptions& options) override {
    Open o(*this, "cross_entropy_loss");
    t(loss, "loss"); t(lse, "lse"); t(label_logit, "label_logit");
    idx(labels, num_labels, "labels");
    s2s::cross_entropy_loss(loss, lse, label_logit, labels, num_labels, options);
  }
  double scaled_grad_norm(const std::vector<s2s::Tensor>& grads, float scale) override {
    Open o(*this, "scaled_grad_norm");
    for (const s2s::Tensor& g : grads) t(g, "grads[]");
    return s2s::scaled_grad_norm(grads, scale);
  }
  void adamw_fused_update(const std::vector<s2s::AdamWFusedTensor>& tensors, int64_t step,
                          const s2s::AdamWOptions& options, float grad_scale,
                          float clip_coef) override {
    Open o(*this, "adamw_fused_update");
    for (const s2s::AdamWFusedTensor& x : tensors) {
      t(x.param, "param"); t(x.grad, "grad"); t(x.exp_avg, "exp_avg");
      t(x.exp_avg_sq, "exp_avg_sq"); t(x.compute, "compute");
    }
    s2s::adamw_fused_update(tensors, step, options, grad_scale, clip_coef);
  }
  void lora_merge(const s2s::Tensor& weight, const s2s::Tensor& A, const s2s::Tensor& B,
                  float scaling, s2s::WeightLayout layout) override {
    Open o(*this, "lora_merge");
    t(weight, "weight"); t(A, "A"); t(B, "B");
    s2s::lora_merge_forward(weight, A, B, scaling, layout);
  }

 private:
  // Makes device memory accessible for the duration of one backend call (not re-entrant: the
  // backend never calls itself while open).
  struct Open {
    CheckedHostBackend& b;
    const char* op;
    explicit Open(CheckedHostBackend& backend, const char* name = "") : b(backend), op(name) {
      b.protect(PROT_READ | PROT_WRITE);
      b.current_op_ = name;
      ++b.ops_run_;
    }
    ~Open() { b.protect(PROT_NONE); }
  };

  // New device memory reads as NaN (0xFF bytes), as the CUDA simulator's does: an op that reads
  // memory nothing wrote (accumulating into a gradient allocated for overwriting, say) shows.
  void poison(void* p, size_t bytes) {
    protect(PROT_READ | PROT_WRITE);
    std::memset(p, 0xFF, bytes);
    protect(PROT_NONE);
  }

  static size_t round_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }
  // The next `bytes` (rounded up, poisoned) of a region that `used` bytes of `limit` fill.
  void* carve(uint8_t* base, size_t& used, size_t limit, size_t bytes, const char* region) {
    const size_t size = round_up(bytes > 0 ? bytes : 1);
    S2S_REQUIRE(used + size <= limit, s2s::code::kOutOfMemory, "checked backend",
                "out of reserved ", region, " space");
    void* p = base + used;
    used += size;
    poison(p, size);
    return p;
  }
  static size_t page_round(size_t n) {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    return (n + page - 1) / page * page;
  }
  void protect(int prot) {
    if (persistent_used_ > 0) mprotect(base_, page_round(persistent_used_), prot);
    if (act_used_ > 0) mprotect(act_base_, page_round(act_used_), prot);
    if (seg_used_ > 0) mprotect(seg_base_, page_round(seg_used_), prot);
    if (in_used_ > 0) mprotect(in_base_, page_round(in_used_), prot);
  }

  // [p, p + bytes) must lie in one live allocation, in the activations or inputs handed out this
  // pass or in the running segment's.
  void need(const void* p, size_t bytes, const char* op, const char* arg) const {
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    const uint8_t* b = static_cast<const uint8_t*>(p);
    if (b >= act_base_ && b + bytes <= act_base_ + act_used_) return;
    if (b >= seg_base_ && b + bytes <= seg_base_ + seg_used_) return;
    if (b >= in_base_ && b + bytes <= in_base_ + in_used_) return;
    auto it = live_.upper_bound(a);
    if (it != live_.begin()) {
      --it;
      if (a >= it->first && a + bytes <= it->first + it->second) return;
    }
    s2s::fail(s2s::code::kInternal, "checked backend", op, ": argument '", arg, "' (", bytes,
              " bytes at ", p, ") is not device memory of this backend (",
              contains(p) ? "a freed buffer or past an allocation's end" : "host memory", ")");
  }
  void host(const void* p, const char* op, const char* arg) const {
    if (contains(p)) {
      s2s::fail(s2s::code::kInternal, "checked backend", op, ": argument '", arg,
                "' is device memory where host memory was expected");
    }
  }
  void t(const s2s::Tensor& x, const char* arg) const {
    // extent, not numel: a strided view (expect_f32_heads) spans its gaps too
    if (x.data != nullptr) {
      need(x.data, size_t(x.extent()) * s2s::dtype_size(x.dtype), current_op_, arg);
    }
  }
  // A dtype rule of the CUDA op (cuda_ops.h) that the CPU op is laxer about.
  void f32_like_cuda(const s2s::Tensor& x, const char* arg) const {
    if (x.data != nullptr && x.dtype != s2s::DType::F32) {
      s2s::fail(s2s::code::kInternal, "checked backend", current_op_, ": argument '", arg,
                "' is ", s2s::dtype_name(x.dtype), "; the CUDA op takes f32 only");
    }
  }
  template <typename T>
  void idx(const T* p, int64_t n, const char* arg) const {
    if (p != nullptr && n > 0) need(p, sizeof(T) * static_cast<size_t>(n), current_op_, arg);
  }

  static void install_segv_handler(uint8_t* base, size_t size) {
    region_base() = base;
    region_size() = size;
    struct sigaction sa {};
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_RESETHAND;
    sigaction(SIGSEGV, &sa, nullptr);
  }
  static uint8_t*& region_base() { static uint8_t* b = nullptr; return b; }
  static size_t& region_size() { static size_t s = 0; return s; }
  static void on_segv(int, siginfo_t* info, void*) {
    const uint8_t* a = static_cast<const uint8_t*>(info->si_addr);
    const bool ours = a >= region_base() && a < region_base() + region_size();
    const char* msg = ours ? "\nchecked backend: host code touched device memory outside the "
                             "backend's calls (SIGSEGV in the reserved device range)\n"
                           : "\nSIGSEGV outside the checked backend's device range\n";
    (void)!write(2, msg, std::strlen(msg));
    // SA_RESETHAND: returning re-runs the faulting access with the default action (a crash).
  }

  uint8_t* base_ = nullptr;
  uint8_t* act_base_ = nullptr;
  uint8_t* seg_base_ = nullptr;
  uint8_t* in_base_ = nullptr;
  size_t persistent_used_ = 0, act_used_ = 0, seg_used_ = 0, segment_peak_ = 0, in_used_ = 0;
  std::map<uintptr_t, size_t> live_;
  const char* current_op_ = "";
  int64_t ops_run_ = 0;
};

}  // namespace s2s_test
