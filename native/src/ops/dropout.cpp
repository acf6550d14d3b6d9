// dropout forward/backward with the Philox mask regenerated from (seed, offset), and reference
// loops that run one Philox block per element. The fast path makes the blocks in bulk with the
// vector Philox kernels (ops/dropout_mask_kernels.h). Thread split is by elements; masks depend
// on the element index only.
#include "s2s/ops/dropout.h"

#include "ops/dropout_mask.h"
#include "ops/dropout_mask_kernels.h"
#include "ops/op_util.h"
#include "s2s/thread_pool.h"

namespace s2s {

namespace {
constexpr const char* kOp = "dropout";

void check_p(float p) {
  if (!(p >= 0.0f && p < 1.0f)) fail(code::kArgument, kOp, "expected p in [0, 1), got ", p);
}

// dst[i] (= or +=) src[i] * (keep(offset + i) ? scale : 0) for i in [b, e).
void apply(DropoutApply how, float* dst, const float* src, int64_t b, int64_t e, float p,
           float scale, uint64_t seed, uint64_t offset) {
  dropout_rows(how, dst + b, src + b, 0, 1, e - b, seed, offset + uint64_t(b), 0, p, scale);
}
}  // namespace

void dropout_forward(const Tensor& out, const Tensor& inp, float p, DropoutSeed key,
                     uint64_t offset) {
  check_p(p);
  opu::expect_f32_like(inp, inp, kOp, "inp", "inp");
  opu::expect_f32_like(out, inp, kOp, "out", "inp");
  float* y = out.f32();
  const float* x = inp.f32();
  if (p == 0.0f) {
    if (y != x) {
      parallel_for(inp.numel(), opu::kElemGrain, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) y[i] = x[i];
      });
    }
    return;
  }
  const float scale = 1.0f / (1.0f - p);
  const uint64_t seed = key.read_on_host();
  parallel_for(inp.numel(), opu::kElemGrain / 4, [&](int64_t b, int64_t e) {
    apply(DropoutApply::kMultiply, y, x, b, e, p, scale, seed, offset);
  });
}

void dropout_backward(const Tensor& dinp, const Tensor& dout, float p, DropoutSeed key,
                      uint64_t offset, bool overwrite) {
  check_p(p);
  opu::expect_f32_like(dout, dout, kOp, "dout", "dout");
  if (!opu::present(dinp)) return;
  opu::expect_f32_like(dinp, dout, kOp, "dinp", "dout");
  float* dx = dinp.f32();
  const float* dy = dout.f32();
  if (p == 0.0f) {
    parallel_for(dout.numel(), opu::kElemGrain, [&](int64_t b, int64_t e) {
      if (overwrite) {
        for (int64_t i = b; i < e; ++i) dx[i] = dy[i];
      } else {
        for (int64_t i = b; i < e; ++i) dx[i] += dy[i];
      }
    });
    return;
  }
  const float scale = 1.0f / (1.0f - p);
  const uint64_t seed = key.read_on_host();
  parallel_for(dout.numel(), opu::kElemGrain / 4, [&](int64_t b, int64_t e) {
    apply(overwrite ? DropoutApply::kMultiply : DropoutApply::kAccumulate, dx, dy, b, e, p, scale,
          seed, offset);
  });
}

void dropout_forward_reference(const Tensor& out, const Tensor& inp, float p, uint64_t seed,
                               uint64_t offset) {
  check_p(p);
  opu::expect_f32_like(inp, inp, kOp, "inp", "inp");
  opu::expect_f32_like(out, inp, kOp, "out", "inp");
  const float scale = 1.0f / (1.0f - p);
  for (int64_t i = 0; i < inp.numel(); ++i) {
    const bool keep = dropout_keep(seed, offset + uint64_t(i), p);
    out.f32()[i] = inp.f32()[i] * (keep ? scale : 0.0f);
  }
}

void dropout_backward_reference(const Tensor& dinp, const Tensor& dout, float p, uint64_t seed,
                                uint64_t offset) {
  check_p(p);
  opu::expect_f32_like(dout, dout, kOp, "dout", "dout");
  if (!opu::present(dinp)) return;
  opu::expect_f32_like(dinp, dout, kOp, "dinp", "dout");
  const float scale = 1.0f / (1.0f - p);
  for (int64_t i = 0; i < dout.numel(); ++i) {
    const bool keep = dropout_keep(seed, offset + uint64_t(i), p);
    dinp.f32()[i] += dout.f32()[i] * (keep ? scale : 0.0f);
  }
}

}  // namespace s2s
