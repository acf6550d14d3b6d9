// AVX-512 kernels of the small-M product (s2s/gemv.h), compiled with -mavx512f/bw/vl/dq.
// Legend: M rows of x, K inner, N outputs; zmm = 16 fp32 lanes.
//
// out_in (W (N,K), rows contiguous in K): a tile of NR outputs x MR rows keeps MR*NR zmm
//   accumulators; each K step of 16 loads NR W vectors (NR sequential streams) and MR x vectors
//   (L1), then reduces each accumulator horizontally once at the end. A W tile is NR rows of
//   K elements; row chunks beyond MR re-read it from L1/L2, never from memory.
// in_out (W (K,N), rows contiguous in N): W streams in memory order, a block of rows at a time;
//   each row's segment is FMAd into MR x 4 zmm accumulators (x[m,k] broadcast) that carry y
//   between blocks through L1, so no W row is ever revisited and reads stay sequential.
// bf16 W is widened to fp32 in registers (vpmovzxwd + shift: exact) and multiplied with x
// rounded to bf16 (a.x holds those values), as gemm_bf16 computes; fp16 W likewise with
// vcvtph2ps (f16_simd.h) and x rounded to fp16, as gemm_f16_rounding computes.
// `#pragma GCC unroll` on every loop over a register tile: without it GCC keeps tiles of more
// than one row in memory and stores every accumulator on each iteration (several times slower).
#include <immintrin.h>

#include <algorithm>

#include "backends/cpu/f16_simd.h"
#include "backends/cpu/gemv_internal.h"

