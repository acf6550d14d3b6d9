// AVX2/FMA fp32 GEMM path: a 6x16 microkernel (edge variants by row count) on the portable
// packing. Compiled with -mavx2 -mfma; reached only when active_isa() >= Isa::Avx2 and is the
// best path present (pre-AVX-512 x86-64, or S2S_ISA=avx2).
//
// Napkin numbers: 2 FMA ports x 8 lanes x 2 flops = 32 flop/cycle/core (Haswell .. Zen).
// Register budget (16 ymm): 6 rows x 2 ymm = 12 accumulators + 2 for the B row + 1 broadcast
// = 15. 12 independent FMA chains cover 2 ports x 5-cycle latency (10 needed).
// KC = 256 -> A panel 6 x 256 x 4 B = 6 KiB in L1, B panel 256 x 16 x 4 B = 16 KiB streaming
// (fits the smallest 32 KiB L1 with both); NC = 1024 -> B block 1 MiB for 1-2 MiB L2s (on
// 256 KiB-L2 parts it spills to L3, still fine at one B panel per 6 x 16 tile).
#include <immintrin.h>

#include <cstdint>

#include "backends/cpu/gemm_internal.h"

namespace s2s {
namespace gemm_detail {
namespace {

constexpr int MR = 6;
constexpr int NR = 16;

template <int M>
void kernel_rows(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc, int nr,
                 float alpha, float beta, Store store) {
  __m256 c0[M], c1[M];
#pragma GCC unroll 6
  for (int i = 0; i < M; ++i) {
    c0[i] = _mm256_setzero_ps();
    c1[i] = _mm256_setzero_ps();
  }
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_load_ps(Bp);
    const __m256 b1 = _mm256_load_ps(Bp + 8);
    _mm_prefetch(reinterpret_cast<const char*>(Bp + 8 * NR), _MM_HINT_T0);
#pragma GCC unroll 6
    for (int i = 0; i < M; ++i) {
      const __m256 a = _mm256_broadcast_ss(Ap + i);
      c0[i] = _mm256_fmadd_ps(a, b0, c0[i]);
      c1[i] = _mm256_fmadd_ps(a, b1, c1[i]);
    }
    Ap += MR;
    Bp += NR;
  }
  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
  if (nr == NR) {
#pragma GCC unroll 6
    for (int i = 0; i < M; ++i) {
      float* c = C + i * ldc;
      __m256 r0 = _mm256_mul_ps(va, c0[i]), r1 = _mm256_mul_ps(va, c1[i]);
      if (store == Store::ScaleAdd) {
        r0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(c), r0);
        r1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(c + 8), r1);
      } else if (store == Store::Accumulate) {
        r0 = _mm256_add_ps(_mm256_loadu_ps(c), r0);
        r1 = _mm256_add_ps(_mm256_loadu_ps(c + 8), r1);
      }
      _mm256_storeu_ps(c, r0);
      _mm256_storeu_ps(c + 8, r1);
    }
    return;
  }
  // Edge columns: spill the tile and finish with scalar code (rare: N % 16 columns only).
  alignas(32) float tile[M][NR];
  for (int i = 0; i < M; ++i) {
    _mm256_store_ps(tile[i], _mm256_mul_ps(va, c0[i]));
    _mm256_store_ps(tile[i] + 8, _mm256_mul_ps(va, c1[i]));
    float* c = C + i * ldc;
    for (int j = 0; j < nr; ++j) {
      if (store == Store::Overwrite) c[j] = tile[i][j];
      else if (store == Store::ScaleAdd) c[j] = tile[i][j] + beta * c[j];
      else c[j] = tile[i][j] + c[j];
    }
  }
}

template <int M>
void call_rows(int64_t kc, const void* Ap, const void* Bp, float* C, int64_t ldc, int nr,
               float alpha, float beta, Store store) {
  kernel_rows<M>(kc, static_cast<const float*>(Ap), static_cast<const float*>(Bp), C, ldc, nr,
                 alpha, beta, store);
}

void kernel_6x16(int64_t kc, const void* Ap, const void* Bp, float* C, int64_t ldc, int mr,
                 int nr, float alpha, float beta, Store store) {
  using Fn = void (*)(int64_t, const void*, const void*, float*, int64_t, int, float, float,
                      Store);
  static constexpr Fn by_rows[MR + 1] = {nullptr,      call_rows<1>, call_rows<2>, call_rows<3>,
                                         call_rows<4>, call_rows<5>, call_rows<6>};
  by_rows[mr](kc, Ap, Bp, C, ldc, nr, alpha, beta, store);
}

}  // namespace

const KernelDesc& avx2_desc(bool src_bf16) {
  static const KernelDesc f32{"avx2 6x16 fp32 fma", MR, NR, 256, 480, 1024, 1, 1, 4,
                              pack_generic<MR, float>, pack_generic<NR, float>, kernel_6x16};
  static const KernelDesc bf16{"avx2 6x16 fp32 fma (bf16 widened to fp32 in packing)",
                               MR, NR, 256, 480, 1024, 1, 1, 4,
                               pack_generic<MR, uint16_t>, pack_generic<NR, uint16_t>,
                               kernel_6x16};
  return src_bf16 ? bf16 : f32;
}

}  // namespace gemm_detail
}  // namespace s2s
