// silu on CUDA (s2s/ops/silu.h semantics).
#include "backends/cuda/act.cuh"
#include "backends/cuda/check.cuh"
#include "backends/cuda/cuda_ops.h"
#include "ops/op_util.h"

namespace s2s {
namespace cuda {

namespace {
constexpr const char* kOp = "silu";
}

void silu_forward(Context& ctx, const Tensor& out, const Tensor& inp) {
  opu::expect_f32_like(inp, inp, kOp, "inp", "inp");
  opu::expect_f32_like(out, inp, kOp, "out", "inp");
  float* y = out.f32();
  const float* x = inp.f32();
  for_each(ctx, inp.numel(), kOp, [=] __device__(int64_t i) { y[i] = act::silu(x[i]); });
}

void silu_backward(Context& ctx, const Tensor& dinp, const Tensor& dout, const Tensor& inp,
                   bool overwrite) {
  opu::expect_f32_like(inp, inp, kOp, "inp", "inp");
  opu::expect_f32_like(dout, inp, kOp, "dout", "inp");
  if (!opu::present(dinp)) return;
  opu::expect_f32_like(dinp, inp, kOp, "dinp", "inp");
  float* dx = dinp.f32();
  const float* dy = dout.f32();
  const float* x = inp.f32();
  for_each(ctx, inp.numel(), kOp, [=] __device__(int64_t i) {
    write_grad(dx + i, dy[i] * act::silu_grad(x[i]), overwrite);
  });
}

}  // namespace cuda
}  // namespace s2s
