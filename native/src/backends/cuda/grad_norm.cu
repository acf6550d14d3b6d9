// grad_norm / clip_grad_norm on CUDA (s2s/ops/grad_norm.h semantics). The gradients are cut into
// the CPU's fixed 64K-element blocks; a CUDA block sums the squares of one of them in double
// (fixed per-thread strides, then a fixed-shape tree; every gradient's blocks in one launch,
// through a table of the gradients), one thread adds the block sums in
// list-then-block order: the same bits on every run and independent of the GPU's scheduling
// (though not the CPU's bits: the summation tree differs). The norm is returned, so these wait.
#include <cmath>
#include <string>
#include <vector>

#include "backends/cuda/check.cuh"
#include "backends/cuda/cuda_ops.h"
#include "s2s/ops/grad_norm.h"

namespace s2s {
namespace cuda {

namespace {
constexpr const char* kOp = "grad_norm";
constexpr int64_t kBlock = int64_t(1) << 16;
constexpr int kThreads = 512;

// One gradient, as the kernel reads it: its blocks come after first_block blocks of the others.
struct GradBlocks {
  const float* x;
  int64_t n;
  int64_t first_block;
};

// CUDA block b sums the squares of block b of the concatenation of the gradients (none empty,
// in list order) into partial[b]: every gradient in one launch.
__global__ void block_squares_kernel(const GradBlocks* table, int count, float scale, bool scaled,
                                     double* partial) {
  __shared__ double scratch[32];
  const int64_t block = blockIdx.x;
  const GradBlocks t = entry_of_block(table, count, block);
  const int64_t b0 = (block - t.first_block) * kBlock;
  const int64_t b1 = b0 + kBlock < t.n ? b0 + kBlock : t.n;
  double acc = 0.0;
  for (int64_t i = b0 + threadIdx.x; i < b1; i += blockDim.x) {
    const float y = scaled ? __fmul_rn(t.x[i], scale) : t.x[i];
    acc += double(y) * double(y);
  }
  acc = block_sum(acc, scratch);
  if (threadIdx.x == 0) partial[block] = acc;
}

__global__ void sum_in_order_kernel(const double* partial, int64_t n, double* total) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += partial[i];
  *total = s;
}

void check_grads(const std::vector<Tensor>& grads, int64_t* blocks) {
  *blocks = 0;
  for (size_t t = 0; t < grads.size(); ++t) {
    const Tensor& g = grads[t];
    if (g.data == nullptr) continue;
    const std::string name = "grads[" + std::to_string(t) + "]";
    expect_dtype(g, DType::F32, kOp, name.c_str());
    expect_contiguous(g, kOp, name.c_str());
    *blocks += ceil_div(g.numel(), kBlock);
  }
}
}  // namespace

double scaled_grad_norm(Context& ctx, const std::vector<Tensor>& grads, float scale) {
  int64_t blocks = 0;
  check_grads(grads, &blocks);
  if (blocks == 0) return 0.0;
  std::vector<GradBlocks> table;
  int64_t at = 0;
  for (const Tensor& g : grads) {
    if (g.data == nullptr || g.numel() == 0) continue;
    table.push_back(GradBlocks{g.f32(), g.numel(), at});
    at += ceil_div(g.numel(), kBlock);
  }
  ctx.activate();
  ArenaScope arena_scope(ctx.arena());
  double* partial = ctx.arena().allocate_array<double>(size_t(blocks + 1));
  GradBlocks* device_table = ctx.arena().allocate_array<GradBlocks>(table.size());
  upload(ctx, device_table, table.data(), table.size() * sizeof(GradBlocks));  // staged on return
  block_squares_kernel<<<grid(at), kThreads, 0, stream_of(ctx)>>>(
      device_table, int(table.size()), scale, scale != 1.0f, partial);
  check_launch(kOp);
  sum_in_order_kernel<<<1, 1, 0, stream_of(ctx)>>>(partial, at, partial + blocks);
  check_launch(kOp);
  double total = 0.0;
  download(ctx, &total, partial + blocks, sizeof(double));
  return std::sqrt(total);
}

double grad_norm(Context& ctx, const std::vector<Tensor>& grads) {
  return scaled_grad_norm(ctx, grads, 1.0f);
}

double clip_grad_norm(Context& ctx, const std::vector<Tensor>& grads, double max_norm) {
  clip_coefficient(1.0, max_norm);  // validates max_norm (S2S_ARGUMENT), as the CPU op
  const double total = grad_norm(ctx, grads);
  if (!std::isfinite(total)) return total;
  const float c = clip_coefficient(total, max_norm);
  if (c != 1.0f) {
    for (const Tensor& g : grads) {
      if (g.data == nullptr) continue;
      float* x = g.f32();
      for_each(ctx, g.numel(), kOp, [=] __device__(int64_t i) { x[i] = __fmul_rn(x[i], c); });
    }
  }
  return total;
}

}  // namespace cuda
}  // namespace s2s
