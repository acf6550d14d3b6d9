// adamw: torch.optim.AdamW's single-tensor step, elementwise in fp32 with PyTorch's operation
// order, and the double reference. Napkin: 16 bytes read + 12 written per parameter, ~15 flops
// (one sqrt, one divide): memory bound, ~1-2 ns per parameter per core.
#include "s2s/ops/adamw.h"

#include <algorithm>
#include <cmath>

#include "ops/adamw_kernel.h"
#include "s2s/cpu_features.h"
#include "s2s/thread_pool.h"

namespace s2s {

#if defined(S2S_HAVE_X86_KERNELS)
namespace detail {
void adamw_elements_avx2(float* p, const float* g, float* m, float* v, int64_t n,
                         const AdamWScalars& s);
void adamw_fused_elements_avx2(float* p, float* g, float* m, float* v, uint16_t* c, int64_t n,
                               const AdamWScalars& s, float scale, float clip);
}
#endif

namespace {

constexpr const char* kOp = "adamw";

int64_t check(const Tensor& param, const Tensor& grad, const Tensor& exp_avg,
              const Tensor& exp_avg_sq, int64_t step, const AdamWOptions& o) {
  expect_dtype(param, DType::F32, kOp, "param");
  expect_contiguous(param, kOp, "param");
  const Tensor* others[] = {&grad, &exp_avg, &exp_avg_sq};
  const char* names[] = {"grad", "exp_avg", "exp_avg_sq"};
  for (int n = 0; n < 3; ++n) {
    const Tensor& t = *others[n];
    expect_dtype(t, DType::F32, kOp, names[n]);
    expect_contiguous(t, kOp, names[n]);
    bool same = t.ndim == param.ndim;
    for (int i = 0; same && i < t.ndim; ++i) same = t.shape[i] == param.shape[i];
    S2S_REQUIRE(same, code::kShape, kOp, "expected ", names[n], " of shape ",
                param.shape_string(), " (as param), got ", t.shape_string());
  }
  S2S_REQUIRE(step >= 1, code::kArgument, kOp, "expected step >= 1, got ", step);
  S2S_REQUIRE(o.lr >= 0, code::kArgument, kOp, "expected lr >= 0, got ", o.lr);
  S2S_REQUIRE(o.beta1 >= 0 && o.beta1 < 1, code::kArgument, kOp,
              "expected beta1 in [0, 1), got ", o.beta1);
  S2S_REQUIRE(o.beta2 >= 0 && o.beta2 < 1, code::kArgument, kOp,
              "expected beta2 in [0, 1), got ", o.beta2);
  S2S_REQUIRE(o.eps >= 0, code::kArgument, kOp, "expected eps >= 0, got ", o.eps);
  S2S_REQUIRE(o.weight_decay >= 0, code::kArgument, kOp, "expected weight_decay >= 0, got ",
              o.weight_decay);
  return param.numel();
}

// torch's Python-float scalars, computed in double, as fp32 operands.
detail::AdamWScalars scalars_of(int64_t step, const AdamWOptions& o) {
  const double t = static_cast<double>(step);
  detail::AdamWScalars s;
  s.decay = static_cast<float>(1.0 - o.lr * o.weight_decay);
  s.beta1 = static_cast<float>(o.beta1);
  s.one_minus_beta1 = static_cast<float>(1.0 - o.beta1);
  s.beta2 = static_cast<float>(o.beta2);
  s.one_minus_beta2 = static_cast<float>(1.0 - o.beta2);
  s.bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(o.beta2, t)));
  s.neg_step_size = static_cast<float>(-(o.lr / (1.0 - std::pow(o.beta1, t))));
  s.eps = static_cast<float>(o.eps);
  return s;
}

}  // namespace

// torch's single-tensor path (1.13; 2.x uses exp_avg.lerp_, within an ulp of this):
//   param.mul_(1 - lr * wd)
//   exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
//   exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
//   denom = (exp_avg_sq.sqrt() / sqrt(1 - beta2^t)).add_(eps)
//   param.addcdiv_(exp_avg, denom, value=-lr / (1 - beta1^t))
// The Python-float scalars are computed in double and become fp32 operands; the element loop is
// in adamw_kernel.h. The portable and AVX2 builds of it give the same bits.
void adamw_update(const Tensor& param, const Tensor& grad, const Tensor& exp_avg,
                  const Tensor& exp_avg_sq, int64_t step, const AdamWOptions& o) {
  const int64_t n = check(param, grad, exp_avg, exp_avg_sq, step, o);
  const detail::AdamWScalars s = scalars_of(step, o);
  auto kernel = &detail::adamw_elements;
#if defined(S2S_HAVE_X86_KERNELS)
  const Isa isa = active_isa();
  if (isa >= Isa::Avx2 && isa != Isa::Neon) kernel = &detail::adamw_elements_avx2;
#endif
  float* p = param.f32();
  const float* g = grad.f32();
  float* m = exp_avg.f32();
  float* v = exp_avg_sq.f32();
  parallel_for(n, int64_t(1) << 15, [&](int64_t i0, int64_t i1) {
    kernel(p + i0, g + i0, m + i0, v + i0, i1 - i0, s);
  });
}

