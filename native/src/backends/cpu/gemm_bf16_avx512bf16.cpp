// AVX-512 BF16 GEMM path: a 14x32 vdpbf16ps microkernel on bf16 operands with fp32
// accumulation, and the pair-interleaving packing it needs. Compiled with -mavx512bf16 (CMake,
// by file name); reached only when active_isa() == Isa::Avx512Bf16.
//
// vdpbf16ps zmm_acc, zmm_a, zmm_b: for each of 16 fp32 lanes, acc += a[2l]*b[2l] + a[2l+1]*b[2l+1]
// with bf16 inputs. So one instruction does 2 K steps for 16 columns (64 flops, twice an fp32
// FMA), and both operands must hold (k, k+1) pairs side by side:
//   packed B panel (32 columns): per k pair, [col 0 (k, k+1), col 1 (k, k+1), ..., col 31] =
//     64 bf16 = 2 zmm; packed A panel (14 rows): per k pair, 14 x 32-bit (k, k+1) words, each
//     broadcast to all lanes. An odd K gets a zero partner.
// Same 31-register budget as the fp32 kernel (28 accumulators + 2 B + 1 broadcast); the same
// bytes per block with KC doubled to 768 (A panel 14 x 768 x 2 B = 21 KiB in L1, B panel
// 768 x 32 x 2 B = 48 KiB streaming from L2, B block 768 x 768 x 2 B = 1.2 MiB in L2).
// Rounding: vdpbf16ps rounds to nearest even but treats denormal inputs/outputs as zero (it
// ignores MXCSR), which the tests' tolerance covers; products of two bf16 are exact in fp32.
#include <immintrin.h>

#include <cstdint>

#include "backends/cpu/gemm_avx512_tile.h"
#include "backends/cpu/gemm_internal.h"

namespace s2s {
namespace gemm_detail {
namespace {

constexpr int MR = kAvx512MR;
constexpr int NR = kAvx512NR;
constexpr int kPrefetchB = 8;  // k pairs ahead in the B stream (128 B each), ~1 KiB

// Pair layout packing (see gemm_internal.h): dst[p * R * kc2 + (k / 2) * 2R + 2r + (k & 1)],
// i.e. in 32-bit words, word (q, r) = (X(r, 2q), X(r, 2q + 1)) at dst32[q * R + r].
template <int R>
inline void store_pairs(uint32_t* d, __m512i v) {
  if (R % 16 == 0) _mm512_store_si512(d, v);
  else _mm512_mask_storeu_epi32(d, lanes16(R), v);
}

template <int R>
void pack_pairs(const void* src_v, int64_t ld, bool k_contig, int64_t r0, int64_t rows,
                int64_t k0, int64_t kc, void* dst_v) {
  static_assert(R == 14 || R == 32, "row groups of 16 with R = 14 or 32");
  constexpr int kGroups = (R + 15) / 16;
  const uint16_t* src = static_cast<const uint16_t*>(src_v);
  uint32_t* dst = static_cast<uint32_t*>(dst_v);
  const int64_t kp = (kc + 1) / 2;  // k pairs; an odd tail pairs with 0
  for (int64_t p0 = 0; p0 < rows; p0 += R, dst += R * kp) {
    const int64_t n = rows - p0 < R ? rows - p0 : R;
    if (k_contig) {
      // Each (k, k+1) pair of a row is one 32-bit word: transpose 16 rows x 16 pairs of words.
      // The masked 16-bit load zero-fills past kc, which is exactly the odd-tail zero.
      for (int64_t qb = 0; qb < kp; qb += 16) {
        const int64_t qn = kp - qb < 16 ? kp - qb : 16;
        const __mmask32 em = lanes32(kc - 2 * qb);
        for (int g = 0; g < kGroups; ++g) {
          __m512 r[16];
          for (int i = 0; i < 16; ++i) {
            const int64_t row = g * 16 + i;
            r[i] = (row < n && row < R)
                       ? _mm512_castsi512_ps(
                             _mm512_maskz_loadu_epi16(em, src + (r0 + p0 + row) * ld + k0 + 2 * qb))
                       : _mm512_setzero_ps();
          }
          transpose16x16(r);
          uint32_t* d = dst + qb * R + g * 16;
          for (int64_t q = 0; q < qn; ++q) store_pairs<R>(d + q * R, _mm512_castps_si512(r[q]));
        }
      }
    } else {
      // Rows k and k+1 of the source hold the panel's values of the pair: zip them.
      for (int64_t q = 0; q < kp; ++q) {
        const uint16_t* s0 = src + (k0 + 2 * q) * ld + r0 + p0;
        const bool has_odd = 2 * q + 1 < kc;
        for (int g = 0; g < kGroups; ++g) {
          const __mmask16 m = lanes16(n - g * 16);
          const __m512i lo = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, s0 + g * 16));
          __m512i w = lo;
          if (has_odd) {
            const __m512i hi =
                _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, s0 + ld + g * 16));
            w = _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16));
          }
          store_pairs<R>(dst + q * R + g * 16, w);
        }
      }
    }
  }
}

