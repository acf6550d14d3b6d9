// silu forward/backward (ISA-dispatched kernels in act_kernels*.cpp) and reference loops.
#include "s2s/ops/silu.h"

#include <cmath>

#include "ops/act_kernels.h"
#include "ops/op_util.h"
#include "s2s/thread_pool.h"

namespace s2s {

namespace {
constexpr const char* kOp = "silu";

void check(const Tensor& out, const Tensor* dout, const Tensor& inp) {
  opu::expect_f32_like(inp, inp, kOp, "inp", "inp");
  if (dout) opu::expect_f32_like(*dout, inp, kOp, "dout", "inp");
  if (opu::present(out) || !dout) opu::expect_f32_like(out, inp, kOp, dout ? "dinp" : "out", "inp");
}

double sigmoid_ref(double x) { return 1.0 / (1.0 + std::exp(-x)); }
}  // namespace

void silu_forward(const Tensor& out, const Tensor& inp) {
  check(out, nullptr, inp);
  const ActKernels& k = act_kernels();
  float* y = out.f32();
  const float* x = inp.f32();
  parallel_for(inp.numel(), opu::kElemGrain,
               [&](int64_t b, int64_t e) { k.silu_forward(y + b, x + b, e - b); });
}

void silu_backward(const Tensor& dinp, const Tensor& dout, const Tensor& inp, bool overwrite) {
  check(dinp, &dout, inp);
  if (!opu::present(dinp)) return;
  const ActKernels& k = act_kernels();
  float* dx = dinp.f32();
  const float* dy = dout.f32();
  const float* x = inp.f32();
  parallel_for(inp.numel(), opu::kElemGrain,
               [&](int64_t b, int64_t e) {
                 k.silu_backward(dx + b, dy + b, x + b, e - b, overwrite);
               });
}

void silu_forward_reference(const Tensor& out, const Tensor& inp) {
  check(out, nullptr, inp);
  for (int64_t i = 0; i < inp.numel(); ++i) {
    const double x = inp.f32()[i];
    out.f32()[i] = static_cast<float>(x * sigmoid_ref(x));
  }
}

void silu_backward_reference(const Tensor& dinp, const Tensor& dout, const Tensor& inp) {
  check(dinp, &dout, inp);
  if (!opu::present(dinp)) return;
  for (int64_t i = 0; i < inp.numel(); ++i) {
    const double x = inp.f32()[i], s = sigmoid_ref(x);
    dinp.f32()[i] =
        static_cast<float>(dinp.f32()[i] + double(dout.f32()[i]) * s * (1.0 + x * (1.0 - s)));
  }
}

}  // namespace s2s
