// GEMM on the GPU through cuBLASLt, with s2s::gemm_f32's row-major convention:
//   C (M,N) f32 = alpha * op(A) * op(B) + beta * C, op(A) (M,K), op(B) (K,N), row strides lda,
//   ldb, ldc; A stored (K,M) when trans_a, B stored (N,K) when trans_b.
// A and B are both `ab` typed: F32 (fp32 GEMM; TF32 tensor cores when the context allows it),
// BF16 or F16 (tensor cores, fp32 accumulation and fp32 C; gemm_rounded: a 16-bit C). beta == 0:
// C is write-only.
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

// D = op(A) op(B) + C (+ bias): the product added onto another matrix C that it leaves as it
// is (cuBLASLt's C input with beta 1, D its output), C and D f32 with row stride ldd. For a
// linear whose output only a residual add reads (nn::linear_residual): the sum without
// writing the product and reading it back. C == D is an in-place accumulation; otherwise K > 0.
void gemm_onto(Context& ctx, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
               const void* A, int64_t lda, const void* B, int64_t ldb, DType ab, const float* C,
               float* D, int64_t ldd, const float* bias = nullptr);
// How many of ctx's gemm_onto calls wrote the product and added C with a kernel (cuBLASLt
// refused C beside a separate D, or ContextOptions::gemm_c_input is off): bench_cuda_train
// reports it, since such a call saves nothing over the separate add.
int64_t gemm_onto_through_add(Context& ctx);

// The same product (beta 0) written in the 16-bit operands' dtype ab (BF16 or F16): each value
// is gemm()'s fp32 value, bias added, rounded to nearest even (what a cast of gemm()'s C gives),
// by cuBLASLt's epilogue (f32 bias, 16-bit D), or through f32 scratch and a rounding kernel
// where it has no such algorithm. For an output only 16-bit consumers read (GPT-2's q, k, v).
void gemm_rounded(Context& ctx, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                  const void* A, int64_t lda, const void* B, int64_t ldb, DType ab, void* C,
                  int64_t ldc, const float* bias = nullptr);
// How many of ctx's gemm_rounded calls went through f32 scratch (no cuBLASLt algorithm for a
// 16-bit D with an f32 bias, or the epilogue turned off): bench_cuda_train reports it, since a
// GPU that takes that way saves nothing over a separate rounding pass.
int64_t gemm_rounded_through_scratch(Context& ctx);

}  // namespace cuda
}  // namespace s2s
