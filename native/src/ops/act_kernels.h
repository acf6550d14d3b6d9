// The exp/tanh/erf-heavy inner loops (gelu, silu, swiglu, geglu, softmax and cross-entropy rows)
// and attention's row loops as a table of plain-pointer kernels, compiled three times from
// act_kernels_impl.h: baseline (SSE2), AVX2+FMA (act_kernels_avx2.cpp) and AVX-512
// (act_kernels_avx512.cpp). act_kernels() picks the table for s2s::active_isa(). Kernels are serial over [0, n); ops split work across threads.
// Every backward kernel ACCUMULATES into its gradient pointers, or with overwrite = true writes
// them (=) without reading them (fresh gradients); a null gradient pointer is skipped.
#pragma once
#include <cstdint>

#include "s2s/dtype.h"

namespace s2s {

struct ActKernels {
  const char* name;
  // approx_tanh: true = tanh approximation (gelu_new), false = exact erf.
  void (*gelu_forward)(float* out, const float* inp, int64_t n, bool approx_tanh);
  void (*gelu_backward)(float* dinp, const float* dout, const float* inp, int64_t n,
                        bool approx_tanh, bool overwrite);
  void (*silu_forward)(float* out, const float* inp, int64_t n);
  void (*silu_backward)(float* dinp, const float* dout, const float* inp, int64_t n,
                        bool overwrite);
  void (*swiglu_forward)(float* out, const float* gate, const float* up, int64_t n);
  void (*swiglu_backward)(float* dgate, float* dup, const float* dout, const float* gate,
                          const float* up, int64_t n, bool overwrite);
  void (*geglu_forward)(float* out, const float* gate, const float* up, int64_t n,
                        bool approx_tanh);
  void (*geglu_backward)(float* dgate, float* dup, const float* dout, const float* gate,
                         const float* up, int64_t n, bool approx_tanh, bool overwrite);
  // rows x C, row-major, each row independently.
  void (*softmax_forward)(float* out, const float* inp, int64_t rows, int64_t C);
  void (*softmax_backward)(float* dinp, const float* dout, const float* out, int64_t rows,
                           int64_t C);
  // Cross-entropy rows (ops/cross_entropy.cpp). ce_row_lse: logsumexp of one row of V logits in
  // one streaming pass (NaN anywhere -> NaN, all -inf -> -inf). ce_row_backward: dx = or +=
  // exp(x - lse) * scale over the row (the label's -scale is the caller's).
  float (*ce_row_lse)(const float* x, int64_t V);
  void (*ce_row_backward)(float* dx, const float* x, int64_t V, float lse, float scale,
                          bool overwrite);
  // The overwrite row with the label's -scale applied (label < 0: none), each value computed in
  // fp32 as ce_row_backward + the label fix-up do it, then rounded to bf16 (f32_to_bf16).
  void (*ce_row_backward_bf16)(uint16_t* dx, const float* x, int64_t V, float lse, float scale,
                               int64_t label);
  // Attention score tiles (ops/attention.cpp): nq rows of nk scores, row stride ld.
  // attn_online_softmax: one key block of the online softmax. Per row r: m' = max(m[r], row max)
  // (a NaN score makes m' NaN); a row with m' = -inf (nothing allowed yet) becomes zeros with
  // alpha[r] = 1 and m, l unchanged; else alpha[r] = exp(m[r] - m'), the row becomes
  // exp(s - m'), l[r] = l[r] alpha[r] + its sum, m[r] = m'.
  void (*attn_online_softmax)(float* S, int64_t ld, int64_t nq, int64_t nk, float* m, float* l,
                              float* alpha);
  // P = exp(S - lse[r]) per row; rows whose lse is -inf (no allowed key) become zeros.
  void (*attn_probs_from_lse)(float* S, int64_t ld, int64_t nq, int64_t nk, const float* lse);
  // dS = P (dP - Di[r]) in place in P.
  void (*attn_ds_from_p)(float* P, const float* dP, int64_t ld, int64_t nq, int64_t nk,
                         const float* Di);
  // Decoding's attention over a KV cache (ops/attention_cached.cpp): nq queries of Hk * G heads
  // (query i's head h at q + i * q_stride + h * D) against n cache positions, position j's Hk
  // key/value rows at rows + j * pos_stride (+ hk * D), D values of `dtype` each (f32, or bf16 /
  // f16 bits widened exactly); `widened`: scratch of cache_kernel_scratch(D, nq * Hk * G) floats;
  // head h reads row h / G. Positions are read in order, each row once for all its heads and
  // queries. attn_cache_scores: s[(i * Hk * G + h) * ld + j] = scale * <q_ih, key row>, the dot
  // in 8 fixed lanes. attn_cache_weighted_sum: o + (i * Hk * G + h) * D = sum over j in order of
  // p[(i * Hk * G + h) * ld + j] * value row (o overwritten).
  void (*attn_cache_scores)(float* s, int64_t ld, const float* q, int64_t q_stride, int64_t nq,
                            int64_t Hk, int64_t G, const void* rows, int64_t pos_stride,
                            int64_t n, int64_t D, DType dtype, float scale, float* widened);
  void (*attn_cache_weighted_sum)(float* o, const float* p, int64_t ld, int64_t nq, int64_t Hk,
                                  int64_t G, const void* rows, int64_t pos_stride, int64_t n,
                                  int64_t D, DType dtype, float* widened);
};

// The scratch the cache kernels take: a widened row (D floats), or the scores' 8 lanes of 8
// positions per query head (64 per head).
inline int64_t cache_kernel_scratch(int64_t D, int64_t query_heads) {
  return D > 64 * query_heads ? D : 64 * query_heads;
}

const ActKernels& act_kernels();  // for the active ISA
const ActKernels& act_kernels_base();
#if S2S_HAVE_X86_KERNELS
const ActKernels& act_kernels_avx2();
const ActKernels& act_kernels_avx512();
#endif

}  // namespace s2s
