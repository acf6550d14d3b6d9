// AVX2 dropout mask kernels (compiled with -mavx2 -mfma; see dropout_mask_kernels.h): 8
// Philox4x32-10 blocks per instruction, as the AVX-512 file does with 16 (even lanes multiplied
// by _mm256_mul_epu32, odd lanes shifted down and multiplied, blends restoring lane order).
#include <immintrin.h>

#include <cstring>

#include "ops/dropout_mask_kernels.h"

// The accumulate mode must round the product and the sum separately, as the scalar path does:
// no contraction of mul + add into a fused multiply-add (this file is compiled with -mfma).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace s2s {
namespace {

constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;

// hi, lo = the two halves of a * m per 32-bit lane (m broadcast).
inline void mulhilo(__m256i a, __m256i m, __m256i& hi, __m256i& lo) {
  const __m256i even = _mm256_mul_epu32(a, m);
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
  hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
  lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
}

inline __m256i xor3(__m256i a, __m256i b, __m256i c) {
  return _mm256_xor_si256(_mm256_xor_si256(a, b), c);
}

// 8 blocks (counters lo/hi per lane) -> their 32 words in block order at out.
inline void philox8(uint64_t seed, __m256i c0, __m256i c1, uint32_t* out) {
  const __m256i m0 = _mm256_set1_epi32(int(kM0)), m1 = _mm256_set1_epi32(int(kM1));
  uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
  // Round 0: the counter's words 2 and 3 are zero, so the second product is zero.
  __m256i hi0, lo0, hi1, lo1;
  mulhilo(c0, m0, hi0, lo0);
  __m256i c2 = _mm256_xor_si256(hi0, _mm256_set1_epi32(int(k1)));
  __m256i c3 = lo0;
  c0 = _mm256_xor_si256(c1, _mm256_set1_epi32(int(k0)));
  c1 = _mm256_setzero_si256();
  for (int round = 1; round < 10; ++round) {
    k0 += kW0;
    k1 += kW1;
    mulhilo(c0, m0, hi0, lo0);
    mulhilo(c2, m1, hi1, lo1);
    c0 = xor3(hi1, c1, _mm256_set1_epi32(int(k0)));
    c1 = lo1;
    c2 = xor3(hi0, c3, _mm256_set1_epi32(int(k1)));
    c3 = lo0;
  }
  // Transpose 4 x 8 words (vector j = word j of every block) to 8 blocks of 4 words.
  const __m256i t0 = _mm256_unpacklo_epi32(c0, c1), t1 = _mm256_unpackhi_epi32(c0, c1);
  const __m256i t2 = _mm256_unpacklo_epi32(c2, c3), t3 = _mm256_unpackhi_epi32(c2, c3);
  // u_q holds blocks q and q + 4 in its two 128-bit lanes.
  const __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
  const __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
  auto* o = reinterpret_cast<__m256i*>(out);
  _mm256_storeu_si256(o, _mm256_permute2x128_si256(u0, u1, 0x20));
  _mm256_storeu_si256(o + 1, _mm256_permute2x128_si256(u2, u3, 0x20));
  _mm256_storeu_si256(o + 2, _mm256_permute2x128_si256(u0, u1, 0x31));
  _mm256_storeu_si256(o + 3, _mm256_permute2x128_si256(u2, u3, 0x31));
}

void k_philox_blocks(uint64_t seed, const uint32_t* lo, const uint32_t* hi, int64_t n,
                     uint32_t* words) {
  int64_t b = 0;
  for (; b + 8 <= n; b += 8) {
    philox8(seed, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(lo + b)),
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(hi + b)), words + 4 * b);
  }
  if (b < n) {  // the last (n - b) blocks: unused lanes make block 0, then are dropped
    alignas(32) uint32_t l[8] = {}, h[8] = {}, tail[32];
    std::memcpy(l, lo + b, size_t(n - b) * sizeof(uint32_t));
    std::memcpy(h, hi + b, size_t(n - b) * sizeof(uint32_t));
    philox8(seed, _mm256_load_si256(reinterpret_cast<const __m256i*>(l)),
            _mm256_load_si256(reinterpret_cast<const __m256i*>(h)), tail);
    std::memcpy(words + 4 * b, tail, size_t(4 * (n - b)) * sizeof(uint32_t));
  }
}

// z = (word >> 8) * 2^-24 >= p ? scale : 0 for 8 words (philox_uniform: exact in float).
inline __m256 factors8(__m256i w, __m256 p, __m256 scale) {
  const __m256 u = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(w, 8)),
                                 _mm256_set1_ps(1.0f / 16777216.0f));
  return _mm256_and_ps(_mm256_cmp_ps(u, p, _CMP_GE_OQ), scale);
}

void k_apply(DropoutApply how, float* dst, const float* src, const uint32_t* words, int64_t n,
             float p, float scale) {
  const __m256 vp = _mm256_set1_ps(p), vs = _mm256_set1_ps(scale);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 z =
        factors8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(words + i)), vp, vs);
    switch (how) {
      case DropoutApply::kFactors: _mm256_storeu_ps(dst + i, z); break;
      case DropoutApply::kMultiply:
        _mm256_storeu_ps(dst + i, _mm256_mul_ps(_mm256_loadu_ps(src + i), z));
        break;
      case DropoutApply::kAccumulate: {
        const __m256 prod = _mm256_mul_ps(_mm256_loadu_ps(src + i), z);
        _mm256_storeu_ps(dst + i, _mm256_add_ps(_mm256_loadu_ps(dst + i), prod));
        break;
      }
    }
  }
  for (; i < n; ++i) {  // the last < 8 elements, in scalar with the same operations
    const float z = float(words[i] >> 8) * (1.0f / 16777216.0f) >= p ? scale : 0.0f;
    switch (how) {
      case DropoutApply::kFactors: dst[i] = z; break;
      case DropoutApply::kMultiply: dst[i] = src[i] * z; break;
      case DropoutApply::kAccumulate: dst[i] += src[i] * z; break;
    }
  }
}

}  // namespace

const DropoutMaskKernels& dropout_mask_kernels_avx2() {
  static const DropoutMaskKernels k{"avx2", k_philox_blocks, k_apply};
  return k;
}

}  // namespace s2s
