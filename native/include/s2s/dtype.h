// Element types the core stores, and exact conversions between them.
// Accumulation is always fp32; bf16/f16 are storage and operand formats only.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace s2s {

enum class DType : uint8_t { F32 = 0, BF16 = 1, F16 = 2 };

inline size_t dtype_size(DType t) { return t == DType::F32 ? 4 : 2; }
const char* dtype_name(DType t);

// bf16 is the top half of an IEEE fp32. Rounding is to nearest, ties to even; NaN stays NaN
// (a quiet bit is forced so truncation cannot turn a NaN payload into Inf).
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

inline float bf16_to_f32(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// IEEE binary16, round to nearest even, with subnormals, Inf and NaN.
uint16_t f32_to_f16(float f);
float f16_to_f32(uint16_t h);

}  // namespace s2s
