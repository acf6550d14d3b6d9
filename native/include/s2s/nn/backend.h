// Backend: where a model's tensors live and which ops run on them, so that one model code path
// (nn/ layers, ParamStore, the optimizer) runs on the CPU or on a GPU. The nn layers, the param
// store and the optimizer never touch tensor memory themselves: every op, every allocation of
// tensor memory, every zero-fill and every copy between host and tensor memory goes through
// the model's Backend (one virtual call per op; the CPU backend calls exactly the CPU ops of
// s2s/ops/*.h, so CPU results and speed are unchanged).
//   - cpu_backend(): tensor memory is host memory; upload/download are memcpy.
//   - the CUDA backend (backends/cuda/cuda_backend.h, built with the CUDA backend): device
//     memory, one cuda::Context (stream, device arena) per model.
//   - tests add a "checked host" backend that runs the CPU ops on memory from a separate region
//     and fails when an op is handed memory outside it (native/tests/checked_backend.h).
// Index arrays (ids, positions, labels, key masks) are tensor memory too: Graph::indices copies
// a host array into the graph's tensor memory once per pass (no copy on the CPU).
// Calls that return numbers (cross_entropy_forward, scaled_grad_norm) and download wait for the
// backend's queued work; everything else may return once queued (clipped_adamw_update too: its
// norm stays in tensor memory).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "s2s/device.h"
#include "s2s/ops/adamw.h"
#include "s2s/ops/attention.h"
#include "s2s/ops/attention_cached.h"
#include "s2s/ops/cross_entropy.h"
#include "s2s/ops/dropout.h"
#include "s2s/ops/gelu.h"
#include "s2s/ops/kv_cache_append.h"
#include "s2s/ops/linear.h"
#include "s2s/ops/t5_relative_position.h"
#include "s2s/tensor.h"

namespace s2s {

class Backend;

// Owned tensor memory of one backend (parameters, gradients, moments, compute copies). Move-only;
// the backend must outlive it (ParamStore holds its backend for that reason).
class Buffer {
 public:
  Buffer() = default;
  Buffer(Backend* owner, void* data, size_t bytes) : owner_(owner), data_(data), bytes_(bytes) {}
  ~Buffer() { reset(); }
  Buffer(Buffer&& o) noexcept : owner_(o.owner_), data_(o.data_), bytes_(o.bytes_) {
    o.data_ = nullptr;
    o.bytes_ = 0;
  }
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void* data() const { return data_; }
  float* f32() const { return static_cast<float*>(data_); }
  size_t bytes() const { return bytes_; }
  explicit operator bool() const { return data_ != nullptr; }
  void reset();