namespace s2s {
namespace gemv_detail {

namespace {

inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 load16(const uint16_t* p) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
// fp16 W: vcvtph2ps, exact but for a signalling NaN, quieted as the FMA it feeds would
// quiet it anyway (f16_simd.h): the same product bits, without the fixup's cost.
inline __m512 load16(const F16Bits* p) {
  return f16x16_to_f32_quieted(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline __m512 load16_masked(const float* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
inline __m512 load16_masked(const F16Bits* p, __mmask16 m) {
  return f16x16_to_f32_quieted(_mm256_maskz_loadu_epi16(m, p));
}
inline __m512 load16_masked(const uint16_t* p, __mmask16 m) {
  const __m256i h = _mm256_maskz_loadu_epi16(m, p);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// ---- out_in ---------------------------------------------------------------------------------
// Outputs [n, n+NR) for rows [m0, m0+MR).
template <typename WT, int MR, int NR>
inline void out_in_tile(const Args& a, int64_t n, int64_t m0) {
  const WT* W = static_cast<const WT*>(a.W) + n * a.ldw;
  const float* x = a.x + m0 * a.ldx;
  __m512 acc[MR][NR];
  #pragma GCC unroll 16
  for (int m = 0; m < MR; ++m)
    #pragma GCC unroll 16
    for (int j = 0; j < NR; ++j) acc[m][j] = _mm512_setzero_ps();
  const int64_t K = a.K;
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    __m512 w[NR];
    #pragma GCC unroll 16
    for (int j = 0; j < NR; ++j) {
      prefetch_next_tile(W, (NR + j) * a.ldw + k);
      w[j] = load16(W + j * a.ldw + k);
    }
    #pragma GCC unroll 16
    for (int m = 0; m < MR; ++m) {
      const __m512 xv = _mm512_loadu_ps(x + m * a.ldx + k);
      #pragma GCC unroll 16
      for (int j = 0; j < NR; ++j) acc[m][j] = _mm512_fmadd_ps(w[j], xv, acc[m][j]);
    }
  }
  if (k < K) {
    const __mmask16 mask = static_cast<__mmask16>((1u << (K - k)) - 1u);
    __m512 w[NR];
    #pragma GCC unroll 16
    for (int j = 0; j < NR; ++j) w[j] = load16_masked(W + j * a.ldw + k, mask);
    #pragma GCC unroll 16
    for (int m = 0; m < MR; ++m) {
      const __m512 xv = _mm512_maskz_loadu_ps(mask, x + m * a.ldx + k);
      #pragma GCC unroll 16
      for (int j = 0; j < NR; ++j) acc[m][j] = _mm512_fmadd_ps(w[j], xv, acc[m][j]);
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

// All rows for outputs [n, n+NR): chunks of up to 4 rows share the W tile through L1.
template <typename WT, int NR>
inline void out_in_rows(const Args& a, int64_t n) {
  int64_t m0 = 0;
  for (; m0 + 4 <= a.M; m0 += 4) out_in_tile<WT, 4, NR>(a, n, m0);
  switch (a.M - m0) {
    case 3: out_in_tile<WT, 3, NR>(a, n, m0); break;
    case 2: out_in_tile<WT, 2, NR>(a, n, m0); break;
    case 1: out_in_tile<WT, 1, NR>(a, n, m0); break;
    default: break;
  }
}

template <typename WT>
void out_in(const Args& a, int64_t n0, int64_t n1) {
  int64_t n = n0;
  if (a.M == 1) {
    for (; n + 8 <= n1; n += 8) out_in_tile<WT, 1, 8>(a, n, 0);  // 8 streams in flight
  }
  for (; n + 4 <= n1; n += 4) out_in_rows<WT, 4>(a, n);
  for (; n < n1; ++n) out_in_rows<WT, 1>(a, n);
}

// ---- in_out ---------------------------------------------------------------------------------
// W is read row after row (its memory order), kKBlock rows at a time: for each 64-column chunk
// the MR x 4 accumulators are loaded from y, get the block's rows, and go back, so y[:, n0:n1]
// (L1/L2-resident) carries the sums between blocks and W streams sequentially exactly once.
// Each y element still sums k = 0..K-1 in order.
constexpr int64_t kKBlock = 32;

// Rows [m0, m0+MR), columns [n, n + 16*NV) (the last vector masked by `tail`), W rows [k0, k1).
template <typename WT, int MR, int NV>
inline void in_out_block(const Args& a, int64_t n, int64_t m0, int64_t k0, int64_t k1,
                         __mmask16 tail) {
  const WT* W = static_cast<const WT*>(a.W) + n;
  const float* x = a.x + m0 * a.ldx;
  __m512 acc[MR][NV];
  #pragma GCC unroll 16
  for (int m = 0; m < MR; ++m) {
    const float* y = a.y + (m0 + m) * a.ldy + n;
    #pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) {
      const __mmask16 mk = v + 1 == NV ? tail : __mmask16(0xFFFF);
      if (k0 > 0) {
        acc[m][v] = _mm512_maskz_loadu_ps(mk, y + 16 * v);
      } else {
        acc[m][v] = a.bias ? _mm512_maskz_loadu_ps(mk, a.bias + n + 16 * v) : _mm512_setzero_ps();
      }
    }
  }
  for (int64_t k = k0; k < k1; ++k) {
    const WT* wr = W + k * a.ldw;
    __m512 w[NV];
    #pragma GCC unroll 16
    for (int v = 0; v + 1 < NV; ++v) {
      prefetch_next_tile(W, k * a.ldw + 16 * (NV + v));  // the next column chunk's row
      w[v] = load16(wr + 16 * v);
    }
    w[NV - 1] = tail == 0xFFFF ? load16(wr + 16 * (NV - 1)) : load16_masked(wr + 16 * (NV - 1), tail);
    #pragma GCC unroll 16
    for (int m = 0; m < MR; ++m) {
      const __m512 xv = _mm512_set1_ps(x[m * a.ldx + k]);
      #pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) acc[m][v] = _mm512_fmadd_ps(w[v], xv, acc[m][v]);
    }
  }
  #pragma GCC unroll 16
  for (int m = 0; m < MR; ++m) {
    float* y = a.y + (m0 + m) * a.ldy + n;
    #pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) {
      const __mmask16 mk = v + 1 == NV ? tail : __mmask16(0xFFFF);
      _mm512_mask_storeu_ps(y + 16 * v, mk, acc[m][v]);
    }
  }
}

template <typename WT, int NV>
inline void in_out_rows(const Args& a, int64_t n, int64_t k0, int64_t k1, __mmask16 tail) {
  int64_t m0 = 0;
  for (; m0 + 4 <= a.M; m0 += 4) in_out_block<WT, 4, NV>(a, n, m0, k0, k1, tail);
  switch (a.M - m0) {
    case 3: in_out_block<WT, 3, NV>(a, n, m0, k0, k1, tail); break;
    case 2: in_out_block<WT, 2, NV>(a, n, m0, k0, k1, tail); break;
    case 1: in_out_block<WT, 1, NV>(a, n, m0, k0, k1, tail); break;
    default: break;
  }
}

template <typename WT>
void in_out(const Args& a, int64_t n0, int64_t n1) {
  for (int64_t k0 = 0; k0 < a.K; k0 += kKBlock) {
    const int64_t k1 = std::min(a.K, k0 + kKBlock);
    int64_t n = n0;
    if (a.M == 1 && sizeof(WT) == 2) {  // bf16/f16, one row of x: 256 contiguous bytes per W row
      for (; n + 128 <= n1; n += 128) in_out_block<WT, 1, 8>(a, n, 0, k0, k1, 0xFFFF);
    }
    for (; n + 64 <= n1; n += 64) in_out_rows<WT, 4>(a, n, k0, k1, 0xFFFF);
    for (; n < n1; n += 16) {
      const int64_t left = n1 - n;
      const __mmask16 tail = left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1u);
      in_out_rows<WT, 1>(a, n, k0, k1, tail);
    }
  }
  if (a.K == 0) {  // no rows of W: y = bias
    for (int64_t m = 0; m < a.M; ++m)
      for (int64_t n = n0; n < n1; ++n) a.y[m * a.ldy + n] = a.bias ? a.bias[n] : 0.0f;
  }
}

}  // namespace

const Kernels& avx512_kernels() {
  static const Kernels k{"avx512 f32 (out_in 4x4 / 1x8, in_out 4x64 row blocks)",
                         "avx512 bf16 widened to f32", "avx512 f16 widened to f32 (vcvtph2ps)",
                         out_in<float>, in_out<float>, out_in<uint16_t>, in_out<uint16_t>,
                         out_in<F16Bits>, in_out<F16Bits>, 8, 128};
  return k;
}

namespace {
// vdpbf16ps for one or two rows, widening beyond (see gemv_avx512bf16.cpp).
void bf16_out_in_mixed(const Args& a, int64_t n0, int64_t n1) {
  if (a.M <= 2) {
    bf16_out_in_dpbf16(a, n0, n1);
  } else {
    out_in<uint16_t>(a, n0, n1);
  }
}
}  // namespace

const Kernels& avx512bf16_kernels() {
  static const Kernels k = [] {
    Kernels t = avx512_kernels();
    t.name_bf16 = "avx512_bf16 vdpbf16ps (out_in, M <= 2), else bf16 widened to f32";
    t.bf16_out_in = bf16_out_in_mixed;
    return t;
  }();
  return k;
}

}  // namespace gemv_detail
}  // namespace s2s
