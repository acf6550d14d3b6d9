// CudaBackend: the model path's ops on cuda_ops.h with the model's Context (see
// cuda_backend.h). Plain C++ over the CUDA runtime's C API; compiled to nothing where the CUDA
// backend is not built.
#if S2S_HAVE_CUDA
#include "backends/cuda/cuda_backend.h"

#include <cuda_runtime_api.h>

#include <vector>

#include "backends/cuda/captured_graph.h"
#include "backends/cuda/cublaslt_api.h"
#include "backends/cuda/cuda_ops.h"
#include "backends/cuda/gemm.h"
#include "s2s/error.h"
#include "s2s/gemm.h"
#include "s2s/ops/lora_merge.h"

namespace s2s {
namespace cuda {

namespace {

void check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  cudaGetLastError();  // clear a non-sticky error
  fail(e == cudaErrorMemoryAllocation ? code::kOutOfMemory : code::kCuda, "cuda backend", what,
       " failed: ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ")");
}

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(const ContextOptions& options) : ctx_(options) {}
  ~CudaBackend() override { cudaStreamSynchronize(stream()); }

  Context& context() { return ctx_; }

  const char* name() const override { return "cuda"; }
  DeviceKind kind() const override { return DeviceKind::Cuda; }
  int device_index() const override { return ctx_.device(); }
  bool is_host() const override { return false; }
  // cross_entropy_backward writes bf16 dlogits, linear_backward reads them (the bf16 head).
  bool supports_bf16_gradients() const override { return true; }
  // 4096 rows: an H100 does ~180 bf16 flops per byte it moves (about 600 TFLOP/s achieved in
  // GEMMs against 3.35 TB/s), so the per-chunk dW read-write adds 8 / (6 rows) x 180 to the
  // head's GEMM time: about 6% at 4096 rows, 75% at the 320 rows 64 MiB gives GPT-2. GPT-2 at
  // 16 x 1024 tokens: 4 chunks, 0.8 GB of f32 logits and 0.4 GB of bf16 dlogits live against
  // 3.3 and 1.6 GB whole.
  int64_t min_loss_chunk_rows() const override { return 4096; }
  // 64 elements: 128 bytes of bf16 (the dlogits the backward GEMMs read), 256 of f32.
  int64_t aligned_row_stride(int64_t cols) const override { return (cols + 63) / 64 * 64; }
  bool takes_half_activations() const override { return true; }
  bool fuses_linear_gelu_backward() const override { return true; }
  bool fuses_linear_residual() const override { return true; }
  bool fuses_dropout_add() const override { return true; }
  bool fuses_linear_split_backward() const override { return true; }
  DType attention_input_dtype(const AttentionOptions& options, int64_t head_dim) const override {
    return cuda::attention_reads_16bit_inputs(options, head_dim) ? options.products : DType::F32;
  }

  // ---- memory ----
  Buffer allocate(size_t bytes) override {
    ctx_.activate();
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, bytes > 0 ? bytes : 1);
    if (e != cudaSuccess) {
      cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      fail(code::kOutOfMemory, "cuda backend", "expected ", bytes,
           " bytes of GPU memory for a parameter tensor, but only ", free_b, " of ", total_b,
           " are free");
    }
    return Buffer(this, p, bytes);
  }
  void release_buffer(void* p, size_t) override {
    // cudaFree waits for the device: nothing queued can still use p.
    cudaSetDevice(ctx_.device());
    cudaFree(p);
    cudaGetLastError();
  }
  void* activation_allocate(size_t bytes) override { return ctx_.arena().allocate(bytes); }
  void* input_allocate(size_t bytes) override { return ctx_.input_arena().allocate(bytes); }
  // Stream order makes reuse safe: the next pass's kernels run after this pass's.
  void activation_reset() override {
    ctx_.arena().reset();
    ctx_.input_arena().reset();
  }
  void* segment_allocate(size_t bytes) override { return ctx_.segment_arena().allocate(bytes); }
  // Also stream-ordered: the next segment's kernels run after the released one's.
  void segment_reset() override { ctx_.segment_arena().reset(); }
  // The arenas' peaks summed: the segment's activations and the inputs live beside the pass's, so
  // this is the most all held at once or a little more (their peaks may fall at different
  // moments).
  DeviceMemory device_memory() override {
    ctx_.activate();
    DeviceMemory m;
    m.known = true;
    const DeviceArena &pass = ctx_.arena(), &segment = ctx_.segment_arena();
    const DeviceArena& inputs = ctx_.input_arena();
    m.activation_peak =
        pass.peak_bytes_in_use() + segment.peak_bytes_in_use() + inputs.peak_bytes_in_use();
    m.activation_reserved =
        pass.bytes_reserved() + segment.bytes_reserved() + inputs.bytes_reserved();
    if (cudaMemGetInfo(&m.device_free, &m.device_total) != cudaSuccess) {
      cudaGetLastError();
      m.device_free = m.device_total = 0;  // unknown: reported as 0
    }
    return m;
  }
  void reset_activation_peak() override {
    ctx_.arena().reset_peak();
    ctx_.segment_arena().reset_peak();
    ctx_.input_arena().reset_peak();
  }
  void upload(void* dst, const void* src, size_t bytes) override {
    cuda::upload(ctx_, dst, src, bytes);
  }
  void download(void* dst, const void* src, size_t bytes) override {
    cuda::download(ctx_, dst, src, bytes);
  }
  void fill_zero(void* dst, size_t bytes) override { cuda::fill_zero(ctx_, dst, bytes); }
  void set_scalar(float* dst, float value) override { cuda::set_scalar(ctx_, dst, value); }
  void synchronize() override { ctx_.synchronize(); }
  std::unique_ptr<RecordedWork> record(const std::function<void()>& work) override {
    struct CapturedStep final : RecordedWork {
      std::unique_ptr<CapturedGraph> graph;
      void replay() override { graph->launch(); }
    };
    std::unique_ptr<CapturedGraph> captured = CapturedGraph::capture(ctx_, work);
    if (captured == nullptr) return nullptr;
    auto out = std::make_unique<CapturedStep>();
    out->graph = std::move(captured);
    return out;
  }

