// Device versions of the activation maths in ops/vec_math.h (gelu tanh/erf, silu and their
// derivatives), on CUDA's own tanhf/erff/expf (a few ulp from the CPU's polynomials).
#pragma once
#include <cuda_runtime.h>

namespace s2s {
namespace cuda {
namespace act {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluCoef = 0.044715f;
constexpr float kInvSqrt2 = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;

__device__ inline float gelu(float x, bool approx_tanh) {
  if (approx_tanh) return 0.5f * x * (1.0f + tanhf(kSqrt2OverPi * (x + kGeluCoef * x * x * x)));
  return 0.5f * x * (1.0f + erff(x * kInvSqrt2));
}
__device__ inline float gelu_grad(float x, bool approx_tanh) {
  if (approx_tanh) {
    const float x2 = x * x;
    const float t = tanhf(kSqrt2OverPi * (x + kGeluCoef * x2 * x));
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * kSqrt2OverPi * (1.0f + 3.0f * kGeluCoef * x2);
  }
  return 0.5f * (1.0f + erff(x * kInvSqrt2)) + x * kInvSqrt2Pi * expf(-0.5f * x * x);
}
__device__ inline float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
__device__ inline float silu(float x) { return x * sigmoid(x); }
__device__ inline float silu_grad(float x) {
  const float s = sigmoid(x);
  return s * (1.0f + x * (1.0f - s));
}

}  // namespace act
}  // namespace cuda
}  // namespace s2s
