// rmsnorm forward/backward (row-parallel, vectorisable, fixed-order dweight reduction) and the
// double-precision reference loops. Legend: N rows = B*T, C channels.
// Math: y = x r w, r = (mean(x^2) + eps)^-1/2;  with xhat = x r and dnorm = w dy:
//   dx = r (dnorm - xhat mean(dnorm xhat)),  dw = sum_rows dy xhat.
#include "s2s/ops/rmsnorm.h"

#include <cmath>
#include <vector>

#include "ops/op_util.h"
#include "s2s/arena.h"
#include "s2s/thread_pool.h"

namespace s2s {

namespace {
constexpr const char* kOp = "rmsnorm";

int64_t check_forward(const Tensor& out, const Tensor& rstd, const Tensor& inp,
                      const Tensor& weight, float eps, int64_t* C) {
  const int64_t N = opu::expect_rows(inp, kOp, "inp", C);
  opu::expect_f32_like(out, inp, kOp, "out", "inp");
  if (opu::present(rstd)) opu::expect_f32_numel(rstd, N, kOp, "rstd");
  expect_f32(weight, {*C}, kOp, "weight");
  if (!(eps >= 0.0f && std::isfinite(eps))) {
    fail(code::kArgument, kOp, "expected eps >= 0 and finite, got ", eps);
  }
  return N;
}

int64_t check_backward(const Tensor& dinp, const Tensor& dweight, const Tensor& dout,
                       const Tensor& inp, const Tensor& weight, const Tensor& rstd, int64_t* C) {
  const int64_t N = opu::expect_rows(inp, kOp, "inp", C);
  opu::expect_f32_like(dout, inp, kOp, "dout", "inp");
  expect_f32(weight, {*C}, kOp, "weight");
  S2S_REQUIRE(opu::present(rstd), code::kArgument, kOp,
              "expected rstd saved by the forward, got a null tensor");
  opu::expect_f32_numel(rstd, N, kOp, "rstd");
  if (opu::present(dinp)) opu::expect_f32_like(dinp, inp, kOp, "dinp", "inp");
  if (opu::present(dweight)) expect_f32(dweight, {*C}, kOp, "dweight");
  return N;
}

float lane_dot(const float* a, const float* b, int64_t n) {
  float acc[opu::kLanes] = {};
  int64_t i = 0;
  for (; i + opu::kLanes <= n; i += opu::kLanes) {
    for (int j = 0; j < opu::kLanes; ++j) acc[j] += a[i + j] * b[i + j];
  }
  for (int j = 0; i < n; ++i, ++j) acc[j] += a[i] * b[i];
  float s = 0;
  for (int j = 0; j < opu::kLanes; ++j) s += acc[j];
  return s;
}
}  // namespace

void rmsnorm_forward(const Tensor& out, const Tensor& rstd, const Tensor& inp,
                     const Tensor& weight, float eps) {
  int64_t C;
  const int64_t N = check_forward(out, rstd, inp, weight, eps, &C);
  float* y_all = out.f32();
  const float* x_all = inp.f32();
  const float* w = weight.f32();
  float* rstd_out = rstd.f32();
  parallel_for(N, opu::row_grain(C), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const float* x = x_all + r * C;
      float* y = y_all + r * C;
      const float ms = lane_dot(x, x, C) / static_cast<float>(C);
      const float s = 1.0f / std::sqrt(ms + eps);
      for (int64_t k = 0; k < C; ++k) y[k] = x[k] * s * w[k];
      if (rstd_out) rstd_out[r] = s;
    }
  });
}

