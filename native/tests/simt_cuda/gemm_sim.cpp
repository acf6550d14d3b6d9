// cuda::gemm (backends/cuda/gemm.h) for the simulated device, in place of cuBLASLt (which the
// simulator cannot run): the same row-major contract through the CPU's own GEMMs, so a GEMM on the
// simulated device gives the CPU backend's bits and what differs between the backends in the
// sim tests is the CUDA kernels' doing. TF32 is treated as fp32.
#include "s2s/gemm.h"

#include "backends/cuda/gemm.h"
#include "s2s/dtype.h"
#include "s2s/error.h"

namespace s2s {
namespace cuda {

struct GemmState {};
void destroy_gemm_state(GemmState* state) { delete state; }

void gemm(Context&, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
          const void* A, int64_t lda, const void* B, int64_t ldb, DType ab, float beta, float* C,
          int64_t ldc) {
  switch (ab) {
    case DType::F32:
      gemm_f32(trans_a, trans_b, M, N, K, alpha, static_cast<const float*>(A), lda,
               static_cast<const float*>(B), ldb, beta, C, ldc);
      return;
    case DType::BF16:
      gemm_bf16(trans_a, trans_b, M, N, K, alpha, static_cast<const uint16_t*>(A), lda,
                static_cast<const uint16_t*>(B), ldb, beta, C, ldc);
      return;
    case DType::F16:
      gemm_f16_rounding(trans_a, trans_b, M, N, K, alpha, A, DType::F16, lda, B, DType::F16, ldb,
                        beta, C, ldc);
      return;
    default:
      fail(code::kDType, "gemm", "expected f32, bf16 or f16 operands, got ", dtype_name(ab));
  }
}

}  // namespace cuda
}  // namespace s2s
