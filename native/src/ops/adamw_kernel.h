// The AdamW element loop, shared by adamw.cpp (portable build) and adamw_avx2.cpp (compiled with
// AVX2+FMA, where the same source vectorises). Internal to src/ops. Both give the same bits: the
// only fused multiply-adds are the explicit __builtin_fmaf calls, and contraction is switched off so
// the compiler adds none of its own.
#pragma once
#include <cstdint>

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif

namespace s2s {
namespace detail {

struct AdamWScalars {
  float decay;          // 1 - lr * wd
  float beta1, one_minus_beta1, beta2, one_minus_beta2;
  float bc2_sqrt;       // sqrt(1 - beta2^t)
  float neg_step_size;  // -lr / (1 - beta1^t)
  float eps;
};

// PyTorch's CPU kernels, operation for operation (torch 1.13 single-tensor AdamW on an FMA
// machine; its add_/addcmul_ kernels use a fused multiply-add, addcdiv_ does not):
//   p = p * decay
//   m = fma(g, 1 - beta1, m * beta1)              exp_avg.mul_(beta1).add_(grad, alpha=1-beta1)
//   v = fma((1 - beta2) * g, g, v * beta2)        exp_avg_sq.mul_(beta2).addcmul_(g, g, 1-beta2)
//   denom = sqrt(v) / bc2_sqrt + eps
//   p = p + (neg_step_size * m) / denom           param.addcdiv_(exp_avg, denom, -step_size)
// static, and builtins rather than std::fma/std::sqrt (inline functions with linkage): each
// including file (portable, AVX2) keeps its own copy; a linker-merged one could hand the AVX2
// build to a CPU without AVX2.
static inline void adamw_elements(float* __restrict p, const float* __restrict g, float* __restrict m,
                           float* __restrict v, int64_t n, const AdamWScalars& s) {
#if defined(__clang__)
#pragma clang fp contract(off)
#endif
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i];
    const float pi = p[i] * s.decay;
    const float mi = __builtin_fmaf(gi, s.one_minus_beta1, m[i] * s.beta1);
    const float vi = __builtin_fmaf(s.one_minus_beta2 * gi, gi, v[i] * s.beta2);
    const float denom = __builtin_sqrtf(vi) / s.bc2_sqrt + s.eps;
    m[i] = mi;
    v[i] = vi;
    p[i] = pi + (s.neg_step_size * mi) / denom;
  }
}

// One element of the fused step (adamw_fused_update): the gradient scaled as scale_forward and
// clip_grad_norm do (two fp32 products, each rounded), then adamw_elements' arithmetic exactly;
// the gradient element is zeroed once read.
static inline float adamw_fused_one(float* __restrict p, float* __restrict g,
                                    float* __restrict m, float* __restrict v, int64_t i,
                                    const AdamWScalars& s, float scale, float clip) {
#if defined(__clang__)
#pragma clang fp contract(off)
#endif
  const float gi = (g[i] * scale) * clip;
  g[i] = 0.0f;
  const float pi = p[i] * s.decay;
  const float mi = __builtin_fmaf(gi, s.one_minus_beta1, m[i] * s.beta1);
  const float vi = __builtin_fmaf(s.one_minus_beta2 * gi, gi, v[i] * s.beta2);
  const float denom = __builtin_sqrtf(vi) / s.bc2_sqrt + s.eps;
  m[i] = mi;
  v[i] = vi;
  const float pn = pi + (s.neg_step_size * mi) / denom;
  p[i] = pn;
  return pn;
}

// cast.cpp's f32 -> bf16 rounding (RNE; NaN keeps its top bits with the quiet bit set), branch-free.
static inline uint16_t adamw_bf16_rne(float f) {
  uint32_t u;
  __builtin_memcpy(&u, &f, 4);
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const uint32_t nan = (u >> 16) | 0x40u;
  return static_cast<uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}

// adamw_fused_update's element loop: g = (g * scale) * clip, the AdamW step, the bf16 copy
// c = cast(p) when c != nullptr, and g = 0; one read of p, g, m, v per element.
static inline void adamw_fused_elements(float* __restrict p, float* __restrict g,
                                        float* __restrict m, float* __restrict v,
                                        uint16_t* __restrict c, int64_t n, const AdamWScalars& s,
                                        float scale, float clip) {
  if (c != nullptr) {
    for (int64_t i = 0; i < n; ++i) c[i] = adamw_bf16_rne(adamw_fused_one(p, g, m, v, i, s, scale, clip));
  } else {
    for (int64_t i = 0; i < n; ++i) adamw_fused_one(p, g, m, v, i, s, scale, clip);
  }
}

}  // namespace detail
}  // namespace s2s

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif
