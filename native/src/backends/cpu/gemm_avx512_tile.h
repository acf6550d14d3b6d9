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

}  // namespace
}  // namespace gemm_detail
}  // namespace s2s
