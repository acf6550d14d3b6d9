// PLACEHOLDER until the packed kernels land: forwards to the reference loops.
#include "s2s/gemm.h"

namespace s2s {
void gemm_f32(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
              int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  gemm_f32_reference(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
void gemm_bf16(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A,
               int64_t lda, const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  gemm_bf16_reference(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
const char* gemm_kernel_name(DType) { return "reference"; }
}  // namespace s2s
