// softmax over the last dimension on CUDA (s2s/ops/softmax.h semantics): a warp per row up to
// 1024 columns, a block per row beyond. Three reads of the row (max, sum, write) from L1/L2.
#include "backends/cuda/cuda_ops.h"
#include "backends/cuda/rows.cuh"
#include "ops/op_util.h"

namespace s2s {
namespace cuda {

namespace {
constexpr const char* kOp = "softmax";

__global__ void softmax_forward_kernel(float* out, const float* inp, int64_t rows, int64_t C,
                                       int rows_per_block) {
  __shared__ float scratch[32];
  __shared__ double dscratch[32];
  RowTeam t;
  int64_t row;
  if (!row_of(rows, rows_per_block, scratch, dscratch, &t, &row)) return;
  const float* x = inp + row * C;
  float* y = out + row * C;
  float m = -INFINITY;
  for (int64_t c = t.tid; c < C; c += t.size) m = nan_max(m, x[c]);
  m = t.max(m);
  float s = 0.f;
  for (int64_t c = t.tid; c < C; c += t.size) s += expf(x[c] - m);
  s = t.sum(s);
  const float inv = 1.0f / s;
  for (int64_t c = t.tid; c < C; c += t.size) y[c] = expf(x[c] - m) * inv;
}

__global__ void softmax_backward_kernel(float* dinp, const float* dout, const float* out,
                                        int64_t rows, int64_t C, int rows_per_block) {
  __shared__ float scratch[32];
  __shared__ double dscratch[32];
  RowTeam t;
  int64_t row;
  if (!row_of(rows, rows_per_block, scratch, dscratch, &t, &row)) return;
  const float* dy = dout + row * C;
  const float* y = out + row * C;
  float* dx = dinp + row * C;
  float dot = 0.f;
  for (int64_t c = t.tid; c < C; c += t.size) dot += dy[c] * y[c];
  dot = t.sum(dot);
  for (int64_t c = t.tid; c < C; c += t.size) dx[c] += y[c] * (dy[c] - dot);
}
}  // namespace

void softmax_forward(Context& ctx, const Tensor& out, const Tensor& inp) {
  int64_t C = 0;
  const int64_t N = opu::expect_rows(inp, kOp, "inp", &C);
  opu::expect_f32_like(out, inp, kOp, "out", "inp");
  const RowLaunch l = row_launch(N, C);
  if (l.blocks == 0 || C == 0) return;
  ctx.activate();
  softmax_forward_kernel<<<grid(l.blocks), l.threads, 0, stream_of(ctx)>>>(
      out.f32(), inp.f32(), N, C, l.rows_per_block);
  check_launch(kOp);
}

void softmax_backward(Context& ctx, const Tensor& dinp, const Tensor& dout, const Tensor& out) {
  int64_t C = 0;
  const int64_t N = opu::expect_rows(out, kOp, "out", &C);
  opu::expect_f32_like(dout, out, kOp, "dout", "out");
  if (!opu::present(dinp)) return;
  opu::expect_f32_like(dinp, out, kOp, "dinp", "out");
  const RowLaunch l = row_launch(N, C);
  if (l.blocks == 0 || C == 0) return;
  ctx.activate();
  softmax_backward_kernel<<<grid(l.blocks), l.threads, 0, stream_of(ctx)>>>(
      dinp.f32(), dout.f32(), out.f32(), N, C, l.rows_per_block);
  check_launch(kOp);
}

}  // namespace cuda
}  // namespace s2s
