// The CUDA backend's op set: the same ops, arguments and semantics as the CPU ops in
// s2s/ops/*.h (read those headers for the maths and the conventions: which gradients ACCUMULATE,
// what a Tensor with data == nullptr means, the shapes), with three differences:
//   - every Tensor and every index array (ids, positions, labels, key_mask) is device memory;
//   - the first argument is the Context whose stream runs the op (calls return once queued;
//     Context::synchronize() waits and raises the bad-index reports kernels leave, e.g. a token
//     id out of range, which the CPU op would throw on the spot);
//   - calls that return a number (cross_entropy_forward, grad_norm) wait for the stream.
// Shapes, dtypes and layouts are checked on the host before anything is queued, with the CPU
// ops' messages. Plain C++ header: tests and benches include it without nvcc.
// Legend: N rows = B*T, C channels, V vocab, H hidden, D head dim.
#pragma once
#include <cstdint>
#include <vector>

#include "backends/cuda/context.h"
#include "s2s/ops/adamw.h"
#include "s2s/ops/attention.h"
#include "s2s/ops/cross_entropy.h"
#include "s2s/ops/gelu.h"
#include "s2s/ops/linear.h"
#include "s2s/ops/t5_relative_position.h"
#include "s2s/tensor.h"

namespace s2s {
namespace cuda {

// ---- embedding.cu: wte f32/bf16/f16, wpe optional. Backward: atomics, or with
// ContextOptions::deterministic a pass where each channel adds its tokens in (b, t) order.
void embedding_forward(Context& ctx, const Tensor& out, const Tensor& wte, const Tensor& wpe,
                       const int32_t* ids, int64_t num_ids, const int32_t* pos = nullptr,
                       int64_t num_pos = 0);
void embedding_backward(Context& ctx, const Tensor& dwte, const Tensor& dwpe, const Tensor& dout,
                        const int32_t* ids, int64_t num_ids, const int32_t* pos = nullptr,
                        int64_t num_pos = 0);

// ---- layernorm.cu / rmsnorm.cu: dweight/dbias by fixed-chunk column sums (deterministic).
void layernorm_forward(Context& ctx, const Tensor& out, const Tensor& mean, const Tensor& rstd,
                       const Tensor& inp, const Tensor& weight, const Tensor& bias, float eps);
void layernorm_backward(Context& ctx, const Tensor& dinp, const Tensor& dweight,
                        const Tensor& dbias, const Tensor& dout, const Tensor& inp,
                        const Tensor& weight, const Tensor& mean, const Tensor& rstd,
                        bool overwrite_dinp = false);
void rmsnorm_forward(Context& ctx, const Tensor& out, const Tensor& rstd, const Tensor& inp,
                     const Tensor& weight, float eps);
void rmsnorm_backward(Context& ctx, const Tensor& dinp, const Tensor& dweight, const Tensor& dout,
                      const Tensor& inp, const Tensor& weight, const Tensor& rstd,
                      bool overwrite_dinp = false);

// ---- linear.cu: through cuda::gemm (cuBLASLt). Weight f32 (fp32 GEMM, TF32 when the context
// allows it), bf16 or f16 (tensor cores, fp32 accumulation; inp / dout rounded to the weight's
// dtype in arena scratch, as the CPU bf16 path does; the bias in the GEMM's epilogue). dout may
// be bf16 with a bf16 weight and no dbias (already rounded by cross_entropy_backward).
void linear_forward(Context& ctx, const Tensor& out, const Tensor& inp, const Tensor& weight,
                    const Tensor& bias, WeightLayout layout = WeightLayout::OutIn);
// out = residual + linear(inp) (Backend::linear_residual_forward): one GEMM that takes the
// residual as cuBLASLt's C input. out and residual f32, contiguous, inp's rows.
void linear_residual_forward(Context& ctx, const Tensor& out, const Tensor& inp,
                             const Tensor& weight, const Tensor& bias, const Tensor& residual,
                             WeightLayout layout = WeightLayout::OutIn);
void linear_backward(Context& ctx, const Tensor& dinp, const Tensor& dweight, const Tensor& dbias,
                     const Tensor& dout, const Tensor& inp, const Tensor& weight,
                     WeightLayout layout = WeightLayout::OutIn, bool overwrite_dinp = false);
// linear_backward with dout = dact * gelu'(pre) (gelu_backward's value, bit for bit), made where
// the backward reads dout (the dbias pass, which writes the GEMMs' copy) and never stored in
// f32: the backward of gelu(linear(x)) for nn::linear_gelu. pre: the linear's f32 output.
// dpre (f32, like pre), where given: that gradient stored as well, by the same pass (LoRA's
// products on the layer read it).
void linear_gelu_backward(Context& ctx, const Tensor& dinp, const Tensor& dweight,
                          const Tensor& dbias, const Tensor& dpre, const Tensor& dact,
                          const Tensor& pre, const Tensor& inp, const Tensor& weight,
                          WeightLayout layout, GeluApprox approximate,
                          bool overwrite_dinp = false);
// The backward of split_last(linear(x)) for nn::linear_split: dout is the concatenation along
// the last dimension of dparts (f32 (N, widths[p]) each, or empty: a part without gradient,
// zeros), up to 4 parts, read in place.
void linear_split_backward(Context& ctx, const Tensor& dinp, const Tensor& dweight,
                           const Tensor& dbias, const std::vector<Tensor>& dparts,
                           const std::vector<int64_t>& widths, const Tensor& inp,
                           const Tensor& weight, WeightLayout layout, bool overwrite_dinp = false);

// ---- gelu.cu relu.cu silu.cu swiglu.cu geglu.cu: elementwise, f32.
void gelu_forward(Context& ctx, const Tensor& out, const Tensor& inp, GeluApprox approximate);
void gelu_backward(Context& ctx, const Tensor& dinp, const Tensor& dout, const Tensor& inp,
                   GeluApprox approximate, bool overwrite = false);
void relu_forward(Context& ctx, const Tensor& out, const Tensor& inp);
void relu_backward(Context& ctx, const Tensor& dinp, const Tensor& dout, const Tensor& inp,
                   bool overwrite = false);
void silu_forward(Context& ctx, const Tensor& out, const Tensor& inp);
void silu_backward(Context& ctx, const Tensor& dinp, const Tensor& dout, const Tensor& inp,
                   bool overwrite = false);
void swiglu_forward(Context& ctx, const Tensor& out, const Tensor& gate, const Tensor& up);
void swiglu_backward(Context& ctx, const Tensor& dgate, const Tensor& dup, const Tensor& dout,
                     const Tensor& gate, const Tensor& up, bool overwrite = false);
void geglu_forward(Context& ctx, const Tensor& out, const Tensor& gate, const Tensor& up,
                   GeluApprox approximate = GeluApprox::Tanh);
void geglu_backward(Context& ctx, const Tensor& dgate, const Tensor& dup, const Tensor& dout,
                    const Tensor& gate, const Tensor& up,
                    GeluApprox approximate = GeluApprox::Tanh, bool overwrite = false);

// ---- softmax.cu: last dimension.
void softmax_forward(Context& ctx, const Tensor& out, const Tensor& inp);
void softmax_backward(Context& ctx, const Tensor& dinp, const Tensor& dout, const Tensor& out);

// ---- dropout.cu: the CPU op's Philox stream (core/philox.h compiled for the device): the same
// (seed, offset) drops the same elements on both backends.
void dropout_forward(Context& ctx, const Tensor& out, const Tensor& inp, float p, DropoutSeed seed,
                     uint64_t offset);
void dropout_backward(Context& ctx, const Tensor& dinp, const Tensor& dout, float p,
                      DropoutSeed seed, uint64_t offset, bool overwrite = false);
// out = residual + dropout_forward(branch) (Backend::dropout_add_forward), the pair's bits; all
// f32 of one shape.
void dropout_add_forward(Context& ctx, const Tensor& out, const Tensor& residual,
                         const Tensor& branch, float p, DropoutSeed seed, uint64_t offset);

// ---- cast.cu: f32 <-> bf16 <-> f16 with the CPU's rounding (bf16 bit for bit).
void cast_forward(Context& ctx, const Tensor& out, const Tensor& inp);
void cast_backward(Context& ctx, const Tensor& dinp, const Tensor& dout);

// ---- elementwise.cu
void add_forward(Context& ctx, const Tensor& out, const Tensor& a, const Tensor& b);
void axpy(Context& ctx, const Tensor& dst, float alpha, const Tensor& src);
void scale_forward(Context& ctx, const Tensor& out, const Tensor& x, float s);
void copy_columns(Context& ctx, float* dst, const float* src, int64_t rows, int64_t src_cols,
                  int64_t col0, int64_t width);
// copy_columns rounding to bf16/f16 (an activation only 16-bit readers read).
void copy_columns_rounded(Context& ctx, uint16_t* dst, DType dtype, const float* src,
                          int64_t rows, int64_t src_cols, int64_t col0, int64_t width);
void add_to_columns(Context& ctx, float* dst, const float* src, int64_t rows, int64_t dst_cols,
                    int64_t col0, int64_t width);
// dst[0] = value, queued: the value is the kernel's argument, so a recorded pass keeps it.
void set_scalar(Context& ctx, float* dst, float value);

// ---- attention_cached.cu: decoding's attention over a KV cache (s2s/ops/attention_cached.h),
// fp32, a warp per query row. slot, key_begin and key_end are device arrays; values the CPU op
// would reject are reported at the next synchronize (S2S_ARGUMENT) and give zeros.
void attention_cached_forward(Context& ctx, const Tensor& out, const Tensor& q,
                              const Tensor& k_cache, const Tensor& v_cache, const int32_t* slot,
                              const int32_t* key_begin, const int32_t* key_end,
                              const Tensor& bias, const AttentionOptions& options);

// ---- kv_cache_append.cu: decoding's cache write (s2s/ops/kv_cache_append.h), one launch for
// every row. slot and key_end are device arrays; values the CPU op would reject are reported at
// the next synchronize (S2S_ARGUMENT) and that row writes nothing.
void kv_cache_append(Context& ctx, const Tensor& k_cache, const Tensor& v_cache, const Tensor& k,
                     const Tensor& v, const int32_t* slot, const int32_t* key_end);

// ---- attention.cu: fused (flash-style) forward and backward in fp32: causal or bidirectional,
// key padding mask, additive bias (T5) and its gradient, grouped-query heads; head dim <= 256;
// dropout on the probabilities with the CPU op's mask bit for bit (AttentionOptions::dropout_*).
// The backward is deterministic (every gradient element owned by one block, as on the CPU).
// q, k and v may be bf16/f16 (the products' dtype) where the tensor-core kernels run: the
// values they would round fp32 inputs to (Backend::attention_input_dtype). out may be so too,
// there: the forward rounds each fp32 value (for a 16-bit linear, which would round it so), and
// the backward's Di = <dout, out> reads those rounded values, as FlashAttention's does.
bool attention_reads_16bit_inputs(const AttentionOptions& options, int64_t head_dim);
void attention_forward(Context& ctx, const Tensor& out, const Tensor& lse, const Tensor& q,
                       const Tensor& k, const Tensor& v, const Tensor& bias,
                       const uint8_t* key_mask, int64_t key_mask_size,
                       const AttentionOptions& options);
void attention_backward(Context& ctx, const Tensor& dq, const Tensor& dk, const Tensor& dv,
                        const Tensor& dbias, const Tensor& dout, const Tensor& q, const Tensor& k,
                        const Tensor& v, const Tensor& out, const Tensor& lse, const Tensor& bias,
                        const uint8_t* key_mask, int64_t key_mask_size,
                        const AttentionOptions& options, bool overwrite = false);

// ---- rope.cu: angles as the CPU op computes them (fp32 product, cos/sin in double).
void rope_forward(Context& ctx, const Tensor& out, const Tensor& inp, const int32_t* positions,
                  int64_t num_positions, float theta);
void rope_backward(Context& ctx, const Tensor& dinp, const Tensor& dout,
                   const int32_t* positions, int64_t num_positions, float theta,
                   bool overwrite = false);

// ---- t5_relative_position.cu: buckets from the CPU's bucket function; backward deterministic.
void t5_relative_position_forward(Context& ctx, const Tensor& bias, const Tensor& table,
                                  const T5RelativePositionOptions& options);
void t5_relative_position_backward(Context& ctx, const Tensor& dtable, const Tensor& dbias,
                                   const T5RelativePositionOptions& options);
// Decoding's bias, the query offset read from key_end[0] on the device; the buckets of every
// offset the cache can hold are a constant table (uploaded by the first call). A key_end outside
// [Tq, Tk] is reported at the next synchronize (S2S_ARGUMENT) and gives zeros.
void t5_relative_position_decoding_forward(Context& ctx, const Tensor& bias, const Tensor& table,
                                           const int32_t* key_end,
                                           const T5RelativePositionOptions& options);

// ---- cross_entropy.cu: the forward waits for the stream (the loss is returned); rows summed in
// double in row order on the host. cross_entropy_rows queues without waiting (bad labels are
// raised at the next synchronize). dlogits f32, or bf16 with overwrite (each value rounded as
// written). Both may write the gradient with the rows (a loss's gradient known before the
// forward): cross_entropy_backward(dlogits, logits, lse, labels, N, dloss, {ignore_index,
// reduction}, overwrite = true)'s bits, from the row's read for its lse.
struct CrossEntropyGradient {
  Tensor dlogits;  // (N, V) f32 or bf16, overwritten
  float dloss = 0.f;
  LossReduction reduction = LossReduction::Mean;
};
void cross_entropy_rows(Context& ctx, const Tensor& lse, const Tensor& label_logit,
                        const Tensor& logits, const int32_t* labels, int64_t num_labels,
                        int32_t ignore_index, const CrossEntropyGradient* gradient = nullptr);
CrossEntropyResult cross_entropy_forward(Context& ctx, const Tensor& lse, const Tensor& logits,
                                         const int32_t* labels, int64_t num_labels,
                                         const CrossEntropyOptions& options = {},
                                         const Tensor& dlogits = Tensor{}, float dloss = 0.f);
void cross_entropy_backward(Context& ctx, const Tensor& dlogits, const Tensor& logits,
                            const Tensor& lse, const int32_t* labels, int64_t num_labels,
                            float dloss, const CrossEntropyOptions& options = {},
                            bool overwrite = false);
// The forward's loss from cross_entropy_rows' values, summed on the device in the host's order
// (one warp) and written to loss (one f32), queued without waiting.
void cross_entropy_loss(Context& ctx, const Tensor& loss, const Tensor& lse,
                        const Tensor& label_logit, const int32_t* labels, int64_t num_labels,
                        const CrossEntropyOptions& options = {});

// ---- adamw.cu: the CPU kernel's fp32 operation order with every rounding explicit
// (__fmaf_rn/__fmul_rn/..., no contraction): bit-identical to the CPU results.
// AdamWFusedTensor::compute may be bf16 or f16 here (the fp16 compute copy).
void adamw_update(Context& ctx, const Tensor& param, const Tensor& grad, const Tensor& exp_avg,
                  const Tensor& exp_avg_sq, int64_t step, const AdamWOptions& options);
// What the update of a clipped optimizer step does, decided on the device from the gradients'
// norm (queue_grad_norm_and_gate) so that the host need not wait for it.
struct OptimizerGate {
  enum Action : int { kApply = 0, kZeroGrads = 1, kNothing = 2 };
  float clip_coef;  // kApply: the clipping factor (1.0f when not clipping)
  int action;       // kZeroGrads: a non-finite norm; kNothing: a kernel reported a bad input
};
void adamw_fused_update(Context& ctx, const std::vector<AdamWFusedTensor>& tensors, int64_t step,
                        const AdamWOptions& options, float grad_scale, float clip_coef);
// Backend::clipped_adamw_update: queue_grad_norm_and_gate, then the fused update reading its
// action and clipping factor from the gate on the device; no wait.
void clipped_adamw_update(Context& ctx, const std::vector<AdamWFusedTensor>& tensors, int64_t step,
                          const AdamWOptions& options, float grad_scale, double max_grad_norm,
                          double* norm_out);

// ---- grad_norm.cu: CPU's fixed 64K-element blocks, each summed in double on the device, the
// block sums added in list-then-block order: deterministic; waits for the stream.
double grad_norm(Context& ctx, const std::vector<Tensor>& grads);
double scaled_grad_norm(Context& ctx, const std::vector<Tensor>& grads, float scale);
double clip_grad_norm(Context& ctx, const std::vector<Tensor>& grads, double max_norm);
// Queues *norm_out = scaled_grad_norm(grads, scale) (device memory) and the optimizer step's
// gate: kNothing when the context's error slot holds a report, kZeroGrads for a non-finite norm,
// else kApply with clip_coefficient(norm, max_norm) (1.0f when max_norm <= 0). No wait.
void queue_grad_norm_and_gate(Context& ctx, const std::vector<Tensor>& grads, float scale,
                              double max_norm, double* norm_out, OptimizerGate* gate);

}  // namespace cuda
}  // namespace s2s
