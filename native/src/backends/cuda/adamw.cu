// adamw on CUDA (s2s/ops/adamw.h semantics): the CPU kernel (ops/adamw_kernel.h) operation for
// operation, every rounding spelled out with __fmul_rn / __fmaf_rn / __fdiv_rn / __fsqrt_rn so
// nvcc cannot contract or approximate: the GPU step gives the CPU step's bits. The fused step
// updates every tensor in one launch (as torch's fused/foreach AdamW): a table of the tensors
// goes to the device, and each block finds its tensor and chunk in it; a LoRA step's hundreds of
// small tensors would otherwise cost a launch each. Napkin: 16 bytes read + 12-14 written per
// parameter.
#include <cmath>
#include <vector>

#include "backends/cuda/check.cuh"
#include "backends/cuda/cuda_ops.h"

namespace s2s {
namespace cuda {

namespace {
constexpr const char* kOp = "adamw";

struct Scalars {
  float decay, beta1, one_minus_beta1, beta2, one_minus_beta2, bc2_sqrt, neg_step_size, eps;
};

// The same checks and the same double-precision scalars as adamw.cpp (torch's Python floats).
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

Scalars scalars_of(int64_t step, const AdamWOptions& o) {
  const double t = static_cast<double>(step);
  Scalars s;
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

// One element, as adamw_kernel.h: returns the new parameter.
__device__ inline float adamw_one(float* p, float* m, float* v, int64_t i, float g, const Scalars& s) {
  const float pi = __fmul_rn(p[i], s.decay);
  const float mi = __fmaf_rn(g, s.one_minus_beta1, __fmul_rn(m[i], s.beta1));
  const float vi = __fmaf_rn(__fmul_rn(s.one_minus_beta2, g), g, __fmul_rn(v[i], s.beta2));
  const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), s.bc2_sqrt), s.eps);
  m[i] = mi;
  v[i] = vi;
  const float pn = __fadd_rn(pi, __fdiv_rn(__fmul_rn(s.neg_step_size, mi), denom));
  p[i] = pn;
  return pn;
}
// One tensor of a fused step, as the multi-tensor kernel reads it.
struct FusedTensor {
  float *p, *g, *m, *v;
  uint16_t* c;           // the bf16/f16 compute copy, or null
  int64_t n;
  int64_t first_block;   // chunks (blocks) of the tensors before this one
  int decay, bf16;
};
constexpr int64_t kChunk = 4096;  // elements per block
constexpr int kFusedThreads = 256;

// Block b updates chunk b of the concatenation of the tensors (none empty, in table order).
// gate: null, or where the step's action and clip_coef are read (OptimizerGate).
__global__ void adamw_multi_tensor_kernel(const FusedTensor* table, int count, Scalars with_decay,
                                          Scalars without_decay, float grad_scale,
                                          float clip_coef, const OptimizerGate* gate) {
  const int64_t chunk = blockIdx.x;
  const FusedTensor t = entry_of_block(table, count, chunk);
  const Scalars s = t.decay ? with_decay : without_decay;
  const int64_t begin = (chunk - t.first_block) * kChunk;
  const int64_t end = begin + kChunk < t.n ? begin + kChunk : t.n;
  if (gate != nullptr) {
    const OptimizerGate g = *gate;
    if (g.action == OptimizerGate::kNothing) return;
    if (g.action == OptimizerGate::kZeroGrads) {
      for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) t.g[i] = 0.0f;
      return;
    }
    clip_coef = g.clip_coef;
  }
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    const float gi = __fmul_rn(__fmul_rn(t.g[i], grad_scale), clip_coef);
    t.g[i] = 0.0f;
    const float pn = adamw_one(t.p, t.m, t.v, i, gi, s);
    if (t.c != nullptr) t.c[i] = t.bf16 ? f32_to_bf16_bits(pn) : f32_to_f16_bits(pn);
  }
}

