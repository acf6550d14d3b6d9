// Launch shapes of the CUDA kernels: how many blocks and threads each kind of kernel gets, and
// the fixed row chunks of the deterministic column reductions. Plain C++ (no CUDA types), so the
// arithmetic is tested on machines without a GPU (test_cuda_host.cpp); the .cu files use only
// these helpers to size their grids.
#pragma once
#include <cstdint>

#include "s2s/error.h"

namespace s2s {
namespace cuda {

constexpr int kWarp = 32;
constexpr int64_t kMaxGridX = 2147483647;  // gridDim.x limit
constexpr int64_t kMaxGridYZ = 65535;      // gridDim.y / gridDim.z limit

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

struct Launch {
  int64_t blocks = 0;  // 0: nothing to do, skip the launch
  int threads = 0;
};

// Elementwise kernels: grid-stride loops over n elements, `threads` per block, at most
// max_blocks blocks (enough to fill any GPU; each thread then loops).
inline Launch elementwise_launch(int64_t n, int threads = 256, int64_t max_blocks = 8192) {
  if (n <= 0) return Launch{0, threads};
  int64_t blocks = ceil_div(n, threads);
  if (blocks > max_blocks) blocks = max_blocks;
  return Launch{blocks, threads};
}

// Row kernels (norms, softmax, cross-entropy): one warp per row while a row fits in a few
// registers per lane (cols <= 1024, 32 values per lane at most), four rows per block; longer rows
// get a block of 256 (cols <= 8192) or 1024 threads each.
struct RowLaunch {
  int64_t blocks = 0;
  int threads = 0;
  int rows_per_block = 0;  // > 1: warp per row; 1: block per row
  bool warp_per_row() const { return rows_per_block > 1; }
};
inline RowLaunch row_launch(int64_t rows, int64_t cols) {
  RowLaunch l;
  if (rows <= 0) return l;
  if (cols <= 1024) {
    l.rows_per_block = 4;
    l.threads = 4 * kWarp;
  } else {
    l.rows_per_block = 1;
    l.threads = cols <= 8192 ? 256 : 1024;
  }
  l.blocks = ceil_div(rows, l.rows_per_block);
  S2S_REQUIRE(l.blocks <= kMaxGridX, code::kArgument, "cuda.launch", "expected at most ",
              kMaxGridX * l.rows_per_block, " rows, got ", rows);
  return l;
}

// Deterministic column sums over rows (dweight/dbias of norms and linear, dbias of attention
// inputs): rows are cut into chunks of kReduceChunkRows; pass 1 writes one partial row per
// chunk (rows added in order inside the chunk), pass 2 adds the partials in chunk order. The
// split depends on the row count alone, so the bits never depend on scheduling.
constexpr int64_t kReduceChunkRows = 256;
struct ColumnReducePlan {
  int64_t chunks = 0;       // partial rows (pass-1 grid.y)
  int64_t column_blocks = 0;  // pass-1/2 grid.x: 128 columns per block
  int threads = 128;
};
inline ColumnReducePlan column_reduce_plan(int64_t rows, int64_t cols) {
  ColumnReducePlan p;
  if (rows <= 0 || cols <= 0) return p;
  p.chunks = ceil_div(rows, kReduceChunkRows);
  p.column_blocks = ceil_div(cols, p.threads);
  S2S_REQUIRE(p.chunks <= kMaxGridYZ, code::kArgument, "cuda.launch", "expected at most ",
              kMaxGridYZ * kReduceChunkRows, " rows in a column reduction, got ", rows);
  return p;
}

// The norms' fused backward (norm_backward.cuh): one pass over dout and x gives dinp and the
// column sums of dweight (and layernorm's dbias). A block takes kNormChunkRows rows; its teams
// (the warps of a block, or the block itself for rows of > 1024 columns, as row_launch) take
// every teams-th row and add each column's terms in a shared-memory row of their own, which the
// block then adds team by team into its chunk's partial row; pass 2 adds the partials in chunk
// order. The sums' order depends on the row count and cols alone. fused is false where the
// teams' sums (teams x sums x cols floats) outgrow kNormSumsSharedBytes, or the block per row
// would have 1024 threads: those take the separate dinp kernel and column sums.
constexpr int64_t kNormChunkRows = 32;
// A block's shared memory without opting in is 48 KB, static and dynamic together; the kernel's
// row reductions take 384 bytes of static scratch, so the sums get 47 KB.
constexpr int64_t kNormSumsSharedBytes = 47 * 1024;
struct NormBackwardPlan {
  bool fused = false;
  int64_t rows = 0, cols = 0;
  int64_t chunks = 0;      // grid.x, and the partial rows
  int threads = 0;
  int teams = 0;           // warps of the block (cols <= 1024), or 1: the block
  int64_t smem_bytes = 0;  // teams x sums x cols floats
  int64_t finish_blocks = 0;  // pass 2: 128 of the sums x cols columns per block
};
inline NormBackwardPlan norm_backward_plan(int64_t rows, int64_t cols, int sums) {
  NormBackwardPlan p;
  if (rows <= 0 || cols <= 0 || sums <= 0) return p;
  const RowLaunch l = row_launch(rows, cols);
  p.threads = l.threads;
  p.teams = l.warp_per_row() ? l.threads / kWarp : 1;
  p.smem_bytes = int64_t(p.teams) * sums * cols * int64_t(sizeof(float));
  p.fused = l.threads <= 256 && p.smem_bytes <= kNormSumsSharedBytes;
  if (!p.fused) return NormBackwardPlan{};
  p.rows = rows;
  p.cols = cols;
  p.chunks = ceil_div(rows, kNormChunkRows);
  p.finish_blocks = ceil_div(sums * cols, 128);
  return p;
}

// Fused attention (attention.cu): query tiles of kAttnRows rows per block (one warp per
// kAttnRowsPerWarp rows), key tiles of kAttnKeys keys (one per lane); the head dim is held
// in ceil(D/32) registers per lane and row, up to kAttnMaxHeadDim.
constexpr int kAttnRowsPerWarp = 8;
constexpr int kAttnWarps = 4;
constexpr int kAttnRows = kAttnRowsPerWarp * kAttnWarps;  // 32 query rows (or keys) per block
constexpr int kAttnKeys = kWarp;                          // 32 keys (or queries) per tile
constexpr int kAttnMaxHeadDim = 256;
inline int attention_head_chunks(int64_t D) {
  S2S_REQUIRE(D >= 1 && D <= kAttnMaxHeadDim, code::kShape, "attention",
              "expected a head dim in [1, ", kAttnMaxHeadDim, "] on CUDA, got ", D);
  return static_cast<int>(ceil_div(D, kWarp));
}
// Shared memory of one attention block: `tiles` (32, D+1) fp32 tiles (+1 column so lanes reading
// a row each hit distinct banks) and three 32-float vectors (row statistics, key flags).
// Forward: Q, K, V (3 tiles); backward passes: Q, dO, K, V (4 tiles). D = 128: 50 / 66 KB.
inline int64_t attention_smem_bytes(int64_t D, int tiles) {
  return (tiles * int64_t(kAttnRows) * (D + 1) + 3 * kAttnRows) * int64_t(sizeof(float));
}
// Blocks of the forward / the Q pass: (query tiles, heads, batch), all within grid limits.
inline void check_attention_grid(int64_t tiles, int64_t heads, int64_t batch) {
  S2S_REQUIRE(tiles <= kMaxGridX && heads <= kMaxGridYZ && batch <= kMaxGridYZ, code::kArgument,
              "attention", "expected at most ", kMaxGridYZ, " heads and batch rows on CUDA, got ",
              heads, " heads, batch ", batch);
}

}  // namespace cuda
}  // namespace s2s
