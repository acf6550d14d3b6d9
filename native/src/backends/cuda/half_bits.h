// f32 <-> bf16 / f16 bit conversions with dtype.h's exact rules, for the CUDA kernels and for the
// host code that runs kernel bodies on the CPU (the tensor-core attention's simulator test), so
// both round the same way and GPU casts give the CPU's bits.
//   bf16: round to nearest even; NaN keeps its top bits with the quiet bit set.
//   f16: cast.cpp's branch-free form: RNE, subnormals kept, overflow to Inf, NaN to the quiet NaN
//        0x7e00 with its sign (CUDA's __float2half_rn rounds the same way but returns another NaN).
#pragma once
#include <cstdint>
#include <cstring>

#include "core/philox.h"  // S2S_HOST_DEVICE

namespace s2s {
namespace cuda {

S2S_HOST_DEVICE inline uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}
S2S_HOST_DEVICE inline float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}
// a + b and a - b rounded to nearest even (nvcc may not contract these into an FMA).
S2S_HOST_DEVICE inline float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
S2S_HOST_DEVICE inline float sub_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}

S2S_HOST_DEVICE inline uint16_t f32_to_bf16_bits(float f) {
  const uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
S2S_HOST_DEVICE inline float bf16_bits_to_f32(uint16_t h) { return bits_float(uint32_t(h) << 16); }

S2S_HOST_DEVICE inline uint16_t f32_to_f16_bits(float f) {
  const uint32_t u = float_bits(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t a = u & 0x7fffffffu;
  const uint32_t big = a > 0x7f800000u ? 0x7e00u : 0x7c00u;
  const uint32_t denorm_magic = ((127 - 15) + (23 - 10) + 1) << 23;
  const uint32_t sub = float_bits(add_rn(bits_float(a), bits_float(denorm_magic))) - denorm_magic;
  const uint32_t norm = (a + ((15u - 127u) << 23) + 0xfffu + ((a >> 13) & 1u)) >> 13;
  const uint32_t h = a >= 0x47800000u ? big : (a < 0x38800000u ? sub : norm);
  return static_cast<uint16_t>(sign | h);
}
S2S_HOST_DEVICE inline float f16_bits_to_f32(uint16_t h) {
  const uint32_t shifted_exp = 0x7c00u << 13;
  uint32_t o = (static_cast<uint32_t>(h) & 0x7fffu) << 13;
  const uint32_t exp = shifted_exp & o;
  o += (127u - 15u) << 23;
  const uint32_t inf_nan = o + ((128u - 16u) << 23);
  const uint32_t sub = float_bits(sub_rn(bits_float(o + (1u << 23)), bits_float(113u << 23)));
  o = exp == shifted_exp ? inf_nan : (exp == 0 ? sub : o);
  return bits_float(o | ((static_cast<uint32_t>(h) & 0x8000u) << 16));
}

}  // namespace cuda
}  // namespace s2s
