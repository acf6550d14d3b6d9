// TracedBackend: a Backend that hands every call on to another one, or drops the device work
// (a dry run: the pass's host work, allocations and uploads only), and folds every call that
// queues device work, with its arguments, into a fingerprint: tensors by address, dtype and
// shape, pointers by address, scalars and options by value. Two passes with the same
// fingerprint queue the same kernels, copies and GEMMs with the same arguments, so one's
// recording (Backend::record) does the other's work; only the contents of memory (the batch's
// index arrays, uploaded) differ. PassReplay is its user. Uploads are not folded in: they are
// the pass's inputs, which a replay stages itself.
#pragma once
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <type_traits>
#include <vector>

#include "s2s/nn/backend.h"

namespace s2s {

class TracedBackend final : public Backend {
 public:
  // dry: device work is dropped (downloads read zeros, numbers returned are 0), memory and
  // uploads still reach `inner`.
  TracedBackend(Backend& inner, bool dry) : in_(inner), dry_(dry) {}

  uint64_t fingerprint() const;
  int64_t calls() const { return calls_; }  // calls folded in

  // ---- every Backend call, handed on (generated from backend.h's declarations) ----
  const char* name() const override {
    return in_.name();
  }
  DeviceKind kind() const override {
    return in_.kind();
  }
  int device_index() const override {
    return in_.device_index();
  }
  bool is_host() const override {
    return in_.is_host();
  }
  bool supports_bf16_gradients() const override {
    return in_.supports_bf16_gradients();
  }
  bool takes_half_activations() const override {
    return in_.takes_half_activations();
  }
  DType attention_input_dtype(const AttentionOptions& a0, int64_t head_dim) const override {
    return in_.attention_input_dtype(a0, head_dim);
  }
  int64_t min_loss_chunk_rows() const override {
    return in_.min_loss_chunk_rows();
  }
  int64_t aligned_row_stride(int64_t cols) const override {
    return in_.aligned_row_stride(cols);
  }
  bool fuses_linear_gelu_backward() const override {
    return in_.fuses_linear_gelu_backward();
  }
  bool fuses_linear_residual() const override { return in_.fuses_linear_residual(); }
  bool fuses_dropout_add() const override { return in_.fuses_dropout_add(); }
  bool fuses_linear_split_backward() const override {
    return in_.fuses_linear_split_backward();
  }
  Buffer allocate(size_t bytes) override {
    return in_.allocate(bytes);
  }
  void release_buffer(void* data, size_t bytes) override {
    return in_.release_buffer(data, bytes);
  }
  void* activation_allocate(size_t bytes) override {
    void* p = in_.activation_allocate(bytes);
    note("activation_allocate", bytes, p);
    return p;
  }
  void activation_reset() override {
    note("activation_reset");
    in_.activation_reset();
  }
  void* segment_allocate(size_t bytes) override {
    void* p = in_.segment_allocate(bytes);
    note("segment_allocate", bytes, p);
    return p;
  }
  void segment_reset() override {
    note("segment_reset");
    in_.segment_reset();
  }
  void* input_allocate(size_t bytes) override {
    void* p = in_.input_allocate(bytes);
    note("input_allocate", bytes, p);
    return p;
  }
  DeviceMemory device_memory() override {
    return in_.device_memory();
  }
  void reset_activation_peak() override {
    return in_.reset_activation_peak();
  }
  void upload(void* dst, const void* host_src, size_t bytes) override {
    return in_.upload(dst, host_src, bytes);
  }
  void download(void* host_dst, const void* src, size_t bytes) override {
    note("download", src, bytes);
    if (dry_) std::memset(host_dst, 0, bytes);
    else in_.download(host_dst, src, bytes);
  }
  void fill_zero(void* dst, size_t bytes) override {
    note("fill_zero", dst, bytes);
    if (!dry_) in_.fill_zero(dst, bytes);
  }
  void set_scalar(float* dst, float value) override {
    note("set_scalar", dst, value);
    if (!dry_) in_.set_scalar(dst, value);
  }
  void synchronize() override {
    note("synchronize");
    if (!dry_) in_.synchronize();
  }
  std::unique_ptr<RecordedWork> record(const std::function<void()>& work) override {
    return in_.record(work);
  }
  void embedding_forward(const Tensor& out, const Tensor& wte, const Tensor& wpe,
                         const int32_t* ids, int64_t num_ids, const int32_t* pos,
                         int64_t num_pos) override {
    note("embedding_forward", out, wte, wpe, ids, num_ids, pos, num_pos);
    if (!dry_) in_.embedding_forward(out, wte, wpe, ids, num_ids, pos, num_pos);
  }
  void embedding_backward(const Tensor& dwte, const Tensor& dwpe, const Tensor& dout,
                          const int32_t* ids, int64_t num_ids, const int32_t* pos,
                          int64_t num_pos) override {
    note("embedding_backward", dwte, dwpe, dout, ids, num_ids, pos, num_pos);
    if (!dry_) in_.embedding_backward(dwte, dwpe, dout, ids, num_ids, pos, num_pos);
  }
  void layernorm_forward(const Tensor& out, const Tensor& mean, const Tensor& rstd,
                         const Tensor& inp, const Tensor& weight, const Tensor& bias,
                         float eps) override {
    note("layernorm_forward", out, mean, rstd, inp, weight, bias, eps);
    if (!dry_) in_.layernorm_forward(out, mean, rstd, inp, weight, bias, eps);
  }
  void layernorm_backward(const Tensor& dinp, const Tensor& dweight, const Tensor& dbias,
                          const Tensor& dout, const Tensor& inp, const Tensor& weight,
                          const Tensor& mean, const Tensor& rstd, bool overwrite_dinp) override {
    note("layernorm_backward", dinp, dweight, dbias, dout, inp, weight, mean, rstd, overwrite_dinp);
    if (!dry_) in_.layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd,
        overwrite_dinp);
  }
  void rmsnorm_forward(const Tensor& out, const Tensor& rstd, const Tensor& inp,
                       const Tensor& weight, float eps) override {
    note("rmsnorm_forward", out, rstd, inp, weight, eps);
    if (!dry_) in_.rmsnorm_forward(out, rstd, inp, weight, eps);
  }
  void rmsnorm_backward(const Tensor& dinp, const Tensor& dweight, const Tensor& dout,
                        const Tensor& inp, const Tensor& weight, const Tensor& rstd,
                        bool overwrite_dinp) override {
    note("rmsnorm_backward", dinp, dweight, dout, inp, weight, rstd, overwrite_dinp);
    if (!dry_) in_.rmsnorm_backward(dinp, dweight, dout, inp, weight, rstd, overwrite_dinp);
  }
  void linear_residual_forward(const Tensor& out, const Tensor& inp, const Tensor& weight,
                               const Tensor& bias, const Tensor& residual,
                               WeightLayout layout) override {
    note("linear_residual_forward", out, inp, weight, bias, residual, layout);
    if (!dry_) in_.linear_residual_forward(out, inp, weight, bias, residual, layout);
  }
  void linear_forward(const Tensor& out, const Tensor& inp, const Tensor& weight,
                      const Tensor& bias, WeightLayout layout) override {
    note("linear_forward", out, inp, weight, bias, layout);
    if (!dry_) in_.linear_forward(out, inp, weight, bias, layout);
  }
  void linear_backward(const Tensor& dinp, const Tensor& dweight, const Tensor& dbias,
                       const Tensor& dout, const Tensor& inp, const Tensor& weight,
                       WeightLayout layout, bool overwrite_dinp) override {
    note("linear_backward", dinp, dweight, dbias, dout, inp, weight, layout, overwrite_dinp);
    if (!dry_) in_.linear_backward(dinp, dweight, dbias, dout, inp, weight, layout, overwrite_dinp);
  }
  void linear_gelu_backward(const Tensor& dinp, const Tensor& dweight, const Tensor& dbias,
                            const Tensor& dpre, const Tensor& dact, const Tensor& pre,
                            const Tensor& inp, const Tensor& weight, WeightLayout layout,
                            GeluApprox approximate, bool overwrite_dinp) override {
    note("linear_gelu_backward", dinp, dweight, dbias, dpre, dact, pre, inp, weight, layout,
         approximate, overwrite_dinp);
    if (!dry_) in_.linear_gelu_backward(dinp, dweight, dbias, dpre, dact, pre, inp, weight, layout,
        approximate, overwrite_dinp);
  }
  void linear_split_backward(const Tensor& dinp, const Tensor& dweight, const Tensor& dbias,
                             const std::vector<Tensor>& dparts, const std::vector<int64_t>& widths,
                             const Tensor& inp, const Tensor& weight, WeightLayout layout,
                             bool overwrite_dinp) override {
    note("linear_split_backward", dinp, dweight, dbias, dparts, widths, inp, weight, layout,
         overwrite_dinp);
    if (!dry_) in_.linear_split_backward(dinp, dweight, dbias, dparts, widths, inp, weight, layout,
        overwrite_dinp);
  }
  void matmul(const Tensor& c, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b,
              float alpha, float beta) override {
    note("matmul", c, a, b, trans_a, trans_b, alpha, beta);
    if (!dry_) in_.matmul(c, a, b, trans_a, trans_b, alpha, beta);
  }
  void gelu_forward(const Tensor& out, const Tensor& inp, GeluApprox approximate) override {
    note("gelu_forward", out, inp, approximate);
    if (!dry_) in_.gelu_forward(out, inp, approximate);
  }
  void gelu_backward(const Tensor& dinp, const Tensor& dout, const Tensor& inp,
                     GeluApprox approximate, bool overwrite) override {
    note("gelu_backward", dinp, dout, inp, approximate, overwrite);
    if (!dry_) in_.gelu_backward(dinp, dout, inp, approximate, overwrite);
  }
  void relu_forward(const Tensor& out, const Tensor& inp) override {
    note("relu_forward", out, inp);
    if (!dry_) in_.relu_forward(out, inp);
  }
  void relu_backward(const Tensor& dinp, const Tensor& dout, const Tensor& inp,
                     bool overwrite) override {
    note("relu_backward", dinp, dout, inp, overwrite);
    if (!dry_) in_.relu_backward(dinp, dout, inp, overwrite);
  }
  void silu_forward(const Tensor& out, const Tensor& inp) override {
    note("silu_forward", out, inp);
    if (!dry_) in_.silu_forward(out, inp);
  }
  void silu_backward(const Tensor& dinp, const Tensor& dout, const Tensor& inp,
                     bool overwrite) override {
    note("silu_backward", dinp, dout, inp, overwrite);
    if (!dry_) in_.silu_backward(dinp, dout, inp, overwrite);
  }
  void swiglu_forward(const Tensor& out, const Tensor& gate, const Tensor& up) override {
    note("swiglu_forward", out, gate, up);
    if (!dry_) in_.swiglu_forward(out, gate, up);
  }
  void swiglu_backward(const Tensor& dgate, const Tensor& dup, const Tensor& dout,
                       const Tensor& gate, const Tensor& up, bool overwrite) override {
    note("swiglu_backward", dgate, dup, dout, gate, up, overwrite);
    if (!dry_) in_.swiglu_backward(dgate, dup, dout, gate, up, overwrite);
  }
  void geglu_forward(const Tensor& out, const Tensor& gate, const Tensor& up,
                     GeluApprox approximate) override {
    note("geglu_forward", out, gate, up, approximate);
    if (!dry_) in_.geglu_forward(out, gate, up, approximate);
  }
  void geglu_backward(const Tensor& dgate, const Tensor& dup, const Tensor& dout,
                      const Tensor& gate, const Tensor& up, GeluApprox approximate,
                      bool overwrite) override {
    note("geglu_backward", dgate, dup, dout, gate, up, approximate, overwrite);
    if (!dry_) in_.geglu_backward(dgate, dup, dout, gate, up, approximate, overwrite);
  }
  void dropout_forward(const Tensor& out, const Tensor& inp, float p, DropoutSeed seed,
                       uint64_t offset) override {
    note("dropout_forward", out, inp, p, seed, offset);
    if (!dry_) in_.dropout_forward(out, inp, p, seed, offset);
  }
  void dropout_add_forward(const Tensor& out, const Tensor& residual, const Tensor& branch,
                           float p, DropoutSeed seed, uint64_t offset) override {
    note("dropout_add_forward", out, residual, branch, p, seed, offset);
    if (!dry_) in_.dropout_add_forward(out, residual, branch, p, seed, offset);
  }
  void dropout_backward(const Tensor& dinp, const Tensor& dout, float p, DropoutSeed seed,
                        uint64_t offset, bool overwrite) override {
    note("dropout_backward", dinp, dout, p, seed, offset, overwrite);
    if (!dry_) in_.dropout_backward(dinp, dout, p, seed, offset, overwrite);
  }
  void cast(const Tensor& out, const Tensor& inp) override {
    note("cast", out, inp);
    if (!dry_) in_.cast(out, inp);
  }
  void add(const Tensor& out, const Tensor& a, const Tensor& b) override {
    note("add", out, a, b);
    if (!dry_) in_.add(out, a, b);
  }
  void axpy(const Tensor& dst, float alpha, const Tensor& src) override {
    note("axpy", dst, alpha, src);
    if (!dry_) in_.axpy(dst, alpha, src);
  }
  void scale(const Tensor& out, const Tensor& x, float s) override {
    note("scale", out, x, s);
    if (!dry_) in_.scale(out, x, s);
  }
  void copy_values(const Tensor& dst, const Tensor& src) override {
    note("copy_values", dst, src);
    if (!dry_) in_.copy_values(dst, src);
  }
  void copy_columns(float* dst, const float* src, int64_t rows, int64_t src_cols, int64_t col0,
                    int64_t width) override {
    note("copy_columns", dst, src, rows, src_cols, col0, width);
    if (!dry_) in_.copy_columns(dst, src, rows, src_cols, col0, width);
  }
  void copy_columns_rounded(const Tensor& dst, const float* src, int64_t rows, int64_t src_cols,
                            int64_t col0, int64_t width) override {
    note("copy_columns_rounded", dst, src, rows, src_cols, col0, width);
    if (!dry_) in_.copy_columns_rounded(dst, src, rows, src_cols, col0, width);
  }
  void add_to_columns(float* dst, const float* src, int64_t rows, int64_t dst_cols, int64_t col0,
                      int64_t width) override {
    note("add_to_columns", dst, src, rows, dst_cols, col0, width);
    if (!dry_) in_.add_to_columns(dst, src, rows, dst_cols, col0, width);
  }
  void set_columns(float* dst, const float* src, int64_t rows, int64_t dst_cols, int64_t col0,
                   int64_t width) override {
    note("set_columns", dst, src, rows, dst_cols, col0, width);
    if (!dry_) in_.set_columns(dst, src, rows, dst_cols, col0, width);
  }
  void attention_forward(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k,
                         const Tensor& v, const Tensor& bias, const uint8_t* key_mask,
                         int64_t key_mask_size, const AttentionOptions& options) override {
    note("attention_forward", out, lse, q, k, v, bias, key_mask, key_mask_size, options);
    if (!dry_) in_.attention_forward(out, lse, q, k, v, bias, key_mask, key_mask_size, options);
  }
  void attention_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dbias,
                          const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                          const Tensor& out, const Tensor& lse, const Tensor& bias,
                          const uint8_t* key_mask, int64_t key_mask_size,
                          const AttentionOptions& options, bool overwrite) override {
    note("attention_backward", dq, dk, dv, dbias, dout, q, k, v, out, lse, bias, key_mask,
         key_mask_size, options, overwrite);
    if (!dry_) in_.attention_backward(dq, dk, dv, dbias, dout, q, k, v, out, lse, bias, key_mask,
        key_mask_size, options, overwrite);
  }
  void attention_cached_forward(const Tensor& out, const Tensor& q, const Tensor& k_cache,
                                const Tensor& v_cache, const int32_t* slot,
                                const int32_t* key_begin, const int32_t* key_end,
                                const Tensor& bias, const AttentionOptions& options) override {
    note("attention_cached_forward", out, q, k_cache, v_cache, slot, key_begin, key_end, bias,
         options);
    if (!dry_) in_.attention_cached_forward(out, q, k_cache, v_cache, slot, key_begin, key_end,
        bias, options);
  }
  void kv_cache_append(const Tensor& k_cache, const Tensor& v_cache, const Tensor& k,
                       const Tensor& v, const int32_t* slot, const int32_t* key_end) override {
    note("kv_cache_append", k_cache, v_cache, k, v, slot, key_end);
    if (!dry_) in_.kv_cache_append(k_cache, v_cache, k, v, slot, key_end);
  }
  void rope_forward(const Tensor& out, const Tensor& inp, const int32_t* positions,
                    int64_t num_positions, float theta) override {
    note("rope_forward", out, inp, positions, num_positions, theta);
    if (!dry_) in_.rope_forward(out, inp, positions, num_positions, theta);
  }
  void rope_backward(const Tensor& dinp, const Tensor& dout, const int32_t* positions,
                     int64_t num_positions, float theta, bool overwrite) override {
    note("rope_backward", dinp, dout, positions, num_positions, theta, overwrite);
    if (!dry_) in_.rope_backward(dinp, dout, positions, num_positions, theta, overwrite);
  }
  void t5_relative_position_forward(const Tensor& bias, const Tensor& table,
                                    const T5RelativePositionOptions& options) override {
    note("t5_relative_position_forward", bias, table, options);
    if (!dry_) in_.t5_relative_position_forward(bias, table, options);
  }
  void t5_relative_position_backward(const Tensor& dtable, const Tensor& dbias,
                                     const T5RelativePositionOptions& options) override {
    note("t5_relative_position_backward", dtable, dbias, options);
    if (!dry_) in_.t5_relative_position_backward(dtable, dbias, options);
  }
  void t5_relative_position_decoding_forward(const Tensor& bias, const Tensor& table,
                                             const int32_t* key_end,
                                             const T5RelativePositionOptions& options) override {
    note("t5_relative_position_decoding_forward", bias, table, key_end, options);
    if (!dry_) in_.t5_relative_position_decoding_forward(bias, table, key_end, options);
  }
  CrossEntropyResult cross_entropy_forward(const Tensor& lse, const Tensor& logits,
                                           const int32_t* labels, int64_t num_labels,
                                           const CrossEntropyOptions& options) override {
    note("cross_entropy_forward", lse, logits, labels, num_labels, options);
    return dry_ ? CrossEntropyResult{} : in_.cross_entropy_forward(lse, logits, labels, num_labels,
                                                                   options);
  }
  void cross_entropy_rows(const Tensor& lse, const Tensor& label_logit, const Tensor& logits,
                          const int32_t* labels, int64_t num_labels,
                          int32_t ignore_index) override {
    note("cross_entropy_rows", lse, label_logit, logits, labels, num_labels, ignore_index);
    if (!dry_) in_.cross_entropy_rows(lse, label_logit, logits, labels, num_labels, ignore_index);
  }
  void cross_entropy_backward(const Tensor& dlogits, const Tensor& logits, const Tensor& lse,
                              const int32_t* labels, int64_t num_labels, float dloss,
                              const CrossEntropyOptions& options, bool overwrite) override {
    note("cross_entropy_backward", dlogits, logits, lse, labels, num_labels, dloss, options,
         overwrite);
    if (!dry_) in_.cross_entropy_backward(dlogits, logits, lse, labels, num_labels, dloss, options,
        overwrite);
  }
  void cross_entropy_loss(const Tensor& loss, const Tensor& lse, const Tensor& label_logit,
                          const int32_t* labels, int64_t num_labels,
                          const CrossEntropyOptions& options) override {
    note("cross_entropy_loss", loss, lse, label_logit, labels, num_labels, options);
    if (!dry_) in_.cross_entropy_loss(loss, lse, label_logit, labels, num_labels, options);
  }
  CrossEntropyResult cross_entropy_forward_backward(const Tensor& lse, const Tensor& dlogits,
                                                    const Tensor& logits, const int32_t* labels,
                                                    int64_t num_labels, float dloss,
                                                    const CrossEntropyOptions& options) override {
    note("cross_entropy_forward_backward", lse, dlogits, logits, labels, num_labels, dloss,
         options);
    return dry_ ? CrossEntropyResult{} : in_.cross_entropy_forward_backward(lse, dlogits, logits,
                                                                            labels, num_labels,
                                                                            dloss, options);
  }
  void cross_entropy_rows_backward(const Tensor& lse, const Tensor& label_logit,
                                   const Tensor& dlogits, const Tensor& logits,
                                   const int32_t* labels, int64_t num_labels, int32_t ignore_index,
                                   float dloss) override {
    note("cross_entropy_rows_backward", lse, label_logit, dlogits, logits, labels, num_labels,
         ignore_index, dloss);
    if (!dry_) in_.cross_entropy_rows_backward(lse, label_logit, dlogits, logits, labels,
        num_labels, ignore_index, dloss);
  }
  double scaled_grad_norm(const std::vector<Tensor>& grads, float scale) override {
    note("scaled_grad_norm", grads, scale);
    return dry_ ? double{} : in_.scaled_grad_norm(grads, scale);
  }
  void adamw_fused_update(const std::vector<AdamWFusedTensor>& tensors, int64_t step,
                          const AdamWOptions& options, float grad_scale, float clip_coef) override {
    note("adamw_fused_update", tensors, step, options, grad_scale, clip_coef);
    if (!dry_) in_.adamw_fused_update(tensors, step, options, grad_scale, clip_coef);
  }
  void clipped_adamw_update(const std::vector<AdamWFusedTensor>& tensors, int64_t step,
                            const AdamWOptions& options, float grad_scale, double max_grad_norm,
                            double* norm_out) override {
    note("clipped_adamw_update", tensors, step, options, grad_scale, max_grad_norm, norm_out);
    if (!dry_) in_.clipped_adamw_update(tensors, step, options, grad_scale, max_grad_norm, norm_out);
  }
  void lora_merge(const Tensor& weight, const Tensor& A, const Tensor& B, float scaling,
                  WeightLayout layout) override {
    note("lora_merge", weight, A, B, scaling, layout);
    if (!dry_) in_.lora_merge(weight, A, B, scaling, layout);
  }


 private:
  template <typename... A>
  void note(const char* op, const A&... args) {
    ++calls_;
    mix(op);  // the name by address: each override's own literal, fixed while the process runs
    (mix(args), ...);
  }
  // Folds one word in, a word at a time (hashing the pass's arguments byte by byte was most of a
  // dry run's host time), word i into lane i % 4 with xxHash64's round: lane = rotl(lane +
  // w * P2, 31) * P1, a bijection of the lane for every w, so each lane's words count in order
  // and bit by bit. Four lanes because a round's multiplies wait on the one before: one chain
  // was a quarter of a dry run. fingerprint() merges the lanes and the count.
  static constexpr uint64_t kP1 = 0x9E3779B185EBCA87ull, kP2 = 0xC2B2AE3D27D4EB4Full;
  static uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
  void mix_word(uint64_t w) {
    uint64_t& lane = lanes_[words_++ & 3];
    lane = rotl(lane + w * kP2, 31) * kP1;
  }
  template <typename T>
  void mix(const T& v) {
    static_assert(std::is_arithmetic_v<T> || std::is_enum_v<T> || std::is_pointer_v<T>,
                  "TracedBackend: fold this argument type in explicitly");
    static_assert(sizeof(T) <= sizeof(uint64_t), "TracedBackend: a word at most");
    uint64_t w = 0;
    std::memcpy(&w, &v, sizeof v);  // bits, so -0.0f and 0.0f differ, as the kernels' results may
    mix_word(w);
  }
  void mix(const Tensor& t);
  void mix(const DropoutSeed& s);
  void mix(const AttentionOptions& o);
  void mix(const CrossEntropyOptions& o);
  void mix(const T5RelativePositionOptions& o);
  void mix(const AdamWOptions& o);
  void mix(const AdamWFusedTensor& t);
  template <typename T>
  void mix(const std::vector<T>& v) {
    mix(v.size());
    for (const T& x : v) mix(x);
  }

  Backend& in_;
  bool dry_;
  uint64_t lanes_[4] = {0x5EED5EED5EED5EEDull + kP1 + kP2, 0x5EED5EED5EED5EEDull + kP2,
                        0x5EED5EED5EED5EEDull, 0x5EED5EED5EED5EEDull - kP1};
  uint64_t words_ = 0;
  int64_t calls_ = 0;
};

}  // namespace s2s
