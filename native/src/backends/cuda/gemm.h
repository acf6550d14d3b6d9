// GEMM on the GPU through cuBLASLt, with s2s::gemm_f32's row-major convention:
//   C (M,N) f32 = alpha * op(A) * op(B) + beta * C, op(A) (M,K), op(B) (K,N), row strides lda,
//   ldb, ldc; A stored (K,M) when trans_a, B stored (N,K) when trans_b.
// A and B are both `ab` typed: F32 (fp32 GEMM; TF32 tensor cores when the context allows it),
// BF16 or F16 (tensor cores, fp32 accumulation and fp32 C). beta == 0: C is write-only.
// bias (N floats, optional): C[i][j] += bias[j] after the product, in cuBLASLt's epilogue (the
// bias is added to the fp32 result, as the CPU's separate add does), or by a kernel where the
// context turns the epilogue off or cuBLASLt has no algorithm with it.
// Plans (descriptors + the heuristic's algorithm) are cached per shape, dtype and pointer
// alignment in the context. cuBLASLt failures become S2S_CUDA naming the shape.
// gemm.cu is the only caller of cuBLASLt (loaded at run time, cublaslt_api.h).
#pragma once
#include <cstdint>

#include "backends/cuda/context.h"
#include "s2s/dtype.h"

namespace s2s {
namespace cuda {

void gemm(Context& ctx, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
          const void* A, int64_t lda, const void* B, int64_t ldb, DType ab, float beta, float* C,
          int64_t ldc, const float* bias = nullptr);

}  // namespace cuda
}  // namespace s2s
