// Branch-free float exp / tanh / erf / sigmoid that GCC and Clang vectorise inside plain loops
// (selects instead of branches, integer bit tricks instead of ldexp/floor, no libm calls).
// Internal to ops/: every function is `static` so the copies compiled into *_avx2.cpp and
// *_avx512.cpp never collide with the baseline ones at link time (no ODR-merged inlines).
// NaN in -> NaN out for all of them; no -ffast-math assumptions.
#pragma once
#include <cstdint>

namespace s2s {
namespace vm {

static inline float bits_to_float(uint32_t u) { float f; __builtin_memcpy(&f, &u, 4); return f; }
static inline uint32_t float_to_bits(float f) { uint32_t u; __builtin_memcpy(&u, &f, 4); return u; }

// e^x, Cephes expf scheme: x = n ln2 + r, |r| <= ln2/2, e^r by a degree-6 polynomial, 2^n by
// building the exponent bits. About 1 ulp over the normal range. Below -87.3365 (where the
// result would be subnormal) it returns 0; above 88.7228 it returns +Inf.
static inline float exp_f(float x) {
  const float hi = 88.7228394f, lo = -87.3365448f;
  float xc = x > hi ? hi : x;
  xc = xc < lo ? lo : xc;  // NaN fails both compares and stays NaN
  // n = round(x / ln2) by the 1.5 * 2^23 trick (exact for |x / ln2| < 2^22).
  const float shifter = 12582912.f;
  const float t = xc * 1.44269504088896341f + shifter;
  const float n = t - shifter;
  float r = xc - n * 0.693359375f;  // ln2 split in two for an exact product
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float er = p * (r * r) + r + 1.0f;
  const int32_t ni = static_cast<int32_t>(float_to_bits(t) - float_to_bits(shifter));
  const float scale = bits_to_float(static_cast<uint32_t>(ni + 127) << 23);  // 2^n, n <= 128
  const float y = er * scale;
  return x < lo ? 0.0f : y;
}

// tanh(x): a 13/6 rational interpolant (coefficients from Eigen's generic_fast_tanh_float),
// a couple of ulp on [-9, 9]; outside that tanh is +-1 in float. Tiny |x| returns x.
static inline float tanh_f(float x) {
  float xc = x > 9.f ? 9.f : x;
  xc = xc < -9.f ? -9.f : xc;
  const float x2 = xc * xc;
  float p = -2.76076847742355e-16f;
  p = p * x2 + 2.00018790482477e-13f;
  p = p * x2 + -8.60467152213735e-11f;
  p = p * x2 + 5.12229709037114e-08f;
  p = p * x2 + 1.48572235717979e-05f;
  p = p * x2 + 6.37261928875436e-04f;
  p = p * x2 + 4.89352455891786e-03f;
  p = p * xc;
  float q = 1.19825839466702e-06f;
  q = q * x2 + 1.18534705686654e-04f;
  q = q * x2 + 2.26843463243900e-03f;
  q = q * x2 + 4.89352518554385e-03f;
  const float y = p / q;
  const float ax = x < 0 ? -x : x;
  return ax < 0.0004f ? x : y;
}

// erf(x): odd/even rational approximation on [-4, 4] (Eigen's generic_fast_erf_float
// coefficients); beyond +-4 erf is +-1 to float precision. Max abs error ~4.2e-7 (measured
// against math.erf on a 2e5-point grid).
static inline float erf_f(float x) {
  float xc = x > 4.f ? 4.f : x;
  xc = xc < -4.f ? -4.f : xc;
  const float x2 = xc * xc;
  float p = -2.72614225801306e-10f;
  p = p * x2 + 2.77068142495902e-08f;
  p = p * x2 + -2.10102402082508e-06f;
  p = p * x2 + -5.69250639462346e-05f;
  p = p * x2 + -7.34990630326855e-04f;
  p = p * x2 + -2.95459980854025e-03f;
  p = p * x2 + -1.60960333262415e-02f;
  p = p * xc;
  float q = -1.45660718464996e-05f;
  q = q * x2 + -2.13374055278905e-04f;
  q = q * x2 + -1.68282697438203e-03f;
  q = q * x2 + -7.37332916720468e-03f;
  q = q * x2 + -1.42647390514189e-02f;
  return p / q;
}

// 1 / (1 + e^-x); exact 0 and 1 in the tails, NaN propagates.
static inline float sigmoid_f(float x) { return 1.0f / (1.0f + exp_f(-x)); }

// GELU pieces shared by gelu and geglu.
constexpr float kSqrt2OverPi = 0.7978845608028654f;  // sqrt(2 / pi)
constexpr float kGeluCoef = 0.044715f;
constexpr float kInvSqrt2 = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;  // 1 / sqrt(2 pi)

// gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))   (HF gelu_new)
static inline float gelu_tanh_f(float x) {
  const float u = kSqrt2OverPi * (x + kGeluCoef * x * x * x);
  return 0.5f * x * (1.0f + tanh_f(u));
}
// d/dx gelu_tanh = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)
static inline float gelu_tanh_grad_f(float x) {
  const float x2 = x * x;
  const float t = tanh_f(kSqrt2OverPi * (x + kGeluCoef * x2 * x));
  return 0.5f * (1.0f + t) +
         0.5f * x * (1.0f - t * t) * kSqrt2OverPi * (1.0f + 3.0f * kGeluCoef * x2);
}
// gelu_erf(x) = 0.5 x (1 + erf(x / sqrt 2))   (torch gelu, approximate='none')
static inline float gelu_erf_f(float x) { return 0.5f * x * (1.0f + erf_f(x * kInvSqrt2)); }
// d/dx gelu_erf = 0.5 (1 + erf(x / sqrt 2)) + x e^{-x^2/2} / sqrt(2 pi)
static inline float gelu_erf_grad_f(float x) {
  return 0.5f * (1.0f + erf_f(x * kInvSqrt2)) + x * kInvSqrt2Pi * exp_f(-0.5f * x * x);
}
// silu(x) = x sigmoid(x); d/dx = s (1 + x (1 - s))
static inline float silu_f(float x) { return x * sigmoid_f(x); }
static inline float silu_grad_f(float x) {
  const float s = sigmoid_f(x);
  return s * (1.0f + x * (1.0f - s));
}

}  // namespace vm
}  // namespace s2s
