// grad_norm / clip_grad_norm on CUDA (s2s/ops/grad_norm.h semantics). The gradients are cut into
// the CPU's fixed 64K-element blocks; a CUDA block sums the squares of one of them in double
// (fixed per-thread strides, then a fixed-shape tree; every gradient's blocks in one launch,
// through a table of the gradients), one thread adds the block sums in
// list-then-block order: the same bits on every run and independent of the GPU's scheduling
// (though not the CPU's bits: the summation tree differs). The norm is returned, so these wait;
// queue_grad_norm_and_gate leaves it in device memory with what the optimizer step does next.
#include <cfloat>
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

// The norm from the block sums, as sum_in_order_kernel and the host's sqrt, and what the
// optimizer step's update does with it: clip_coefficient's double arithmetic (IEEE on the
// device: no multiply here for a contraction to touch).
__global__ void norm_and_gate_kernel(const double* partial, int64_t n, double max_norm,
                                     const unsigned long long* error_slot, double* norm_out,
                                     OptimizerGate* gate) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += partial[i];
  const double norm = sqrt(s);
  *norm_out = norm;
  OptimizerGate g{1.0f, OptimizerGate::kApply};
  if (error_slot[0] != 0) {
    g.action = OptimizerGate::kNothing;  // a bad batch: synchronize raises it
  } else if (!(norm <= DBL_MAX)) {       // Inf or NaN
    g.action = OptimizerGate::kZeroGrads;
  } else if (max_norm > 0) {
    const double coef = max_norm / (norm + 1e-6);
    g.clip_coef = coef < 1.0 ? float(coef) : 1.0f;
  }
  *gate = g;
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

// Queues the sums of squares of every 64K-element block of the gradients into
// arena memory (the caller's ArenaScope holds it); returns the block count (0: no launch).
int64_t queue_block_squares(Context& ctx, const std::vector<Tensor>& grads, float scale,
                            double** partial) {
  int64_t blocks = 0;
  check_grads(grads, &blocks);
  *partial = ctx.arena().allocate_array<double>(size_t(blocks + 1));
  if (blocks == 0) return 0;
  std::vector<GradBlocks> table;
  int64_t at = 0;
  for (const Tensor& g : grads) {
    if (g.data == nullptr || g.numel() == 0) continue;
    table.push_back(GradBlocks{g.f32(), g.numel(), at});
    at += ceil_div(g.numel(), kBlock);
  }
  GradBlocks* device_table = ctx.arena().allocate_array<GradBlocks>(table.size());
  upload(ctx, device_table, table.data(), table.size() * sizeof(GradBlocks));  // staged on return
  block_squares_kernel<<<grid(at), kThreads, 0, stream_of(ctx)>>>(
      device_table, int(table.size()), scale, scale != 1.0f, *partial);
  check_launch(kOp);
  return at;
}
}  // namespace

double scaled_grad_norm(Context& ctx, const std::vector<Tensor>& grads, float scale) {
  ctx.activate();
  ArenaScope arena_scope(ctx.arena());
  double* partial = nullptr;
  const int64_t blocks = queue_block_squares(ctx, grads, scale, &partial);
  if (blocks == 0) return 0.0;
  sum_in_order_kernel<<<1, 1, 0, stream_of(ctx)>>>(partial, blocks, partial + blocks);
  check_launch(kOp);
  double total = 0.0;
  download(ctx, &total, partial + blocks, sizeof(double));
  return std::sqrt(total);
}

void queue_grad_norm_and_gate(Context& ctx, const std::vector<Tensor>& grads, float scale,
                              double max_norm, double* norm_out, OptimizerGate* gate) {
  if (max_norm > 0) clip_coefficient(1.0, max_norm);  // validates max_norm, as the CPU op
  ctx.activate();
  ArenaScope arena_scope(ctx.arena());
  double* partial = nullptr;
  const int64_t blocks = queue_block_squares(ctx, grads, scale, &partial);
  norm_and_gate_kernel<<<1, 1, 0, stream_of(ctx)>>>(partial, blocks, max_norm, ctx.error_slot(),
                                                     norm_out, gate);
  check_launch(kOp);
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
