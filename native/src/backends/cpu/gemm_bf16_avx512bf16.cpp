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

// Pair layout packing (see gemm_internal.h): dst[p * R * kc2 + (k / 2) * 2R + 2r + (k & 1)].
template <int R>
void pack_pairs(const void* src_v, int64_t ld, bool k_contig, int64_t r0, int64_t rows,
                int64_t k0, int64_t kc, void* dst_v) {
  const uint16_t* src = static_cast<const uint16_t*>(src_v);
  uint16_t* dst = static_cast<uint16_t*>(dst_v);
  const int64_t kp = (kc + 1) / 2;  // k pairs
  for (int64_t p0 = 0; p0 < rows; p0 += R, dst += 2 * R * kp) {
    const int n = rows - p0 < R ? static_cast<int>(rows - p0) : R;
    if (k_contig) {
      // Row r holds its k values contiguously, so each (k, k+1) pair is one 32-bit word:
      // this is a 32-bit transpose of (n rows x kp pairs).
      for (int r = 0; r < n; ++r) {
        const uint16_t* s = src + (r0 + p0 + r) * ld + k0;
        uint32_t* d = reinterpret_cast<uint32_t*>(dst) + r;
        int64_t q = 0;
        for (; q < kc / 2; ++q) {
          uint32_t w;
          __builtin_memcpy(&w, s + 2 * q, 4);
          d[q * R] = w;
        }
        if (kc & 1) d[q * R] = s[2 * q];  // odd tail: (k, 0)
      }
    } else {
      // Rows k and k+1 of the source are interleaved element by element.
      for (int64_t q = 0; q < kp; ++q) {
        const uint16_t* s0 = src + (k0 + 2 * q) * ld + r0 + p0;
        uint16_t* d = dst + q * 2 * R;
        if (2 * q + 1 < kc) {
          const uint16_t* s1 = s0 + ld;
          int r = 0;
          if (n == R && R % 32 == 0) {
            for (; r < R; r += 32) {
              const __m512i lo = _mm512_loadu_si512(s0 + r);  // 32 bf16 of row k
              const __m512i hi = _mm512_loadu_si512(s1 + r);  // 32 bf16 of row k+1
              // unpack works within 128-bit lanes: fix the lane order with a permute.
              const __m512i a = _mm512_unpacklo_epi16(lo, hi);
              const __m512i b = _mm512_unpackhi_epi16(lo, hi);
              const __m512i i0 = _mm512_set_epi64(11, 10, 3, 2, 9, 8, 1, 0);
              const __m512i i1 = _mm512_set_epi64(15, 14, 7, 6, 13, 12, 5, 4);
              _mm512_storeu_si512(d + 2 * r, _mm512_permutex2var_epi64(a, i0, b));
              _mm512_storeu_si512(d + 2 * r + 32, _mm512_permutex2var_epi64(a, i1, b));
            }
          }
          for (; r < n; ++r) {
            d[2 * r] = s0[r];
            d[2 * r + 1] = s1[r];
          }
        } else {
          for (int r = 0; r < n; ++r) {
            d[2 * r] = s0[r];
            d[2 * r + 1] = 0;
          }
        }
      }
    }
    if (n < R) {
      uint32_t* d = reinterpret_cast<uint32_t*>(dst);
      for (int64_t q = 0; q < kp; ++q)
        for (int r = n; r < R; ++r) d[q * R + r] = 0;
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
