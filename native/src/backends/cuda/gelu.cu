// gelu on CUDA (s2s/ops/gelu.h semantics): one thread per element, grid-stride.
// Napkin: 8 bytes moved per element forward, 12 backward: bandwidth bound (~3 TB/s on an H100).
#include "backends/cuda/act.cuh"
#include "backends/cuda/check.cuh"
#include "backends/cuda/cuda_ops.h"
#include "ops/op_util.h"

namespace s2s {
namespace cuda {

namespace {
constexpr const char* kOp = "gelu";
bool approx_of(GeluApprox a) {
  if (a != GeluApprox::None && a != GeluApprox::Tanh) {
    fail(code::kArgument, kOp, "expected approximate to be None (0) or Tanh (1), got ", int(a));
  }
  return a == GeluApprox::Tanh;
}
}  // namespace

void gelu_forward(Context& ctx, const Tensor& out, const Tensor& inp, GeluApprox approximate) {
  const bool t = approx_of(approximate);
  opu::expect_f32_like(inp, inp, kOp, "inp", "inp");
  const ActivationOut y = activation_out(out, inp, kOp);  // f32, or bf16/f16 for a linear
  const float* x = inp.f32();
  for_each(ctx, inp.numel(), kOp, [=] __device__(int64_t i) { y.store(i, act::gelu(x[i], t)); });
}

void gelu_backward(Context& ctx, const Tensor& dinp, const Tensor& dout, const Tensor& inp,
                   GeluApprox approximate, bool overwrite) {
  const bool t = approx_of(approximate);
  opu::expect_f32_like(inp, inp, kOp, "inp", "inp");
  opu::expect_f32_like(dout, inp, kOp, "dout", "inp");
  if (!opu::present(dinp)) return;
  opu::expect_f32_like(dinp, inp, kOp, "dinp", "inp");
  float* dx = dinp.f32();
  const float* dy = dout.f32();
  const float* x = inp.f32();
  // The product rounded on its own (not fused into an accumulation), as linear_gelu_backward
  // makes it.
  for_each(ctx, inp.numel(), kOp, [=] __device__(int64_t i) {
    write_grad(dx + i, __fmul_rn(dy[i], act::gelu_grad(x[i], t)), overwrite);
  });
}

}  // namespace cuda
}  // namespace s2s
