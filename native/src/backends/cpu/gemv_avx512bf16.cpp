// The AVX512_BF16 kernels of the small-M product (s2s/gemv.h) for bf16 W, with vdpbf16ps, which
// multiplies a pair of bf16 along K by a pair of the bf16-rounded x and adds both products to an
// fp32 lane: 32 weights per instruction, no widening.
//   out_in: W rows are contiguous in K, so the pairs are adjacent in memory.
//   in_out: the pair (W[k][n], W[k+1][n]) comes from two rows; one vpermw interleaves 16
//   columns of rows k and k+1, and x[k], x[k+1] are broadcast as one 32-bit pair. W streams in
//   memory order, kKBlock rows at a time, accumulators carried through y (as gemv_avx512.cpp).
// Compiled with -mavx512bf16; reached only when the CPU has it (gemv.cpp dispatch).
// Legend: M rows of x, K inner, N outputs, NR outputs x MR rows per register tile.
#include <immintrin.h>

#include "backends/cpu/gemv_internal.h"

namespace s2s {
namespace gemv_detail {

namespace {

template <int MR, int NR>
inline void tile(const Args& a, int64_t n, int64_t m0) {
  const uint16_t* W = static_cast<const uint16_t*>(a.W) + n * a.ldw;
  const uint16_t* x = a.xb + m0 * a.K;  // xb rows are K apart
  __m512 acc[MR][NR];
  for (int m = 0; m < MR; ++m)
    for (int j = 0; j < NR; ++j) acc[m][j] = _mm512_setzero_ps();
  const int64_t K = a.K;
  int64_t k = 0;
  for (; k + 32 <= K; k += 32) {
    __m512bh w[NR];
    for (int j = 0; j < NR; ++j) w[j] = (__m512bh)_mm512_loadu_si512(W + j * a.ldw + k);
    for (int m = 0; m < MR; ++m) {
      const __m512bh xv = (__m512bh)_mm512_loadu_si512(x + m * a.K + k);
      for (int j = 0; j < NR; ++j) acc[m][j] = _mm512_dpbf16_ps(acc[m][j], w[j], xv);
    }
  }
  if (k < K) {  // zero-filled tail: 0 * 0 adds nothing
    const __mmask32 mask = static_cast<__mmask32>((uint64_t(1) << (K - k)) - 1u);
    __m512bh w[NR];
    for (int j = 0; j < NR; ++j) w[j] = (__m512bh)_mm512_maskz_loadu_epi16(mask, W + j * a.ldw + k);
    for (int m = 0; m < MR; ++m) {
      const __m512bh xv = (__m512bh)_mm512_maskz_loadu_epi16(mask, x + m * a.K + k);
      for (int j = 0; j < NR; ++j) acc[m][j] = _mm512_dpbf16_ps(acc[m][j], w[j], xv);
    }
  }
  for (int m = 0; m < MR; ++m) {
    float* y = a.y + (m0 + m) * a.ldy + n;
    for (int j = 0; j < NR; ++j) {
      y[j] = _mm512_reduce_add_ps(acc[m][j]) + (a.bias ? a.bias[n + j] : 0.0f);
    }
  }
}

template <int NR>
inline void rows(const Args& a, int64_t n) {
  int64_t m0 = 0;
  for (; m0 + 4 <= a.M; m0 += 4) tile<4, NR>(a, n, m0);
  switch (a.M - m0) {
    case 3: tile<3, NR>(a, n, m0); break;
    case 2: tile<2, NR>(a, n, m0); break;
    case 1: tile<1, NR>(a, n, m0); break;
    default: break;
  }
}

// ---- in_out ---------------------------------------------------------------------------------
constexpr int64_t kKBlock = 32;  // even: row pairs never straddle a block

// (lo[j], hi[j]) interleaved for the 16 columns: the index vector of vpermw.
inline __m512i pair_index() {
  alignas(64) static const uint16_t idx[32] = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23,
                                               8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  return _mm512_load_si512(idx);
}

// Rows [m0, m0+MR), columns [n, n + 16*NV) (last vector masked by `tail`), W rows [k0, k1).
template <int MR, int NV>
inline void in_out_block(const Args& a, int64_t n, int64_t m0, int64_t k0, int64_t k1,
                         __mmask16 tail, __m512i perm) {
  const uint16_t* W = static_cast<const uint16_t*>(a.W) + n;
  const uint16_t* x = a.xb + m0 * a.K;  // xb rows are K apart
  __m512 acc[MR][NV];
  for (int m = 0; m < MR; ++m) {
    const float* y = a.y + (m0 + m) * a.ldy + n;
    for (int v = 0; v < NV; ++v) {
      const __mmask16 mk = v + 1 == NV ? tail : __mmask16(0xFFFF);
      if (k0 > 0) {
        acc[m][v] = _mm512_maskz_loadu_ps(mk, y + 16 * v);
      } else {
        acc[m][v] = a.bias ? _mm512_maskz_loadu_ps(mk, a.bias + n + 16 * v) : _mm512_setzero_ps();
      }
    }
  }
  for (int64_t k = k0; k < k1; k += 2) {
    const bool pair = k + 1 < k1;
    const uint16_t* r0 = W + k * a.ldw;
    const uint16_t* r1 = W + (k + 1) * a.ldw;
    __m512bh w[NV];
    for (int v = 0; v < NV; ++v) {
      const __mmask16 mk = v + 1 == NV ? tail : __mmask16(0xFFFF);
      const __m256i lo = _mm256_maskz_loadu_epi16(mk, r0 + 16 * v);
      const __m256i hi = pair ? _mm256_maskz_loadu_epi16(mk, r1 + 16 * v) : _mm256_setzero_si256();
      w[v] = (__m512bh)_mm512_permutexvar_epi16(
          perm, _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1));
    }
    for (int m = 0; m < MR; ++m) {
      const uint32_t x0 = x[m * a.K + k], x1 = pair ? x[m * a.K + k + 1] : 0u;
      const __m512bh xv = (__m512bh)_mm512_set1_epi32(int32_t(x0 | (x1 << 16)));
      for (int v = 0; v < NV; ++v) acc[m][v] = _mm512_dpbf16_ps(acc[m][v], w[v], xv);
    }
  }
  for (int m = 0; m < MR; ++m) {
    float* y = a.y + (m0 + m) * a.ldy + n;
    for (int v = 0; v < NV; ++v) {
      const __mmask16 mk = v + 1 == NV ? tail : __mmask16(0xFFFF);
      _mm512_mask_storeu_ps(y + 16 * v, mk, acc[m][v]);
    }
  }
}

template <int NV>
inline void in_out_rows(const Args& a, int64_t n, int64_t k0, int64_t k1, __mmask16 tail,
                        __m512i perm) {
  int64_t m0 = 0;
  for (; m0 + 4 <= a.M; m0 += 4) in_out_block<4, NV>(a, n, m0, k0, k1, tail, perm);
  switch (a.M - m0) {
    case 3: in_out_block<3, NV>(a, n, m0, k0, k1, tail, perm); break;
    case 2: in_out_block<2, NV>(a, n, m0, k0, k1, tail, perm); break;
    case 1: in_out_block<1, NV>(a, n, m0, k0, k1, tail, perm); break;
    default: break;
  }
}

}  // namespace

void bf16_in_out_dpbf16(const Args& a, int64_t n0, int64_t n1) {
  const __m512i perm = pair_index();
  for (int64_t k0 = 0; k0 < a.K; k0 += kKBlock) {
    const int64_t k1 = k0 + kKBlock < a.K ? k0 + kKBlock : a.K;
    int64_t n = n0;
    if (a.M == 1) {  // one row of x: 8 accumulators, 256 contiguous bytes of each W row
      for (; n + 128 <= n1; n += 128) in_out_block<1, 8>(a, n, 0, k0, k1, 0xFFFF, perm);
    }
    for (; n + 64 <= n1; n += 64) in_out_rows<4>(a, n, k0, k1, 0xFFFF, perm);
    for (; n < n1; n += 16) {
      const int64_t left = n1 - n;
      const __mmask16 tail = left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1u);
      in_out_rows<1>(a, n, k0, k1, tail, perm);
    }
  }
  if (a.K == 0) {
    for (int64_t m = 0; m < a.M; ++m)
      for (int64_t n = n0; n < n1; ++n) a.y[m * a.ldy + n] = a.bias ? a.bias[n] : 0.0f;
  }
}

void bf16_out_in_dpbf16(const Args& a, int64_t n0, int64_t n1) {
  int64_t n = n0;
  if (a.M == 1) {
    for (; n + 8 <= n1; n += 8) tile<1, 8>(a, n, 0);
  }
  for (; n + 4 <= n1; n += 4) rows<4>(a, n);
  for (; n < n1; ++n) rows<1>(a, n);
}

}  // namespace gemv_detail
}  // namespace s2s