template <int M>
void kernel_rows(int64_t kp, const uint16_t* Ap, const uint16_t* Bp, float* C, int64_t ldc,
                 int nr, float alpha, float beta, Store store) {
  __m512 c0[M], c1[M];
#pragma GCC unroll 14
  for (int i = 0; i < M; ++i) {
    c0[i] = _mm512_setzero_ps();
    c1[i] = _mm512_setzero_ps();
  }
  if (store != Store::Overwrite) {
#pragma GCC unroll 14
    for (int i = 0; i < M; ++i) {
      _mm_prefetch(reinterpret_cast<const char*>(C + i * ldc), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(C + i * ldc + 16), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(C + i * ldc + 31), _MM_HINT_T0);
    }
  }
  const uint32_t* A32 = reinterpret_cast<const uint32_t*>(Ap);
  for (int64_t q = 0; q < kp; ++q) {
    const __m512bh b0 = (__m512bh)_mm512_load_si512(Bp);
    const __m512bh b1 = (__m512bh)_mm512_load_si512(Bp + 32);
    _mm_prefetch(reinterpret_cast<const char*>(Bp + kPrefetchB * 2 * NR), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(Bp + kPrefetchB * 2 * NR + 32), _MM_HINT_T0);
#pragma GCC unroll 14
    for (int i = 0; i < M; ++i) {
      const __m512bh a = (__m512bh)_mm512_set1_epi32(static_cast<int>(A32[i]));
      c0[i] = _mm512_dpbf16_ps(c0[i], a, b0);
      c1[i] = _mm512_dpbf16_ps(c1[i], a, b1);
    }
    A32 += MR;
    Bp += 2 * NR;
  }
  store_rows<M>(c0, c1, C, ldc, nr, alpha, beta, store);
}

template <int M>
void call_rows(int64_t kp, const void* Ap, const void* Bp, float* C, int64_t ldc, int nr,
               float alpha, float beta, Store store) {
  kernel_rows<M>(kp, static_cast<const uint16_t*>(Ap), static_cast<const uint16_t*>(Bp), C, ldc,
                 nr, alpha, beta, store);
}

void kernel_14x32(int64_t kp, const void* Ap, const void* Bp, float* C, int64_t ldc, int mr,
                  int nr, float alpha, float beta, Store store) {
  using Fn = void (*)(int64_t, const void*, const void*, float*, int64_t, int, float, float,
                      Store);
  static constexpr Fn by_rows[MR + 1] = {
      nullptr,        call_rows<1>,  call_rows<2>,  call_rows<3>,  call_rows<4>,
      call_rows<5>,   call_rows<6>,  call_rows<7>,  call_rows<8>,  call_rows<9>,
      call_rows<10>,  call_rows<11>, call_rows<12>, call_rows<13>, call_rows<14>};
  by_rows[mr](kp, Ap, Bp, C, ldc, nr, alpha, beta, store);
}

}  // namespace

const KernelDesc& avx512bf16_desc() {
  static const KernelDesc d{"avx512_bf16 14x32 vdpbf16ps (fp32 accumulate)", MR, NR, 768, 1152,
                            768, 2, 2, pack_pairs<MR>, pack_pairs<NR>, kernel_14x32};
  return d;
}

}  // namespace gemm_detail
}  // namespace s2s
