// The exp/tanh/erf-heavy inner loops (gelu, silu, swiglu, geglu, softmax and cross-entropy rows) as a table of
// plain-pointer kernels, compiled three times from act_kernels_impl.h: baseline (SSE2),
// AVX2+FMA (act_kernels_avx2.cpp) and AVX-512 (act_kernels_avx512.cpp). act_kernels() picks
// the table for s2s::active_isa(). Kernels are serial over [0, n); ops split work across threads.
// Every backward kernel ACCUMULATES into its gradient pointers; a null gradient pointer is skipped.
#pragma once
#include <cstdint>

namespace s2s {

struct ActKernels {
  const char* name;
  // approx_tanh: true = tanh approximation (gelu_new), false = exact erf.
  void (*gelu_forward)(float* out, const float* inp, int64_t n, bool approx_tanh);
  void (*gelu_backward)(float* dinp, const float* dout, const float* inp, int64_t n,
                        bool approx_tanh);
  void (*silu_forward)(float* out, const float* inp, int64_t n);
  void (*silu_backward)(float* dinp, const float* dout, const float* inp, int64_t n);
  void (*swiglu_forward)(float* out, const float* gate, const float* up, int64_t n);
  void (*swiglu_backward)(float* dgate, float* dup, const float* dout, const float* gate,
                          const float* up, int64_t n);
  void (*geglu_forward)(float* out, const float* gate, const float* up, int64_t n,
                        bool approx_tanh);
  void (*geglu_backward)(float* dgate, float* dup, const float* dout, const float* gate,
                         const float* up, int64_t n, bool approx_tanh);
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
};

const ActKernels& act_kernels();  // for the active ISA
const ActKernels& act_kernels_base();
#if S2S_HAVE_X86_KERNELS
const ActKernels& act_kernels_avx2();
const ActKernels& act_kernels_avx512();
#endif

}  // namespace s2s
