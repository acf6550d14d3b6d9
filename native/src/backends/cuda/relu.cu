// relu on CUDA (s2s/ops/relu.h semantics; NaN stays NaN, gradient 0 at exactly 0).
#include "backends/cuda/check.cuh"
#include "backends/cuda/cuda_ops.h"
#include "ops/op_util.h"

namespace s2s {
namespace cuda {

namespace {
constexpr const char* kOp = "relu";
}

void relu_forward(Context& ctx, const Tensor& out, const Tensor& inp) {
  opu::expect_f32_like(inp, inp, kOp, "inp", "inp");
  S2S_REQUIRE(opu::present(out) || inp.numel() == 0, code::kArgument, kOp,
              "expected out to have data, got a null pointer");
  const ActivationOut y = activation_out(out, inp, kOp);  // f32, or bf16/f16 for a linear
  const float* x = inp.f32();
  // x > 0 ? x : (x != x ? x : 0): NaN in, NaN out, as torch.relu.
  for_each(ctx, inp.numel(), kOp, [=] __device__(int64_t i) {
    const float v = x[i];
    y.store(i, (v > 0.f || v != v) ? v : 0.f);
  });
}

void relu_backward(Context& ctx, const Tensor& dinp, const Tensor& dout, const Tensor& inp,
                   bool overwrite) {
  opu::expect_f32_like(inp, inp, kOp, "inp", "inp");
  opu::expect_f32_like(dout, inp, kOp, "dout", "inp");
  if (!opu::present(dinp)) return;
  // bf16 only when overwritten (the f32 values rounded), for a bias-less bf16 linear's output.
  const GradOut dx{dinp.data, opu::expect_grad_like(dinp, inp, overwrite, kOp, "dinp", "inp")};
  const float* dy = dout.f32();
  const float* x = inp.f32();
  for_each(ctx, inp.numel(), kOp, [=] __device__(int64_t i) {
    dx.put(i, x[i] > 0.f ? dy[i] : 0.f, overwrite);
  });
}

}  // namespace cuda
}  // namespace s2s