 private:
  Backend* owner_ = nullptr;
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

// Device work recorded once (Backend::record) that replay() queues again, with the arguments it
// was recorded with, without the host issuing it op by op (a CUDA graph).
class RecordedWork {
 public:
  virtual ~RecordedWork() = default;
  virtual void replay() = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual const char* name() const = 0;  // "cpu", "cuda", "checked-host"
  virtual DeviceKind kind() const = 0;
  // Which device of its kind: the GPU's index for CUDA (Device::name's N), 0 on the CPU.
  virtual int device_index() const { return 0; }
  // Tensor memory is plain host memory that host code may read and write directly (the CPU
  // backend only): no copies for index arrays, and the host-only paths (generation) may run.
  virtual bool is_host() const = 0;
  // Whether cross_entropy_backward may write bf16 dlogits and linear_backward read a bf16 dout
  // (the bf16-compute head's saving, Graph::grad_for_write_bf16: half the bytes of the largest
  // gradient, and no rounding pass before its GEMMs; the products are the same either way).
  virtual bool supports_bf16_gradients() const = 0;
  // Whether layernorm / rmsnorm / gelu / swiglu may write a bf16 or f16 output for the 16-bit
  // linears that alone read it, and linear read it (Graph::half_activations): the values those
  // linears would round the f32 output to, so the same products, without the rounding pass and
  // with half the bytes. The CUDA backend, where that traffic is the cost; the CPU rounds while
  // packing its GEMM operands, so it keeps f32 activations.
  virtual bool takes_half_activations() const { return false; }
  // The dtype attention_forward/backward may take q, k and v in under these options: F32, or the
  // 16-bit products' dtype where the backend's kernels would round q, k and v to it anyway (CUDA's
  // tensor-core kernels), so a producer that only attention reads (GPT-2's split, Llama's rope)
  // can write the rounded values. Same products; half the bytes. Where it is 16-bit, out may be
  // as well (nn::attention_output_dtype): the forward writes each fp32 value rounded, for a
  // 16-bit linear that would round it so; the backward's Di = <dout, out> then reads the rounded
  // values (FlashAttention's Di, from the 16-bit output it saves): gradients within bf16/f16
  // rounding of an f32 out's.
  virtual DType attention_input_dtype(const AttentionOptions&, int64_t /*head_dim*/) const {
    return DType::F32;
  }
  // The fewest rows a chunk of the chunked loss (nn::linear_cross_entropy) should have here. Each
  // chunk adds its product into the head's whole (V, C) gradient, 8 V C bytes of traffic against
  // 6 rows V C flops for the chunk's three GEMMs: the CPU's 64 MiB chunks (320 rows at GPT-2's
  // vocabulary) keep that small, a GPU's bandwidth-to-flops ratio needs thousands of rows.
  virtual int64_t min_loss_chunk_rows() const { return 1; }
  // The row stride (elements) this backend's GEMMs want for a wide matrix of `cols` columns that
  // they write and read (nn::linear_cross_entropy's logits and their gradient): cols on the CPU;
  // on a GPU cols rounded up to whole 128-byte lines, since cuBLASLt's fast kernels need 16-byte
  // aligned rows, and GPT-2's 50,257-token vocabulary leaves each row of (N, 50257) logits
  // 4-byte aligned in f32 and 2-byte in bf16 (torch.compile pads such strides the same way).
  virtual int64_t aligned_row_stride(int64_t cols) const { return cols; }
  // Whether linear_gelu_backward is a fused op here (nn::linear_gelu uses it only then).
  virtual bool fuses_linear_gelu_backward() const { return false; }
  // Whether linear_split_backward is a fused op here (nn::linear_split uses it only then).
  virtual bool fuses_linear_split_backward() const { return false; }
  // Whether linear_residual_forward is a fused op here (nn::linear_residual uses it only then).
  virtual bool fuses_linear_residual() const { return false; }
  // Whether dropout_add_forward is a fused op here (nn::dropout_residual_add uses it only then).
  virtual bool fuses_dropout_add() const { return false; }

  // ---- memory ----
  // Persistent tensor memory, uninitialised (S2S_OUT_OF_MEMORY when it cannot be had).
  virtual Buffer allocate(size_t bytes) = 0;
  virtual void release_buffer(void* data, size_t bytes) = 0;  // called by Buffer only
  // Graph activations of a non-host backend (the device arena); host backends are never asked,
  // the graph's own arena serves them. activation_reset frees them all (Graph::reset).
  virtual void* activation_allocate(size_t bytes) = 0;
  virtual void activation_reset() = 0;
  // The activations of a checkpointed segment (Graph::checkpoint) on a non-host backend: a
  // second region, because segment_reset releases them while the pass's activations made
  // around the segment (its output's copy, its inputs' gradients) stay.
  virtual void* segment_allocate(size_t bytes) = 0;
  virtual void segment_reset() = 0;
  // A pass's inputs on a non-host backend (Graph::indices' arrays, Graph::dropout_key's seed):
  // a third region, which no op's scratch and no segment reuses during the pass, so what is
  // copied there stays until the pass ends, whenever the pass's kernels run (PassReplay's dry
  // run copies a recorded pass's inputs before any of its work runs). Freed by activation_reset.
  virtual void* input_allocate(size_t bytes) = 0;
  // A non-host backend's activation memory (both arenas: the most in use since
  // reset_activation_peak, and what they hold reserved) and its device's memory (total, and
  // free to every process). Host backends: known == false; the graph's arenas hold their
  // activations (Graph::activation_memory).
  struct DeviceMemory {
    bool known = false;
    size_t activation_peak = 0, activation_reserved = 0, device_total = 0, device_free = 0;
  };
  virtual DeviceMemory device_memory() { return {}; }
  virtual void reset_activation_peak() {}
  virtual void upload(void* dst, const void* host_src, size_t bytes) = 0;
  virtual void download(void* host_dst, const void* src, size_t bytes) = 0;  // waits
  virtual void fill_zero(void* dst, size_t bytes) = 0;
  // *dst = value (one float of tensor memory), queued like an op: the value travels with the
  // call (a kernel argument on a GPU), so a recorded pass (Backend::record) keeps it, where an
  // upload would be a copy from the host that a recording cannot hold.
  virtual void set_scalar(float* dst, float value) = 0;
  virtual void synchronize() = 0;  // waits for queued work; raises what kernels reported
  // Calls `work` and records the device work it queues instead of running it; the recording has
  // not run yet (replay() runs it). Null where the backend does not record (host backends) or
  // the recording failed: then nothing `work` queued has run, and the caller runs it itself.
  // Only for work whose every argument is the same at each replay (a decoding step's: its
  // inputs are uploaded to the same addresses before each replay).
  virtual std::unique_ptr<RecordedWork> record(const std::function<void()>& /*work*/) {
    return nullptr;
  }

