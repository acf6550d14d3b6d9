// Shared by the AVX-512 kernel files only (gemm_f32_avx512.cpp, gemm_bf16_avx512bf16.cpp; it
// needs their -mavx512f flags): the 14x32 register tile's shape and its write-back to C.
// Unnamed namespace so each ISA file keeps its own copy (no cross-ISA ODR merging).
#pragma once
#include <immintrin.h>

#include <cstdint>

#include "backends/cpu/gemm_internal.h"

namespace s2s {
namespace gemm_detail {
namespace {

constexpr int kAvx512MR = 14;  // rows of C per tile: 14 x 2 zmm accumulators (see the kernels)
constexpr int kAvx512NR = 32;  // columns: 2 zmm of 16 fp32

// C(M x nr) = combine(alpha * acc, C). M is the compile-time row count (mr), nr <= 32.
template <int M>
inline void store_rows(__m512 (&c0)[M], __m512 (&c1)[M], float* C, int64_t ldc, int nr,
                       float alpha, float beta, Store store) {
  const __m512 va = _mm512_set1_ps(alpha);
  const __m512 vb = _mm512_set1_ps(beta);
  if (nr == kAvx512NR) {
#pragma GCC unroll 14
    for (int i = 0; i < M; ++i) {
      float* c = C + i * ldc;
      __m512 r0 = _mm512_mul_ps(va, c0[i]), r1 = _mm512_mul_ps(va, c1[i]);
      if (store == Store::ScaleAdd) {
        r0 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(c), r0);
        r1 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(c + 16), r1);
      } else if (store == Store::Accumulate) {
        r0 = _mm512_add_ps(_mm512_loadu_ps(c), r0);
        r1 = _mm512_add_ps(_mm512_loadu_ps(c + 16), r1);
      }
      _mm512_storeu_ps(c, r0);
      _mm512_storeu_ps(c + 16, r1);
    }
    return;
  }
  const __mmask16 m0 = nr >= 16 ? __mmask16(0xffff) : __mmask16((1u << nr) - 1);
  const __mmask16 m1 = nr >= kAvx512NR ? __mmask16(0xffff)
                       : nr > 16 ? __mmask16((1u << (nr - 16)) - 1)
                                 : __mmask16(0);
#pragma GCC unroll 14
  for (int i = 0; i < M; ++i) {
    float* c = C + i * ldc;
    __m512 r0 = _mm512_mul_ps(va, c0[i]), r1 = _mm512_mul_ps(va, c1[i]);
    if (store == Store::ScaleAdd) {
      r0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, c), r0);
      r1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, c + 16), r1);
    } else if (store == Store::Accumulate) {
      r0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, c), r0);
      r1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, c + 16), r1);
    }
    _mm512_mask_storeu_ps(c, m0, r0);
    _mm512_mask_storeu_ps(c + 16, m1, r1);
  }
}


// In-register transpose of a 16 x 16 block of 32-bit values: on return r[c] holds what was
// column c (lane i = old r[i][c]). Pure data movement (bit-exact, so it also moves bf16
// pairs), 64 shuffles on port 5 = ~0.25 cycle per element: this is what makes packing the
// k-contiguous operands (x in x W^T, and W itself) cheap next to the 16 x 16 x K FMAs.
inline void transpose16x16(__m512 (&r)[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {  // rows 2i, 2i+1 interleaved per 128-bit lane
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  __m512 u[16];  // u[4j + e], lane l: rows 4j..4j+3 at column 4l + e
  for (int j = 0; j < 4; ++j) {
    const __m512d a = _mm512_castps_pd(t[4 * j]), b = _mm512_castps_pd(t[4 * j + 1]);
    const __m512d c = _mm512_castps_pd(t[4 * j + 2]), d = _mm512_castps_pd(t[4 * j + 3]);
    u[4 * j + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    u[4 * j + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    u[4 * j + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    u[4 * j + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  for (int e = 0; e < 4; ++e) {  // gather the 4 row groups of column 4l + e across lanes
    const __m512 x0 = _mm512_shuffle_f32x4(u[e], u[4 + e], 0x44);
    const __m512 x1 = _mm512_shuffle_f32x4(u[e], u[4 + e], 0xEE);
    const __m512 y0 = _mm512_shuffle_f32x4(u[8 + e], u[12 + e], 0x44);
    const __m512 y1 = _mm512_shuffle_f32x4(u[8 + e], u[12 + e], 0xEE);
    r[e] = _mm512_shuffle_f32x4(x0, y0, 0x88);
    r[4 + e] = _mm512_shuffle_f32x4(x0, y0, 0xDD);
    r[8 + e] = _mm512_shuffle_f32x4(x1, y1, 0x88);
    r[12 + e] = _mm512_shuffle_f32x4(x1, y1, 0xDD);
  }
}

inline __mmask16 lanes16(int64_t n) {  // the low min(n, 16) lanes (n <= 0: none)
  return n >= 16 ? __mmask16(0xffff) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1);
}
inline __mmask32 lanes32(int64_t n) {
  return n >= 32 ? __mmask32(0xffffffffu) : n <= 0 ? __mmask32(0) : __mmask32((1u << n) - 1);
}

}  // namespace
}  // namespace gemm_detail
}  // namespace s2s
