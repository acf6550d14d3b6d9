// AVX2/FMA fp32 GEMM path: a 6x16 microkernel (edge variants by row count) on the portable
// packing; fp16 operands (gemm_f16_rounding) are converted with F16C while packing. Compiled with
// -mavx2 -mfma -mf16c; reached only when active_isa() >= Isa::Avx2 (which requires F16C too) and
// is the best path present (pre-AVX-512 x86-64, or S2S_ISA=avx2).
//
// Napkin numbers: 2 FMA ports x 8 lanes x 2 flops = 32 flop/cycle/core (Haswell .. Zen).
// Register budget (16 ymm): 6 rows x 2 ymm = 12 accumulators + 2 for the B row + 1 broadcast
// = 15. 12 independent FMA chains cover 2 ports x 5-cycle latency (10 needed).
// KC = 256 -> A panel 6 x 256 x 4 B = 6 KiB in L1, B panel 256 x 16 x 4 B = 16 KiB streaming
// (fits the smallest 32 KiB L1 with both); NC = 1024 -> B block 1 MiB for 1-2 MiB L2s (on
// 256 KiB-L2 parts it spills to L3, still fine at one B panel per 6 x 16 tile).
#include <immintrin.h>

#include <cstdint>

#include "backends/cpu/f16_simd.h"
#include "backends/cpu/gemm_internal.h"

namespace s2s {
namespace gemm_detail {
namespace {

constexpr int MR = 6;
constexpr int NR = 16;
constexpr int64_t KC = 256, MC = 480, NC = 1024;  // every table of this path (see the napkin)

// ---- fp16 packing (F16C) ----------------------------------------------------------------
// 8 values as fp32, bit for bit load_as_f32 of each (gemm_internal.h).
// (NaN lanes fixed up to match the scalar conversions: f16_simd.h.)
inline __m256 load8(const F16Bits* p) {
  return f16x8_to_f32_exact(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline __m256 load8(const F32RoundedToF16* p) {
  return f32x8_round_to_f16(_mm256_loadu_ps(reinterpret_cast<const float*>(p)));
}

// n consecutive source values to fp32, 8 at a time, the tail one by one.
template <typename Src>
void convert_run(const Src* s, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, load8(s + i));
  for (; i < n; ++i) out[i] = load_as_f32(s + i);
}

// pack_generic's layout and loop order (gemm_internal.h), converting source runs into a line
// buffer with F16C first: a 6-row A panel alone is too short a run for 8-wide conversions.
template <int R, typename Src>
void pack_f16c(const void* src_v, int64_t ld, bool k_contig, int64_t r0, int64_t rows,
               int64_t k0, int64_t kc, void* dst_v) {
  constexpr int64_t kLine = (256 / R) * R;  // whole panels per chunk of a source row
  alignas(32) float line[kLine];
  const Src* src = static_cast<const Src*>(src_v);
  float* dst0 = static_cast<float*>(dst_v);
  if (!k_contig) {
    // Row k of the source holds step k of every panel.
    for (int64_t k = 0; k < kc; ++k) {
      const Src* s = src + (k0 + k) * ld + r0;
      for (int64_t c0 = 0; c0 < rows; c0 += kLine) {
        const int64_t cn = rows - c0 < kLine ? rows - c0 : kLine;
        convert_run(s + c0, cn, line);
        for (int64_t p0 = 0; p0 < cn; p0 += R) {
          const int n = cn - p0 < R ? static_cast<int>(cn - p0) : R;
          float* d = dst0 + (c0 + p0) * kc + k * R;  // panel (c0 + p0) / R
          for (int r = 0; r < n; ++r) d[r] = line[p0 + r];
          for (int r = n; r < R; ++r) d[r] = 0.f;
        }
      }
    }
    return;
  }
  for (int64_t p0 = 0; p0 < rows; p0 += R) {
    float* dst = dst0 + p0 * kc;
    const int n = rows - p0 < R ? static_cast<int>(rows - p0) : R;
    // Row r is contiguous in k: convert a run of it, scatter with stride R.
    for (int r = 0; r < n; ++r) {
      const Src* s = src + (r0 + p0 + r) * ld + k0;
      for (int64_t kb = 0; kb < kc; kb += kLine) {
        const int64_t kn = kc - kb < kLine ? kc - kb : kLine;
        convert_run(s + kb, kn, line);
        for (int64_t k = 0; k < kn; ++k) dst[(kb + k) * R + r] = line[k];
      }
    }
    if (n < R) {
      for (int64_t k = 0; k < kc; ++k)
        for (int r = n; r < R; ++r) dst[k * R + r] = 0.f;
    }
  }
}

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
  static const KernelDesc f32{"avx2 6x16 fp32 fma", MR, NR, KC, MC, NC, 1, 1, 4,
                              pack_generic<MR, float>, pack_generic<NR, float>, kernel_6x16};
  static const KernelDesc bf16{"avx2 6x16 fp32 fma (bf16 widened to fp32 in packing)",
                               MR, NR, KC, MC, NC, 1, 1, 4,
                               pack_generic<MR, uint16_t>, pack_generic<NR, uint16_t>,
                               kernel_6x16};
  return src_bf16 ? bf16 : f32;
}

const KernelDesc& avx2_f16_desc() {
  static const KernelDesc f16{"avx2 6x16 fp32 fma (f16 widened to fp32 in packing, f16c)",
                              MR, NR, KC, MC, NC, 1, 1, 4,
                              pack_f16c<MR, F16Bits>, pack_f16c<NR, F16Bits>, kernel_6x16,
                              pack_f16c<MR, F32RoundedToF16>, pack_f16c<NR, F32RoundedToF16>};
  return f16;
}

}  // namespace gemm_detail
}  // namespace s2s
