// bf16 GEMM kernels for avx512_bf16-class CPUs, fp32 accumulation: a 14x32 vdpbf16ps
// microkernel with its pair-interleaving packing, and (when the CPU has AMX and the OS grants
// the tile state) a 32x32 AMX tdpbf16ps microkernel, which is the default there. Compiled with
// -mavx512bf16 (CMake, by file name; the AMX functions add target("amx-tile,amx-bf16"));
// reached only when active_isa() == Isa::Avx512Bf16.
//
// Measured on the 2-core Sapphire Rapids-class dev VM: vdpbf16ps zmm issues once per 2 cycles
// (~115 GFLOP/s/core register-only) while fp32 FMA issues twice per cycle (~230 GFLOP/s), so
// vdpbf16ps runs at about 0.65x our fp32 GEMM; AMX (~3.2 TFLOP/s/core register-only) is what
// makes bf16 faster than fp32 on such parts.
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
#include <cpuid.h>
#include <immintrin.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include <cstdint>

#include "backends/cpu/gemm_avx512_tile.h"
#include "backends/cpu/gemm_internal.h"

namespace s2s {
namespace gemm_detail {
namespace {

constexpr int MR = kAvx512MR;
constexpr int NR = kAvx512NR;
constexpr int kPrefetchB = 8;  // k pairs ahead in the B stream (128 B each), ~1 KiB

// ---- source loads: bf16 bits as they are, or fp32 rounded to bf16 on the way ---------------
// Round to nearest even on the dropped 16 bits, NaN keeps its top bits with the quiet bit set:
// cast_f32_to_bf16 / f32_to_bf16 bit for bit (vcvtneps2bf16 is not: it flushes subnormals).
inline __m512i round_to_bf16(__m512i u) {  // 16 fp32 bit patterns -> bf16 in the low halves
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_srli_epi32(
      _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb), 16);
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(
      _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
  const __m512i quiet = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
  return _mm512_mask_mov_epi32(rounded, nan, quiet);
}
// 16 values as bf16 bits in the low halves of 32-bit lanes (lanes off: 0; not read).
inline __m512i load16_lo(const uint16_t* p, __mmask16 m) {
  return _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p));
}
inline __m512i load16_lo(const float* p, __mmask16 m) {
  return round_to_bf16(_mm512_castps_si512(_mm512_maskz_loadu_ps(m, p)));
}
// 32 consecutive values as 32 bf16 (lanes off: 0; not read).
inline __m512i load32(const uint16_t* p, __mmask32 m) { return _mm512_maskz_loadu_epi16(m, p); }
inline __m512i load32(const float* p, __mmask32 m) {
  const __m256i lo = _mm512_cvtepi32_epi16(load16_lo(p, __mmask16(m)));
  const __m256i hi = _mm512_cvtepi32_epi16(load16_lo(p + 16, __mmask16(m >> 16)));
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

// Pair layout packing (see gemm_internal.h): dst[p * R * kc2 + (k / 2) * 2R + 2r + (k & 1)],
// i.e. in 32-bit words, word (q, r) = (X(r, 2q), X(r, 2q + 1)) at dst32[q * R + r].
// Src: uint16_t (bf16 bits) or float (rounded to bf16 here).
template <int R>
inline void store_pairs(uint32_t* d, __m512i v) {
  if (R % 16 == 0) _mm512_store_si512(d, v);
  else _mm512_mask_storeu_epi32(d, lanes16(R), v);
}

template <int R, int QAlign = 1, typename Src = uint16_t>
void pack_pairs(const void* src_v, int64_t ld, bool k_contig, int64_t r0, int64_t rows,
                int64_t k0, int64_t kc, void* dst_v) {
  static_assert(R == 14 || R == 32, "row groups of 16 with R = 14 or 32");
  constexpr int kGroups = (R + 15) / 16;
  const Src* src = static_cast<const Src*>(src_v);
  uint32_t* dst = static_cast<uint32_t*>(dst_v);
  const int64_t kp = (kc + 1) / 2;  // k pairs; an odd tail pairs with 0
  const int64_t kp_alloc = (kp + QAlign - 1) / QAlign * QAlign;  // zero pairs up to here
  for (int64_t p0 = 0; p0 < rows; p0 += R) {
    uint32_t* d = dst + p0 * kp_alloc;  // panel p0 / R
    for (int64_t q = kp; q < kp_alloc; ++q)
      for (int g = 0; g < kGroups; ++g) store_pairs<R>(d + q * R + g * 16, _mm512_setzero_si512());
  }
  if (!k_contig) {
    // Rows k and k+1 of the source hold the pair's values of every panel: zip them, pair outer
    // and panels inner, so each source row is read once front to back (panel-outer order would
    // hop across kc rows, a page apiece, for every panel).
    for (int64_t q = 0; q < kp; ++q) {
      const Src* s0 = src + (k0 + 2 * q) * ld + r0;
      const bool has_odd = 2 * q + 1 < kc;
      for (int64_t p0 = 0; p0 < rows; p0 += R) {
        const int64_t n = rows - p0 < R ? rows - p0 : R;
        uint32_t* d = dst + p0 * kp_alloc + q * R;
        for (int g = 0; g < kGroups; ++g) {
          const __mmask16 m = lanes16(n - g * 16);
          __m512i w = load16_lo(s0 + p0 + g * 16, m);
          if (has_odd) w = _mm512_or_si512(w, _mm512_slli_epi32(load16_lo(s0 + ld + p0 + g * 16, m), 16));
          store_pairs<R>(d + g * 16, w);
        }
      }
    }
    return;
  }
  // Each (k, k+1) pair of a row is one 32-bit word: transpose 16 rows x 16 pairs of words.
  // The masked 16-bit load zero-fills past kc, which is exactly the odd-tail zero.
  for (int64_t p0 = 0; p0 < rows; p0 += R) {
    uint32_t* dp = dst + p0 * kp_alloc;
    const int64_t n = rows - p0 < R ? rows - p0 : R;
    for (int64_t qb = 0; qb < kp; qb += 16) {
      const int64_t qn = kp - qb < 16 ? kp - qb : 16;
      const __mmask32 em = lanes32(kc - 2 * qb);
      for (int g = 0; g < kGroups; ++g) {
        __m512 r[16];
        for (int i = 0; i < 16; ++i) {
          const int64_t row = g * 16 + i;
          r[i] = (row < n && row < R)
                     ? _mm512_castsi512_ps(load32(src + (r0 + p0 + row) * ld + k0 + 2 * qb, em))
                     : _mm512_setzero_ps();
        }
        transpose16x16(r);
        uint32_t* d = dp + qb * R + g * 16;
        for (int64_t q = 0; q < qn; ++q) store_pairs<R>(d + q * R, _mm512_castps_si512(r[q]));
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


// ---- AMX: tdpbf16ps on 16 x 16 fp32 tiles ------------------------------------------------
// One tdpbf16ps multiplies a 16 x 32 bf16 A tile by a 32 x 16 bf16 B tile (stored as 16 rows
// of (k, k+1) pairs, the same pair layout as above) into a 16 x 16 fp32 tile: 16,384 flops
// per instruction (~16 cycles), ~3.2 TFLOP/s per core measured register-only (13x the fp32
// FMA peak), so the microkernel is bound by feeding the tiles, not by the math.
// Register tile: C 32 x 32 = 2 x 2 accumulator tiles (tmm0..3), A 2 tiles (tmm4, 5: rows
// 0-15, 16-31), B 2 tiles (tmm6, 7: columns 0-15, 16-31); per 32-deep K chunk 4 tile loads
// (4 KiB) feed 4 tdpbf16ps (64 K flops, ~64 cycles): ~64 B/cycle of tile loads, about what
// L1 delivers, so 2 x 2 tiles is the smallest blocking that is not load-bound outright.
// Layouts: A panel = 32 rows, each kcs bf16 contiguous (kcs = kc rounded up to 32, zeros past
// kc): a tile load with stride kcs * 2 B. B panel = the pair layout with R = 32, pairs padded
// to a multiple of 16: columns 0-15 of 16 pair rows are a tile load with stride 128 B.
// Blocks: KC = 512 (A panel 32 x 512 x 2 B = 32 KiB stays in the 48 KiB L1 while B panels of
// the same size stream from L2; at KC = 1024 both came from L2, measured slower on 6 of 8
// training shapes, by up to 20%), NC = 768 (B block 512 x 768 x 2 B = 768 KiB in L2), MC = 1024.
constexpr int kAmxMR = 32, kAmxNR = 32, kAmxK = 32;

// Packs rows of op(A) for AMX: dst[p * 32 * kcs + r * kcs + k]. Src as for pack_pairs.
template <typename Src>
void pack_a_amx(const void* src_v, int64_t ld, bool k_contig, int64_t r0, int64_t rows,
                int64_t k0, int64_t kc, void* dst_v) {
  constexpr int R = kAmxMR;
  const Src* src = static_cast<const Src*>(src_v);
  uint16_t* dst = static_cast<uint16_t*>(dst_v);
  const int64_t kcs = (kc + kAmxK - 1) / kAmxK * kAmxK;
  if (!k_contig) {
    // op(A)(r, k) = src[k * ld + r]: zip rows k, k+1 into 32-bit pairs (lane = r), then a
    // 16 x 16 transpose of words turns 16 pair-vectors into 16 rows of 32 contiguous k. The
    // 32-k chunk is the outer loop and the panels the inner one, so each chunk's 32 source
    // rows are read front to back across all panels (panel-outer order would hop across kc
    // rows, a page apiece, for every 16 columns).
    for (int64_t kb = 0; kb < kcs; kb += 32) {
      for (int64_t p0 = 0; p0 < rows; p0 += R) {
        const int64_t n = rows - p0 < R ? rows - p0 : R;
        uint16_t* dp = dst + p0 * kcs;  // panel p0 / R
        for (int g = 0; g < R / 16; ++g) {
          const __mmask16 m = lanes16(n - g * 16);
          __m512 w[16];
          for (int q = 0; q < 16; ++q) {
            const int64_t k = kb + 2 * q;
            __m512i v = _mm512_setzero_si512();
            if (k < kc) {
              const Src* s0 = src + (k0 + k) * ld + r0 + p0 + g * 16;
              v = load16_lo(s0, m);
              if (k + 1 < kc) v = _mm512_or_si512(v, _mm512_slli_epi32(load16_lo(s0 + ld, m), 16));
            }
            w[q] = _mm512_castsi512_ps(v);
          }
          transpose16x16(w);
          for (int i = 0; i < 16; ++i)
            _mm512_store_si512(dp + (g * 16 + i) * kcs + kb, _mm512_castps_si512(w[i]));
        }
      }
    }
    return;
  }
  // Already k-contiguous: copy 32 bf16 (one line) at a time, zero past kc and past n.
  for (int64_t p0 = 0; p0 < rows; p0 += R, dst += R * kcs) {
    const int64_t n = rows - p0 < R ? rows - p0 : R;
    for (int r = 0; r < R; ++r) {
      const Src* s = src + (r0 + p0 + r) * ld + k0;
      uint16_t* d = dst + r * kcs;
      for (int64_t kb = 0; kb < kcs; kb += 32) {
        const __m512i v = r < n ? load32(s + kb, lanes32(kc - kb)) : _mm512_setzero_si512();
        _mm512_store_si512(d + kb, v);
      }
    }
  }
}

// Tile shapes, loaded once per thread (the configuration is per-thread state).
struct alignas(64) TileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};
thread_local bool t_tiles_configured = false;

__attribute__((target("amx-tile"))) void configure_tiles() {
  TileConfig cfg{};
  cfg.palette_id = 1;
  for (int t = 0; t < 8; ++t) {  // every tile: 16 rows x 64 bytes
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;
  }
  _tile_loadconfig(&cfg);
  t_tiles_configured = true;
}

__attribute__((target("amx-tile,amx-bf16"))) void kernel_amx_32x32(
    int64_t ksteps, const void* Ap_v, const void* Bp_v, float* C, int64_t ldc, int mr, int nr,
    float alpha, float beta, Store store) {
  if (!t_tiles_configured) configure_tiles();
  const uint16_t* Ap = static_cast<const uint16_t*>(Ap_v);
  const uint16_t* Bp = static_cast<const uint16_t*>(Bp_v);
  const int64_t kcs = 2 * ksteps;       // multiple of 32
  const int64_t a_stride = kcs * 2;     // bytes between rows of the A panel
  constexpr int64_t b_stride = 2 * kAmxNR * 2;  // bytes between pair rows of the B panel
  // A full tile with alpha 1 that adds onto C (later K blocks, beta 1) or overwrites it keeps C
  // in the accumulator tiles: loaded before the K loop (or zeroed), stored straight back after
  // it, instead of a round trip through a stack buffer and an AVX-512 add per row. (tdpbf16ps
  // then also adds onto C's values, flushing subnormal ones to zero as it does its own.)
  const bool in_tiles = mr == kAmxMR && nr == kAmxNR && alpha == 1.f &&
                        (store != Store::ScaleAdd || beta == 1.f);
  const int64_t c_stride = ldc * 4;
  if (in_tiles && store != Store::Overwrite) {
    _tile_loadd(0, C, c_stride);
    _tile_loadd(1, C + 16, c_stride);
    _tile_loadd(2, C + 16 * ldc, c_stride);
    _tile_loadd(3, C + 16 * ldc + 16, c_stride);
  } else {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
  }
  for (int64_t kb = 0; kb < kcs; kb += kAmxK) {
    const uint16_t* b = Bp + (kb / 2) * 2 * kAmxNR;  // pair row kb / 2
    _tile_loadd(4, Ap + kb, a_stride);
    _tile_loadd(5, Ap + 16 * kcs + kb, a_stride);
    _tile_loadd(6, b, b_stride);
    _tile_loadd(7, b + 32, b_stride);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  if (in_tiles) {
    _tile_stored(0, C, c_stride);
    _tile_stored(1, C + 16, c_stride);
    _tile_stored(2, C + 16 * ldc, c_stride);
    _tile_stored(3, C + 16 * ldc + 16, c_stride);
    return;
  }
  alignas(64) float acc[kAmxMR][kAmxNR];
  _tile_stored(0, &acc[0][0], kAmxNR * 4);
  _tile_stored(1, &acc[0][16], kAmxNR * 4);
  _tile_stored(2, &acc[16][0], kAmxNR * 4);
  _tile_stored(3, &acc[16][16], kAmxNR * 4);
  // Write-back row by row through the shared AVX-512 store (alpha, beta, column mask).
  for (int i0 = 0; i0 < mr; i0 += 16) {
    const int rows = mr - i0 < 16 ? mr - i0 : 16;
    for (int i = 0; i < rows; ++i) {
      __m512 c0[1] = {_mm512_load_ps(acc[i0 + i])}, c1[1] = {_mm512_load_ps(acc[i0 + i] + 16)};
      store_rows<1>(c0, c1, C + (i0 + i) * ldc, ldc, nr, alpha, beta, store);
    }
  }
}

// The OS must agree to save the 8 KiB tile state: Linux asks for it per process with
// arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA); XCR0 bits 17-18 say it is enabled.
bool amx_available() {
#if defined(__linux__)
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  const bool amx_bf16 = d & (1u << 22), amx_tile = d & (1u << 24);
  if (!amx_bf16 || !amx_tile) return false;
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  if (((lo >> 17) & 3u) != 3u) return false;
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}
}  // namespace

const KernelDesc& avx512bf16_desc() {
  static const KernelDesc d{"avx512_bf16 14x32 vdpbf16ps (fp32 accumulate)", MR, NR, 768, 1152,
                            768, 2, 2, 2, pack_pairs<MR>, pack_pairs<NR>, kernel_14x32,
                            pack_pairs<MR, 1, float>, pack_pairs<NR, 1, float>};
  return d;
}

const KernelDesc* amx_bf16_desc() {
  static const bool ok = amx_available();
  static const KernelDesc d{"amx_bf16 tdpbf16ps 32x32 (fp32 accumulate)", kAmxMR, kAmxNR, 512,
                            1024, 768, 2, kAmxK, 2, pack_a_amx<uint16_t>,
                            pack_pairs<kAmxNR, kAmxK / 2>, kernel_amx_32x32,
                            pack_a_amx<float>, pack_pairs<kAmxNR, kAmxK / 2, float>};
  return ok ? &d : nullptr;
}

}  // namespace gemm_detail
}  // namespace s2s