// Every tensor of a fused step, as adamw_update's check plus its compute copy's.
void check_fused(const std::vector<AdamWFusedTensor>& tensors, int64_t step,
                 const AdamWOptions& options) {
  AdamWOptions no_decay = options;
  no_decay.weight_decay = 0;
  for (const AdamWFusedTensor& x : tensors) {
    check(x.param, x.grad, x.exp_avg, x.exp_avg_sq, step, x.decay ? options : no_decay);
    if (x.compute.data != nullptr) {
      S2S_REQUIRE(x.compute.dtype == DType::BF16 || x.compute.dtype == DType::F16, code::kDType,
                  kOp, "expected compute to be bfloat16 or float16, got ",
                  dtype_name(x.compute.dtype));
      expect_contiguous(x.compute, kOp, "compute");
      bool same = x.compute.ndim == x.param.ndim;
      for (int i = 0; same && i < x.param.ndim; ++i) same = x.compute.shape[i] == x.param.shape[i];
      S2S_REQUIRE(same, code::kShape, kOp, "expected compute of shape ", x.param.shape_string(),
                  " (as param), got ", x.compute.shape_string());
    }
  }
}
// The fused step's launch, for tensors check_fused has passed.
void queue_fused_update(Context& ctx, const std::vector<AdamWFusedTensor>& tensors, int64_t step,
                        const AdamWOptions& options, float grad_scale, float clip_coef,
                        const OptimizerGate* gate) {
  AdamWOptions no_decay = options;
  no_decay.weight_decay = 0;
  std::vector<FusedTensor> table;
  int64_t chunks = 0;
  for (const AdamWFusedTensor& x : tensors) {
    const int64_t n = x.param.numel();
    if (n == 0) continue;
    const bool has_compute = x.compute.data != nullptr;
    table.push_back(FusedTensor{x.param.f32(), x.grad.f32(), x.exp_avg.f32(), x.exp_avg_sq.f32(),
                                has_compute ? x.compute.u16() : nullptr, n, chunks, x.decay ? 1 : 0,
                                has_compute && x.compute.dtype == DType::BF16 ? 1 : 0});
    chunks += ceil_div(n, kChunk);
  }
  if (table.empty()) return;
  S2S_REQUIRE(chunks <= INT32_MAX && table.size() <= size_t(INT32_MAX), code::kArgument, kOp,
              "expected at most 2^31 - 1 chunks of ", kChunk, " elements, got ", chunks);
  ctx.activate();
  // The table lives in the arena until the scope ends; kernels queued later on the stream reuse
  // that memory only after this launch has read it. upload() copies the host table (into the
  // pinned ring) before it returns, so the vector may go.
  ArenaScope arena_scope(ctx.arena());
  FusedTensor* device_table = ctx.arena().allocate_array<FusedTensor>(table.size());
  upload(ctx, device_table, table.data(), table.size() * sizeof(FusedTensor));
  adamw_multi_tensor_kernel<<<grid(chunks), kFusedThreads, 0, stream_of(ctx)>>>(
      device_table, int(table.size()), scalars_of(step, options), scalars_of(step, no_decay),
      grad_scale, clip_coef, gate);
  check_launch(kOp);
}

}  // namespace

void adamw_update(Context& ctx, const Tensor& param, const Tensor& grad, const Tensor& exp_avg,
                  const Tensor& exp_avg_sq, int64_t step, const AdamWOptions& options) {
  const int64_t n = check(param, grad, exp_avg, exp_avg_sq, step, options);
  const Scalars s = scalars_of(step, options);
  float* p = param.f32();
  const float* g = grad.f32();
  float* m = exp_avg.f32();
  float* v = exp_avg_sq.f32();
  for_each(ctx, n, kOp, [=] __device__(int64_t i) { adamw_one(p, m, v, i, g[i], s); });
}

void adamw_fused_update(Context& ctx, const std::vector<AdamWFusedTensor>& tensors, int64_t step,
                        const AdamWOptions& options, float grad_scale, float clip_coef) {
  check_fused(tensors, step, options);  // before queueing anything: nothing written on an error
  queue_fused_update(ctx, tensors, step, options, grad_scale, clip_coef, nullptr);
}

void clipped_adamw_update(Context& ctx, const std::vector<AdamWFusedTensor>& tensors, int64_t step,
                          const AdamWOptions& options, float grad_scale, double max_grad_norm,
                          double* norm_out) {
  std::vector<Tensor> grads;
  grads.reserve(tensors.size());
  for (const AdamWFusedTensor& x : tensors) grads.push_back(x.grad);
  check_fused(tensors, step, options);  // the norm is not written either on an error
  ctx.activate();
  // The gate stays allocated until the update has been queued after it (stream order).
  ArenaScope arena_scope(ctx.arena());
  OptimizerGate* gate = ctx.arena().allocate_array<OptimizerGate>(1);
  queue_grad_norm_and_gate(ctx, grads, grad_scale, max_grad_norm, norm_out, gate);
  queue_fused_update(ctx, tensors, step, options, grad_scale, 1.0f, gate);
}

}  // namespace cuda
}  // namespace s2s
