// layernorm forward/backward (row-parallel, vectorisable loops, fixed-order dweight/dbias
// reduction) and the double-precision reference loops. Legend: N rows = B*T, C channels.
// Napkin: forward reads x twice and writes y once (12 B/elem); backward reads x, dy, dx, writes
// dx (16 B/elem) plus per-chunk partials of 2C floats.
#include "s2s/ops/layernorm.h"

#include <cmath>
#include <vector>

#include "ops/op_util.h"
#include "s2s/arena.h"
#include "s2s/thread_pool.h"

namespace s2s {

namespace {
constexpr const char* kOp = "layernorm";

// Validates the forward's arguments and returns N (rows) and C.
int64_t check_forward(const Tensor& out, const Tensor& mean, const Tensor& rstd,
                      const Tensor& inp, const Tensor& weight, const Tensor& bias, float eps,
                      int64_t* C) {
  const int64_t N = opu::expect_rows(inp, kOp, "inp", C);
  opu::expect_f32_like(out, inp, kOp, "out", "inp");
  if (opu::present(mean)) opu::expect_f32_numel(mean, N, kOp, "mean");
  if (opu::present(rstd)) opu::expect_f32_numel(rstd, N, kOp, "rstd");
  expect_f32(weight, {*C}, kOp, "weight");
  if (opu::present(bias)) expect_f32(bias, {*C}, kOp, "bias");
  if (!(eps >= 0.0f && std::isfinite(eps))) {
    fail(code::kArgument, kOp, "expected eps >= 0 and finite, got ", eps);
  }
  return N;
}

int64_t check_backward(const Tensor& dinp, const Tensor& dweight, const Tensor& dbias,
                       const Tensor& dout, const Tensor& inp, const Tensor& weight,
                       const Tensor& mean, const Tensor& rstd, int64_t* C) {
  const int64_t N = opu::expect_rows(inp, kOp, "inp", C);
  opu::expect_f32_like(dout, inp, kOp, "dout", "inp");
  expect_f32(weight, {*C}, kOp, "weight");
  S2S_REQUIRE(opu::present(mean) && opu::present(rstd), code::kArgument, kOp,
              "expected mean and rstd saved by the forward, got a null tensor");
  opu::expect_f32_numel(mean, N, kOp, "mean");
  opu::expect_f32_numel(rstd, N, kOp, "rstd");
  if (opu::present(dinp)) opu::expect_f32_like(dinp, inp, kOp, "dinp", "inp");
  if (opu::present(dweight)) expect_f32(dweight, {*C}, kOp, "dweight");
  if (opu::present(dbias)) expect_f32(dbias, {*C}, kOp, "dbias");
  return N;
}
}  // namespace

void layernorm_forward(const Tensor& out, const Tensor& mean, const Tensor& rstd,
                       const Tensor& inp, const Tensor& weight, const Tensor& bias, float eps) {
  int64_t C;
  const int64_t N = check_forward(out, mean, rstd, inp, weight, bias, eps, &C);
  float* y_all = out.f32();
  const float* x_all = inp.f32();
  const float* w = weight.f32();
  const float* bb = bias.f32();
  float* mean_out = mean.f32();
  float* rstd_out = rstd.f32();
  parallel_for(N, opu::row_grain(C), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const float* x = x_all + r * C;
      float* y = y_all + r * C;
      const float m = opu::lane_sum(x, C) / static_cast<float>(C);
      // Two-pass variance (no E[x^2] - m^2 cancellation).
      float acc[opu::kLanes] = {};
      int64_t i = 0;
      for (; i + opu::kLanes <= C; i += opu::kLanes) {
        for (int j = 0; j < opu::kLanes; ++j) acc[j] += (x[i + j] - m) * (x[i + j] - m);
      }
      for (int j = 0; i < C; ++i, ++j) acc[j] += (x[i] - m) * (x[i] - m);
      float var = 0;
      for (int j = 0; j < opu::kLanes; ++j) var += acc[j];
      var /= static_cast<float>(C);
      const float s = 1.0f / std::sqrt(var + eps);
      if (bb) {
        for (int64_t k = 0; k < C; ++k) y[k] = (x[k] - m) * s * w[k] + bb[k];
      } else {
        for (int64_t k = 0; k < C; ++k) y[k] = (x[k] - m) * s * w[k];
      }
      if (mean_out) mean_out[r] = m;
      if (rstd_out) rstd_out[r] = s;
    }
  });
}

