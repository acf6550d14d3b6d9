// exp_nonpos: expf for the arguments softmax-style kernels produce (x - max <= 0), written
// branch-free so loops over it vectorise without -ffast-math. Internal to src/ops.
#pragma once
#include <cstdint>
#include <cstring>

namespace s2s {
namespace detail {

// e^x for x <= 88 (larger x is clamped: callers pass x - max <= 0). Results below 2^-126
// (x < -87.33) flush to 0, so exp(-inf) = 0; NaN in gives NaN out. Cephes-style: x = n ln2 + r
// with |r| <= ln2/2, e^r by a degree-6 polynomial, 2^n by building the exponent bits.
// Accuracy: within 2 ulp of the correctly rounded e^x over [-87.3, 0] (tested).
inline float exp_nonpos(float x) {
  const float lo = -87.33654475f, hi = 88.0f;
  float xc = x < lo ? lo : x;  // NaN compares false: stays NaN through the arithmetic
  xc = xc > hi ? hi : xc;
  // n = round(x / ln2) with the 1.5 * 2^23 trick (no float->int conversion of a NaN).
  const float shifter = 12582912.0f;
  const float t = xc * 1.44269504088896341f + shifter;
  const float n = t - shifter;
  float r = xc - n * 0.693359375f;  // ln2 split in two for an exact n*ln2_hi
  r = r - n * -2.12194440e-4f;
  const float z = r * r;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * z + r + 1.0f;
  uint32_t tb;
  std::memcpy(&tb, &t, 4);
  // Low bits of t hold n (+ the shifter's mantissa 0x400000); n in [-126, 127].
  const uint32_t e = ((tb - 0x4B400000u) + 127u) << 23;
  float scale;
  std::memcpy(&scale, &e, 4);
  const float y = p * scale;
  return x < lo ? 0.0f : (x != x ? x : y);
}

}  // namespace detail
}  // namespace s2s
