// AVX-512 dropout mask kernels (compiled with -mavx512f/bw/vl/dq; see dropout_mask_kernels.h):
// 16 Philox4x32-10 blocks per instruction, lane i holding block i's four words in four vectors.
// Philox needs the high and low halves of 32x32->64-bit products: _mm512_mul_epu32 multiplies the
// even lanes, the odd lanes are shifted down and multiplied the same way, and blends put the
// halves back in lane order. The products and xors are exact, so the words are the scalar ones.
#include <immintrin.h>

#include <cstring>

#include "ops/dropout_mask_kernels.h"

// The accumulate mode must round the product and the sum separately, as the scalar path does:
// no contraction of mul + add into a fused multiply-add.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace s2s {
namespace {

constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;

// hi, lo = the two halves of a * m per 32-bit lane (m broadcast).
inline void mulhilo(__m512i a, __m512i m, __m512i& hi, __m512i& lo) {
  const __m512i even = _mm512_mul_epu32(a, m);
  const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);
  hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
  lo = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
}

// 16 blocks (counters lo/hi per lane) -> their 64 words in block order at out.
inline void philox16(uint64_t seed, __m512i c0, __m512i c1, uint32_t* out) {
  const __m512i m0 = _mm512_set1_epi32(int(kM0)), m1 = _mm512_set1_epi32(int(kM1));
  uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
  // Round 0: the counter's words 2 and 3 are zero, so the second product is zero.
  __m512i hi0, lo0, hi1, lo1;
  mulhilo(c0, m0, hi0, lo0);
  __m512i c2 = _mm512_xor_si512(hi0, _mm512_set1_epi32(int(k1)));
  __m512i c3 = lo0;
  c0 = _mm512_xor_si512(c1, _mm512_set1_epi32(int(k0)));
  c1 = _mm512_setzero_si512();
  for (int round = 1; round < 10; ++round) {
    k0 += kW0;
    k1 += kW1;
    mulhilo(c0, m0, hi0, lo0);
    mulhilo(c2, m1, hi1, lo1);
    c0 = _mm512_ternarylogic_epi32(hi1, c1, _mm512_set1_epi32(int(k0)), 0x96);  // a ^ b ^ c
    c1 = lo1;
    c2 = _mm512_ternarylogic_epi32(hi0, c3, _mm512_set1_epi32(int(k1)), 0x96);
    c3 = lo0;
  }
  // Transpose 4 x 16 words (vector j = word j of every block) to 16 blocks of 4 words.
  const __m512i t0 = _mm512_unpacklo_epi32(c0, c1), t1 = _mm512_unpackhi_epi32(c0, c1);
  const __m512i t2 = _mm512_unpacklo_epi32(c2, c3), t3 = _mm512_unpackhi_epi32(c2, c3);
  // u_q holds blocks q, q + 4, q + 8, q + 12 in its four 128-bit lanes.
  const __m512i u0 = _mm512_unpacklo_epi64(t0, t2), u1 = _mm512_unpackhi_epi64(t0, t2);
  const __m512i u2 = _mm512_unpacklo_epi64(t1, t3), u3 = _mm512_unpackhi_epi64(t1, t3);
  const __m512i a = _mm512_shuffle_i32x4(u0, u1, _MM_SHUFFLE(1, 0, 1, 0));
  const __m512i b = _mm512_shuffle_i32x4(u2, u3, _MM_SHUFFLE(1, 0, 1, 0));
  const __m512i c = _mm512_shuffle_i32x4(u0, u1, _MM_SHUFFLE(3, 2, 3, 2));
  const __m512i d = _mm512_shuffle_i32x4(u2, u3, _MM_SHUFFLE(3, 2, 3, 2));
  _mm512_storeu_si512(out, _mm512_shuffle_i32x4(a, b, _MM_SHUFFLE(2, 0, 2, 0)));
  _mm512_storeu_si512(out + 16, _mm512_shuffle_i32x4(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
  _mm512_storeu_si512(out + 32, _mm512_shuffle_i32x4(c, d, _MM_SHUFFLE(2, 0, 2, 0)));
  _mm512_storeu_si512(out + 48, _mm512_shuffle_i32x4(c, d, _MM_SHUFFLE(3, 1, 3, 1)));
}

void k_philox_blocks(uint64_t seed, const uint32_t* lo, const uint32_t* hi, int64_t n,
                     uint32_t* words) {
  int64_t b = 0;
  for (; b + 16 <= n; b += 16) {
    philox16(seed, _mm512_loadu_si512(lo + b), _mm512_loadu_si512(hi + b), words + 4 * b);
  }
  if (b < n) {  // the last (n - b) blocks: unused lanes make block 0, then are dropped
    const __mmask16 live = __mmask16((1u << (n - b)) - 1);
    alignas(64) uint32_t tail[64];
    philox16(seed, _mm512_maskz_loadu_epi32(live, lo + b), _mm512_maskz_loadu_epi32(live, hi + b),
             tail);
    std::memcpy(words + 4 * b, tail, size_t(4 * (n - b)) * sizeof(uint32_t));
  }
}

// z = (word >> 8) * 2^-24 >= p ? scale : 0 for 16 words (philox_uniform: exact in float).
inline __m512 factors16(__m512i w, __m512 p, __m512 scale) {
  const __m512 u = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(w, 8)),
                                 _mm512_set1_ps(1.0f / 16777216.0f));
  return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(u, p, _CMP_GE_OQ), scale);
}

void k_apply(DropoutApply how, float* dst, const float* src, const uint32_t* words, int64_t n,
             float p, float scale) {
  const __m512 vp = _mm512_set1_ps(p), vs = _mm512_set1_ps(scale);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 live = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1);
    const __m512 z = factors16(_mm512_maskz_loadu_epi32(live, words + i), vp, vs);
    switch (how) {
      case DropoutApply::kFactors: _mm512_mask_storeu_ps(dst + i, live, z); break;
      case DropoutApply::kMultiply:
        _mm512_mask_storeu_ps(dst + i, live, _mm512_mul_ps(_mm512_maskz_loadu_ps(live, src + i), z));
        break;
      case DropoutApply::kAccumulate: {
        const __m512 prod = _mm512_mul_ps(_mm512_maskz_loadu_ps(live, src + i), z);
        _mm512_mask_storeu_ps(dst + i, live,
                              _mm512_add_ps(_mm512_maskz_loadu_ps(live, dst + i), prod));
        break;
      }
    }
  }
}

}  // namespace

const DropoutMaskKernels& dropout_mask_kernels_avx512() {
  static const DropoutMaskKernels k{"avx512", k_philox_blocks, k_apply};
  return k;
}

}  // namespace s2s
