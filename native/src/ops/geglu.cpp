// geglu forward/backward (ISA-dispatched kernels in act_kernels*.cpp) and reference loops.
// Legend: N rows = B*T, H d_ff.
#include "s2s/ops/geglu.h"

#include <cmath>

#include "ops/act_kernels.h"
#include "ops/op_util.h"
#include "s2s/thread_pool.h"

namespace s2s {

namespace {
constexpr const char* kOp = "geglu";

void check_approx(GeluApprox a) {
  if (a != GeluApprox::None && a != GeluApprox::Tanh) {
    fail(code::kArgument, kOp, "expected approximate to be None (0) or Tanh (1), got ",
         static_cast<int>(a));
  }
}

void check_forward(const Tensor& out, const Tensor& gate, const Tensor& up, GeluApprox a) {
  check_approx(a);
  opu::expect_f32_like(gate, gate, kOp, "gate", "gate");
  opu::expect_f32_like(up, gate, kOp, "up", "gate");
  opu::expect_f32_like(out, gate, kOp, "out", "gate");
}

// Returns whether the gradients are bf16 (opu::expect_gated_grads).
bool check_backward(const Tensor& dgate, const Tensor& dup, const Tensor& dout,
                    const Tensor& gate, const Tensor& up, GeluApprox a, bool overwrite) {
  check_approx(a);
  opu::expect_f32_like(gate, gate, kOp, "gate", "gate");
  opu::expect_f32_like(up, gate, kOp, "up", "gate");
  opu::expect_f32_like(dout, gate, kOp, "dout", "gate");
  return opu::expect_gated_grads(dgate, dup, gate, overwrite, kOp);
}

// gelu and its derivative in double (the same formulas as gelu_*_reference).
void gelu_ref(double x, GeluApprox a, double* y, double* dy) {
  if (a == GeluApprox::Tanh) {
    const double k = std::sqrt(2.0 / M_PI);
    const double t = std::tanh(k * (x + 0.044715 * x * x * x));
    *y = 0.5 * x * (1.0 + t);
    *dy = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * k * (1.0 + 3.0 * 0.044715 * x * x);
  } else {
    const double e = std::erf(x / std::sqrt(2.0));
    *y = 0.5 * x * (1.0 + e);
    *dy = 0.5 * (1.0 + e) + x * std::exp(-0.5 * x * x) / std::sqrt(2.0 * M_PI);
  }
}
}  // namespace

void geglu_forward(const Tensor& out, const Tensor& gate, const Tensor& up,
                   GeluApprox approximate) {
  check_forward(out, gate, up, approximate);
  const ActKernels& k = act_kernels();
  float* y = out.f32();
  const float* g = gate.f32();
  const float* u = up.f32();
  const bool t = approximate == GeluApprox::Tanh;
  parallel_for(gate.numel(), opu::kElemGrain,
               [&](int64_t b, int64_t e) { k.geglu_forward(y + b, g + b, u + b, e - b, t); });
}

void geglu_backward(const Tensor& dgate, const Tensor& dup, const Tensor& dout,
                    const Tensor& gate, const Tensor& up, GeluApprox approximate,
                    bool overwrite) {
  const bool bf16 = check_backward(dgate, dup, dout, gate, up, approximate, overwrite);
  if (!opu::present(dgate) && !opu::present(dup)) return;
  const ActKernels& k = act_kernels();
  const float* dy = dout.f32();
  const float* g = gate.f32();
  const float* u = up.f32();
  const bool t = approximate == GeluApprox::Tanh;
  if (bf16) {
    uint16_t* dg = static_cast<uint16_t*>(dgate.data);
    uint16_t* du = static_cast<uint16_t*>(dup.data);
    parallel_for(gate.numel(), opu::kElemGrain, [&](int64_t b, int64_t e) {
      opu::rounded_blocks(dg, du, b, e, [&](float* g32, float* u32, int64_t c0, int64_t n) {
        k.geglu_backward(g32, u32, dy + c0, g + c0, u + c0, n, t, true);
      });
    });
    return;
  }
  float* dg = static_cast<float*>(dgate.data);
  float* du = static_cast<float*>(dup.data);
  parallel_for(gate.numel(), opu::kElemGrain, [&](int64_t b, int64_t e) {
    k.geglu_backward(dg ? dg + b : nullptr, du ? du + b : nullptr, dy + b, g + b, u + b, e - b,
                     t, overwrite);
  });
}

void geglu_forward_reference(const Tensor& out, const Tensor& gate, const Tensor& up,
                             GeluApprox approximate) {
  check_forward(out, gate, up, approximate);
  for (int64_t i = 0; i < gate.numel(); ++i) {
    double y, dy;
    gelu_ref(gate.f32()[i], approximate, &y, &dy);
    out.f32()[i] = static_cast<float>(y * up.f32()[i]);
  }
}

void geglu_backward_reference(const Tensor& dgate, const Tensor& dup, const Tensor& dout,
                              const Tensor& gate, const Tensor& up, GeluApprox approximate) {
  check_backward(dgate, dup, dout, gate, up, approximate, false);
  for (int64_t i = 0; i < gate.numel(); ++i) {
    double y, dy;
    gelu_ref(gate.f32()[i], approximate, &y, &dy);
    const double g_out = dout.f32()[i];
    if (opu::present(dgate)) {
      dgate.f32()[i] = static_cast<float>(dgate.f32()[i] + g_out * up.f32()[i] * dy);
    }
    if (opu::present(dup)) dup.f32()[i] = static_cast<float>(dup.f32()[i] + g_out * y);
  }
}

}  // namespace s2s
