// attention: scaled-dot-product attention, computed blockwise (flash-attention style) so memory
// stays linear in sequence length; forward and backward, plus plain reference loops (tests only).
// Legend: B batch, Tq query length, Tk key length, Hq query heads, Hkv key/value heads, D head dim.
#pragma once
#include <cstdint>
#include <optional>

#include "s2s/ops/dropout.h"
#include "s2s/tensor.h"

namespace s2s {

// Options shared by forward and backward (pass the same ones to both).
struct AttentionOptions {
  // Causal: query i attends key j only when j <= i + (Tk - Tq), i.e. the two sequences are
  // aligned at their ends, as with a KV cache holding Tk - Tq earlier positions. With Tq > Tk the
  // first Tq - Tk query rows attend nothing (see "fully masked rows" below).
  bool causal = false;
  // Multiplies q.k before the bias is added. Unset means 1/sqrt(D); T5 uses 1.0.
  std::optional<float> scale;
  // Dropout on the attention probabilities (training; GPT-2 attn_pdrop, T5 dropout_rate,
  // Llama/Qwen2 attention_dropout). With dropout_p in (0, 1) the probability p[b,h,i,j] is
  // replaced by p[b,h,i,j] * keep / (1 - dropout_p), where
  //   keep = uniform(dropout_seed, dropout_offset + ((b*Hq + h)*Tq + i)*Tk + j) >= dropout_p
  // and uniform is exactly the one of s2s/ops/dropout.h (Philox4x32-10 word of that counter in
  // the stream keyed by the seed, top 24 bits times 2^-24): the mask is what dropout_forward
  // with the same seed and offset would apply to a (B,Hq,Tq,Tk) probability tensor, on any
  // backend and at any thread count. As in PyTorch the softmax comes first: lse and the row
  // normalisation are those of the undropped probabilities, and out = sum_j p'[j] v[j]. The
  // backward regenerates the same mask from (seed, offset), so pass forward and backward the
  // same options. Callers advance dropout_offset by B*Hq*Tq*Tk per call. Fully masked rows stay
  // zeros. dropout_p == 0 (the default) is no dropout and makes no random numbers; dropout_p
  // outside [0, 1) (or NaN) is rejected with S2S_ARGUMENT. The seed may sit in the backend's
  // memory (DropoutSeed::on_device), read by the kernels.
  float dropout_p = 0.0f;
  DropoutSeed dropout_seed;
  uint64_t dropout_offset = 0;
  // Operand precision of the products inside attention (q.k, p.v and those of the backward):
  // F32, or BF16 / F16 as under torch.autocast, where SDPA gets bf16/f16 q, k, v. With BF16 or
  // F16 a backend with tensor cores (CUDA, head dims 32, 64, 96, 128) rounds q, k, v, dout and
  // the probabilities and score gradients to that type as they enter a product and accumulates
  // in fp32; the softmax statistics (max, sum, lse) stay fp32. A permission, not a demand: the
  // CPU op, and the CUDA op for other head dims, compute every product in fp32. Models set it
  // from their compute dtype (nn::attention_products).
  DType products = DType::F32;
};

// Semantics (PyTorch / Hugging Face): for each batch b, query head h, query row i
//   s[j]   = scale * <q[b,i,h,:], k[b,j,g,:]> + bias[h,i,j]   over allowed keys j,
//   p      = softmax(s),   out[b,i,h,:] = sum_j p[j] v[b,j,g,:],   g = h / (Hq / Hkv),
// (p dropped first when options.dropout_p > 0, see AttentionOptions),
// where a key is allowed unless key_mask[b,j] == 0 or (causal) j > i + Tk - Tq. Keys whose bias
// is -inf get probability 0 too.
// Fully masked rows: a query row with no allowed key (or all its scores -inf) outputs zeros,
// stores lse = -inf, and receives zero gradients (dq = 0, and it adds nothing to dk, dv, dbias).
// NaN in q, k, v, bias or dout propagates to the outputs/gradients that depend on it.
//
// Arguments, all contiguous float32:
//   q     (B,Tq,Hq,D)    k, v (B,Tk,Hkv,D)    out (B,Tq,Hq,D), written
//   lse   (B,Hq,Tq)      written: log-sum-exp of each row's scores, saved for backward
//   bias  (Hq,Tq,Tk)     optional additive bias (T5 relative positions), broadcast over batch;
//                        a Tensor with data == nullptr means none
//   key_mask             optional uint8 (B,Tk), 1 = attend, 0 = masked (padding), with
//                        key_mask_size == B*Tk; nullptr (and size 0) = none. Values other
//                        than 0 and 1 are rejected, naming the element.
// Hq must be a multiple of Hkv (grouped-query attention; Hq == Hkv is ordinary multi-head).
// Throws s2s::Error (S2S_SHAPE / S2S_DTYPE / S2S_LAYOUT / S2S_ARGUMENT) on bad arguments.
void attention_forward(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k,
                       const Tensor& v, const Tensor& bias, const uint8_t* key_mask,
                       int64_t key_mask_size, const AttentionOptions& options);

// Backward from dout (B,Tq,Hq,D), given the forward's inputs, its out and lse. Probabilities are
// recomputed tile by tile from lse (nothing quadratic is saved).
//   dq (B,Tq,Hq,D), dk (B,Tk,Hkv,D), dv (B,Tk,Hkv,D), dbias (Hq,Tq,Tk, summed over the batch).
// Every gradient is ACCUMULATED into (+=; the caller zeroes it first), and a gradient Tensor
// whose data is nullptr is not needed and skipped. overwrite = true: dq, dk and dv are written
// (=) instead and may hold garbage (fresh gradients: each task zeroes its own rows just before
// adding into them, so there is no separate zero-fill pass); dbias still accumulates. dk/dv sum
// over the query heads sharing a kv head. Deterministic: the same inputs and thread count give
// the same bits (each gradient element is owned by one task that adds its terms in a fixed
// order).
void attention_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dbias,
                        const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                        const Tensor& out, const Tensor& lse, const Tensor& bias,
                        const uint8_t* key_mask, int64_t key_mask_size,
                        const AttentionOptions& options, bool overwrite = false);

// How attention_backward splits its work (tests reach both plans through this; the default,
// Auto, picks per call: one pass over (batch, kv head) tasks when there are at least twice as
// many as threads, else two passes over smaller tasks). Process-wide.
enum class AttentionBackwardPlan { Auto = 0, OnePass = 1, TwoPass = 2 };
void set_attention_backward_plan(AttentionBackwardPlan plan);

// Plain reference loops (tests only): the full (Tq,Tk) score matrix per head, softmax and
// matmuls, all in double. Same arguments and conventions as above; lse may have data == nullptr.
void attention_forward_reference(const Tensor& out, const Tensor& lse, const Tensor& q,
                                 const Tensor& k, const Tensor& v, const Tensor& bias,
                                 const uint8_t* key_mask, int64_t key_mask_size,
                                 const AttentionOptions& options);
void attention_backward_reference(const Tensor& dq, const Tensor& dk, const Tensor& dv,
                                  const Tensor& dbias, const Tensor& dout, const Tensor& q,
                                  const Tensor& k, const Tensor& v, const Tensor& bias,
                                  const uint8_t* key_mask, int64_t key_mask_size,
                                  const AttentionOptions& options);

}  // namespace s2s
