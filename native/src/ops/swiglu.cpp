// swiglu forward/backward (ISA-dispatched kernels in act_kernels*.cpp) and reference loops.
// Legend: N rows = B*T, H intermediate size.
#include "s2s/ops/swiglu.h"

#include <cmath>

#include "ops/act_kernels.h"
#include "ops/op_util.h"
#include "s2s/thread_pool.h"

namespace s2s {

namespace {
constexpr const char* kOp = "swiglu";

void check_forward(const Tensor& out, const Tensor& gate, const Tensor& up) {
  opu::expect_f32_like(gate, gate, kOp, "gate", "gate");
  opu::expect_f32_like(up, gate, kOp, "up", "gate");
  opu::expect_f32_like(out, gate, kOp, "out", "gate");
}

// Returns whether the gradients are bf16 (opu::expect_gated_grads).
bool check_backward(const Tensor& dgate, const Tensor& dup, const Tensor& dout,
                    const Tensor& gate, const Tensor& up, bool overwrite) {
  opu::expect_f32_like(gate, gate, kOp, "gate", "gate");
  opu::expect_f32_like(up, gate, kOp, "up", "gate");
  opu::expect_f32_like(dout, gate, kOp, "dout", "gate");
  return opu::expect_gated_grads(dgate, dup, gate, overwrite, kOp);
}
}  // namespace

void swiglu_forward(const Tensor& out, const Tensor& gate, const Tensor& up) {
  check_forward(out, gate, up);
  const ActKernels& k = act_kernels();
  float* y = out.f32();
  const float* g = gate.f32();
  const float* u = up.f32();
  parallel_for(gate.numel(), opu::kElemGrain,
               [&](int64_t b, int64_t e) { k.swiglu_forward(y + b, g + b, u + b, e - b); });
}

void swiglu_backward(const Tensor& dgate, const Tensor& dup, const Tensor& dout,
                     const Tensor& gate, const Tensor& up, bool overwrite) {
  const bool bf16 = check_backward(dgate, dup, dout, gate, up, overwrite);
  if (!opu::present(dgate) && !opu::present(dup)) return;
  const ActKernels& k = act_kernels();
  const float* dy = dout.f32();
  const float* g = gate.f32();
  const float* u = up.f32();
  if (bf16) {
    uint16_t* dg = static_cast<uint16_t*>(dgate.data);
    uint16_t* du = static_cast<uint16_t*>(dup.data);
    parallel_for(gate.numel(), opu::kElemGrain, [&](int64_t b, int64_t e) {
      opu::rounded_blocks(dg, du, b, e, [&](float* g32, float* u32, int64_t c0, int64_t n) {
        k.swiglu_backward(g32, u32, dy + c0, g + c0, u + c0, n, true);
      });
    });
    return;
  }
  float* dg = static_cast<float*>(dgate.data);
  float* du = static_cast<float*>(dup.data);
  parallel_for(gate.numel(), opu::kElemGrain, [&](int64_t b, int64_t e) {
    k.swiglu_backward(dg ? dg + b : nullptr, du ? du + b : nullptr, dy + b, g + b, u + b, e - b,
                      overwrite);
  });
}

void swiglu_forward_reference(const Tensor& out, const Tensor& gate, const Tensor& up) {
  check_forward(out, gate, up);
  for (int64_t i = 0; i < gate.numel(); ++i) {
    const double g = gate.f32()[i];
    out.f32()[i] = static_cast<float>(g / (1.0 + std::exp(-g)) * up.f32()[i]);
  }
}

void swiglu_backward_reference(const Tensor& dgate, const Tensor& dup, const Tensor& dout,
                               const Tensor& gate, const Tensor& up) {
  check_backward(dgate, dup, dout, gate, up, false);
  for (int64_t i = 0; i < gate.numel(); ++i) {
    const double g = gate.f32()[i], u = up.f32()[i], dy = dout.f32()[i];
    const double s = 1.0 / (1.0 + std::exp(-g));
    if (opu::present(dgate)) {
      dgate.f32()[i] = static_cast<float>(dgate.f32()[i] + dy * u * s * (1.0 + g * (1.0 - s)));
    }
    if (opu::present(dup)) dup.f32()[i] = static_cast<float>(dup.f32()[i] + dy * g * s);
  }
}

}  // namespace s2s
