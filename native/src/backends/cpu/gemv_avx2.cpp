// AVX2+FMA kernels of the small-M product (s2s/gemv.h): the AVX-512 design (gemv_avx512.cpp) on
// 8-lane ymm registers, with register tiles sized for 16 ymm (at most 8 accumulators) and scalar
// tails; fp16 W is widened with F16C. Compiled with -mavx2 -mfma -mf16c.
// Legend: M rows of x, K inner, N outputs.
// `#pragma GCC unroll` on every loop over a register tile: without it GCC keeps tiles of more
// than one row in memory and stores every accumulator on each iteration (several times slower).
#include <immintrin.h>

#include <algorithm>

#include "backends/cpu/f16_simd.h"
#include "backends/cpu/gemv_internal.h"
#include "s2s/dtype.h"

namespace s2s {
namespace gemv_detail {

namespace {

inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const uint16_t* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
// fp16 W: F16C's vcvtph2ps, exact but for a signalling NaN, quieted as the FMA it feeds would
// quiet it anyway (f16_simd.h): the same product bits, without the fixup's cost.
inline __m256 load8(const F16Bits* p) {
  return f16x8_to_f32_quieted(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline float load1(const float* p) { return *p; }
inline float load1(const uint16_t* p) { return bf16_to_f32(*p); }
inline float load1(const F16Bits* p) { return f16_to_f32(p->bits); }

inline float hsum(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}

// ---- out_in: NR outputs x MR rows, 8-wide K steps, scalar K tail ---------------------------
template <typename WT, int MR, int NR>
inline void out_in_tile(const Args& a, int64_t n, int64_t m0) {
  const WT* W = static_cast<const WT*>(a.W) + n * a.ldw;
  const float* x = a.x + m0 * a.ldx;
  __m256 acc[MR][NR];
  #pragma GCC unroll 16
  for (int m = 0; m < MR; ++m)
    #pragma GCC unroll 16
    for (int j = 0; j < NR; ++j) acc[m][j] = _mm256_setzero_ps();
  const int64_t K = a.K;
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    __m256 w[NR];
    #pragma GCC unroll 16
    for (int j = 0; j < NR; ++j) {
      prefetch_next_tile(W, (NR + j) * a.ldw + k);
      w[j] = load8(W + j * a.ldw + k);
    }
    #pragma GCC unroll 16
    for (int m = 0; m < MR; ++m) {
      const __m256 xv = _mm256_loadu_ps(x + m * a.ldx + k);
      #pragma GCC unroll 16
      for (int j = 0; j < NR; ++j) acc[m][j] = _mm256_fmadd_ps(w[j], xv, acc[m][j]);
    }
  }
  #pragma GCC unroll 16
  for (int m = 0; m < MR; ++m) {
    float* y = a.y + (m0 + m) * a.ldy + n;
    #pragma GCC unroll 16
    for (int j = 0; j < NR; ++j) {
      float s = hsum(acc[m][j]);
      for (int64_t t = k; t < K; ++t) s += load1(W + j * a.ldw + t) * x[m * a.ldx + t];
      y[j] = s + (a.bias ? a.bias[n + j] : 0.0f);
    }
  }
}

template <typename WT, int NR>
inline void out_in_rows(const Args& a, int64_t n) {
  int64_t m0 = 0;
  for (; m0 + 2 <= a.M; m0 += 2) out_in_tile<WT, 2, NR>(a, n, m0);
  if (m0 < a.M) out_in_tile<WT, 1, NR>(a, n, m0);
}

template <typename WT>
void out_in(const Args& a, int64_t n0, int64_t n1) {
  int64_t n = n0;
  for (; n + 4 <= n1; n += 4) out_in_rows<WT, 4>(a, n);
  for (; n < n1; ++n) out_in_rows<WT, 1>(a, n);
}

// ---- in_out: W in memory order, kKBlock rows at a time (see gemv_avx512.cpp); MR rows x 4 ymm
// (32 columns) accumulators carried through y; scalar column tail --------------------------------
constexpr int64_t kKBlock = 8;

template <typename WT, int MR>
inline void in_out_block(const Args& a, int64_t n, int64_t m0, int64_t k0, int64_t k1) {
  constexpr int NV = 4;
  const WT* W = static_cast<const WT*>(a.W) + n;
  const float* x = a.x + m0 * a.ldx;
  __m256 acc[MR][NV];
  #pragma GCC unroll 16
  for (int m = 0; m < MR; ++m) {
    const float* y = a.y + (m0 + m) * a.ldy + n;
    #pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) {
      acc[m][v] = k0 > 0 ? _mm256_loadu_ps(y + 8 * v)
                         : (a.bias ? _mm256_loadu_ps(a.bias + n + 8 * v) : _mm256_setzero_ps());
    }
  }
  for (int64_t k = k0; k < k1; ++k) {
    const WT* wr = W + k * a.ldw;
    __m256 w[NV];
    #pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) w[v] = load8(wr + 8 * v);
    #pragma GCC unroll 16
    for (int m = 0; m < MR; ++m) {
      const __m256 xv = _mm256_set1_ps(x[m * a.ldx + k]);
      #pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) acc[m][v] = _mm256_fmadd_ps(w[v], xv, acc[m][v]);
    }
  }
  #pragma GCC unroll 16
  for (int m = 0; m < MR; ++m) {
    float* y = a.y + (m0 + m) * a.ldy + n;
    #pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) _mm256_storeu_ps(y + 8 * v, acc[m][v]);
  }
}

template <typename WT>
void in_out(const Args& a, int64_t n0, int64_t n1) {
  const int64_t full = n0 + (n1 - n0) / 32 * 32;  // columns the vector blocks cover
  for (int64_t k0 = 0; k0 < a.K; k0 += kKBlock) {
    const int64_t k1 = std::min(a.K, k0 + kKBlock);
    for (int64_t n = n0; n < full; n += 32) {
      int64_t m0 = 0;
      for (; m0 + 2 <= a.M; m0 += 2) in_out_block<WT, 2>(a, n, m0, k0, k1);
      if (m0 < a.M) in_out_block<WT, 1>(a, n, m0, k0, k1);
    }
  }
  if (full < n1) {  // the last < 32 columns, plain loops
    const WT* W = static_cast<const WT*>(a.W);
    for (int64_t m = 0; m < a.M; ++m) {
      float* y = a.y + m * a.ldy;
      for (int64_t c = full; c < n1; ++c) y[c] = a.bias ? a.bias[c] : 0.0f;
      for (int64_t k = 0; k < a.K; ++k) {
        const float xk = a.x[m * a.ldx + k];
        for (int64_t c = full; c < n1; ++c) y[c] += xk * load1(W + k * a.ldw + c);
      }
    }
  }
  if (a.K == 0) {
    for (int64_t m = 0; m < a.M; ++m)
      for (int64_t c = n0; c < full; ++c) a.y[m * a.ldy + c] = a.bias ? a.bias[c] : 0.0f;
  }
}

}  // namespace

const Kernels& avx2_kernels() {
  static const Kernels k{"avx2 f32 (out_in 2x4, in_out 2x32 row blocks)", "avx2 bf16 widened to f32",
                         "avx2 f16 widened to f32 (f16c)",
                         out_in<float>, in_out<float>, out_in<uint16_t>, in_out<uint16_t>,
                         out_in<F16Bits>, in_out<F16Bits>, 8, 128};
  return k;
}

}  // namespace gemv_detail
}  // namespace s2s