void rmsnorm_backward(const Tensor& dinp, const Tensor& dweight, const Tensor& dout,
                      const Tensor& inp, const Tensor& weight, const Tensor& rstd,
                      bool overwrite_dinp) {
  int64_t C;
  const int64_t N = check_backward(dinp, dweight, dout, inp, weight, rstd, &C);
  float* dx_all = dinp.f32();
  float* dw = dweight.f32();
  if ((!dx_all && !dw) || N == 0 || C == 0) return;
  const float* dy_all = dout.f32();
  const float* x_all = inp.f32();
  const float* w = weight.f32();
  const float* rstd_in = rstd.f32();
  const int chunks = plan_threads(N, opu::row_grain(C));
  AlignedPtr<float> part = make_aligned<float>(dw ? size_t(chunks) * C : 1);
  AlignedPtr<float> scratch = make_aligned<float>(size_t(chunks) * 2 * C);  // xhat, dnorm rows
  parallel_run(chunks, [&](int t) {
    int64_t b, e;
    opu::chunk_range(N, chunks, t, &b, &e);
    float* pw = part.get() + size_t(t) * C;
    if (dw) {
      for (int64_t k = 0; k < C; ++k) pw[k] = 0.0f;
    }
    float* xhat = scratch.get() + size_t(t) * 2 * C;
    float* dnorm = xhat + C;
    for (int64_t r = b; r < e; ++r) {
      const float* x = x_all + r * C;
      const float* dy = dy_all + r * C;
      const float s = rstd_in[r];
      for (int64_t k = 0; k < C; ++k) {
        xhat[k] = x[k] * s;
        dnorm[k] = w[k] * dy[k];
      }
      if (dx_all) {
        const float mean_dnorm_xhat = lane_dot(dnorm, xhat, C) / static_cast<float>(C);
        float* dx = dx_all + r * C;
        if (overwrite_dinp) {
          for (int64_t k = 0; k < C; ++k) dx[k] = (dnorm[k] - xhat[k] * mean_dnorm_xhat) * s;
        } else {
          for (int64_t k = 0; k < C; ++k) dx[k] += (dnorm[k] - xhat[k] * mean_dnorm_xhat) * s;
        }
      }
      if (dw) {
        for (int64_t k = 0; k < C; ++k) pw[k] += dy[k] * xhat[k];
      }
    }
  });
  if (dw) {
    for (int t = 0; t < chunks; ++t) {
      const float* pw = part.get() + size_t(t) * C;
      for (int64_t k = 0; k < C; ++k) dw[k] += pw[k];
    }
  }
}

void rmsnorm_forward_reference(const Tensor& out, const Tensor& rstd, const Tensor& inp,
                               const Tensor& weight, float eps) {
  int64_t C;
  const int64_t N = check_forward(out, rstd, inp, weight, eps, &C);
  for (int64_t r = 0; r < N; ++r) {
    const float* x = inp.f32() + r * C;
    double ms = 0;
    for (int64_t k = 0; k < C; ++k) ms += double(x[k]) * x[k];
    ms /= double(C);
    const double s = 1.0 / std::sqrt(ms + double(eps));
    for (int64_t k = 0; k < C; ++k) {
      out.f32()[r * C + k] = static_cast<float>(x[k] * s * weight.f32()[k]);
    }
    if (opu::present(rstd)) rstd.f32()[r] = static_cast<float>(s);
  }
}

void rmsnorm_backward_reference(const Tensor& dinp, const Tensor& dweight, const Tensor& dout,
                                const Tensor& inp, const Tensor& weight, const Tensor& rstd) {
  int64_t C;
  const int64_t N = check_backward(dinp, dweight, dout, inp, weight, rstd, &C);
  std::vector<double> dw(C, 0.0);
  for (int64_t r = 0; r < N; ++r) {
    const float* x = inp.f32() + r * C;
    const float* dy = dout.f32() + r * C;
    const double s = rstd.f32()[r];
    double s2 = 0;
    for (int64_t k = 0; k < C; ++k) {
      s2 += double(weight.f32()[k]) * dy[k] * x[k] * s;
      dw[k] += double(dy[k]) * x[k] * s;
    }
    if (opu::present(dinp)) {
      for (int64_t k = 0; k < C; ++k) {
        float& dx = dinp.f32()[r * C + k];
        dx = static_cast<float>(dx + (double(weight.f32()[k]) * dy[k] - x[k] * s * s2 / C) * s);
      }
    }
  }
  if (opu::present(dweight)) {
    for (int64_t k = 0; k < C; ++k) dweight.f32()[k] = static_cast<float>(dweight.f32()[k] + dw[k]);
  }
}

}  // namespace s2s
