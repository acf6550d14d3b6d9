// NEON (aarch64) fp32 GEMM path: an 8x8 microkernel on the portable packing; bf16 operands are
// widened to fp32 while packing. Built only on arm64 (CMake drops *_neon.cpp elsewhere); kept
// deliberately simple, since it cannot be run on the x86 machines that test this tree.
//
// Napkin: 32 x 128-bit registers; 8 rows x 2 q-registers = 16 accumulators + 2 for the B row
// + 2 holding 8 A values (used lane by lane with vfmaq_laneq_f32) = 20. 2 FMA pipes x 4 lanes x
// 2 flops = 16 flop/cycle on an M1/Neoverse-class core; 16 chains cover a 4-cycle latency.
#if defined(__aarch64__)
#include <arm_neon.h>

#include <cstdint>

#include "backends/cpu/gemm_internal.h"

namespace s2s {
namespace gemm_detail {
namespace {

constexpr int MR = 8;
constexpr int NR = 8;

void kernel_8x8(int64_t kc, const void* Ap_v, const void* Bp_v, float* C, int64_t ldc, int mr,
                int nr, float alpha, float beta, Store store) {
  const float* Ap = static_cast<const float*>(Ap_v);
  const float* Bp = static_cast<const float*>(Bp_v);
  float32x4_t c[MR][2];
  for (int i = 0; i < MR; ++i) c[i][0] = c[i][1] = vdupq_n_f32(0.f);
  for (int64_t k = 0; k < kc; ++k) {
    const float32x4_t b0 = vld1q_f32(Bp), b1 = vld1q_f32(Bp + 4);
    const float32x4_t a0 = vld1q_f32(Ap), a1 = vld1q_f32(Ap + 4);
    c[0][0] = vfmaq_laneq_f32(c[0][0], b0, a0, 0); c[0][1] = vfmaq_laneq_f32(c[0][1], b1, a0, 0);
    c[1][0] = vfmaq_laneq_f32(c[1][0], b0, a0, 1); c[1][1] = vfmaq_laneq_f32(c[1][1], b1, a0, 1);
    c[2][0] = vfmaq_laneq_f32(c[2][0], b0, a0, 2); c[2][1] = vfmaq_laneq_f32(c[2][1], b1, a0, 2);
    c[3][0] = vfmaq_laneq_f32(c[3][0], b0, a0, 3); c[3][1] = vfmaq_laneq_f32(c[3][1], b1, a0, 3);
    c[4][0] = vfmaq_laneq_f32(c[4][0], b0, a1, 0); c[4][1] = vfmaq_laneq_f32(c[4][1], b1, a1, 0);
    c[5][0] = vfmaq_laneq_f32(c[5][0], b0, a1, 1); c[5][1] = vfmaq_laneq_f32(c[5][1], b1, a1, 1);
    c[6][0] = vfmaq_laneq_f32(c[6][0], b0, a1, 2); c[6][1] = vfmaq_laneq_f32(c[6][1], b1, a1, 2);
    c[7][0] = vfmaq_laneq_f32(c[7][0], b0, a1, 3); c[7][1] = vfmaq_laneq_f32(c[7][1], b1, a1, 3);
    Ap += MR;
    Bp += NR;
  }
  // Write back through a small tile: simple, and edge tiles need it anyway.
  float tile[MR][NR];
  for (int i = 0; i < MR; ++i) {
    vst1q_f32(tile[i], vmulq_n_f32(c[i][0], alpha));
    vst1q_f32(tile[i] + 4, vmulq_n_f32(c[i][1], alpha));
  }
  for (int i = 0; i < mr; ++i) {
    float* row = C + i * ldc;
    for (int j = 0; j < nr; ++j) {
      if (store == Store::Overwrite) row[j] = tile[i][j];
      else if (store == Store::ScaleAdd) row[j] = tile[i][j] + beta * row[j];
      else row[j] = tile[i][j] + row[j];
    }
  }
}

}  // namespace

const KernelDesc& neon_desc(bool src_bf16) {
  static const KernelDesc f32{"neon 8x8 fp32 fma", MR, NR, 256, 512, 1024, 1, 1, 4,
                              pack_generic<MR, float>, pack_generic<NR, float>, kernel_8x8};
  static const KernelDesc bf16{"neon 8x8 fp32 fma (bf16 widened to fp32 in packing)",
                               MR, NR, 256, 512, 1024, 1, 1, 4,
                               pack_generic<MR, uint16_t>, pack_generic<NR, uint16_t>,
                               kernel_8x8};
  return src_bf16 ? bf16 : f32;
}

// fp16 operands: the portable scalar conversions (f32_to_f16 / f16_to_f32). NEON's fcvtn would
// also round to nearest even, but its NaN results follow FPCR (default NaN or payload), and this
// path cannot be tested here: exactness first.
const KernelDesc& neon_f16_desc() {
  static const KernelDesc f16{"neon 8x8 fp32 fma (f16 widened to fp32 in packing, scalar)",
                              MR, NR, 256, 512, 1024, 1, 1, 4,
                              pack_generic<MR, F16Bits>, pack_generic<NR, F16Bits>, kernel_8x8,
                              pack_generic<MR, F32RoundedToF16>, pack_generic<NR, F32RoundedToF16>};
  return f16;
}

}  // namespace gemm_detail
}  // namespace s2s
#endif  // __aarch64__
