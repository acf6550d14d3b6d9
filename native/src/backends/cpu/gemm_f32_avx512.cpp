// AVX-512 fp32 GEMM path: the 14x32 FMA microkernel (plus its 1..13-row edge variants) and
// the AVX-512 packing routines (fp32; bf16 widened to fp32 for CPUs without avx512_bf16; fp16,
// or fp32 rounded to fp16, widened to fp32 for gemm_f16_rounding).
// Compiled with -mavx512f/bw/vl/dq -mfma (CMake, by file name); reached only when
// active_isa() >= Isa::Avx512. Everything here is file-local except avx512_desc().
//
// Napkin numbers (Sapphire Rapids class core, ~2.6-3 GHz):
//   2 FMA ports x 16 lanes x 2 flops = 64 flop/cycle/core; FMA latency 4 cycles, so at least
//   4 x 2 = 8 independent accumulators are needed just to keep both ports busy.
//   Register budget (32 zmm): a 14x32 tile is 14 rows x 2 zmm = 28 accumulators, + 2 zmm for
//   the B row (32 floats), + 1 for the broadcast A value = 31. Per k step: 2 loads of B,
//   14 broadcasts of A, 28 FMAs -> 14 cycles of FMA work vs 16 load-port uops (2-3 ports):
//   FMA-bound, which is what we want. (16x32 would need 34 registers.)
//   Cache blocks: KC = 384 -> one packed A panel (14 x 384 x 4 B = 21 KiB) stays in the 48 KiB
//   L1 while B panels (384 x 32 x 4 B = 48 KiB each) stream from L2 through it, 2 lines per k
//   (128 B per 28 FMAs = 9 B/cycle from L2, well under its ~32 B/cycle). NC = 768 -> the
//   packed B block (384 x 768 x 4 B = 1.2 MiB) fits the 2 MiB L2 with room for A and C.
//   MC = 1152 -> the A block (1152 x 384 x 4 B = 1.7 MiB) sits in L3 and is read once per
//   B block; large MC means B is repacked rarely.
#include <immintrin.h>

#include <cstdint>

#include "backends/cpu/f16_simd.h"
#include "backends/cpu/gemm_avx512_tile.h"
#include "backends/cpu/gemm_internal.h"

