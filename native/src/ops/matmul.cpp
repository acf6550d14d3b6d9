// matmul: the checked Tensor entry to the GEMMs, and the plain reference loops they are tested
// against. The fast paths live in backends/cpu/gemm*.cpp.
#include "s2s/gemm.h"

namespace s2s {

namespace {
template <typename T, typename ToFloat>
void gemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                    const T* A, int64_t lda, const T* B, int64_t ldb, float beta, float* C,
                    int64_t ldc, ToFloat to_float) {
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      double acc = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double a = to_float(trans_a ? A[k * lda + i] : A[i * lda + k]);
        const double b = to_float(trans_b ? B[j * ldb + k] : B[k * ldb + j]);
        acc += a * b;
      }
      const double prior = beta == 0.f ? 0.0 : double(beta) * C[i * ldc + j];
      C[i * ldc + j] = static_cast<float>(double(alpha) * acc + prior);
    }
  }
}
}  // namespace

void gemm_f32_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                        const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                        float* C, int64_t ldc) {
  gemm_reference(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,
                 [](float x) { return x; });
}

void gemm_bf16_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                         float alpha, const uint16_t* A, int64_t lda, const uint16_t* B,
                         int64_t ldb, float beta, float* C, int64_t ldc) {
  gemm_reference(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,
                 [](uint16_t x) { return bf16_to_f32(x); });
}

void gemm_f16_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                        float alpha, const uint16_t* A, int64_t lda, const uint16_t* B,
                        int64_t ldb, float beta, float* C, int64_t ldc) {
  gemm_reference(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,
                 [](uint16_t x) { return f16_to_f32(x); });
}

void matmul_check(const Tensor& c, const Tensor& a, const Tensor& b, bool trans_a,
                  bool trans_b) {
  const char* op = "matmul";
  S2S_REQUIRE(a.ndim == 2, code::kShape, op, "expected a to be 2-D, got ", a.shape_string());
  S2S_REQUIRE(b.ndim == 2, code::kShape, op, "expected b to be 2-D, got ", b.shape_string());
  S2S_REQUIRE(a.dtype == b.dtype, code::kDType, op, "expected a and b of one dtype, got ",
              dtype_name(a.dtype), " and ", dtype_name(b.dtype));
  S2S_REQUIRE(a.dtype != DType::F16, code::kDType, op,
              "expected float32 or bfloat16 operands, got float16 (the fp16 GEMM is reached through "
              "linear with an f16 weight, not matmul)");
  expect_contiguous(a, op, "a");
  expect_contiguous(b, op, "b");
  const int64_t M = trans_a ? a.shape[1] : a.shape[0];
  const int64_t K = trans_a ? a.shape[0] : a.shape[1];
  const int64_t Kb = trans_b ? b.shape[1] : b.shape[0];
  const int64_t N = trans_b ? b.shape[0] : b.shape[1];
  S2S_REQUIRE(K == Kb, code::kShape, op, "expected inner dimensions to agree, got op(a) (", M,
              ", ", K, ") and op(b) (", Kb, ", ", N, ")");
  expect_f32(c, {M, N}, op, "c");
}

void matmul(const Tensor& c, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b,
            float alpha, float beta) {
  matmul_check(c, a, b, trans_a, trans_b);
  const int64_t M = trans_a ? a.shape[1] : a.shape[0];
  const int64_t K = trans_a ? a.shape[0] : a.shape[1];
  const int64_t N = trans_b ? b.shape[0] : b.shape[1];
  if (a.dtype == DType::F32) {
    gemm_f32(trans_a, trans_b, M, N, K, alpha, a.f32(), a.shape[1], b.f32(), b.shape[1], beta,
             c.f32(), N);
  } else {
    gemm_bf16(trans_a, trans_b, M, N, K, alpha, a.u16(), a.shape[1], b.u16(), b.shape[1], beta,
              c.f32(), N);
  }
}

}  // namespace s2s
