// CUDA-side helpers shared by the .cu files: runtime errors as s2s::Error (never abort), the
// stream of a Context, kernel-side bad-input reports, and a few device math helpers.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "backends/cuda/context.h"
#include "backends/cuda/launch.h"
#include "s2s/error.h"

namespace s2s {
namespace cuda {

// Throws S2S_CUDA (S2S_OUT_OF_MEMORY for cudaErrorMemoryAllocation) naming the op and the call.
[[noreturn]] void throw_cuda_error(cudaError_t e, const char* op, const char* what);

inline void check_cuda(cudaError_t e, const char* op, const char* what) {
  if (e != cudaSuccess) throw_cuda_error(e, op, what);
}

// After a kernel launch: a bad configuration or an earlier asynchronous fault surfaces here.
inline void check_launch(const char* op) { check_cuda(cudaGetLastError(), op, "kernel launch"); }

inline cudaStream_t stream_of(const Context& ctx) { return static_cast<cudaStream_t>(ctx.stream()); }

// Grid size as the unsigned int CUDA wants (launch.h has checked the limits).
inline unsigned grid(int64_t blocks) { return static_cast<unsigned>(blocks); }

// From inside a kernel: record the first bad input (later reports are dropped).
__device__ inline void report_bad_input(unsigned long long* slot, KernelReport op, int64_t index,
                                        int64_t value, int64_t bound) {
  if (atomicCAS(slot, 0ull, static_cast<unsigned long long>(op)) == 0ull) {
    slot[1] = static_cast<unsigned long long>(index);
    slot[2] = static_cast<unsigned long long>(value);
    slot[3] = static_cast<unsigned long long>(bound);
  }
}

// Warp reductions over all 32 lanes (every lane gets the result).
__device__ inline float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ inline double warp_sum(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
// NaN-propagating max (a NaN score must reach the output, as on the CPU).
__device__ inline float nan_max(float a, float b) { return (b > a || b != b) ? b : a; }
__device__ inline float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = nan_max(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Block-wide sum for blocks of up to 1024 threads (a multiple of 32); `scratch` holds 32 floats.
// Every thread gets the result. The order is fixed by the block size: deterministic.
template <typename T>
__device__ inline T block_sum(T v, T* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T r = lane < warps ? scratch[lane] : T(0);
  return warp_sum(r);
}
__device__ inline float block_max(float v, float* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float r = lane < warps ? scratch[lane] : -INFINITY;
  return warp_max(r);
}

// bf16 rounding with dtype.h's exact rule (round to nearest even; NaN keeps its top bits with the
// quiet bit set), so GPU casts give the CPU's bits.
__device__ inline uint16_t f32_to_bf16_bits(float f) {
  const uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
__device__ inline float bf16_bits_to_f32(uint16_t h) { return __uint_as_float(uint32_t(h) << 16); }

// f32 <-> f16 with dtype.h's exact rule (cast.cpp's branch-free form): RNE, subnormals kept,
// overflow to Inf, NaN to the quiet NaN 0x7e00 with its sign. CUDA's __float2half_rn rounds the
// same way but returns a different NaN, so the CPU's bits are reproduced here instead.
__device__ inline uint16_t f32_to_f16_bits(float f) {
  const uint32_t u = __float_as_uint(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t a = u & 0x7fffffffu;
  const uint32_t big = a > 0x7f800000u ? 0x7e00u : 0x7c00u;
  const uint32_t denorm_magic = ((127 - 15) + (23 - 10) + 1) << 23;
  const uint32_t sub =
      __float_as_uint(__fadd_rn(__uint_as_float(a), __uint_as_float(denorm_magic))) - denorm_magic;
  const uint32_t norm = (a + ((15u - 127u) << 23) + 0xfffu + ((a >> 13) & 1u)) >> 13;
  const uint32_t h = a >= 0x47800000u ? big : (a < 0x38800000u ? sub : norm);
  return static_cast<uint16_t>(sign | h);
}
__device__ inline float f16_bits_to_f32(uint16_t h) {
  const uint32_t shifted_exp = 0x7c00u << 13;
  uint32_t o = (static_cast<uint32_t>(h) & 0x7fffu) << 13;
  const uint32_t exp = shifted_exp & o;
  o += (127u - 15u) << 23;
  const uint32_t inf_nan = o + ((128u - 16u) << 23);
  const uint32_t sub = __float_as_uint(__fsub_rn(__uint_as_float(o + (1u << 23)), __uint_as_float(113u << 23)));
  o = exp == shifted_exp ? inf_nan : (exp == 0 ? sub : o);
  return __uint_as_float(o | ((static_cast<uint32_t>(h) & 0x8000u) << 16));
}
// A 16-bit element of dtype `t` (BF16 or F16) widened to f32.
__device__ inline float widen16(uint16_t h, bool is_bf16) {
  return is_bf16 ? bf16_bits_to_f32(h) : f16_bits_to_f32(h);
}

// Grid-stride loop calling f(i) for i in [0, n): the body of every elementwise op. Needs nvcc's
// --extended-lambda (CMakeLists.txt sets it) for the __device__ lambdas the ops pass.
template <typename F>
__global__ void for_each_kernel(int64_t n, F f) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    f(i);
  }
}
template <typename F>
void for_each(Context& ctx, int64_t n, const char* op, F f) {
  const Launch l = elementwise_launch(n);
  if (l.blocks == 0) return;
  ctx.activate();
  for_each_kernel<<<grid(l.blocks), l.threads, 0, stream_of(ctx)>>>(n, f);
  check_launch(op);
}

}  // namespace cuda
}  // namespace s2s
