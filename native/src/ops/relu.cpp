// relu forward/backward and reference loops. Plain loops the compiler vectorises (max and a
// select); NaN is kept by writing the compare so that a NaN input is returned as is.
#include "s2s/ops/relu.h"

#include "ops/op_util.h"
#include "s2s/thread_pool.h"

namespace s2s {

namespace {
constexpr const char* kOp = "relu";

void check(const Tensor& out, const Tensor* dout, const Tensor& inp) {
  opu::expect_f32_like(inp, inp, kOp, "inp", "inp");
  if (dout) opu::expect_f32_like(*dout, inp, kOp, "dout", "inp");
  if (opu::present(out)) opu::expect_f32_like(out, inp, kOp, dout ? "dinp" : "out", "inp");
}

// The backward's checks; returns whether dinp is bf16 (overwritten only).
bool check_backward(const Tensor& dinp, const Tensor& dout, const Tensor& inp, bool overwrite) {
  opu::expect_f32_like(inp, inp, kOp, "inp", "inp");
  opu::expect_f32_like(dout, inp, kOp, "dout", "inp");
  return opu::present(dinp) && opu::expect_grad_like(dinp, inp, overwrite, kOp, "dinp", "inp");
}
}  // namespace

void relu_forward(const Tensor& out, const Tensor& inp) {
  S2S_REQUIRE(opu::present(out) || inp.numel() == 0, code::kArgument, kOp,
              "expected out to have data, got a null pointer");
  check(out, nullptr, inp);
  float* y = out.f32();
  const float* x = inp.f32();
  parallel_for(inp.numel(), opu::kElemGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) y[i] = x[i] < 0.0f ? 0.0f : x[i];  // NaN < 0 is false
  });
}

void relu_backward(const Tensor& dinp, const Tensor& dout, const Tensor& inp, bool overwrite) {
  const bool bf16 = check_backward(dinp, dout, inp, overwrite);
  if (!opu::present(dinp)) return;
  const float* dy = dout.f32();
  const float* x = inp.f32();
  if (bf16) {
    uint16_t* dx = static_cast<uint16_t*>(dinp.data);
    parallel_for(inp.numel(), opu::kElemGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const float g = dy[i];  // loaded unconditionally so the select vectorises
        dx[i] = opu::bf16_rne(x[i] > 0.0f ? g : 0.0f);
      }
    });
    return;
  }
  float* dx = static_cast<float*>(dinp.data);
  parallel_for(inp.numel(), opu::kElemGrain, [&](int64_t b, int64_t e) {
    if (overwrite) {
      for (int64_t i = b; i < e; ++i) {
        const float g = dy[i];  // loaded unconditionally so the select vectorises
        dx[i] = x[i] > 0.0f ? g : 0.0f;
      }
    } else {
      for (int64_t i = b; i < e; ++i) {
        const float g = dy[i];
        dx[i] += x[i] > 0.0f ? g : 0.0f;
      }
    }
  });
}

void relu_forward_reference(const Tensor& out, const Tensor& inp) {
  check(out, nullptr, inp);
  for (int64_t i = 0; i < inp.numel(); ++i) {
    const float x = inp.f32()[i];
    out.f32()[i] = x != x ? x : (x > 0.0f ? x : 0.0f);
  }
}

void relu_backward_reference(const Tensor& dinp, const Tensor& dout, const Tensor& inp) {
  check(dinp, &dout, inp);
  if (!opu::present(dinp)) return;
  for (int64_t i = 0; i < inp.numel(); ++i) {
    if (inp.f32()[i] > 0.0f) dinp.f32()[i] += dout.f32()[i];
  }
}

}  // namespace s2s
