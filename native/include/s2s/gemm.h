// GEMM, ours: C = alpha * op(A) * op(B) + beta * C, row-major, op(X) = X or X^T.
//
//   op(A) is (M, K): A is stored (M, K) with row stride lda, or (K, M) when trans_a.
//   op(B) is (K, N): B is stored (K, N) with row stride ldb, or (N, K) when trans_b.
//   C is (M, N) with row stride ldc. beta == 0 means C is write-only (NaNs in C are ignored).
//
// The four transpose combinations cover what training needs: y = x W^T (forward, trans_b),
// dx = dy W (no transposes), dW += dy^T x (trans_a, beta = 1).
// gemm_bf16 takes bf16 operands (raw uint16 bits) and accumulates and writes fp32;
// gemm_f16_rounding does the same for fp16 operands (or fp32 ones rounded to fp16).
// Both are packed and cache-blocked, run on the thread pool, and pick the microkernel of the
// active ISA (s2s/cpu_features.h). Results are bit-identical run to run at a fixed thread count:
// each element of C is owned by one thread and its K loop runs in a fixed order.
#pragma once
#include <cstdint>

#include "s2s/tensor.h"

namespace s2s {

void gemm_f32(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
              int64_t ldc);

void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
               const uint16_t* A, int64_t lda, const uint16_t* B, int64_t ldb, float beta,
               float* C, int64_t ldc);

// bf16 products with fp32 accumulation where each operand is either bf16 bits (DType::BF16) or
// fp32 (DType::F32) that is rounded to bf16 as it is packed (round to nearest even, NaN kept:
// cast_f32_to_bf16's rounding). The same bits as gemm_bf16 on rounded copies of the fp32
// operands, without writing those copies (leading dimensions count elements of each operand's
// own dtype).
void gemm_bf16_rounding(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                        const void* A, DType a_dtype, int64_t lda, const void* B, DType b_dtype,
                        int64_t ldb, float beta, float* C, int64_t ldc);

// fp16 operands with fp32 accumulation (torch.autocast(float16)'s matmul): each operand is either
// IEEE fp16 bits (DType::F16) or fp32 (DType::F32) rounded to fp16 as it is packed (exactly
// f32_to_f16: nearest even, overflow to +-Inf, NaN to the canonical quiet NaN), then widened to
// fp32 (exact) so the fp32 microkernel of the active ISA does the products. The result is bit
// for bit gemm_f32 on rounded copies of the operands (same kernel, same blocking), at any thread
// count. Leading dimensions count elements of each operand's own dtype.
void gemm_f16_rounding(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                       const void* A, DType a_dtype, int64_t lda, const void* B, DType b_dtype,
                       int64_t ldb, float beta, float* C, int64_t ldc);

// Plain triple loops, the oracles for the tests (double accumulation, so they are the exact
// answer to within fp32 output rounding).
void gemm_f32_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                        const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                        float* C, int64_t ldc);
void gemm_bf16_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                         float alpha, const uint16_t* A, int64_t lda, const uint16_t* B,
                         int64_t ldb, float beta, float* C, int64_t ldc);
void gemm_f16_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                        float alpha, const uint16_t* A, int64_t lda, const uint16_t* B,
                        int64_t ldb, float beta, float* C, int64_t ldc);

// Tensor entry with checks (the N-API layer calls this): a, b 2-D contiguous, both f32 or both
// bf16; c (M, N) f32 contiguous.
void matmul(const Tensor& c, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b,
            float alpha, float beta);
// The checks matmul runs, alone (to fail on the caller's thread before queueing async work).
void matmul_check(const Tensor& c, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b);

// Which microkernel each dtype uses under the active ISA, e.g. "avx512 16x32 fma" (for doctor).
const char* gemm_kernel_name(DType dtype);

}  // namespace s2s
