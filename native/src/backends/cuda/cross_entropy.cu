// cross_entropy on CUDA (s2s/ops/cross_entropy.h semantics): a warp or block per row (launch.h),
// lse = max + log(sum exp(x - max)) with the sum of each thread's fp32 terms folded in double.
// The rows kernel writes each row's lse and label logit; the forward downloads them and the
// labels (3 x N values) and sums the losses in row order on the host (cross_entropy_row_sum, as
// the CPU op does); cross_entropy_rows queues it without waiting, for a caller that downloads
// once for many calls. The backward counts the labels on the device (one block, fixed order) so
// it queues without waiting.
// Napkin: forward reads the (N,V) logits twice (max, then exp-sum, from L2 for rows up to a
// few MB), backward reads them once and writes dlogits: ~12 bytes per logit. Where the loss's
// gradient is known before the forward (Graph::known_dloss), the rows kernel writes each row's
// gradient too, right after its lse, reading the row a third time from L2: the backward's read
// from memory is gone (~6 bytes per logit in bf16), the bits are the two kernels'.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "backends/cuda/cuda_ops.h"
#include "backends/cuda/rows.cuh"
#include "ops/op_util.h"

namespace s2s {
namespace cuda {

namespace {
constexpr const char* kOp = "cross_entropy";

// ld: the logits' row stride (their rows may be padded: nn::linear_cross_entropy lays them out
// at the aligned rows cuBLASLt's fast kernels want).
struct Dims { int64_t N, V, ld; };

Dims check(const Tensor& logits, const int32_t* labels, int64_t num_labels) {
  expect_dtype(logits, DType::F32, kOp, "logits");
  expect_shape(logits, {-1, -1}, kOp, "logits");
  Dims d{logits.shape[0], logits.shape[1], opu::row_stride(logits, kOp, "logits")};
  S2S_REQUIRE(d.V >= 1, code::kShape, kOp, "expected logits with V >= 1, got ",
              logits.shape_string());
  S2S_REQUIRE(num_labels == d.N, code::kShape, kOp, "expected ", d.N,
              " labels (one per logits row), got ", num_labels);
  S2S_REQUIRE(labels != nullptr || d.N == 0, code::kArgument, kOp,
              "expected labels, got a null pointer");
  return d;
}

// The gradient the rows kernel writes with the forward (a null target: none).
struct RowGradient {
  float* dlogits = nullptr;         // f32, overwritten
  uint16_t* dlogits_bf16 = nullptr;  // or bf16 bits
  int64_t ld = 0;                    // their row stride
  const long long* count = nullptr;  // counted rows (ce_count_kernel), for Mean
  float dloss = 0.f;
  bool mean = false;
  __device__ bool wanted() const { return dlogits != nullptr || dlogits_bf16 != nullptr; }
};

// A label the row is counted for; out-of-range labels are reported and the row skipped.
__device__ inline bool counted(const int32_t* labels, int64_t row, int64_t V, int32_t ignore,
                               unsigned long long* err, bool report) {
  const int32_t y = labels[row];
  if (y == ignore) return false;
  if (y < 0 || y >= V) {
    if (report) report_bad_input(err, KernelReport::CrossEntropyLabel, row, y, V);
    return false;
  }
  return true;
}

// One row's gradient, (softmax - onehot(y)) * scale from its lse l, each value computed in fp32
// with its roundings spelled out (no contraction: the fused and the separate kernels give the
// same bits), then rounded to bf16 where dxh is given; dx is overwritten or accumulated.
__device__ inline void ce_row_gradient(const RowTeam& t, const float* x, int64_t V, float l,
                                       int32_t y, float scale, float* dx, uint16_t* dxh,
                                       bool overwrite) {
  for (int64_t c = t.tid; c < V; c += t.size) {
    const float g = __fsub_rn(__fmul_rn(expf(x[c] - l), scale), c == y ? scale : 0.f);
    if (dxh != nullptr) {
      dxh[c] = f32_to_bf16_bits(g);
    } else {
      dx[c] = overwrite ? g : dx[c] + g;
    }
  }
}

// The zero gradient of a row without a counted label (written where overwritten or bf16).
__device__ inline void ce_row_zero(const RowTeam& t, int64_t V, float* dx, uint16_t* dxh,
                                   bool overwrite) {
  for (int64_t c = t.tid; c < V; c += t.size) {
    if (dxh != nullptr) {
      dxh[c] = 0;  // bf16 +0
    } else if (overwrite) {
      dx[c] = 0.f;
    }
  }
}

// cross_entropy_backward's scale: dloss / count for Mean (rounded once to f32), else dloss.
__device__ inline float ce_scale(float dloss, bool mean, long long count) {
  return mean ? static_cast<float>(double(dloss) / double(count)) : dloss;
}

__global__ void ce_rows_kernel(const float* logits, const int32_t* labels, float* lse,
                               float* label_logit, int64_t N, int64_t V, int64_t ld,
                               int32_t ignore, int rows_per_block, RowGradient grad,
                               unsigned long long* err) {
  __shared__ float scratch[32];
  __shared__ double dscratch[32];
  RowTeam t;
  int64_t row;
  if (!row_of(N, rows_per_block, scratch, dscratch, &t, &row)) return;
  float* dx = grad.dlogits != nullptr ? grad.dlogits + row * grad.ld : nullptr;
  uint16_t* dxh = grad.dlogits_bf16 != nullptr ? grad.dlogits_bf16 + row * grad.ld : nullptr;
  const long long n = grad.wanted() && grad.mean ? grad.count[0] : 1;  // counted rows (Mean)
  if (!counted(labels, row, V, ignore, err, t.tid == 0)) {
    if (t.tid == 0) {
      lse[row] = 0.f;
      label_logit[row] = 0.f;
    }
    if (grad.wanted()) ce_row_zero(t, V, dx, dxh, /*overwrite=*/true);
    return;
  }
  const float* x = logits + row * ld;
  float m = -INFINITY;
  for (int64_t c = t.tid; c < V; c += t.size) m = nan_max(m, x[c]);
  m = t.max(m);
  float s = 0.f;
  if (m == m && m != -INFINITY) {
    for (int64_t c = t.tid; c < V; c += t.size) s += expf(x[c] - m);
  }
  const double total = t.sum(double(s));  // every thread holds it (and so the same l)
  // NaN anywhere: NaN; every logit -inf: -inf (as the CPU op).
  const float l = (m != m || m == -INFINITY) ? m : static_cast<float>(double(m) + log(total));
  if (t.tid == 0) {
    lse[row] = l;
    label_logit[row] = x[labels[row]];
  }
  if (!grad.wanted()) return;
  if (n == 0) {
    ce_row_zero(t, V, dx, dxh, /*overwrite=*/true);
  } else {
    ce_row_gradient(t, x, V, l, labels[row], ce_scale(grad.dloss, grad.mean, n), dx, dxh,
                    /*overwrite=*/true);
  }
}

// count[0] = rows whose label != ignore_index (one block; fixed per-thread order, then block_sum).
__global__ void ce_count_kernel(const int32_t* labels, int64_t N, int32_t ignore, long long* count) {
  __shared__ double dscratch[32];
  double c = 0;
  for (int64_t i = threadIdx.x; i < N; i += blockDim.x) c += labels[i] != ignore ? 1.0 : 0.0;
  c = block_sum(c, dscratch);
  if (threadIdx.x == 0) count[0] = static_cast<long long>(c);
}

// cross_entropy_loss: the host's cross_entropy_row_sum and division on the device, to the bit.
// One warp: each pass its lanes load 32 rows' terms side by side, then lane 0 adds them in row
// order (double adds in one chain: some 10 us at 2K rows, 100 us at 16K; no wait for the host).
__global__ void ce_loss_kernel(const float* lse, const float* label_logit, const int32_t* labels,
                               int64_t N, int32_t ignore, bool mean, float* loss) {
  __shared__ double term[32];
  __shared__ int used[32];
  double sum = 0;
  long long count = 0;
  for (int64_t row0 = 0; row0 < N; row0 += 32) {
    const int64_t r = row0 + threadIdx.x;
    const bool in = r < N && labels[r] != ignore;
    term[threadIdx.x] = in ? double(lse[r]) - double(label_logit[r]) : 0.0;
    used[threadIdx.x] = in ? 1 : 0;
    __syncthreads();
    if (threadIdx.x == 0) {
      for (int i = 0; i < 32; ++i) {
        if (used[i] != 0) {
          sum += term[i];
          ++count;
        }
      }
    }
    __syncthreads();  // lane 0 has read the pass's terms before the next pass writes them
  }
  if (threadIdx.x == 0) {
    // Mean over no counted row is NaN, as on the host (and torch).
    loss[0] = !mean ? static_cast<float>(sum)
              : count == 0 ? NAN : static_cast<float>(sum / double(count));
  }
}

// dlogits f32 (overwritten or accumulated), or bf16 bits (dlogits_bf16; always overwritten):
// each value computed in fp32, then rounded, as the CPU's bf16 path does. Row strides ldd
// (dlogits) and ld (logits).
__global__ void ce_backward_kernel(float* dlogits, uint16_t* dlogits_bf16, int64_t ldd,
                                   const float* logits, int64_t ld, const float* lse,
                                   const int32_t* labels, const long long* count, int64_t N,
                                   int64_t V, int32_t ignore,
                                   float dloss, bool mean, bool overwrite, int rows_per_block,
                                   unsigned long long* err) {
  __shared__ float scratch[32];
  __shared__ double dscratch[32];
  RowTeam t;
  int64_t row;
  if (!row_of(N, rows_per_block, scratch, dscratch, &t, &row)) return;
  float* dx = dlogits_bf16 != nullptr ? nullptr : dlogits + row * ldd;
  uint16_t* dxh = dlogits_bf16 != nullptr ? dlogits_bf16 + row * ldd : nullptr;
  const long long n = count[0];
  if (n == 0 || !counted(labels, row, V, ignore, err, t.tid == 0)) {
    ce_row_zero(t, V, dx, dxh, overwrite);
    return;
  }
  ce_row_gradient(t, logits + row * ld, V, lse[row], labels[row], ce_scale(dloss, mean, n), dx,
                  dxh, overwrite);
}
}  // namespace

void cross_entropy_rows(Context& ctx, const Tensor& lse, const Tensor& label_logit,
                        const Tensor& logits, const int32_t* labels, int64_t num_labels,
                        int32_t ignore_index, const CrossEntropyGradient* gradient) {
  const Dims d = check(logits, labels, num_labels);
  expect_f32(lse, {d.N}, kOp, "lse");
  expect_f32(label_logit, {d.N}, kOp, "label_logit");
  RowGradient grad;
  if (gradient != nullptr) {
    grad.ld = opu::expect_dlogits(gradient->dlogits, logits, d.N, d.V, /*overwrite=*/true, kOp);
    const bool bf16 = gradient->dlogits.dtype == DType::BF16;
    grad.dlogits = bf16 ? nullptr : gradient->dlogits.f32();
    grad.dlogits_bf16 = bf16 ? static_cast<uint16_t*>(gradient->dlogits.data) : nullptr;
    grad.dloss = gradient->dloss;
    grad.mean = gradient->reduction == LossReduction::Mean;
  }
  if (d.N == 0) return;
  ctx.activate();
  ArenaScope scope(ctx.arena());
  if (grad.mean) {
    long long* count = ctx.arena().allocate_array<long long>(1);
    ce_count_kernel<<<1, 1024, 0, stream_of(ctx)>>>(labels, d.N, ignore_index, count);
    check_launch(kOp);
    grad.count = count;
  }
  const RowLaunch l = row_launch(d.N, d.V);
  ce_rows_kernel<<<grid(l.blocks), l.threads, 0, stream_of(ctx)>>>(
      logits.f32(), labels, lse.f32(), label_logit.f32(), d.N, d.V, d.ld, ignore_index,
      l.rows_per_block, grad, ctx.error_slot());
  check_launch(kOp);
}

CrossEntropyResult cross_entropy_forward(Context& ctx, const Tensor& lse, const Tensor& logits,
                                         const int32_t* labels, int64_t num_labels,
                                         const CrossEntropyOptions& options,
                                         const Tensor& dlogits, float dloss) {
  const Dims d = check(logits, labels, num_labels);
  expect_f32(lse, {d.N}, kOp, "lse");
  // The rows' lse, picked logit and label side by side in one buffer, so one download (one
  // wait for the device) brings all three back for the host's sum.
  const size_t n = size_t(d.N);
  std::vector<float> host(3 * n);  // lse, picked logits, then the labels' int32 bits
  std::vector<int32_t> host_labels(n);
  if (d.N > 0) {
    ctx.activate();  // before the arena may allocate on this model's device
    ArenaScope scope(ctx.arena());
    float* rows = ctx.arena().allocate_array<float>(3 * n);
    const Tensor picked = Tensor::contiguous(rows + n, DType::F32, {d.N});
    const CrossEntropyGradient gradient{dlogits, dloss, options.reduction};
    cross_entropy_rows(ctx, lse, picked, logits, labels, d.N, options.ignore_index,
                       dlogits.data != nullptr ? &gradient : nullptr);
    copy_device(ctx, rows, lse.f32(), sizeof(float) * n);
    copy_device(ctx, rows + 2 * n, labels, sizeof(int32_t) * n);
    download(ctx, host.data(), rows, sizeof(float) * 3 * n);
    std::memcpy(host_labels.data(), host.data() + 2 * n, sizeof(int32_t) * n);
  }
  ctx.synchronize();  // raises a bad label the kernel reported
  const double sum = s2s::cross_entropy_row_sum(host.data(), host.data() + n,
                                                host_labels.data(), d.N, options.ignore_index);
  int64_t count = 0;
  for (int64_t i = 0; i < d.N; ++i) count += host_labels[i] != options.ignore_index;
  double loss = sum;
  if (options.reduction == LossReduction::Mean) {
    loss = count == 0 ? std::numeric_limits<double>::quiet_NaN() : sum / double(count);
  }
  return {loss, count};
}

void cross_entropy_loss(Context& ctx, const Tensor& loss, const Tensor& lse,
                        const Tensor& label_logit, const int32_t* labels, int64_t num_labels,
                        const CrossEntropyOptions& options) {
  expect_f32(loss, {1}, kOp, "loss");
  expect_f32(lse, {num_labels}, kOp, "lse");
  expect_f32(label_logit, {num_labels}, kOp, "label_logit");
  S2S_REQUIRE(num_labels == 0 || labels != nullptr, code::kArgument, kOp, "expected labels");
  ctx.activate();
  ce_loss_kernel<<<1, 32, 0, stream_of(ctx)>>>(lse.f32(), label_logit.f32(), labels, num_labels,
                                                options.ignore_index,
                                                options.reduction == LossReduction::Mean,
                                                loss.f32());
  check_launch(kOp);
}

void cross_entropy_backward(Context& ctx, const Tensor& dlogits, const Tensor& logits,
                            const Tensor& lse, const int32_t* labels, int64_t num_labels,
                            float dloss, const CrossEntropyOptions& options, bool overwrite) {
  const Dims d = check(logits, labels, num_labels);
  expect_f32(lse, {d.N}, kOp, "lse");
  if (dlogits.data == nullptr) return;
  const bool bf16 = dlogits.dtype == DType::BF16;
  // bf16: the bf16-compute head's gradient, rounded as it is written (grad_for_write_bf16).
  const int64_t ldd = opu::expect_dlogits(dlogits, logits, d.N, d.V, overwrite, kOp);
  if (d.N == 0) return;
  ctx.activate();
  ArenaScope scope(ctx.arena());
  long long* count = ctx.arena().allocate_array<long long>(1);
  ce_count_kernel<<<1, 1024, 0, stream_of(ctx)>>>(labels, d.N, options.ignore_index, count);
  check_launch(kOp);
  const RowLaunch l = row_launch(d.N, d.V);
  ce_backward_kernel<<<grid(l.blocks), l.threads, 0, stream_of(ctx)>>>(
      bf16 ? nullptr : dlogits.f32(), bf16 ? static_cast<uint16_t*>(dlogits.data) : nullptr, ldd,
      logits.f32(), d.ld, lse.f32(), labels, count, d.N, d.V, options.ignore_index, dloss,
      options.reduction == LossReduction::Mean, overwrite, l.rows_per_block, ctx.error_slot());
  check_launch(kOp);
}

}  // namespace cuda
}  // namespace s2s
