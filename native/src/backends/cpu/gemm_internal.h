// Internal to the CPU GEMM: the table one ISA path fills in (register tile, cache blocks, packing
// routines, microkernel), shared by the driver (gemm.cpp) and the per-ISA kernel files
// (gemm_*_avx512.cpp, gemm_f32_avx2.cpp, gemm_f32_neon.cpp). Nothing here is public API.
#pragma once
#include <cstddef>
#include <cstdint>

#include "s2s/dtype.h"

namespace s2s {
namespace gemm_detail {

// How a microkernel combines its register tile `acc` (mr x nr) with C.
enum class Store : int {
  Overwrite = 0,   // C = alpha * acc               (first K block, beta == 0: C never read)
  ScaleAdd = 1,    // C = alpha * acc + beta * C    (first K block, beta != 0)
  Accumulate = 2,  // C = alpha * acc + C           (later K blocks)
};

// Packs a block of an operand into register-tile panels.
//
// The operand is viewed as X(r, k), r the row of op(A) (for A) or the column of op(B) (for B):
//   k_contig: X(r, k) = src[r * ld + k]   (A not transposed; B transposed, i.e. W in x W^T)
//   else:     X(r, k) = src[k * ld + r]
// Rows [r0, r0 + rows) and k in [k0, k0 + kc) go to ceil(rows / R) panels; panel p holds rows
// p*R .. p*R+R-1, k-major: for fp32, dst[p * R * kc + k * R + r]. Rows past `rows` are zero so
// the kernel may compute a full tile. For the bf16 pair layout (vdpbf16ps), k steps in pairs:
// dst[p * R * kc2 + (k/2) * 2R + 2r + (k & 1)] with kc2 = kc rounded up to even, odd tail zero.
// `src` element type (float or bf16 bits) is fixed by the routine.
using PackFn = void (*)(const void* src, int64_t ld, bool k_contig, int64_t r0, int64_t rows,
                        int64_t k0, int64_t kc, void* dst);

// acc(mr x nr) = sum over the packed K steps of Ap(:, k) * Bp(k, :), then C per `store`.
// Ap is one A panel (MR rows, padded), Bp one B panel (NR columns, padded); ksteps is the
// packed K length kcs (see KernelDesc::kalign) divided by kpair. mr <= MR, nr <= NR give the valid corner.
using KernelFn = void (*)(int64_t ksteps, const void* Ap, const void* Bp, float* C, int64_t ldc,
                          int mr, int nr, float alpha, float beta, Store store);

// The same microkernel with its operands' k steps `a_ks` and `b_ks` floats apart: MR and NR
// for packed panels, or the source's leading dimension to read an operand where it lies when
// each k step's values are already consecutive (A transposed: op(A)(i, k) = A[k * lda + i];
// B not transposed: op(B)(k, j) = B[k * ldb + j]). b_in_place: B's k steps hold only nr valid
// values (no zero padding); they are read under a mask. A reads only its mr valid rows anyway.
using StridedKernelFn = void (*)(int64_t kc, const float* Ap, int64_t a_ks, const float* Bp,
                                 int64_t b_ks, bool b_in_place, float* C, int64_t ldc, int mr,
                                 int nr, float alpha, float beta, Store store);

struct KernelDesc {
  const char* name;
  int mr, nr;             // register tile (rows of C x columns of C)
  int64_t kc;             // K block: one A panel (MR x KC) stays in L1 across the B panels
  int64_t mc;             // M block: the packed A block (MC x KC) per thread
  int64_t nc;             // N block: the packed B block (KC x NC) stays in L2
  int kpair;              // 1: fp32 layout; 2: bf16 pair layout (ksteps = kcs / 2)
  int kalign;             // packed K length kcs = kc rounded up to this (zeros beyond kc)
  size_t packed_elem;     // bytes per packed element (4 fp32, 2 bf16)
  PackFn pack_a, pack_b;  // pack_a uses R = mr, pack_b uses R = nr
  KernelFn kernel;
  // bf16 paths only, optional: the same packing from an fp32 source, each value rounded to bf16
  // on the way (round to nearest even, NaN quieted: exactly cast_f32_to_bf16), for
  // gemm_bf16_rounding. nullptr: the driver rounds the operand into a scratch copy first.
  PackFn pack_a_f32 = nullptr, pack_b_f32 = nullptr;
  // The f16 paths (fp32 kernels) fill these too: the fp32 source rounded to fp16 (exactly
  // f32_to_f16) and widened back, for gemm_f16_rounding. Required there (no scratch fallback).
  // fp32 layout with fp32 sources only, optional: the microkernel with either operand read
  // where it lies (see StridedKernelFn), for small products where packing costs as much as
  // the multiply. nullptr: always packed.
  StridedKernelFn kernel_strided = nullptr;
};

// Source element types of the fp16 packing routines (gemm_f16_rounding). Distinct types so the
// per-ISA loaders overload on them (uint16_t already means bf16 bits, float exact fp32):
//   F16Bits         IEEE binary16 bits, widened to fp32 (exact).
//   F32RoundedToF16 an fp32 value rounded to fp16 (f32_to_f16: nearest even, overflow to +-Inf,
//                   every NaN to the canonical quiet NaN sign|0x7e00) and widened back.
struct F16Bits { uint16_t bits; };
struct F32RoundedToF16 { float value; };
static_assert(sizeof(F16Bits) == 2 && sizeof(F32RoundedToF16) == 4, "element-sized wrappers");

// Per-ISA tables. `src_bf16` selects packing routines that read bf16 operands (converting to
// fp32 when the kernel is fp32). The *_f16_desc tables are the same kernel and blocking as the
// fp32 table of that ISA (so gemm_f16_rounding gives gemm_f32's bits on rounded copies), with
// packing from F16Bits (pack_a/pack_b) and F32RoundedToF16 (pack_a_f32/pack_b_f32).
const KernelDesc& scalar_desc(bool src_bf16);
const KernelDesc& scalar_f16_desc();
#if defined(S2S_HAVE_X86_KERNELS)
const KernelDesc& avx2_desc(bool src_bf16);
const KernelDesc& avx2_f16_desc();  // F16C conversions (Isa::Avx2 requires f16c)
const KernelDesc& avx512_desc(bool src_bf16);
const KernelDesc& avx512_f16_desc();
const KernelDesc& avx512bf16_desc();  // bf16 operands, vdpbf16ps
// AMX (tdpbf16ps) for bf16 operands: nullptr when the CPU lacks amx_bf16 or the OS refuses
// the tile state (Linux needs arch_prctl(ARCH_REQ_XCOMP_PERM)). Used under Isa::Avx512Bf16 in
// place of vdpbf16ps unless set_amx_enabled(false) / S2S_GEMM_AMX=0.
const KernelDesc* amx_bf16_desc();
#endif
// Lets tests and benchmarks reach the vdpbf16ps path on AMX machines (default: enabled).
void set_amx_enabled(bool on);
bool amx_enabled();
#if defined(S2S_HAVE_NEON_KERNELS)
const KernelDesc& neon_desc(bool src_bf16);
const KernelDesc& neon_f16_desc();  // scalar conversions (f32_to_f16's exact NaN rule)
#endif

// Portable packing (fp32 layout, source float, bf16, or the fp16 wrappers above), used by the
// paths without their own.
// In an unnamed namespace on purpose: every kernel TU gets its own copy compiled with its own
// ISA flags, so the linker can never hand an AVX-512 build of it to the baseline path.
namespace {
inline float load_as_f32(const float* p) { return *p; }
inline float load_as_f32(const uint16_t* p) {
  const uint32_t u = static_cast<uint32_t>(*p) << 16;  // bf16 -> fp32 is exact
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}
inline float load_as_f32(const F16Bits* p) { return f16_to_f32(p->bits); }
inline float load_as_f32(const F32RoundedToF16* p) { return f16_to_f32(f32_to_f16(p->value)); }

template <int R, typename Src>
void pack_generic(const void* src_v, int64_t ld, bool k_contig, int64_t r0, int64_t rows,
                  int64_t k0, int64_t kc, void* dst_v) {
  const Src* src = static_cast<const Src*>(src_v);
  float* dst0 = static_cast<float*>(dst_v);
  if (!k_contig) {
    // Row k of the source holds the values of step k of every panel: walk each source row once
    // across all panels (k outer), so the reads stream instead of hopping rows panel by panel.
    for (int64_t k = 0; k < kc; ++k) {
      const Src* s = src + (k0 + k) * ld + r0;
      for (int64_t p0 = 0; p0 < rows; p0 += R) {
        const int n = rows - p0 < R ? static_cast<int>(rows - p0) : R;
        float* d = dst0 + p0 * kc + k * R;  // panel p0 / R starts at p0 * kc
        for (int r = 0; r < n; ++r) d[r] = load_as_f32(s + p0 + r);
        for (int r = n; r < R; ++r) d[r] = 0.f;
      }
    }
    return;
  }
  for (int64_t p0 = 0; p0 < rows; p0 += R) {
    float* dst = dst0 + p0 * kc;
    const int n = rows - p0 < R ? static_cast<int>(rows - p0) : R;
    // Row r is contiguous in k: walk each row once, scatter with stride R.
    for (int r = 0; r < n; ++r) {
      const Src* s = src + (r0 + p0 + r) * ld + k0;
      for (int64_t k = 0; k < kc; ++k) dst[k * R + r] = load_as_f32(s + k);
    }
    if (n < R) {
      for (int64_t k = 0; k < kc; ++k)
        for (int r = n; r < R; ++r) dst[k * R + r] = 0.f;
    }
  }
}
}  // namespace

}  // namespace gemm_detail
}  // namespace s2s
