// nn layers as functions of the graph (like torch.nn.functional): each computes its output Var
// with the ops in s2s/ops/ and records its backward on the tape. Models are compositions of
// these and nothing else. Legend: B batch, T time, C channels, N = B*T rows, H heads, D head dim.
// Every Var argument is contiguous f32 unless stated (norms and activations may write bf16/f16
// for the linears that alone read them: matmul_input_dtype); shapes are checked by the ops.
#pragma once
#include <cstdint>
#include <optional>
#include <vector>

#include "s2s/nn/graph.h"
#include "s2s/nn/param.h"
#include "s2s/ops/attention.h"
#include "s2s/ops/cross_entropy.h"
#include "s2s/ops/gelu.h"
#include "s2s/ops/linear.h"

namespace s2s {
class KVCache;  // s2s/generate/kv_cache.h
namespace nn {

// LoRA on a linear layer (PEFT semantics): y += scaling * dropout(x) A^T B^T with
// A (r, in), B (out, r) whatever the base weight's layout.
struct Lora {
  Param* A = nullptr;
  Param* B = nullptr;
  float scaling = 1.0f;  // lora_alpha / r, or lora_alpha / sqrt(r) with rsLoRA
  float dropout = 0.0f;
};

struct LinearWeights {
  Param* weight = nullptr;            // (out, in) for OutIn, (in, out) for InOut (GPT-2 Conv1D)
  Param* bias = nullptr;              // (out,) or none
  WeightLayout layout = WeightLayout::OutIn;
  const Lora* lora = nullptr;         // none unless LoRA targets this layer
  // The layer's output width, from the layout.
  int64_t out_features() const {
    const Tensor& w = weight->value;
    return layout == WeightLayout::OutIn ? w.shape[0] : w.shape[1];
  }
};

// x (..., in) -> (..., out). x f32, or in the weight's 16-bit matmul dtype (no LoRA).
Var* linear(Graph& g, Var* x, const LinearWeights& w);

// The dtype for an activation that only the linears `readers` read: their common bf16 / f16
// matmul dtype when none has LoRA (which reads x in f32), the backend takes half activations
// and g.half_activations is on; else f32. The 16-bit value is what each linear would round the
// f32 one to, so the products are unchanged (Backend::takes_half_activations).
DType matmul_input_dtype(const Graph& g, std::initializer_list<const LinearWeights*> readers);

// For an f32 x that two or more linears read in the same 16-bit matmul dtype (x stays f32
// because one of them has LoRA, whose adapter reads x in f32, or because linears in many blocks
// read it: T5's encoder output): rounds x once (x->matmul_copy), and those linears' GEMMs read
// that copy instead of each rounding x itself, forward and backward: the same products. Only
// where the backend takes half activations and g.half_activations and g.share_matmul_inputs are
// on; otherwise nothing. Call it right after x is made (the copy lives where x lives).
void share_matmul_input(Graph& g, Var* x, const std::vector<const LinearWeights*>& readers);

// out: the output's dtype (matmul_input_dtype), f32 by default.
Var* layernorm(Graph& g, Var* x, Param* weight, Param* bias, float eps,
               DType out = DType::F32);  // bias may be null
Var* rmsnorm(Graph& g, Var* x, Param* weight, float eps, DType out = DType::F32);

// ids (B,T) int32 -> (B,T,C): wte[ids] (+ wpe[positions] when wpe is given; positions (B,T) or
// null for 0..T-1). ids/positions must stay valid until backward (keep them in the batch).
Var* embedding(Graph& g, const int32_t* ids, int64_t B, int64_t T, Param* wte, Param* wpe,
               const int32_t* positions);

Var* add(Graph& g, Var* a, Var* b);     // same shapes
// x + branch for a transformer block's residual connection, where branch = f(norm(x)): the add
// with a backward that lets x and branch share the output's gradient (Graph::share_residual_
// gradient) instead of copying it for x, the same bits. Sound because of the contract: branch
// has no consumer but this add, and every op reading x other than this add was recorded before
// branch's producer (so branch's producer reads the shared gradient before anything adds x's
// other gradients into it). Otherwise use add.
Var* residual_add(Graph& g, Var* x, Var* branch);
// residual_add(x, dropout(linear(a, w), dropout_p)): a residual branch that ends in a linear
// (GPT-2's attn_proj and mlp_proj, Llama's o_proj and down_proj), with residual_add's contract.
// Where the dropout is inactive, w has no LoRA, the backend fuses the pair
// (Backend::fuses_linear_residual) and g.fuse_linear_residual is on, one op adds the product
// onto x as it is made: the linear's output is never stored (values within the rounding of the
// additions' order; the pair's backward).
Var* linear_residual(Graph& g, Var* x, Var* a, const LinearWeights& w, float dropout_p = 0.0f);
Var* scale(Graph& g, Var* x, float s);  // x * s (T5's tied-head rescale)

Var* gelu(Graph& g, Var* x, GeluApprox approximate, DType out = DType::F32);
// gelu(linear(x, w)) (GPT-2's c_fc): the same values and gradients as that pair. Where the
// backend fuses the pair's backward (Backend::fuses_linear_gelu_backward) and g.fuse_linear_gelu
// is on, one backward step makes gelu's gradient as the linear's reads it (stored in f32 only
// for LoRA's products when w has LoRA: the same bits as the pair).
Var* linear_gelu(Graph& g, Var* x, const LinearWeights& w, GeluApprox approximate,
                 DType out = DType::F32);
Var* relu(Graph& g, Var* x, DType out = DType::F32);
Var* silu(Graph& g, Var* x);
Var* swiglu(Graph& g, Var* gate, Var* up, DType out = DType::F32);  // silu(gate) * up
Var* geglu(Graph& g, Var* gate, Var* up, GeluApprox approximate,
           DType out = DType::F32);  // gelu(gate) * up
// Identity (x itself, whatever out says) unless g.training and p > 0.
Var* dropout(Graph& g, Var* x, float p, DType out = DType::F32);
// residual_add(x, dropout(branch, p)), with residual_add's contract: the same values and
// gradients, bit for bit. Where the dropout is active, the backend fuses the pair
// (Backend::fuses_dropout_add) and g.fuse_dropout_add is on, one op adds the dropped branch
// onto x: the dropped branch is never stored.
Var* dropout_residual_add(Graph& g, Var* x, Var* branch, float p);

// Splits the last dimension of x (..., sum(sizes)) into contiguous parts (GPT-2's fused c_attn),
// written in `out` (f32, or attention_input_dtype for parts only attention reads).
std::vector<Var*> split_last(Graph& g, Var* x, const std::vector<int64_t>& sizes,
                             DType out = DType::F32);
// split_last(linear(x, w), sizes, out) (GPT-2's c_attn): the same values and gradients as that
// pair. Where the backend fuses the pair's backward (Backend::fuses_linear_split_backward), there
// are at most 4 parts and g.fuse_linear_split is on, one backward step reads the parts' gradients
// in place instead of assembling the linear's output gradient first; LoRA's products on w read
// them in place too (the same gradients up to the order of dx_A's sum over the parts).
std::vector<Var*> linear_split(Graph& g, Var* x, const LinearWeights& w,
                               const std::vector<int64_t>& sizes, DType out = DType::F32);
// linear(x, w) for an output that only the tensor-core attention reads (Llama's v, T5's q, k
// and v), written in `out`, attention_input_dtype: where that is 16-bit and w has no LoRA,
// straight from a GEMM in 16 bits (linear_split's one-part path: the f32 output is neither
// written nor read back; the same values the attention would round it to as it stages it);
// else linear(x, w).
Var* linear_for_attention(Graph& g, Var* x, const LinearWeights& w, DType out);

// The dtype for q, k or v that only nn::attention with these options reads: the 16-bit products'
// dtype where the backend's attention rounds q, k, v to it anyway and g.half_activations is on
// (Backend::attention_input_dtype), so the products are unchanged; else f32. Not for a KV cache.
DType attention_input_dtype(const Graph& g, const AttentionOptions& options, int64_t head_dim);

// The dtype for attention's output where only the linears `readers` read it: their 16-bit
// matmul dtype where attention_input_dtype is that same type and g.half_attention_output is on,
// so the linears' products are unchanged (the backward's Di then reads the rounded output, as
// FlashAttention's does: Backend::attention_input_dtype); else f32.
DType attention_output_dtype(const Graph& g, const AttentionOptions& options, int64_t head_dim,
                             std::initializer_list<const LinearWeights*> readers);

// q (B,Tq,Hq,D), k/v (B,Tk,Hkv,D) -> (B,Tq,Hq,D) in `out` (f32, or attention_output_dtype).
// q, k, v f32 or attention_input_dtype. bias (Hq,Tq,Tk) or null; key_mask (B,Tk) uint8 or null
// (must stay valid until backward). options.dropout_p: dropout on the attention probabilities,
// applied only when g.training (seed and offset come from the graph).
Var* attention(Graph& g, Var* q, Var* k, Var* v, Var* bias, const uint8_t* key_mask,
               AttentionOptions options, DType out = DType::F32);

// x (B,T,H,D) rotated by RoPE at positions (B,T) (null: 0..T-1), written in `out` (f32, or
// attention_input_dtype when only attention reads the result).
Var* rope(Graph& g, Var* x, const int32_t* positions, float theta, DType out = DType::F32);

// T5 relative-position bias (Hq,Tq,Tk) from table (num_buckets, Hq).
Var* t5_position_bias(Graph& g, Param* table, int64_t Tq, int64_t Tk, bool bidirectional,
                      int64_t max_distance, int64_t q_offset);

// ---- generation: inference over a KV cache (s2s/generate/kv_cache.h), run under g.no_grad;
// these record no backward step ----

// S2S_ARGUMENT naming `what` unless the cache's storage is on g's backend.
void expect_cache_on_graph_backend(Graph& g, const KVCache& cache, const char* what);
// Self-attention over the cache: k, v (R,T,Hkv,D) of the T new positions are written into
// layer `layer` at the cache's current length, then q (R,T,Hq,D) attends each row's keys
// [key_begin, length + T), causally within the new positions. bias (Hq,T,length+T) or null.
Var* cached_attention(Graph& g, Var* q, Var* k, Var* v, KVCache& cache, int64_t layer,
                      Var* bias, const AttentionOptions& options);
// A fused projection's output x (R,T,W) split into heads for cached_attention: part i is
// (R,T,heads[i],D), W = D x sum(heads). While decoding (the cache holds positions) the parts
// are views into x, no copy, which cached_attention's ops read in place; for the prompt
// prefill of an empty cache they are contiguous copies (the training attention kernel's input).
std::vector<Var*> split_heads(Graph& g, Var* x, std::initializer_list<int64_t> heads, int64_t D,
                              const KVCache& cache);
// Cross-attention of q (R,T,H,D) to the cache's encoder keys/values of `layer` (T5), each
// row to its item's real (unpadded) encoder positions.
Var* cross_attention(Graph& g, Var* q, KVCache& cache, int64_t layer,
                     const AttentionOptions& options);
// T5's decoder self-attention bias (Hq,T,Tc) for T new positions at the cache's current length,
// over every position the cache can hold (Tc, its capacity; cached_attention reads only those
// before each row's key_end). The length is read from the cache's key_end array where the ops
// read it (KVCache::ranges), so the step's work is the same at every length (a recorded step
// replays right).
Var* t5_decoding_position_bias(Graph& g, Param* table, int64_t T, KVCache& cache,
                               int64_t max_distance);
// x (R,T,C) -> (R,C): each row's last position (only its logits are needed when decoding).
Var* last_position(Graph& g, Var* x);

// logits (N,V), labels (N,) int32 -> a (1,) loss Var; count_out gets the counted tokens. With
// Graph::known_dloss set, the logits' gradient is written with the loss, from the same pass over
// the logits (Backend::cross_entropy_forward_backward); the backward checks the seed. host_labels:
// the labels in host memory (labels may be their device copy), which Graph::loss_on_device needs
// (checked and counted there); without them the loss is brought back as before.
Var* cross_entropy(Graph& g, Var* logits, const int32_t* labels, int64_t num_labels,
                   const CrossEntropyOptions& options, int64_t* count_out,
                   const int32_t* host_labels = nullptr);

// The LM head and its loss without the whole (N,V) logits: x (N,C) (f32 or the head's 16-bit
// matmul dtype) through the head (no bias, no LoRA) chunk_rows rows at a time, each chunk's
// logits going straight into the loss. With Graph::known_dloss set, each chunk's dx rows and dW
// are made right there (dW added to the head's gradient in the forward); else the backward
// makes each chunk's logits again (one more head GEMM, but for one chunk's) and then its
// gradients. Both ways give the same bits. The plain path's maths
// (nn::linear + nn::cross_entropy): a chunk's GEMM may round otherwise than the whole one, and dW
// sums the chunks' products, last chunk first. labels (N,)
// are HOST int32 (counted, and chunks without a counted row skipped, on the host), valid until
// backward. Chunks of at most chunk_rows rows (<= 0: loss_chunk_rows(V,
// Backend::min_loss_chunk_rows())), evened out: N = 1024
// at 320 rows is 4 x 256. Memory: one chunk's logits and dlogits, their rows
// Backend::aligned_row_stride(V) apart (padded where a GPU's GEMMs want aligned rows; with
// chunk_rows >= N the one chunk is Graph::loss_only's padded head and loss).
Var* linear_cross_entropy(Graph& g, Var* x, const LinearWeights& head, const int32_t* labels,
                          int64_t num_labels, const CrossEntropyOptions& options,
                          int64_t* count_out, int64_t chunk_rows = 0);
// Rows per chunk for a vocabulary of this size: 64 MiB of f32 logits (320 rows for GPT-2's
// 50,257 tokens, 96 for Qwen2's 151,936), or min_rows if that is more; a multiple of 16 where
// there is room.
int64_t loss_chunk_rows(int64_t vocab_size, int64_t min_rows = 1);

}  // namespace nn
}  // namespace s2s