namespace s2s {
namespace gemm_detail {
namespace {

constexpr int MR = kAvx512MR;
constexpr int NR = kAvx512NR;
constexpr int64_t KC = 384, MC = 1152, NC = 768;  // every table of this path (see the napkin)

// Prefetch distance into the streaming B panel, in k steps (128 B per step): ~1 KiB ahead
// covers L2 latency at one k step per ~14 cycles.
constexpr int kPrefetchB = 8;

// ---- packing (fp32 layout; see gemm_internal.h) ---------------------------------------
// The operands usually come from DRAM (activations written long before, weights last touched a
// step ago). Copying a k-major source (the layout that is not transposed) also prefetches the
// rows kPackAheadRows ahead: measured cold, that copy ran at 5-8 GB/s against the ~12 GB/s one
// core streams, and +5-10% with the prefetch. (The same in the transposing path, 4 lines ahead
// along each row, measured slower: the 16 rows in flight already cover the latency.)
constexpr int64_t kPackRows = 8;
constexpr int64_t kPackAheadRows = 8;

// 16 source values as fp32: a masked load (lanes off -> 0), widening bf16 exactly if needed.
inline __m512 load16(const float* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
inline __m512 load16(const uint16_t* p, __mmask16 m) {
  const __m256i h = _mm256_maskz_loadu_epi16(m, p);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
// fp16 bits widened, or fp32 rounded to fp16 and widened back, exactly as f16_to_f32 /
// f32_to_f16 do (NaN lanes fixed up: f16_simd.h).
inline __m512 load16(const F16Bits* p, __mmask16 m) {
  return f16x16_to_f32_exact(_mm256_maskz_loadu_epi16(m, p));
}
inline __m512 load16(const F32RoundedToF16* p, __mmask16 m) {
  return f32x16_round_to_f16(_mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(p)));
}

// Stores one packed k step of a 16-row group: R = 32 rows are two aligned halves; R = 14 is
// one 14-lane masked store (the 2 padding lanes of the group are not part of the layout).
template <int R>
inline void store_group(float* d, __m512 v) {
  if (R % 16 == 0) _mm512_store_ps(d, v);
  else _mm512_mask_storeu_ps(d, lanes16(R), v);
}

template <int R, typename Src>
void pack_avx512(const void* src_v, int64_t ld, bool k_contig, int64_t r0, int64_t rows,
                 int64_t k0, int64_t kc, void* dst_v) {
  static_assert(R == 14 || R == 32, "row groups of 16 with R = 14 or 32");
  constexpr int kGroups = (R + 15) / 16;
  const Src* src = static_cast<const Src*>(src_v);
  float* dst0 = static_cast<float*>(dst_v);
  if (!k_contig) {
    // Row k of the source holds step k of every panel: a masked copy per panel. Rows are taken
    // kPackRows at a time and walked across all panels together, so each source row is still
    // read front to back (panel-outer order would hop across kc rows, a page apiece, for every
    // panel and defeat the prefetchers) while each panel receives kPackRows steps in one
    // contiguous run (R = 14: 56 B steps, most straddling a line; one step per panel at a time
    // left ~70 partly written lines in flight and ran at half the speed of R = 32).
    constexpr int64_t kRows = R % 16 == 0 ? 1 : kPackRows;  // full-line steps: one row does
    for (int64_t kb = 0; kb < kc; kb += kRows) {
      const int64_t kn = kc - kb < kRows ? kc - kb : kRows;
      const Src* s = src + (k0 + kb) * ld + r0;
      const bool prefetch = kb + kn + kPackAheadRows <= kc;
      for (int64_t p0 = 0; p0 < rows; p0 += R) {
        const int64_t n = rows - p0 < R ? rows - p0 : R;
        float* d = dst0 + p0 * kc + kb * R;  // panel p0 / R starts at p0 * kc
        for (int64_t k = 0; k < kn; ++k) {
          for (int g = 0; g < kGroups; ++g) {
            if (prefetch) {
              _mm_prefetch(reinterpret_cast<const char*>(s + (k + kPackAheadRows) * ld + p0 + g * 16),
                           _MM_HINT_T0);
            }
            store_group<R>(d + k * R + g * 16, load16(s + k * ld + p0 + g * 16, lanes16(n - g * 16)));
          }
        }
      }
    }
    return;
  }
  // Rows are contiguous in k: transpose 16 rows x 16 k at a time.
  float* dst = dst0;
  for (int64_t p0 = 0; p0 < rows; p0 += R, dst += R * kc) {
    const int64_t n = rows - p0 < R ? rows - p0 : R;
    for (int64_t kb = 0; kb < kc; kb += 16) {
      const int64_t kn = kc - kb < 16 ? kc - kb : 16;
      const __mmask16 km = lanes16(kn);
      for (int g = 0; g < kGroups; ++g) {
        __m512 r[16];
        for (int i = 0; i < 16; ++i) {
          const int64_t row = g * 16 + i;
          r[i] = (row < n && row < R) ? load16(src + (r0 + p0 + row) * ld + k0 + kb, km)
                                      : _mm512_setzero_ps();
        }
        transpose16x16(r);
        float* d = dst + kb * R + g * 16;
        for (int64_t kk = 0; kk < kn; ++kk) store_group<R>(d + kk * R, r[kk]);
      }
    }
  }
}

// acc(M x 32) = sum_k A(:, k) B(k, :). Packed panels (kStrided false): Ap holds MR floats per
// k (rows >= M ignored), Bp 32. Strided (see StridedKernelFn): k steps a_ks and b_ks apart, and
// with kMaskB the B row's lanes past nr masked off (an operand read in place has no padding).
template <int M, bool kStrided, bool kMaskB>
void kernel_rows(int64_t kc, const float* Ap, int64_t a_ks, const float* Bp, int64_t b_ks,
                 float* C, int64_t ldc, int nr, float alpha, float beta, Store store) {
  const int64_t as = kStrided ? a_ks : MR, bs = kStrided ? b_ks : NR;
  const __mmask16 m0 = kMaskB ? lanes16(nr) : __mmask16(0xffff);
  const __mmask16 m1 = kMaskB ? lanes16(nr - 16) : __mmask16(0xffff);
  __m512 c0[M], c1[M];
#pragma GCC unroll 14
  for (int i = 0; i < M; ++i) {
    c0[i] = _mm512_setzero_ps();
    c1[i] = _mm512_setzero_ps();
  }
  // Pull this tile of C toward L1 while the K loop runs (it is read, or at least written, at
  // the end; a 128 B row that is not 64 B-aligned touches 3 lines). Also when C is only
  // overwritten: a store that misses waits for the line like a load, and 28 of them at the end
  // of the tile stall the store buffer (a large C, the logits, is far out in DRAM).
#pragma GCC unroll 14
  for (int i = 0; i < M; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(C + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(C + i * ldc + 16), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(C + i * ldc + 31), _MM_HINT_T0);
  }
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 b0 = kMaskB ? _mm512_maskz_loadu_ps(m0, Bp)
                      : kStrided ? _mm512_loadu_ps(Bp) : _mm512_load_ps(Bp);
    const __m512 b1 = kMaskB ? _mm512_maskz_loadu_ps(m1, Bp + 16)
                      : kStrided ? _mm512_loadu_ps(Bp + 16) : _mm512_load_ps(Bp + 16);
    _mm_prefetch(reinterpret_cast<const char*>(Bp + kPrefetchB * bs), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(Bp + kPrefetchB * bs + 16), _MM_HINT_T0);
#pragma GCC unroll 14
    for (int i = 0; i < M; ++i) {
      const __m512 a = _mm512_set1_ps(Ap[i]);
      c0[i] = _mm512_fmadd_ps(a, b0, c0[i]);
      c1[i] = _mm512_fmadd_ps(a, b1, c1[i]);
    }
    Ap += as;
    Bp += bs;
  }
  store_rows<M>(c0, c1, C, ldc, nr, alpha, beta, store);
}

template <int M>
void call_rows(int64_t kc, const void* Ap, const void* Bp, float* C, int64_t ldc, int nr,
               float alpha, float beta, Store store) {
  kernel_rows<M, false, false>(kc, static_cast<const float*>(Ap), MR,
                               static_cast<const float*>(Bp), NR, C, ldc, nr, alpha, beta, store);
}

void kernel_14x32(int64_t kc, const void* Ap, const void* Bp, float* C, int64_t ldc, int mr,
                  int nr, float alpha, float beta, Store store) {
  using Fn = void (*)(int64_t, const void*, const void*, float*, int64_t, int, float, float,
                      Store);
  static constexpr Fn by_rows[MR + 1] = {
      nullptr,        call_rows<1>,  call_rows<2>,  call_rows<3>,  call_rows<4>,
      call_rows<5>,   call_rows<6>,  call_rows<7>,  call_rows<8>,  call_rows<9>,
      call_rows<10>,  call_rows<11>, call_rows<12>, call_rows<13>, call_rows<14>};
  by_rows[mr](kc, Ap, Bp, C, ldc, nr, alpha, beta, store);
}

template <bool kMaskB>
void kernel_14x32_strided_as(int64_t kc, const float* Ap, int64_t a_ks, const float* Bp,
                             int64_t b_ks, float* C, int64_t ldc, int mr, int nr, float alpha,
                             float beta, Store store) {
  using Fn = void (*)(int64_t, const float*, int64_t, const float*, int64_t, float*, int64_t,
                      int, float, float, Store);
  static constexpr Fn by_rows[MR + 1] = {
      nullptr,
      kernel_rows<1, true, kMaskB>,  kernel_rows<2, true, kMaskB>,  kernel_rows<3, true, kMaskB>,
      kernel_rows<4, true, kMaskB>,  kernel_rows<5, true, kMaskB>,  kernel_rows<6, true, kMaskB>,
      kernel_rows<7, true, kMaskB>,  kernel_rows<8, true, kMaskB>,  kernel_rows<9, true, kMaskB>,
      kernel_rows<10, true, kMaskB>, kernel_rows<11, true, kMaskB>, kernel_rows<12, true, kMaskB>,
      kernel_rows<13, true, kMaskB>, kernel_rows<14, true, kMaskB>};
  by_rows[mr](kc, Ap, a_ks, Bp, b_ks, C, ldc, nr, alpha, beta, store);
}

void kernel_14x32_strided(int64_t kc, const float* Ap, int64_t a_ks, const float* Bp,
                          int64_t b_ks, bool b_in_place, float* C, int64_t ldc, int mr, int nr,
                          float alpha, float beta, Store store) {
  if (b_in_place) {
    kernel_14x32_strided_as<true>(kc, Ap, a_ks, Bp, b_ks, C, ldc, mr, nr, alpha, beta, store);
  } else {
    kernel_14x32_strided_as<false>(kc, Ap, a_ks, Bp, b_ks, C, ldc, mr, nr, alpha, beta, store);
  }
}

}  // namespace

const KernelDesc& avx512_desc(bool src_bf16) {
  static const KernelDesc f32{"avx512 14x32 fp32 fma", MR, NR, KC, MC, NC, 1, 1, 4,
                              pack_avx512<MR, float>, pack_avx512<NR, float>, kernel_14x32,
                              nullptr, nullptr, kernel_14x32_strided};
  static const KernelDesc bf16{"avx512 14x32 fp32 fma (bf16 widened to fp32 in packing)",
                               MR, NR, KC, MC, NC, 1, 1, 4,
                               pack_avx512<MR, uint16_t>, pack_avx512<NR, uint16_t>,
                               kernel_14x32};
  return src_bf16 ? bf16 : f32;
}

const KernelDesc& avx512_f16_desc() {
  static const KernelDesc f16{"avx512 14x32 fp32 fma (f16 widened to fp32 in packing)",
                              MR, NR, KC, MC, NC, 1, 1, 4,
                              pack_avx512<MR, F16Bits>, pack_avx512<NR, F16Bits>, kernel_14x32,
                              pack_avx512<MR, F32RoundedToF16>, pack_avx512<NR, F32RoundedToF16>};
  return f16;
}

}  // namespace gemm_detail
}  // namespace s2s