  // ---- ops ----
  void embedding_forward(const Tensor& out, const Tensor& wte, const Tensor& wpe,
                         const int32_t* ids, int64_t num_ids, const int32_t* pos,
                         int64_t num_pos) override {
    cuda::embedding_forward(ctx_, out, wte, wpe, ids, num_ids, pos, num_pos);
  }
  void embedding_backward(const Tensor& dwte, const Tensor& dwpe, const Tensor& dout,
                          const int32_t* ids, int64_t num_ids, const int32_t* pos,
                          int64_t num_pos) override {
    cuda::embedding_backward(ctx_, dwte, dwpe, dout, ids, num_ids, pos, num_pos);
  }
  void layernorm_forward(const Tensor& out, const Tensor& mean, const Tensor& rstd,
                         const Tensor& inp, const Tensor& weight, const Tensor& bias,
                         float eps) override {
    cuda::layernorm_forward(ctx_, out, mean, rstd, inp, weight, bias, eps);
  }
  void layernorm_backward(const Tensor& dinp, const Tensor& dweight, const Tensor& dbias,
                          const Tensor& dout, const Tensor& inp, const Tensor& weight,
                          const Tensor& mean, const Tensor& rstd, bool overwrite_dinp) override {
    cuda::layernorm_backward(ctx_, dinp, dweight, dbias, dout, inp, weight, mean, rstd,
                             overwrite_dinp);
  }
  void rmsnorm_forward(const Tensor& out, const Tensor& rstd, const Tensor& inp,
                       const Tensor& weight, float eps) override {
    cuda::rmsnorm_forward(ctx_, out, rstd, inp, weight, eps);
  }
  void rmsnorm_backward(const Tensor& dinp, const Tensor& dweight, const Tensor& dout,
                        const Tensor& inp, const Tensor& weight, const Tensor& rstd,
                        bool overwrite_dinp) override {
    cuda::rmsnorm_backward(ctx_, dinp, dweight, dout, inp, weight, rstd, overwrite_dinp);
  }
  void linear_residual_forward(const Tensor& out, const Tensor& inp, const Tensor& weight,
                               const Tensor& bias, const Tensor& residual,
                               WeightLayout layout) override {
    cuda::linear_residual_forward(ctx_, out, inp, weight, bias, residual, layout);
  }
  void linear_forward(const Tensor& out, const Tensor& inp, const Tensor& weight,
                      const Tensor& bias, WeightLayout layout) override {
    cuda::linear_forward(ctx_, out, inp, weight, bias, layout);
  }
  void linear_backward(const Tensor& dinp, const Tensor& dweight, const Tensor& dbias,
                       const Tensor& dout, const Tensor& inp, const Tensor& weight,
                       WeightLayout layout, bool overwrite_dinp) override {
    cuda::linear_backward(ctx_, dinp, dweight, dbias, dout, inp, weight, layout, overwrite_dinp);
  }
  void linear_gelu_backward(const Tensor& dinp, const Tensor& dweight, const Tensor& dbias,
                            const Tensor& dpre, const Tensor& dact, const Tensor& pre,
                            const Tensor& inp, const Tensor& weight, WeightLayout layout,
                            GeluApprox approximate, bool overwrite_dinp) override {
    cuda::linear_gelu_backward(ctx_, dinp, dweight, dbias, dpre, dact, pre, inp, weight, layout,
                               approximate, overwrite_dinp);
  }
  void linear_split_backward(const Tensor& dinp, const Tensor& dweight, const Tensor& dbias,
                             const std::vector<Tensor>& dparts,
                             const std::vector<int64_t>& widths, const Tensor& inp,
                             const Tensor& weight, WeightLayout layout,
                             bool overwrite_dinp) override {
    cuda::linear_split_backward(ctx_, dinp, dweight, dbias, dparts, widths, inp, weight, layout,
                                overwrite_dinp);
  }
  void matmul(const Tensor& c, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b,
              float alpha, float beta) override {
    matmul_check(c, a, b, trans_a, trans_b);  // shapes and dtypes only (no memory is read)
    S2S_REQUIRE(a.dtype == DType::F32, code::kDType, "matmul",
                "expected f32 operands on the CUDA backend (LoRA's A/B), got ",
                dtype_name(a.dtype));
    const int64_t M = c.shape[0], N = c.shape[1];
    const int64_t K = trans_a ? a.shape[0] : a.shape[1];
    gemm(ctx_, trans_a, trans_b, M, N, K, alpha, a.data, a.shape[1], b.data, b.shape[1],
         DType::F32, beta, c.f32(), N);
  }
  void gelu_forward(const Tensor& out, const Tensor& inp, GeluApprox approximate) override {
    cuda::gelu_forward(ctx_, out, inp, approximate);
  }
  void gelu_backward(const Tensor& dinp, const Tensor& dout, const Tensor& inp,
                     GeluApprox approximate, bool overwrite) override {
    cuda::gelu_backward(ctx_, dinp, dout, inp, approximate, overwrite);
  }
  void relu_forward(const Tensor& out, const Tensor& inp) override {
    cuda::relu_forward(ctx_, out, inp);
  }
  void relu_backward(const Tensor& dinp, const Tensor& dout, const Tensor& inp,
                     bool overwrite) override {
    cuda::relu_backward(ctx_, dinp, dout, inp, overwrite);
  }
  void silu_forward(const Tensor& out, const Tensor& inp) override {
    cuda::silu_forward(ctx_, out, inp);
  }
  void silu_backward(const Tensor& dinp, const Tensor& dout, const Tensor& inp,
                     bool overwrite) override {
    cuda::silu_backward(ctx_, dinp, dout, inp, overwrite);
  }
  void swiglu_forward(const Tensor& out, const Tensor& gate, const Tensor& up) override {
    cuda::swiglu_forward(ctx_, out, gate, up);
  }
  void swiglu_backward(const Tensor& dgate, const Tensor& dup, const Tensor& dout,
                       const Tensor& gate, const Tensor& up, bool overwrite) override {
    cuda::swiglu_backward(ctx_, dgate, dup, dout, gate, up, overwrite);
  }
  void geglu_forward(const Tensor& out, const Tensor& gate, const Tensor& up,
                     GeluApprox approximate) override {
    cuda::geglu_forward(ctx_, out, gate, up, approximate);
  }
  void geglu_backward(const Tensor& dgate, const Tensor& dup, const Tensor& dout,
                      const Tensor& gate, const Tensor& up, GeluApprox approximate,
                      bool overwrite) override {
    cuda::geglu_backward(ctx_, dgate, dup, dout, gate, up, approximate, overwrite);
  }
  void dropout_forward(const Tensor& out, const Tensor& inp, float p, DropoutSeed seed,
                       uint64_t offset) override {
    cuda::dropout_forward(ctx_, out, inp, p, seed, offset);
  }
  void dropout_add_forward(const Tensor& out, const Tensor& residual, const Tensor& branch,
                           float p, DropoutSeed seed, uint64_t offset) override {
    cuda::dropout_add_forward(ctx_, out, residual, branch, p, seed, offset);
  }
  void dropout_backward(const Tensor& dinp, const Tensor& dout, float p, DropoutSeed seed,
                        uint64_t offset, bool overwrite) override {
    cuda::dropout_backward(ctx_, dinp, dout, p, seed, offset, overwrite);
  }
  void cast(const Tensor& out, const Tensor& inp) override { cast_forward(ctx_, out, inp); }
  void add(const Tensor& out, const Tensor& a, const Tensor& b) override {
    add_forward(ctx_, out, a, b);
  }
  void axpy(const Tensor& dst, float alpha, const Tensor& src) override {
    cuda::axpy(ctx_, dst, alpha, src);
  }
  void scale(const Tensor& out, const Tensor& x, float s) override {
    scale_forward(ctx_, out, x, s);
  }
  void copy_values(const Tensor& dst, const Tensor& src) override {
    S2S_REQUIRE(dst.numel() == src.numel() && dst.dtype == src.dtype, code::kShape, "copy_values",
                "expected tensors of one size and dtype, got ", dst.shape_string(), " and ",
                src.shape_string());
    copy_device(ctx_, dst.data, src.data, tensor_bytes(src));
  }
  void copy_columns(float* dst, const float* src, int64_t rows, int64_t src_cols, int64_t col0,
                    int64_t width) override {
    cuda::copy_columns(ctx_, dst, src, rows, src_cols, col0, width);
  }
  void copy_columns_rounded(const Tensor& dst, const float* src, int64_t rows, int64_t src_cols,
                            int64_t col0, int64_t width) override {
    expect_contiguous(dst, "copy_columns", "dst");
    S2S_REQUIRE(dst.numel() == rows * width, code::kShape, "copy_columns", "expected dst of ",
                rows * width, " elements, got ", dst.numel());
    cuda::copy_columns_rounded(ctx_, dst.u16(), dst.dtype, src, rows, src_cols, col0, width);
  }
  void add_to_columns(float* dst, const float* src, int64_t rows, int64_t dst_cols, int64_t col0,
                      int64_t width) override {
    cuda::add_to_columns(ctx_, dst, src, rows, dst_cols, col0, width);
  }
  // A strided 2-D copy (or zero-fill) of the column block: the runtime's pitched memcpy/memset.
  void set_columns(float* dst, const float* src, int64_t rows, int64_t dst_cols, int64_t col0,
                   int64_t width) override {
    if (rows == 0 || width == 0) return;
    ctx_.activate();
    const size_t pitch = sizeof(float) * static_cast<size_t>(dst_cols);
    const size_t row_bytes = sizeof(float) * static_cast<size_t>(width);
    if (src == nullptr) {
      check(cudaMemset2DAsync(dst + col0, pitch, 0, row_bytes, static_cast<size_t>(rows), stream()),
            "cudaMemset2DAsync (set_columns)");
    } else {
      check(cudaMemcpy2DAsync(dst + col0, pitch, src, row_bytes, row_bytes,
                              static_cast<size_t>(rows), cudaMemcpyDeviceToDevice, stream()),
            "cudaMemcpy2DAsync (set_columns)");
    }
  }
  void attention_forward(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k,
                         const Tensor& v, const Tensor& bias, const uint8_t* key_mask,
                         int64_t key_mask_size, const AttentionOptions& options) override {
    cuda::attention_forward(ctx_, out, lse, q, k, v, bias, key_mask, key_mask_size, options);
  }
  void attention_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv,
                          const Tensor& dbias, const Tensor& dout, const Tensor& q,
                          const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                          const Tensor& bias, const uint8_t* key_mask, int64_t key_mask_size,
                          const AttentionOptions& options, bool overwrite) override {
    cuda::attention_backward(ctx_, dq, dk, dv, dbias, dout, q, k, v, out, lse, bias, key_mask,
                             key_mask_size, options, overwrite);
  }
  void attention_cached_forward(const Tensor& out, const Tensor& q, const Tensor& k_cache,
                                const Tensor& v_cache, const int32_t* slot,
                                const int32_t* key_begin, const int32_t* key_end,
                                const Tensor& bias, const AttentionOptions& options) override {
    cuda::attention_cached_forward(ctx_, out, q, k_cache, v_cache, slot, key_begin, key_end, bias,
                                   options);
  }
  void kv_cache_append(const Tensor& k_cache, const Tensor& v_cache, const Tensor& k,
                       const Tensor& v, const int32_t* slot, const int32_t* key_end) override {
    cuda::kv_cache_append(ctx_, k_cache, v_cache, k, v, slot, key_end);
  }

  void rope_forward(const Tensor& out, const Tensor& inp, const int32_t* positions,
                    int64_t num_positions, float theta) override {
    cuda::rope_forward(ctx_, out, inp, positions, num_positions, theta);
  }
  void rope_backward(const Tensor& dinp, const Tensor& dout, const int32_t* positions,
                     int64_t num_positions, float theta, bool overwrite) override {
    cuda::rope_backward(ctx_, dinp, dout, positions, num_positions, theta, overwrite);
  }
  void t5_relative_position_forward(const Tensor& bias, const Tensor& table,
                                    const T5RelativePositionOptions& options) override {
    cuda::t5_relative_position_forward(ctx_, bias, table, options);
  }
  void t5_relative_position_backward(const Tensor& dtable, const Tensor& dbias,
                                     const T5RelativePositionOptions& options) override {
    cuda::t5_relative_position_backward(ctx_, dtable, dbias, options);
  }
  void t5_relative_position_decoding_forward(const Tensor& bias, const Tensor& table,
                                             const int32_t* key_end,
                                             const T5RelativePositionOptions& options) override {
    cuda::t5_relative_position_decoding_forward(ctx_, bias, table, key_end, options);
  }
  CrossEntropyResult cross_entropy_forward(const Tensor& lse, const Tensor& logits,
                                           const int32_t* labels, int64_t num_labels,
                                           const CrossEntropyOptions& options) override {
    // cuda::cross_entropy_forward ends by synchronizing: any bad id / position / label a kernel
    // of this forward pass reported is raised there, where the CPU would have thrown.
    return cuda::cross_entropy_forward(ctx_, lse, logits, labels, num_labels, options);
  }
  void cross_entropy_rows(const Tensor& lse, const Tensor& label_logit, const Tensor& logits,
                          const int32_t* labels, int64_t num_labels,
                          int32_t ignore_index) override {
    cuda::cross_entropy_rows(ctx_, lse, label_logit, logits, labels, num_labels, ignore_index);
  }
  void cross_entropy_backward(const Tensor& dlogits, const Tensor& logits, const Tensor& lse,
                              const int32_t* labels, int64_t num_labels, float dloss,
                              const CrossEntropyOptions& options, bool overwrite) override {
    cuda::cross_entropy_backward(ctx_, dlogits, logits, lse, labels, num_labels, dloss, options,
                                 overwrite);
  }
  CrossEntropyResult cross_entropy_forward_backward(const Tensor& lse, const Tensor& dlogits,
                                                    const Tensor& logits, const int32_t* labels,
                                                    int64_t num_labels, float dloss,
                                                    const CrossEntropyOptions& options) override {
    // Synchronizes too (as cross_entropy_forward): raises what the pass's kernels reported.
    return cuda::cross_entropy_forward(ctx_, lse, logits, labels, num_labels, options, dlogits,
                                       dloss);
  }
  void cross_entropy_loss(const Tensor& loss, const Tensor& lse, const Tensor& label_logit,
                          const int32_t* labels, int64_t num_labels,
                          const CrossEntropyOptions& options) override {
    cuda::cross_entropy_loss(ctx_, loss, lse, label_logit, labels, num_labels, options);
  }
  void cross_entropy_rows_backward(const Tensor& lse, const Tensor& label_logit,
                                   const Tensor& dlogits, const Tensor& logits,
                                   const int32_t* labels, int64_t num_labels,
                                   int32_t ignore_index, float dloss) override {
    const cuda::CrossEntropyGradient gradient{dlogits, dloss, LossReduction::Sum};
    cuda::cross_entropy_rows(ctx_, lse, label_logit, logits, labels, num_labels, ignore_index,
                             &gradient);
  }
  double scaled_grad_norm(const std::vector<Tensor>& grads, float scale) override {
    return cuda::scaled_grad_norm(ctx_, grads, scale);
  }
  void adamw_fused_update(const std::vector<AdamWFusedTensor>& tensors, int64_t step,
                          const AdamWOptions& options, float grad_scale,
                          float clip_coef) override {
    cuda::adamw_fused_update(ctx_, tensors, step, options, grad_scale, clip_coef);
  }
  void clipped_adamw_update(const std::vector<AdamWFusedTensor>& tensors, int64_t step,
                            const AdamWOptions& options, float grad_scale, double max_grad_norm,
                            double* norm_out) override {
    cuda::clipped_adamw_update(ctx_, tensors, step, options, grad_scale, max_grad_norm, norm_out);
  }
  // Merging is a one-off (mergeLora before saving): the CPU op on downloaded copies, then the
  // merged weight goes back up.
  void lora_merge(const Tensor& weight, const Tensor& A, const Tensor& B, float scaling,
                  WeightLayout layout) override {
    std::vector<uint8_t> w_host, a_host, b_host;
    const Tensor w = host_tensor(*this, weight, w_host);
    lora_merge_forward(w, host_tensor(*this, A, a_host), host_tensor(*this, B, b_host), scaling,
                       layout);
    upload(weight.data, w.data, tensor_bytes(weight));
    ctx_.synchronize();  // the host copies die with this call
  }

 private:
  cudaStream_t stream() const { return static_cast<cudaStream_t>(ctx_.stream()); }
  Context ctx_;
};

}  // namespace

std::shared_ptr<Backend> make_cuda_backend(const ContextOptions& options, const char* what) {
  try {
    auto backend = std::make_shared<CudaBackend>(options);
    lt::api();  // cuBLASLt now, not at the first matrix product: a missing library is S2S_DEVICE
    return backend;
  } catch (const Error& e) {
    fail(e.code().c_str(), what, e.what());
  }
}

Context& cuda_context(Backend& backend) {
  auto* b = dynamic_cast<CudaBackend*>(&backend);
  S2S_REQUIRE(b != nullptr, code::kArgument, "cuda_context", "expected a CUDA backend, got ",
              backend.name());
  return b->context();
}

}  // namespace cuda
}  // namespace s2s
#endif  // S2S_HAVE_CUDA