void adamw_fused_update(const std::vector<AdamWFusedTensor>& tensors, int64_t step,
                        const AdamWOptions& o, float grad_scale, float clip_coef) {
  AdamWOptions no_decay = o;
  no_decay.weight_decay = 0;
  const detail::AdamWScalars scalars[2] = {scalars_of(step, no_decay), scalars_of(step, o)};
  struct Block { size_t t; int64_t off, n; };
  constexpr int64_t kBlock = int64_t(1) << 15;
  std::vector<Block> blocks;
  for (size_t t = 0; t < tensors.size(); ++t) {
    const AdamWFusedTensor& x = tensors[t];
    const int64_t n = check(x.param, x.grad, x.exp_avg, x.exp_avg_sq, step, x.decay ? o : no_decay);
    if (x.compute.data != nullptr) {
      S2S_REQUIRE(x.compute.dtype == DType::BF16 || x.compute.dtype == DType::F16, code::kDType,
                  kOp, "expected compute of dtype bf16 or f16, got ", dtype_name(x.compute.dtype));
      expect_contiguous(x.compute, kOp, "compute");
      bool same = x.compute.ndim == x.param.ndim;
      for (int i = 0; same && i < x.param.ndim; ++i) same = x.compute.shape[i] == x.param.shape[i];
      S2S_REQUIRE(same, code::kShape, kOp, "expected compute of shape ", x.param.shape_string(),
                  " (as param), got ", x.compute.shape_string());
    }
    for (int64_t off = 0; off < n; off += kBlock) blocks.push_back({t, off, std::min(kBlock, n - off)});
  }
  auto kernel = &detail::adamw_fused_elements;
#if defined(S2S_HAVE_X86_KERNELS)
  const Isa isa = active_isa();
  if (isa >= Isa::Avx2 && isa != Isa::Neon) kernel = &detail::adamw_fused_elements_avx2;
#endif
  parallel_for(static_cast<int64_t>(blocks.size()), 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const AdamWFusedTensor& x = tensors[blocks[b].t];
      const int64_t off = blocks[b].off;
      // The kernel re-casts a bf16 copy in its loop; an f16 copy is cast right after, while
      // the block's values are still in cache.
      const bool bf16 = x.compute.data != nullptr && x.compute.dtype == DType::BF16;
      uint16_t* c = bf16 ? x.compute.u16() + off : nullptr;
      float* p = x.param.f32() + off;
      kernel(p, x.grad.f32() + off, x.exp_avg.f32() + off, x.exp_avg_sq.f32() + off, c,
             blocks[b].n, scalars[x.decay ? 1 : 0], grad_scale, clip_coef);
      if (x.compute.data != nullptr && !bf16) {
        uint16_t* h = x.compute.u16() + off;
        for (int64_t i = 0; i < blocks[b].n; ++i) h[i] = f32_to_f16(p[i]);
      }
    }
  });
}

void adamw_update_reference(const Tensor& param, const Tensor& grad, const Tensor& exp_avg,
                            const Tensor& exp_avg_sq, int64_t step, const AdamWOptions& o) {
  const int64_t n = check(param, grad, exp_avg, exp_avg_sq, step, o);
  const double t = static_cast<double>(step);
  for (int64_t i = 0; i < n; ++i) {
    const double g = grad.f32()[i];
    double p = param.f32()[i] * (1.0 - o.lr * o.weight_decay);
    const double m = o.beta1 * exp_avg.f32()[i] + (1.0 - o.beta1) * g;
    const double v = o.beta2 * exp_avg_sq.f32()[i] + (1.0 - o.beta2) * g * g;
    const double m_hat = m / (1.0 - std::pow(o.beta1, t));
    const double v_hat = v / (1.0 - std::pow(o.beta2, t));
    p -= o.lr * m_hat / (std::sqrt(v_hat) + o.eps);
    param.f32()[i] = static_cast<float>(p);
    exp_avg.f32()[i] = static_cast<float>(m);
    exp_avg_sq.f32()[i] = static_cast<float>(v);
  }
}

}  // namespace s2s
