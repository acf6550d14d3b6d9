// rmsnorm on CUDA (s2s/ops/rmsnorm.h semantics): out = x * rsqrt(mean(x^2) + eps) * weight.
// Same structure as layernorm.cu: a warp (or block) per row, deterministic dweight, the backward
// in one pass (norm_backward.cuh) where the plan allows.
#include "backends/cuda/cuda_ops.h"
#include "backends/cuda/norm_backward.cuh"
#include "backends/cuda/rows.cuh"
#include "ops/op_util.h"

namespace s2s {
namespace cuda {

namespace {
constexpr const char* kOp = "rmsnorm";

__global__ void rmsnorm_forward_kernel(ActivationOut out, float* rstd_out, const float* inp,
                                       const float* weight, int64_t rows, int64_t C, float eps,
                                       int rows_per_block) {
  __shared__ float scratch[32];
  __shared__ double dscratch[32];
  RowTeam t;
  int64_t row;
  if (!row_of(rows, rows_per_block, scratch, dscratch, &t, &row)) return;
  const float* x = inp + row * C;
  float s = 0.f;
  for (int64_t c = t.tid; c < C; c += t.size) s += x[c] * x[c];
  const float r = 1.0f / sqrtf(t.sum(s) / float(C) + eps);
  for (int64_t c = t.tid; c < C; c += t.size) out.store(row * C + c, x[c] * r * weight[c]);
  if (t.tid == 0 && rstd_out != nullptr) rstd_out[row] = r;
}

}  // namespace

void rmsnorm_forward(Context& ctx, const Tensor& out, const Tensor& rstd, const Tensor& inp,
                     const Tensor& weight, float eps) {
  int64_t C = 0;
  const int64_t N = opu::expect_rows(inp, kOp, "inp", &C);
  const ActivationOut y = activation_out(out, inp, kOp);
  expect_f32(weight, {C}, kOp, "weight");
  if (opu::present(rstd)) opu::expect_f32_numel(rstd, N, kOp, "rstd");
  S2S_REQUIRE(eps >= 0.f && eps < INFINITY, code::kArgument, kOp,
              "expected eps >= 0 and finite, got ", eps);
  const RowLaunch l = row_launch(N, C);
  if (l.blocks == 0 || C == 0) return;
  ctx.activate();
  rmsnorm_forward_kernel<<<grid(l.blocks), l.threads, 0, stream_of(ctx)>>>(
      y, rstd.f32(), inp.f32(), weight.f32(), N, C, eps, l.rows_per_block);
  check_launch(kOp);
}

void rmsnorm_backward(Context& ctx, const Tensor& dinp, const Tensor& dweight, const Tensor& dout,
                      const Tensor& inp, const Tensor& weight, const Tensor& rstd,
                      bool overwrite_dinp) {
  int64_t C = 0;
  const int64_t N = opu::expect_rows(inp, kOp, "inp", &C);
  opu::expect_f32_like(dout, inp, kOp, "dout", "inp");
  expect_f32(weight, {C}, kOp, "weight");
  opu::expect_f32_numel(rstd, N, kOp, "rstd");
  if (opu::present(dinp)) opu::expect_f32_like(dinp, inp, kOp, "dinp", "inp");
  if (opu::present(dweight)) expect_f32(dweight, {C}, kOp, "dweight");
  if (N == 0 || C == 0) return;
  ctx.activate();
  const float* x = inp.f32();
  const float* dy = dout.f32();
  const float* r = rstd.f32();
  const NormBackwardPlan p = norm_backward_plan(N, C, opu::present(dweight) ? 1 : 0);
  if (p.fused) {
    return norm_backward<false>(ctx, p, dinp, overwrite_dinp, dweight, Tensor{}, dout, inp,
                                weight, Tensor{}, rstd, kOp);
  }
  if (opu::present(dinp)) {
    const RowLaunch l = row_launch(N, C);
    norm_dinp_kernel<false><<<grid(l.blocks), l.threads, 0, stream_of(ctx)>>>(
        dinp.f32(), dy, x, weight.f32(), nullptr, r, N, C, l.rows_per_block, overwrite_dinp);
    check_launch(kOp);
  }
  if (opu::present(dweight)) {
    column_sum_into(ctx, N, C, dweight.f32(), [=] __device__(int64_t row, int64_t c) {
      return dy[row * C + c] * (x[row * C + c] * r[row]);
    }, kOp);
  }
}

}  // namespace cuda
}  // namespace s2s
