// swiglu on CUDA (s2s/ops/swiglu.h semantics): out = silu(gate) * up.
// Napkin: 12 bytes per element forward, 20-28 backward: bandwidth bound.
#include "backends/cuda/act.cuh"
#include "backends/cuda/check.cuh"
#include "backends/cuda/cuda_ops.h"
#include "ops/op_util.h"

namespace s2s {
namespace cuda {

namespace {
constexpr const char* kOp = "swiglu";
}

void swiglu_forward(Context& ctx, const Tensor& out, const Tensor& gate, const Tensor& up) {
  opu::expect_f32_like(gate, gate, kOp, "gate", "gate");
  opu::expect_f32_like(up, gate, kOp, "up", "gate");
  const ActivationOut y = activation_out(out, gate, kOp);  // f32, or bf16/f16 for a linear
  const float* g = gate.f32();
  const float* u = up.f32();
  for_each(ctx, gate.numel(), kOp,
           [=] __device__(int64_t i) { y.store(i, act::silu(g[i]) * u[i]); });
}

void swiglu_backward(Context& ctx, const Tensor& dgate, const Tensor& dup, const Tensor& dout,
                     const Tensor& gate, const Tensor& up, bool overwrite) {
  opu::expect_f32_like(gate, gate, kOp, "gate", "gate");
  opu::expect_f32_like(up, gate, kOp, "up", "gate");
  opu::expect_f32_like(dout, gate, kOp, "dout", "gate");
  const bool bf16 = opu::expect_gated_grads(dgate, dup, gate, overwrite, kOp);
  const GradOut dg{dgate.data, bf16}, du{dup.data, bf16};
  if (dg.data == nullptr && du.data == nullptr) return;
  const float* dy = dout.f32();
  const float* g = gate.f32();
  const float* u = up.f32();
  for_each(ctx, gate.numel(), kOp, [=] __device__(int64_t i) {
    const float x = g[i];
    if (dg.data != nullptr) dg.put(i, dy[i] * u[i] * act::silu_grad(x), overwrite);
    if (du.data != nullptr) du.put(i, dy[i] * act::silu(x), overwrite);
  });
}

}  // namespace cuda
}  // namespace s2s
