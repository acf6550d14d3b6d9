// gelu forward/backward (exact erf and tanh approximation) and their reference loops.
// Fast path: the ISA-dispatched kernels in act_kernels*.cpp, split over threads by elements.
// Legend: N rows, H hidden; the op is elementwise so any shape works.
#include "s2s/ops/gelu.h"

#include <cmath>

#include "ops/act_kernels.h"
#include "ops/op_util.h"
#include "s2s/thread_pool.h"

namespace s2s {

namespace {
constexpr const char* kOp = "gelu";

void check_approx(GeluApprox a) {
  if (a != GeluApprox::None && a != GeluApprox::Tanh) {
    fail(code::kArgument, kOp, "expected approximate to be None (0) or Tanh (1), got ",
         static_cast<int>(a));
  }
}

void check_forward(const Tensor& out, const Tensor& inp, GeluApprox a) {
  check_approx(a);
  opu::expect_f32_like(inp, inp, kOp, "inp", "inp");
  opu::expect_f32_like(out, inp, kOp, "out", "inp");
}

void check_backward(const Tensor& dinp, const Tensor& dout, const Tensor& inp, GeluApprox a) {
  check_approx(a);
  opu::expect_f32_like(inp, inp, kOp, "inp", "inp");
  opu::expect_f32_like(dout, inp, kOp, "dout", "inp");
  if (opu::present(dinp)) opu::expect_f32_like(dinp, inp, kOp, "dinp", "inp");
}

double gelu_ref(double x, GeluApprox a) {
  if (a == GeluApprox::Tanh) {
    const double k = std::sqrt(2.0 / M_PI);
    return 0.5 * x * (1.0 + std::tanh(k * (x + 0.044715 * x * x * x)));
  }
  return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
}

double gelu_grad_ref(double x, GeluApprox a) {
  if (a == GeluApprox::Tanh) {
    const double k = std::sqrt(2.0 / M_PI);
    const double t = std::tanh(k * (x + 0.044715 * x * x * x));
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * k * (1.0 + 3.0 * 0.044715 * x * x);
  }
  return 0.5 * (1.0 + std::erf(x / std::sqrt(2.0))) +
         x * std::exp(-0.5 * x * x) / std::sqrt(2.0 * M_PI);
}
}  // namespace

void gelu_forward(const Tensor& out, const Tensor& inp, GeluApprox approximate) {
  check_forward(out, inp, approximate);
  const ActKernels& k = act_kernels();
  float* y = out.f32();
  const float* x = inp.f32();
  const bool t = approximate == GeluApprox::Tanh;
  parallel_for(inp.numel(), opu::kElemGrain,
               [&](int64_t b, int64_t e) { k.gelu_forward(y + b, x + b, e - b, t); });
}

void gelu_backward(const Tensor& dinp, const Tensor& dout, const Tensor& inp,
                   GeluApprox approximate, bool overwrite) {
  check_backward(dinp, dout, inp, approximate);
  if (!opu::present(dinp)) return;
  const ActKernels& k = act_kernels();
  float* dx = dinp.f32();
  const float* dy = dout.f32();
  const float* x = inp.f32();
  const bool t = approximate == GeluApprox::Tanh;
  parallel_for(inp.numel(), opu::kElemGrain,
               [&](int64_t b, int64_t e) {
                 k.gelu_backward(dx + b, dy + b, x + b, e - b, t, overwrite);
               });
}

void gelu_forward_reference(const Tensor& out, const Tensor& inp, GeluApprox approximate) {
  check_forward(out, inp, approximate);
  for (int64_t i = 0; i < inp.numel(); ++i) {
    out.f32()[i] = static_cast<float>(gelu_ref(inp.f32()[i], approximate));
  }
}

void gelu_backward_reference(const Tensor& dinp, const Tensor& dout, const Tensor& inp,
                             GeluApprox approximate) {
  check_backward(dinp, dout, inp, approximate);
  if (!opu::present(dinp)) return;
  for (int64_t i = 0; i < inp.numel(); ++i) {
    dinp.f32()[i] = static_cast<float>(
        dinp.f32()[i] + double(dout.f32()[i]) * gelu_grad_ref(inp.f32()[i], approximate));
  }
}

}  // namespace s2s