  // ---- ops: the arguments and semantics of the CPU ops (s2s/ops/*.h), tensor memory only ----
  virtual void embedding_forward(const Tensor& out, const Tensor& wte, const Tensor& wpe,
                                 const int32_t* ids, int64_t num_ids, const int32_t* pos,
                                 int64_t num_pos) = 0;
  virtual void embedding_backward(const Tensor& dwte, const Tensor& dwpe, const Tensor& dout,
                                  const int32_t* ids, int64_t num_ids, const int32_t* pos,
                                  int64_t num_pos) = 0;
  virtual void layernorm_forward(const Tensor& out, const Tensor& mean, const Tensor& rstd,
                                 const Tensor& inp, const Tensor& weight, const Tensor& bias,
                                 float eps) = 0;
  virtual void layernorm_backward(const Tensor& dinp, const Tensor& dweight, const Tensor& dbias,
                                  const Tensor& dout, const Tensor& inp, const Tensor& weight,
                                  const Tensor& mean, const Tensor& rstd, bool overwrite_dinp) = 0;
  virtual void rmsnorm_forward(const Tensor& out, const Tensor& rstd, const Tensor& inp,
                               const Tensor& weight, float eps) = 0;
  virtual void rmsnorm_backward(const Tensor& dinp, const Tensor& dweight, const Tensor& dout,
                                const Tensor& inp, const Tensor& weight, const Tensor& rstd,
                                bool overwrite_dinp) = 0;
  virtual void linear_forward(const Tensor& out, const Tensor& inp, const Tensor& weight,
                              const Tensor& bias, WeightLayout layout) = 0;
  virtual void linear_backward(const Tensor& dinp, const Tensor& dweight, const Tensor& dbias,
                               const Tensor& dout, const Tensor& inp, const Tensor& weight,
                               WeightLayout layout, bool overwrite_dinp) = 0;
  // out = residual + linear_forward(inp): the linear's f32 output added onto the residual (f32,
  // out's shape) as it is made, so it is never stored (the GPU's saving: a residual-sized tensor
  // written and read once less, and the add's launch). Within rounding of the two ops (the
  // additions' order may differ). Backends whose fuses_linear_residual() is true only.
  virtual void linear_residual_forward(const Tensor& /*out*/, const Tensor& /*inp*/,
                                       const Tensor& /*weight*/, const Tensor& /*bias*/,
                                       const Tensor& /*residual*/, WeightLayout /*layout*/) {
    fail(code::kInternal, "linear_residual_forward", "not fused on the ", name(), " backend");
  }
  // The backward of gelu(linear(x)): linear_backward with dout = gelu_backward(dact, pre), that
  // value bit for bit, made as the linear's backward reads it instead of stored in f32 first
  // (the GPU's saving: GPT-2's (N, 4C) gradient written and read once less). pre is the
  // linear's f32 output. dpre, where given (f32, like pre), is overwritten with that gradient
  // too, for LoRA's products on the layer. Backends whose fuses_linear_gelu_backward() is true
  // only.
  virtual void linear_gelu_backward(const Tensor& /*dinp*/, const Tensor& /*dweight*/,
                                    const Tensor& /*dbias*/, const Tensor& /*dpre*/,
                                    const Tensor& /*dact*/, const Tensor& /*pre*/,
                                    const Tensor& /*inp*/, const Tensor& /*weight*/,
                                    WeightLayout /*layout*/, GeluApprox /*approximate*/,
                                    bool /*overwrite_dinp*/) {
    fail(code::kInternal, "linear_gelu_backward", "not fused on the ", name(), " backend");
  }
  // The backward of split_last(linear(x)): linear_backward with dout the concatenation of
  // dparts along the last dimension (f32 (N, widths[p]) each, or empty for a part without a
  // gradient: zeros), read in place instead of assembled in an f32 buffer first (GPT-2's
  // (N, 3C) gradient written and read once less). Up to kMaxLinearSplitParts parts. Backends
  // whose fuses_linear_split_backward() is true only.
  static constexpr int kMaxLinearSplitParts = 4;
  virtual void linear_split_backward(const Tensor& /*dinp*/, const Tensor& /*dweight*/,
                                     const Tensor& /*dbias*/,
                                     const std::vector<Tensor>& /*dparts*/,
                                     const std::vector<int64_t>& /*widths*/,
                                     const Tensor& /*inp*/, const Tensor& /*weight*/,
                                     WeightLayout /*layout*/, bool /*overwrite_dinp*/) {
    fail(code::kInternal, "linear_split_backward", "not fused on the ", name(), " backend");
  }
  // s2s::matmul (gemm.h): c = alpha op(a) op(b) + beta c, fp32 (LoRA's A/B products).
  virtual void matmul(const Tensor& c, const Tensor& a, const Tensor& b, bool trans_a,
                      bool trans_b, float alpha, float beta) = 0;
  virtual void gelu_forward(const Tensor& out, const Tensor& inp, GeluApprox approximate) = 0;
  virtual void gelu_backward(const Tensor& dinp, const Tensor& dout, const Tensor& inp,
                             GeluApprox approximate, bool overwrite) = 0;
  virtual void relu_forward(const Tensor& out, const Tensor& inp) = 0;
  virtual void relu_backward(const Tensor& dinp, const Tensor& dout, const Tensor& inp,
                             bool overwrite) = 0;
  virtual void silu_forward(const Tensor& out, const Tensor& inp) = 0;
  virtual void silu_backward(const Tensor& dinp, const Tensor& dout, const Tensor& inp,
                             bool overwrite) = 0;
  virtual void swiglu_forward(const Tensor& out, const Tensor& gate, const Tensor& up) = 0;
  virtual void swiglu_backward(const Tensor& dgate, const Tensor& dup, const Tensor& dout,
                               const Tensor& gate, const Tensor& up, bool overwrite) = 0;
  virtual void geglu_forward(const Tensor& out, const Tensor& gate, const Tensor& up,
                             GeluApprox approximate) = 0;
  virtual void geglu_backward(const Tensor& dgate, const Tensor& dup, const Tensor& dout,
                              const Tensor& gate, const Tensor& up, GeluApprox approximate,
                              bool overwrite) = 0;
  virtual void dropout_forward(const Tensor& out, const Tensor& inp, float p, DropoutSeed seed,
                               uint64_t offset) = 0;
  // out = residual + dropout_forward(branch, p, seed, offset), bit for bit, without storing the
  // dropped branch (the GPU's saving: a residual-sized tensor written and read once less, and
  // the add's launch). All f32 of one shape. Backends whose fuses_dropout_add() is true only.
  virtual void dropout_add_forward(const Tensor& /*out*/, const Tensor& /*residual*/,
                                   const Tensor& /*branch*/, float /*p*/, DropoutSeed /*seed*/,
                                   uint64_t /*offset*/) {
    fail(code::kInternal, "dropout_add_forward", "not fused on the ", name(), " backend");
  }
  virtual void dropout_backward(const Tensor& dinp, const Tensor& dout, float p, DropoutSeed seed,
                                uint64_t offset, bool overwrite) = 0;
  virtual void cast(const Tensor& out, const Tensor& inp) = 0;  // cast_forward
  virtual void add(const Tensor& out, const Tensor& a, const Tensor& b) = 0;
  virtual void axpy(const Tensor& dst, float alpha, const Tensor& src) = 0;
  virtual void scale(const Tensor& out, const Tensor& x, float s) = 0;
  virtual void copy_values(const Tensor& dst, const Tensor& src) = 0;
  virtual void copy_columns(float* dst, const float* src, int64_t rows, int64_t src_cols,
                            int64_t col0, int64_t width) = 0;
  // copy_columns into a bf16/f16 dst, rounded: backends that take half activations only.
  virtual void copy_columns_rounded(const Tensor& dst, const float* /*src*/, int64_t /*rows*/,
                                    int64_t /*src_cols*/, int64_t /*col0*/, int64_t /*width*/) {
    fail(code::kDType, "copy_columns", "this backend keeps activations in float32, got a ",
         dtype_name(dst.dtype), " destination");
  }
  virtual void add_to_columns(float* dst, const float* src, int64_t rows, int64_t dst_cols,
                              int64_t col0, int64_t width) = 0;
  virtual void set_columns(float* dst, const float* src, int64_t rows, int64_t dst_cols,
                           int64_t col0, int64_t width) = 0;
  virtual void attention_forward(const Tensor& out, const Tensor& lse, const Tensor& q,
                                 const Tensor& k, const Tensor& v, const Tensor& bias,
                                 const uint8_t* key_mask, int64_t key_mask_size,
                                 const AttentionOptions& options) = 0;
  virtual void attention_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv,
                                  const Tensor& dbias, const Tensor& dout, const Tensor& q,
                                  const Tensor& k, const Tensor& v, const Tensor& out,
                                  const Tensor& lse, const Tensor& bias, const uint8_t* key_mask,
                                  int64_t key_mask_size, const AttentionOptions& options,
                                  bool overwrite) = 0;
  // s2s::attention_cached_forward (decoding's attention over a KV cache); slot, key_begin and
  // key_end are tensor memory (Graph::indices), one entry per row of q.
  virtual void attention_cached_forward(const Tensor& out, const Tensor& q, const Tensor& k_cache,
                                        const Tensor& v_cache, const int32_t* slot,
                                        const int32_t* key_begin, const int32_t* key_end,
                                        const Tensor& bias, const AttentionOptions& options) = 0;
  // s2s::kv_cache_append (decoding's cache write); slot and key_end are tensor memory, one entry
  // per row of k, the same arrays attention_cached_forward reads.
  virtual void kv_cache_append(const Tensor& k_cache, const Tensor& v_cache, const Tensor& k,
                               const Tensor& v, const int32_t* slot, const int32_t* key_end) = 0;
  virtual void rope_forward(const Tensor& out, const Tensor& inp, const int32_t* positions,
                            int64_t num_positions, float theta) = 0;
  virtual void rope_backward(const Tensor& dinp, const Tensor& dout, const int32_t* positions,
                             int64_t num_positions, float theta, bool overwrite) = 0;
  virtual void t5_relative_position_forward(const Tensor& bias, const Tensor& table,
                                            const T5RelativePositionOptions& options) = 0;
  virtual void t5_relative_position_backward(const Tensor& dtable, const Tensor& dbias,
                                             const T5RelativePositionOptions& options) = 0;
  // key_end is tensor memory (KVCache::ranges).
  virtual void t5_relative_position_decoding_forward(
      const Tensor& bias, const Tensor& table, const int32_t* key_end,
      const T5RelativePositionOptions& options) = 0;
  virtual CrossEntropyResult cross_entropy_forward(const Tensor& lse, const Tensor& logits,
                                                   const int32_t* labels, int64_t num_labels,
                                                   const CrossEntropyOptions& options) = 0;
  // Queues without waiting on a device (s2s/ops/cross_entropy.h's cross_entropy_rows).
  virtual void cross_entropy_rows(const Tensor& lse, const Tensor& label_logit,
                                  const Tensor& logits, const int32_t* labels,
                                  int64_t num_labels, int32_t ignore_index) = 0;
  virtual void cross_entropy_backward(const Tensor& dlogits, const Tensor& logits,
                                      const Tensor& lse, const int32_t* labels,
                                      int64_t num_labels, float dloss,
                                      const CrossEntropyOptions& options, bool overwrite) = 0;
  // The loss from cross_entropy_rows' values into `loss` (one f32 of tensor memory), queued
  // without waiting on a device (s2s/ops/cross_entropy.h's cross_entropy_loss): the bits
  // cross_entropy_forward returns, for a caller that reads the loss later (Graph::loss_on_device).
  virtual void cross_entropy_loss(const Tensor& loss, const Tensor& lse,
                                  const Tensor& label_logit, const int32_t* labels,
                                  int64_t num_labels, const CrossEntropyOptions& options) = 0;
  // cross_entropy_forward together with the gradient cross_entropy_backward(dlogits, logits,
  // lse, labels, num_labels, dloss, options, /*overwrite=*/true) writes, for a loss whose
  // gradient dloss is known before the forward (Graph::known_dloss); the bits of the two calls.
  // Here the two calls; the CUDA backend writes each row's gradient right after its lse, reading
  // the row from L2 instead of the logits from memory once more.
  virtual CrossEntropyResult cross_entropy_forward_backward(const Tensor& lse,
                                                            const Tensor& dlogits,
                                                            const Tensor& logits,
                                                            const int32_t* labels,
                                                            int64_t num_labels, float dloss,
                                                            const CrossEntropyOptions& options) {
    const CrossEntropyResult r = cross_entropy_forward(lse, logits, labels, num_labels, options);
    cross_entropy_backward(dlogits, logits, lse, labels, num_labels, dloss, options, true);
    return r;
  }
  // cross_entropy_rows likewise, with the gradient of the rows' summed loss seeded with dloss
  // (the chunked loss's chunks).
  virtual void cross_entropy_rows_backward(const Tensor& lse, const Tensor& label_logit,
                                           const Tensor& dlogits, const Tensor& logits,
                                           const int32_t* labels, int64_t num_labels,
                                           int32_t ignore_index, float dloss) {
    cross_entropy_rows(lse, label_logit, logits, labels, num_labels, ignore_index);
    CrossEntropyOptions sum;
    sum.ignore_index = ignore_index;
    sum.reduction = LossReduction::Sum;
    cross_entropy_backward(dlogits, logits, lse, labels, num_labels, dloss, sum, true);
  }
  virtual double scaled_grad_norm(const std::vector<Tensor>& grads, float scale) = 0;
  virtual void adamw_fused_update(const std::vector<AdamWFusedTensor>& tensors, int64_t step,
                                  const AdamWOptions& options, float grad_scale,
                                  float clip_coef) = 0;
  // The optimizer step's work, queued without a wait in the middle (a GPU's host would otherwise
  // wait for the norm before it could queue the update), with the bits of these calls in turn:
  //   norm = scaled_grad_norm(the tensors' grads, grad_scale), stored at norm_out (a double of
  //          tensor memory, which the caller downloads when it wants the step's outcome)
  //   finite norm: adamw_fused_update(tensors, step, options, grad_scale, max_grad_norm > 0 ?
  //                clip_coefficient(norm, max_grad_norm) : 1.0f)
  //   otherwise:   every grad zeroed, nothing else written (a skipped step).
  // A device backend also writes nothing but the norm when a kernel has reported a bad input
  // since the last synchronize (that synchronize raises it): a bad batch changes no weight.
  // The default makes those calls (the host knows the norm at once).
  virtual void clipped_adamw_update(const std::vector<AdamWFusedTensor>& tensors, int64_t step,
                                    const AdamWOptions& options, float grad_scale,
                                    double max_grad_norm, double* norm_out);
  virtual void lora_merge(const Tensor& weight, const Tensor& A, const Tensor& B, float scaling,
                          WeightLayout layout) = 0;
};

// The CPU backend: one per process, never destroyed.
Backend& cpu_backend();
std::shared_ptr<Backend> cpu_backend_shared();

// Settings of a backend that make_backend creates; the CPU backend has none and ignores them.
struct BackendOptions {
  // CUDA: fp32 GEMMs on the TF32 tensor cores (10-bit mantissa inputs, fp32 accumulation), as
  // torch.backends.cuda.matmul.allow_tf32. 16-bit compute is unaffected.
  bool allow_tf32 = false;
};

// A backend for `device`: the CPU one, or a new CUDA backend (its own context and stream on GPU
// device.index) where the CUDA backend is built; S2S_DEVICE otherwise, `what` prefixing the
// message (a GPU index the runtime does not have too).
std::shared_ptr<Backend> make_backend(const Device& device, const char* what,
                                      const BackendOptions& options = {});

// t's bytes on the host: t itself on a host backend, else a download into `storage` (savers use
// this before handing tensors to the safetensors writer).
Tensor host_tensor(Backend& backend, const Tensor& t, std::vector<uint8_t>& storage);
size_t tensor_bytes(const Tensor& t);  // numel * element size (contiguous tensors)

}  // namespace s2s
