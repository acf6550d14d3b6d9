// CUDA-side helpers shared by the .cu files: runtime errors as s2s::Error (never abort), the
// stream of a Context, kernel-side bad-input reports, and a few device math helpers.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "backends/cuda/context.h"
#include "backends/cuda/half_bits.h"
#include "backends/cuda/launch.h"
#include "s2s/error.h"
#include "s2s/tensor.h"

namespace s2s {
namespace cuda {

// Throws S2S_CUDA (S2S_OUT_OF_MEMORY for cudaErrorMemoryAllocation) naming the op and the call.
[[noreturn]] void throw_cuda_error(cudaError_t e, const char* op, const char* what);

inline void check_cuda(cudaError_t e, const char* op, const char* what) {
  if (e != cudaSuccess) throw_cuda_error(e, op, what);
}

// After a kernel launch: a bad configuration or an earlier asynchronous fault surfaces here.
inline void check_launch(const char* op) { check_cuda(cudaGetLastError(), op, "kernel launch"); }

// The context's stream, for work queued now: its device is made current first, so a launch,
// copy or fill can never go to a stream of another GPU than the current one (which the runtime
// refuses), whichever model's op ran last on this thread.
inline cudaStream_t stream_of(const Context& ctx) {
  ctx.activate();
  return static_cast<cudaStream_t>(ctx.stream());
}

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

// An op's output that a 16-bit linear reads next: f32 as computed, or bf16 / f16 bits rounded
// from the very value the f32 output would hold (what the linear would round it to), so the
// consumer's products are unchanged and the separate rounding pass, and half the bytes, go.
struct ActivationOut {
  void* data;
  DType dtype;
  __device__ void store(int64_t i, float v) const {
    if (dtype == DType::F32) {
      static_cast<float*>(data)[i] = v;
    } else {
      static_cast<uint16_t*>(data)[i] =
          dtype == DType::BF16 ? f32_to_bf16_bits(v) : f32_to_f16_bits(v);
    }
  }
};
// A backward op's gradient element: dst = g where the gradient is fresh (overwrite: its memory
// may hold garbage and is never read, so no zero-fill pass before it), else dst += g.
__device__ inline void write_grad(float* dst, float g, bool overwrite) {
  if (overwrite) {
    *dst = g;
  } else {
    *dst += g;
  }
}

// A gated op's gradient output (opu::expect_gated_grads): f32, written or accumulated, or bf16
// bits when overwritten (the f32 value rounded as a bf16 linear's backward would round it).
struct GradOut {
  void* data;  // nullptr: not wanted
  bool bf16;
  __device__ void put(int64_t i, float g, bool overwrite) const {
    if (bf16) {
      static_cast<uint16_t*>(data)[i] = f32_to_bf16_bits(g);
    } else {
      write_grad(static_cast<float*>(data) + i, g, overwrite);
    }
  }
};

// `out` as an ActivationOut: f32, bf16 or f16, contiguous, of `like`'s shape.
ActivationOut activation_out(const Tensor& out, const Tensor& like, const char* op);

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

// Multi-tensor launches (adamw, grad_norm): a table of tensors, each with `first_block`, the
// blocks of the tensors before it (in order, none empty); block b works on the last entry whose
// first_block <= b. A binary search per block: a few hundred entries cost nine steps.
template <typename Entry>
__device__ inline const Entry& entry_of_block(const Entry* table, int count, int64_t block) {
  int lo = 0, hi = count - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (table[mid].first_block <= block) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return table[lo];
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
  for_each_kernel<F><<<grid(l.blocks), l.threads, 0, stream_of(ctx)>>>(n, f);
  check_launch(op);
}

}  // namespace cuda
}  // namespace s2s
