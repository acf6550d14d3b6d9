// layernorm on CUDA (s2s/ops/layernorm.h semantics). Forward: a warp (or block) per row, mean then
// the two-pass variance, as the CPU op. Backward: dinp per row and dweight/dbias as deterministic
// column sums, in one pass over dout and x (norm_backward.cuh) where the plan allows, else as
// separate kernels (rows.cuh's column sums). The output may be bf16/f16 for the linear that
// reads it (check.cuh's ActivationOut). Napkin: forward reads x three times (L1/L2 after the
// first) and writes once: ~8 bytes of DRAM traffic per element.
#include "backends/cuda/cuda_ops.h"
#include "backends/cuda/norm_backward.cuh"
#include "backends/cuda/rows.cuh"
#include "ops/op_util.h"

namespace s2s {
namespace cuda {

namespace {
constexpr const char* kOp = "layernorm";

__global__ void layernorm_forward_kernel(ActivationOut out, float* mean_out, float* rstd_out,
                                         const float* inp, const float* weight, const float* bias,
                                         int64_t rows, int64_t C, float eps, int rows_per_block) {
  __shared__ float scratch[32];
  __shared__ double dscratch[32];
  RowTeam t;
  int64_t row;
  if (!row_of(rows, rows_per_block, scratch, dscratch, &t, &row)) return;
  const float* x = inp + row * C;
  float s = 0.f;
  for (int64_t c = t.tid; c < C; c += t.size) s += x[c];
  const float m = t.sum(s) / float(C);
  float v = 0.f;
  for (int64_t c = t.tid; c < C; c += t.size) {
    const float d = x[c] - m;
    v += d * d;
  }
  const float r = 1.0f / sqrtf(t.sum(v) / float(C) + eps);
  for (int64_t c = t.tid; c < C; c += t.size) {
    const float n = (x[c] - m) * r * weight[c];
    out.store(row * C + c, bias != nullptr ? n + bias[c] : n);
  }
  if (t.tid == 0) {
    if (mean_out != nullptr) mean_out[row] = m;
    if (rstd_out != nullptr) rstd_out[row] = r;
  }
}

}  // namespace

void layernorm_forward(Context& ctx, const Tensor& out, const Tensor& mean, const Tensor& rstd,
                       const Tensor& inp, const Tensor& weight, const Tensor& bias, float eps) {
  int64_t C = 0;
  const int64_t N = opu::expect_rows(inp, kOp, "inp", &C);
  const ActivationOut y = activation_out(out, inp, kOp);
  expect_f32(weight, {C}, kOp, "weight");
  if (opu::present(bias)) expect_f32(bias, {C}, kOp, "bias");
  if (opu::present(mean)) opu::expect_f32_numel(mean, N, kOp, "mean");
  if (opu::present(rstd)) opu::expect_f32_numel(rstd, N, kOp, "rstd");
  S2S_REQUIRE(eps >= 0.f && eps < INFINITY, code::kArgument, kOp,
              "expected eps >= 0 and finite, got ", eps);
  const RowLaunch l = row_launch(N, C);
  if (l.blocks == 0 || C == 0) return;
  ctx.activate();
  layernorm_forward_kernel<<<grid(l.blocks), l.threads, 0, stream_of(ctx)>>>(
      y, mean.f32(), rstd.f32(), inp.f32(), weight.f32(), bias.f32(), N, C, eps,
      l.rows_per_block);
  check_launch(kOp);
}

void layernorm_backward(Context& ctx, const Tensor& dinp, const Tensor& dweight,
                        const Tensor& dbias, const Tensor& dout, const Tensor& inp,
                        const Tensor& weight, const Tensor& mean, const Tensor& rstd,
                        bool overwrite_dinp) {
  int64_t C = 0;
  const int64_t N = opu::expect_rows(inp, kOp, "inp", &C);
  opu::expect_f32_like(dout, inp, kOp, "dout", "inp");
  expect_f32(weight, {C}, kOp, "weight");
  opu::expect_f32_numel(mean, N, kOp, "mean");
  opu::expect_f32_numel(rstd, N, kOp, "rstd");
  if (opu::present(dinp)) opu::expect_f32_like(dinp, inp, kOp, "dinp", "inp");
  if (opu::present(dweight)) expect_f32(dweight, {C}, kOp, "dweight");
  if (opu::present(dbias)) expect_f32(dbias, {C}, kOp, "dbias");
  if (N == 0 || C == 0) return;
  ctx.activate();
  const float* x = inp.f32();
  const float* dy = dout.f32();
  const float* m = mean.f32();
  const float* r = rstd.f32();
  const bool want_dw = opu::present(dweight), want_db = opu::present(dbias);
  const NormBackwardPlan p = norm_backward_plan(N, C, int(want_dw) + int(want_db));
  if (p.fused) {
    return norm_backward<true>(ctx, p, dinp, overwrite_dinp, dweight, dbias, dout, inp, weight,
                               mean, rstd, kOp);
  }
  if (opu::present(dinp)) {
    const RowLaunch l = row_launch(N, C);
    norm_dinp_kernel<true><<<grid(l.blocks), l.threads, 0, stream_of(ctx)>>>(
        dinp.f32(), dy, x, weight.f32(), m, r, N, C, l.rows_per_block, overwrite_dinp);
    check_launch(kOp);
  }
  if (opu::present(dweight)) {
    column_sum_into(ctx, N, C, dweight.f32(), [=] __device__(int64_t row, int64_t c) {
      return dy[row * C + c] * ((x[row * C + c] - m[row]) * r[row]);
    }, kOp);
  }
  if (opu::present(dbias)) {
    column_sum_into(ctx, N, C, dbias.f32(),
                    [=] __device__(int64_t row, int64_t c) { return dy[row * C + c]; }, kOp);
  }
}

}  // namespace cuda
}  // namespace s2s
