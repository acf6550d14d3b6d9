// softmax (last dim) forward/backward via the ISA-dispatched row kernels in act_kernels*.cpp,
// split over threads by rows; reference loops in double. Legend: N rows, C the softmax dim.
// Napkin: forward reads x twice and writes y twice per element (max, exp+sum, scale): ~16 B/elem.
#include "s2s/ops/softmax.h"

#include <cmath>

#include "ops/act_kernels.h"
#include "ops/op_util.h"
#include "s2s/thread_pool.h"

namespace s2s {

namespace {
constexpr const char* kOp = "softmax";
}  // namespace

void softmax_forward(const Tensor& out, const Tensor& inp) {
  int64_t C;
  const int64_t N = opu::expect_rows(inp, kOp, "inp", &C);
  opu::expect_f32_like(out, inp, kOp, "out", "inp");
  const ActKernels& k = act_kernels();
  float* y = out.f32();
  const float* x = inp.f32();
  parallel_for(N, opu::row_grain(C), [&](int64_t b, int64_t e) {
    k.softmax_forward(y + b * C, x + b * C, e - b, C);
  });
}

void softmax_backward(const Tensor& dinp, const Tensor& dout, const Tensor& out) {
  int64_t C;
  const int64_t N = opu::expect_rows(out, kOp, "out", &C);
  opu::expect_f32_like(dout, out, kOp, "dout", "out");
  if (!opu::present(dinp)) return;
  opu::expect_f32_like(dinp, out, kOp, "dinp", "out");
  const ActKernels& k = act_kernels();
  float* dx = dinp.f32();
  const float* dy = dout.f32();
  const float* y = out.f32();
  parallel_for(N, opu::row_grain(C), [&](int64_t b, int64_t e) {
    k.softmax_backward(dx + b * C, dy + b * C, y + b * C, e - b, C);
  });
}

void softmax_forward_reference(const Tensor& out, const Tensor& inp) {
  int64_t C;
  const int64_t N = opu::expect_rows(inp, kOp, "inp", &C);
  opu::expect_f32_like(out, inp, kOp, "out", "inp");
  for (int64_t r = 0; r < N; ++r) {
    const float* x = inp.f32() + r * C;
    float* y = out.f32() + r * C;
    double m = -INFINITY;
    bool nan = false;
    for (int64_t i = 0; i < C; ++i) {
      nan = nan || std::isnan(x[i]);
      m = x[i] > m ? x[i] : m;
    }
    double sum = 0;
    for (int64_t i = 0; i < C; ++i) sum += std::exp(double(x[i]) - m);
    for (int64_t i = 0; i < C; ++i) {
      y[i] = nan ? NAN : static_cast<float>(std::exp(double(x[i]) - m) / sum);
    }
  }
}

void softmax_backward_reference(const Tensor& dinp, const Tensor& dout, const Tensor& out) {
  int64_t C;
  const int64_t N = opu::expect_rows(out, kOp, "out", &C);
  opu::expect_f32_like(dout, out, kOp, "dout", "out");
  if (!opu::present(dinp)) return;
  opu::expect_f32_like(dinp, out, kOp, "dinp", "out");
  for (int64_t r = 0; r < N; ++r) {
    const float* y = out.f32() + r * C;
    const float* dy = dout.f32() + r * C;
    float* dx = dinp.f32() + r * C;
    double dot = 0;
    for (int64_t i = 0; i < C; ++i) dot += double(dy[i]) * y[i];
    for (int64_t i = 0; i < C; ++i) dx[i] = static_cast<float>(dx[i] + y[i] * (dy[i] - dot));
  }
}

}  // namespace s2s
