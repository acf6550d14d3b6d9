// fp16 <-> fp32 conversions in SIMD registers that give exactly the scalar results of s2s/dtype.h
// (f16_to_f32, f32_to_f16), shared by the kernels that read fp16 (gemm_f32_avx512.cpp,
// gemm_f32_avx2.cpp, gemv_avx512.cpp, gemv_avx2.cpp). The hardware conversions (vcvtph2ps,
// vcvtps2ph with round-to-nearest-even) match the scalar ones on every value but NaNs:
//   widening: vcvtph2ps sets a signalling NaN's quiet bit, f16_to_f32 keeps the payload as it
//     is, so those lanes get the bit cleared again (a NaN either way, and the same NaN once a
//     product quiets it; this keeps packed panels exact too);
//   rounding: vcvtps2ph keeps a NaN's top payload bits, f32_to_f16 gives the canonical quiet
//     NaN (sign | 0x7e00, widened: sign | 0x7fc00000), so NaN lanes take that. Every non-NaN
//     input was checked to match over all 2^32 patterns.
// Where the widened value only feeds arithmetic (the gemv's FMAs), the fixup is skipped: an FMA
// quiets a signalling NaN operand keeping its payload, which is exactly what vcvtph2ps did, so
// the results are the same bits; the *_quieted helpers say so at the call site (measured: the
// fixup cost 12-17% of gemv_f16's time on GPT-2 124M shapes, bench_gemv).
// Each block compiles only where its instruction set is enabled (by file name, CMakeLists.txt).
// In an unnamed namespace on purpose: every kernel TU gets its own copy built with its own ISA
// flags, so the linker can never hand an AVX-512 build of the 8-wide helpers to the AVX2 path.
#pragma once
#include <immintrin.h>

namespace s2s {
namespace {

#if defined(__F16C__) && defined(__AVX2__)
// 8 fp16 bits -> fp32, exactly f16_to_f32 of each.
inline __m256 f16x8_to_f32_exact(__m128i h) {
  const __m256i h32 = _mm256_cvtepu16_epi32(h);
  const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(h32, _mm256_set1_epi32(0x7fff)),
                                         _mm256_set1_epi32(0x7c00));
  const __m256i quiet_clear =
      _mm256_cmpeq_epi32(_mm256_and_si256(h32, _mm256_set1_epi32(0x200)), _mm256_setzero_si256());
  const __m256i clear = _mm256_and_si256(_mm256_and_si256(nan, quiet_clear),
                                         _mm256_set1_epi32(0x400000));
  return _mm256_castsi256_ps(_mm256_andnot_si256(clear, _mm256_castps_si256(_mm256_cvtph_ps(h))));
}

// 8 fp16 bits -> fp32: f16_to_f32 of each, but a signalling NaN comes out quiet (same payload).
// For values that only feed arithmetic (see the top).
inline __m256 f16x8_to_f32_quieted(__m128i h) { return _mm256_cvtph_ps(h); }

// 8 fp32 -> rounded to fp16 and widened back: exactly f16_to_f32(f32_to_f16(x)) of each.
inline __m256 f32x8_round_to_f16(__m256 x) {
  const __m256 r = _mm256_cvtph_ps(_mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT));
  const __m256 canonical = _mm256_or_ps(_mm256_and_ps(x, _mm256_set1_ps(-0.f)),
                                        _mm256_castsi256_ps(_mm256_set1_epi32(0x7fc00000)));
  return _mm256_blendv_ps(r, canonical, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}
#endif

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
// 16 fp16 bits -> fp32, exactly f16_to_f32 of each.
inline __m512 f16x16_to_f32_exact(__m256i h) {
  const __mmask16 snan =
      _mm256_cmpgt_epu16_mask(_mm256_and_si256(h, _mm256_set1_epi16(0x7fff)),
                              _mm256_set1_epi16(0x7c00)) &
      _mm256_testn_epi16_mask(h, _mm256_set1_epi16(0x0200));
  const __m512i w = _mm512_castps_si512(_mm512_cvtph_ps(h));
  return _mm512_castsi512_ps(_mm512_mask_and_epi32(w, snan, w, _mm512_set1_epi32(~0x400000)));
}

// 16 fp16 bits -> fp32: f16_to_f32 of each, but a signalling NaN comes out quiet (same
// payload). For values that only feed arithmetic (see the top).
inline __m512 f16x16_to_f32_quieted(__m256i h) { return _mm512_cvtph_ps(h); }

// 16 fp32 -> rounded to fp16 and widened back: exactly f16_to_f32(f32_to_f16(x)) of each.
inline __m512 f32x16_round_to_f16(__m512 x) {
  const __m512 r =
      _mm512_cvtph_ps(_mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  const __m512i canonical = _mm512_or_si512(
      _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(int(0x80000000u))),
      _mm512_set1_epi32(0x7fc00000));
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), r,
                              _mm512_castsi512_ps(canonical));
}
#endif

}  // namespace
}  // namespace s2s