// dnorm = w * dy, xhat = (x - mean) * rstd
// dx += rstd * (dnorm - mean(dnorm) - xhat * mean(dnorm * xhat))   (= with overwrite_dinp)
// dw += sum_rows dy * xhat;  db += sum_rows dy
void layernorm_backward(const Tensor& dinp, const Tensor& dweight, const Tensor& dbias,
                        const Tensor& dout, const Tensor& inp, const Tensor& weight,
                        const Tensor& mean, const Tensor& rstd, bool overwrite_dinp) {
  int64_t C;
  const int64_t N = check_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, &C);
  float* dx_all = dinp.f32();
  float* dw = dweight.f32();
  float* db = dbias.f32();
  if ((!dx_all && !dw && !db) || N == 0 || C == 0) return;
  const float* dy_all = dout.f32();
  const float* x_all = inp.f32();
  const float* w = weight.f32();
  const float* mean_in = mean.f32();
  const float* rstd_in = rstd.f32();

  const int chunks = plan_threads(N, opu::row_grain(C));
  // Per-chunk partial sums of dweight and dbias: chunk t owns rows 2t (dw) and 2t+1 (db).
  const bool partials = dw || db;
  AlignedPtr<float> part = make_aligned<float>(partials ? size_t(chunks) * 2 * C : 1);
  AlignedPtr<float> scratch = make_aligned<float>(size_t(chunks) * 2 * C);  // xhat, dnorm rows
  parallel_run(chunks, [&](int t) {
    int64_t b, e;
    opu::chunk_range(N, chunks, t, &b, &e);
    float* pw = part.get() + size_t(t) * 2 * C;
    float* pb = pw + C;
    if (partials) {
      for (int64_t k = 0; k < 2 * C; ++k) pw[k] = 0.0f;
    }
    float* xhat = scratch.get() + size_t(t) * 2 * C;
    float* dnorm = xhat + C;
    const float inv_c = 1.0f / static_cast<float>(C);
    for (int64_t r = b; r < e; ++r) {
      const float* x = x_all + r * C;
      const float* dy = dy_all + r * C;
      const float m = mean_in[r], s = rstd_in[r];
      for (int64_t k = 0; k < C; ++k) {
        xhat[k] = (x[k] - m) * s;
        dnorm[k] = w[k] * dy[k];
      }
      if (dx_all) {
        float a1[opu::kLanes] = {}, a2[opu::kLanes] = {};
        int64_t i = 0;
        for (; i + opu::kLanes <= C; i += opu::kLanes) {
          for (int j = 0; j < opu::kLanes; ++j) {
            a1[j] += dnorm[i + j];
            a2[j] += dnorm[i + j] * xhat[i + j];
          }
        }
        for (int j = 0; i < C; ++i, ++j) {
          a1[j] += dnorm[i];
          a2[j] += dnorm[i] * xhat[i];
        }
        float s1 = 0, s2 = 0;
        for (int j = 0; j < opu::kLanes; ++j) {
          s1 += a1[j];
          s2 += a2[j];
        }
        const float mean_dnorm = s1 * inv_c, mean_dnorm_xhat = s2 * inv_c;
        float* dx = dx_all + r * C;
        if (overwrite_dinp) {
          for (int64_t k = 0; k < C; ++k) {
            dx[k] = (dnorm[k] - mean_dnorm - xhat[k] * mean_dnorm_xhat) * s;
          }
        } else {
          for (int64_t k = 0; k < C; ++k) {
            dx[k] += (dnorm[k] - mean_dnorm - xhat[k] * mean_dnorm_xhat) * s;
          }
        }
      }
      if (dw) {
        for (int64_t k = 0; k < C; ++k) pw[k] += dy[k] * xhat[k];
      }
      if (db) {
        for (int64_t k = 0; k < C; ++k) pb[k] += dy[k];
      }
    }
  });
  // Fixed-order reduction of the chunk partials.
  for (int t = 0; t < chunks; ++t) {
    const float* pw = part.get() + size_t(t) * 2 * C;
    if (dw) for (int64_t k = 0; k < C; ++k) dw[k] += pw[k];
    if (db) for (int64_t k = 0; k < C; ++k) db[k] += pw[C + k];
  }
}

void layernorm_forward_reference(const Tensor& out, const Tensor& mean, const Tensor& rstd,
                                 const Tensor& inp, const Tensor& weight, const Tensor& bias,
                                 float eps) {
  int64_t C;
  const int64_t N = check_forward(out, mean, rstd, inp, weight, bias, eps, &C);
  for (int64_t r = 0; r < N; ++r) {
    const float* x = inp.f32() + r * C;
    double m = 0, v = 0;
    for (int64_t k = 0; k < C; ++k) m += x[k];
    m /= double(C);
    for (int64_t k = 0; k < C; ++k) v += (x[k] - m) * (x[k] - m);
    v /= double(C);
    const double s = 1.0 / std::sqrt(v + double(eps));
    for (int64_t k = 0; k < C; ++k) {
      const double b = opu::present(bias) ? double(bias.f32()[k]) : 0.0;
      out.f32()[r * C + k] = static_cast<float>((x[k] - m) * s * weight.f32()[k] + b);
    }
    if (opu::present(mean)) mean.f32()[r] = static_cast<float>(m);
    if (opu::present(rstd)) rstd.f32()[r] = static_cast<float>(s);
  }
}

void layernorm_backward_reference(const Tensor& dinp, const Tensor& dweight, const Tensor& dbias,
                                  const Tensor& dout, const Tensor& inp, const Tensor& weight,
                                  const Tensor& mean, const Tensor& rstd) {
  int64_t C;
  const int64_t N = check_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, &C);
  std::vector<double> dw(C, 0.0), db(C, 0.0);
  for (int64_t r = 0; r < N; ++r) {
    const float* x = inp.f32() + r * C;
    const float* dy = dout.f32() + r * C;
    const double m = mean.f32()[r], s = rstd.f32()[r];
    double s1 = 0, s2 = 0;
    for (int64_t k = 0; k < C; ++k) {
      const double xhat = (x[k] - m) * s, dnorm = double(weight.f32()[k]) * dy[k];
      s1 += dnorm;
      s2 += dnorm * xhat;
      dw[k] += dy[k] * xhat;
      db[k] += dy[k];
    }
    if (opu::present(dinp)) {
      for (int64_t k = 0; k < C; ++k) {
        const double xhat = (x[k] - m) * s, dnorm = double(weight.f32()[k]) * dy[k];
        float& dx = dinp.f32()[r * C + k];
        dx = static_cast<float>(dx + (dnorm - s1 / C - xhat * s2 / C) * s);
      }
    }
  }
  for (int64_t k = 0; k < C; ++k) {
    if (opu::present(dweight)) dweight.f32()[k] = static_cast<float>(dweight.f32()[k] + dw[k]);
    if (opu::present(dbias)) dbias.f32()[k] = static_cast<float>(dbias.f32()[k] + db[k]);
  }
}

}  // namespace s2s
