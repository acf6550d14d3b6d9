// The AVX512_BF16 kernel of the small-M product (s2s/gemv.h): bf16 W in the out_in layout with
// vdpbf16ps, which multiplies a pair of bf16 along K (adjacent in a W row) by a pair of the
// bf16-rounded x and adds both products to an fp32 lane: 32 weights per instruction, no
// widening. Measured against widening to fp32 + FMA (gemv_avx512.cpp) on L2-resident weights,
// it wins for one or two rows of x only (vdpbf16ps issues on one port, FMA on two), so the
// dispatch uses it there; the in_out layout (GPT-2's Conv1D) always widens, since its pairs
// along K are a row apart and would need a shuffle per instruction.
// Compiled with -mavx512bf16; reached only when the CPU has it (gemv.cpp dispatch).
// Legend: M rows of x, K inner, N outputs, NR outputs x MR rows per register tile.
// `#pragma GCC unroll` on every loop over a register tile: without it GCC keeps tiles of more
// than one row in memory and stores every accumulator on each iteration (several times slower).
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
  #pragma GCC unroll 16
  for (int m = 0; m < MR; ++m)
    #pragma GCC unroll 16
    for (int j = 0; j < NR; ++j) acc[m][j] = _mm512_setzero_ps();
  const int64_t K = a.K;
  int64_t k = 0;
  for (; k + 32 <= K; k += 32) {
    __m512bh w[NR];
    #pragma GCC unroll 16
    for (int j = 0; j < NR; ++j) {
      prefetch_next_tile(W, (NR + j) * a.ldw + k);
      w[j] = (__m512bh)_mm512_loadu_si512(W + j * a.ldw + k);
    }
    #pragma GCC unroll 16
    for (int m = 0; m < MR; ++m) {
      const __m512bh xv = (__m512bh)_mm512_loadu_si512(x + m * a.K + k);
      #pragma GCC unroll 16
      for (int j = 0; j < NR; ++j) acc[m][j] = _mm512_dpbf16_ps(acc[m][j], w[j], xv);
    }
  }
  if (k < K) {  // zero-filled tail: 0 * 0 adds nothing
    const __mmask32 mask = static_cast<__mmask32>((uint64_t(1) << (K - k)) - 1u);
    __m512bh w[NR];
    #pragma GCC unroll 16
    for (int j = 0; j < NR; ++j) w[j] = (__m512bh)_mm512_maskz_loadu_epi16(mask, W + j * a.ldw + k);
    #pragma GCC unroll 16
    for (int m = 0; m < MR; ++m) {
      const __m512bh xv = (__m512bh)_mm512_maskz_loadu_epi16(mask, x + m * a.K + k);
      #pragma GCC unroll 16
      for (int j = 0; j < NR; ++j) acc[m][j] = _mm512_dpbf16_ps(acc[m][j], w[j], xv);
    }
  }
  #pragma GCC unroll 16
  for (int m = 0; m < MR; ++m) {
    float* y = a.y + (m0 + m) * a.ldy + n;
    #pragma GCC unroll 16
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

}  // namespace

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
