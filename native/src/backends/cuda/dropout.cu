// dropout on CUDA (s2s/ops/dropout.h semantics) with core/philox.h compiled for the device:
// element i is kept when uniform(philox_word(seed, offset + i)) >= p, exactly as on the CPU, so
// both backends drop the same elements. One thread per element (10 Philox rounds each; a
// thread per 4 elements would share the block, a later optimisation). A seed in device memory
// (DropoutSeed::on_device) is read by each thread, so a recorded call replays with a new one.
// dropout_add_forward is residual + dropout(branch) in one pass (nn::dropout_residual_add): the
// dropped branch is neither written nor read back by an add.
#include "backends/cuda/check.cuh"
#include "backends/cuda/cuda_ops.h"
#include "ops/dropout_mask.h"
#include "ops/op_util.h"

namespace s2s {
namespace cuda {

namespace {
constexpr const char* kOp = "dropout";
void check_p(float p) {
  if (!(p >= 0.0f && p < 1.0f)) fail(code::kArgument, kOp, "expected p in [0, 1), got ", p);
}

// Element i's factor: 1 / (1 - p) where the mask keeps it, else 0 (1 everywhere at p = 0). The
// seed is read from device memory where it lies there, at each element, so a recorded launch
// replays with the seed written since.
struct DropFactor {
  float p, scale;
  uint64_t value, offset;
  const uint64_t* on_device;
  DropFactor(float p_, DropoutSeed seed, uint64_t offset_)
      : p(p_), scale(p_ == 0.0f ? 1.0f : 1.0f / (1.0f - p_)), value(seed.value),
        offset(offset_), on_device(seed.on_device) {}
  __device__ float operator()(int64_t i) const {
    const uint64_t key = on_device != nullptr ? *on_device : value;
    const bool keep = p == 0.0f || dropout_keep(key, offset + uint64_t(i), p);
    return keep ? scale : 0.0f;
  }
};
}  // namespace

void dropout_forward(Context& ctx, const Tensor& out, const Tensor& inp, float p, DropoutSeed seed,
                     uint64_t offset) {
  check_p(p);
  opu::expect_f32_like(inp, inp, kOp, "inp", "inp");
  const ActivationOut y = activation_out(out, inp, kOp);  // f32, or bf16/f16 for a linear
  const float* x = inp.f32();
  if (p == 0.0f && out.dtype == DType::F32) {
    if (out.data != inp.data) copy_device(ctx, out.data, x, sizeof(float) * inp.numel());
    return;
  }
  const DropFactor factor(p, seed, offset);
  for_each(ctx, inp.numel(), kOp, [=] __device__(int64_t i) { y.store(i, x[i] * factor(i)); });
}

void dropout_add_forward(Context& ctx, const Tensor& out, const Tensor& residual,
                         const Tensor& branch, float p, DropoutSeed seed, uint64_t offset) {
  check_p(p);
  opu::expect_f32_like(branch, branch, kOp, "branch", "branch");
  opu::expect_f32_like(residual, branch, kOp, "residual", "branch");
  opu::expect_f32_like(out, branch, kOp, "out", "branch");
  float* y = out.f32();
  const float* r = residual.f32();
  const float* x = branch.f32();
  const DropFactor factor(p, seed, offset);
  // dropout_forward's product and add's sum, each rounded on its own (never one FMA): the
  // pair's bits.
  for_each(ctx, branch.numel(), kOp, [=] __device__(int64_t i) {
    y[i] = __fadd_rn(r[i], __fmul_rn(x[i], factor(i)));
  });
}

void dropout_backward(Context& ctx, const Tensor& dinp, const Tensor& dout, float p,
                      DropoutSeed seed, uint64_t offset, bool overwrite) {
  check_p(p);
  opu::expect_f32_like(dout, dout, kOp, "dout", "dout");
  if (!opu::present(dinp)) return;
  opu::expect_f32_like(dinp, dout, kOp, "dinp", "dout");
  float* dx = dinp.f32();
  const float* dy = dout.f32();
  const DropFactor factor(p, seed, offset);
  for_each(ctx, dout.numel(), kOp, [=] __device__(int64_t i) {
    write_grad(dx + i, dy[i] * factor(i), overwrite);
  });
}

}  // namespace cuda
}  // namespace s2s
