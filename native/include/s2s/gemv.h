// gemv: the matrix product of a few rows, y (M,N) = x (M,K) op(W) + bias, for M <= kGemvMaxRows
// (decoding: one token per sequence, a handful of sequences). At that size the work is bound by
// reading W once from memory, so these kernels stream W exactly once, in its stored layout, with
// no packing (a packed GEMM copies all of W on every call), and keep x in L1.
//
//   W (N,K), `out_in` = true:  torch.nn.Linear's weight, y[m,n] = <x[m,:], W[n,:]>
//   W (K,N), `out_in` = false: transformers' Conv1D weight (GPT-2), y[m,:] = sum_k x[m,k] W[k,:]
// gemv_f32 reads f32 W; gemv_bf16 reads bf16 W (raw bits) as bf16: x is rounded to bf16 first
// (round to nearest even, as linear's bf16 GEMM path does) and products accumulate in fp32, so
// the result equals gemm_bf16's up to summation order. gemv_f16 reads fp16 W (IEEE binary16
// bits) the same way: x rounded to fp16 (f32_to_f16: nearest even, overflow to +-inf), W
// widened exactly, fp32 accumulation, as linear's fp16 GEMM path (gemm_f16_rounding) computes.
// bias (N,) f32 or null. Rows of x, W and
// y are strided by ldx, ldw, ldy elements.
//
// Threads split N into fixed blocks (independent of timing): each y element is computed by one
// thread in a fixed order, so results are bit-identical run to run at a fixed thread count.
// Paths: AVX-512 (vdpbf16ps for bf16 W with out_in when the CPU has AVX512_BF16; vcvtph2ps
// for f16 W), AVX2+FMA (F16C for f16 W), and a portable scalar one, chosen by the active ISA
// (s2s/cpu_features.h).
#pragma once
#include <cstdint>

#include "s2s/dtype.h"

namespace s2s {

constexpr int64_t kGemvMaxRows = 8;

void gemv_f32(bool out_in, int64_t M, int64_t N, int64_t K, const float* x, int64_t ldx,
              const float* W, int64_t ldw, const float* bias, float* y, int64_t ldy);

void gemv_bf16(bool out_in, int64_t M, int64_t N, int64_t K, const float* x, int64_t ldx,
               const uint16_t* W, int64_t ldw, const float* bias, float* y, int64_t ldy);

void gemv_f16(bool out_in, int64_t M, int64_t N, int64_t K, const float* x, int64_t ldx,
              const uint16_t* W, int64_t ldw, const float* bias, float* y, int64_t ldy);

// Plain loops in double (bf16 / f16: x rounded to W's format first): the test oracle. Any M.
void gemv_reference(bool out_in, DType w_dtype, int64_t M, int64_t N, int64_t K, const float* x,
                    int64_t ldx, const void* W, int64_t ldw, const float* bias, float* y,
                    int64_t ldy);

// The kernels the active ISA runs, e.g. "avx512 f32 4x16" (for doctor).
const char* gemv_kernel_name(DType w_dtype);

}  // namespace s2s
