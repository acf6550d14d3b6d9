// Building blocks of the row-wise kernels (norms, softmax, cross-entropy) and of the
// deterministic column sums (dweight/dbias). Launch shapes come from launch.h.
#pragma once
#include "backends/cuda/check.cuh"

namespace s2s {
namespace cuda {

// The threads working on one row: a warp (rows of <= 1024 columns) or the whole block.
struct RowTeam {
  int tid;         // 0 .. size-1
  int size;        // 32 or blockDim.x
  bool warp;
  float* scratch;  // 32 floats of shared memory (block mode)
  double* dscratch;

  __device__ float sum(float v) const { return warp ? warp_sum(v) : block_sum(v, scratch); }
  __device__ double sum(double v) const { return warp ? warp_sum(v) : block_sum(v, dscratch); }
  __device__ float max(float v) const { return warp ? warp_max(v) : block_max(v, scratch); }
};

// Which row this thread works on, per launch.h's row_launch; false when the row is past the
// end (a whole warp, or a whole block, returns together, so no reduction is left waiting).
__device__ inline bool row_of(int64_t rows, int rows_per_block, float* scratch, double* dscratch,
                              RowTeam* team, int64_t* row) {
  if (rows_per_block > 1) {
    *row = int64_t(blockIdx.x) * rows_per_block + threadIdx.x / 32;
    *team = RowTeam{int(threadIdx.x % 32), 32, true, scratch, dscratch};
  } else {
    *row = blockIdx.x;
    *team = RowTeam{int(threadIdx.x), int(blockDim.x), false, scratch, dscratch};
  }
  return *row < rows;
}

// Pass 1 of a column sum: partial[chunk, c] = sum over the chunk's rows, in row order, of f(r, c).
template <typename F>
__global__ void column_partials_kernel(int64_t rows, int64_t cols, F f, float* partial) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  const int64_t r0 = int64_t(blockIdx.y) * kReduceChunkRows;
  const int64_t r1 = r0 + kReduceChunkRows < rows ? r0 + kReduceChunkRows : rows;
  float acc = 0.f;
  for (int64_t r = r0; r < r1; ++r) acc += f(r, c);
  partial[int64_t(blockIdx.y) * cols + c] = acc;
}

// Pass 2: dst[c] += sum of the partials in chunk order.
static __global__ void column_finish_kernel(int64_t chunks, int64_t cols, const float* partial,
                                            float* dst) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  float acc = 0.f;
  for (int64_t k = 0; k < chunks; ++k) acc += partial[k * cols + c];
  dst[c] += acc;
}

// dst (cols,) += sum over rows of f(r, c), deterministically (launch.h's column_reduce_plan).
template <typename F>
void column_sum_into(Context& ctx, int64_t rows, int64_t cols, float* dst, F f, const char* op) {
  const ColumnReducePlan p = column_reduce_plan(rows, cols);
  if (p.chunks == 0) return;
  ArenaScope scope(ctx.arena());
  float* partial = ctx.arena().allocate_array<float>(size_t(p.chunks * cols));
  column_partials_kernel<F><<<dim3(grid(p.column_blocks), grid(p.chunks)), p.threads, 0,
                              stream_of(ctx)>>>(
      rows, cols, f, partial);
  check_launch(op);
  column_finish_kernel<<<grid(p.column_blocks), p.threads, 0, stream_of(ctx)>>>(p.chunks, cols,
                                                                              partial, dst);
  check_launch(op);
}

}  // namespace cuda
}  // namespace s2s
