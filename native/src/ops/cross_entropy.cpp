// cross_entropy: fused log-softmax + NLL over (N,V) logits, forward and backward side by side,
// then the double-precision reference. Legend: N rows (tokens), V vocabulary.
// Napkin: forward streams each row once (per 8 KB chunk: max, then sum of exp from L1), backward
// reads it once and writes dlogits (overwrite, 8 bytes per logit) or read-modify-writes it
// (accumulate, 12 bytes per logit); exp is the only real arithmetic. The row loops are the
// ActKernels' (ops/act_kernels.h), compiled per ISA: AVX-512 where the CPU has it.
#include "s2s/ops/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "ops/act_kernels.h"
#include "ops/op_util.h"
#include "s2s/thread_pool.h"

namespace s2s {

namespace {

constexpr const char* kOp = "cross_entropy";

struct Dims { int64_t N, V, ld; };  // ld: the logits' row stride (rows may be padded)

Dims check(const Tensor& logits, const int32_t* labels, int64_t num_labels,
           const CrossEntropyOptions& o) {
  expect_dtype(logits, DType::F32, kOp, "logits");
  expect_shape(logits, {-1, -1}, kOp, "logits");
  Dims d{logits.shape[0], logits.shape[1], opu::row_stride(logits, kOp, "logits")};
  S2S_REQUIRE(d.V >= 1, code::kShape, kOp, "expected logits with V >= 1, got ",
              logits.shape_string());
  S2S_REQUIRE(num_labels == d.N, code::kShape, kOp, "expected ", d.N,
              " labels (one per logits row), got ", num_labels);
  S2S_REQUIRE(labels != nullptr || d.N == 0, code::kArgument, kOp,
              "expected labels, got a null pointer");
  for (int64_t i = 0; i < d.N; ++i) {
    const int32_t y = labels[i];
    S2S_REQUIRE(y == o.ignore_index || (y >= 0 && y < d.V), code::kArgument, kOp,
                "expected labels[", i, "] in [0, ", d.V, ") or == ignore_index (",
                o.ignore_index, "), got ", y);
  }
  return d;
}

int64_t count_rows(const int32_t* labels, int64_t n, int32_t ignore_index) {
  int64_t c = 0;
  for (int64_t i = 0; i < n; ++i) c += labels[i] != ignore_index;
  return c;
}

int64_t row_grain(int64_t V) { return std::max<int64_t>(1, 65536 / V); }

double finish(double sum, int64_t count, LossReduction r) {
  if (r == LossReduction::Sum) return sum;
  return count == 0 ? std::numeric_limits<double>::quiet_NaN() : sum / double(count);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// forward: lse_i = logsumexp(x_i), loss_i = lse_i - x_i[y_i]; per-row losses in double, summed
// in row order (independent of the thread split).
void cross_entropy_rows(const Tensor& lse, const Tensor& label_logit, const Tensor& logits,
                        const int32_t* labels, int64_t num_labels, int32_t ignore_index) {
  CrossEntropyOptions o;
  o.ignore_index = ignore_index;
  const Dims d = check(logits, labels, num_labels, o);
  expect_f32(lse, {d.N}, kOp, "lse");
  expect_f32(label_logit, {d.N}, kOp, "label_logit");
  const float* x = logits.f32();
  float* l = lse.f32();
  float* picked = label_logit.f32();
  const ActKernels& k = act_kernels();
  parallel_for(d.N, row_grain(d.V), [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      if (labels[i] == ignore_index) {
        l[i] = picked[i] = 0.f;
        continue;
      }
      const float* xi = x + i * d.ld;
      l[i] = k.ce_row_lse(xi, d.V);
      picked[i] = xi[labels[i]];
    }
  });
}

double cross_entropy_row_sum(const float* lse, const float* label_logit, const int32_t* labels,
                             int64_t num_labels, int32_t ignore_index) {
  double sum = 0;
  for (int64_t i = 0; i < num_labels; ++i) {
    if (labels[i] != ignore_index) sum += double(lse[i]) - double(label_logit[i]);
  }
  return sum;
}

void cross_entropy_loss(const Tensor& loss, const Tensor& lse, const Tensor& label_logit,
                        const int32_t* labels, int64_t num_labels,
                        const CrossEntropyOptions& options) {
  expect_f32(loss, {1}, kOp, "loss");
  expect_f32(lse, {num_labels}, kOp, "lse");
  expect_f32(label_logit, {num_labels}, kOp, "label_logit");
  S2S_REQUIRE(num_labels == 0 || labels != nullptr, code::kArgument, kOp, "expected labels");
  const double sum =
      cross_entropy_row_sum(lse.f32(), label_logit.f32(), labels, num_labels, options.ignore_index);
  const int64_t count = count_rows(labels, num_labels, options.ignore_index);
  loss.f32()[0] = static_cast<float>(finish(sum, count, options.reduction));
}

CrossEntropyResult cross_entropy_forward(const Tensor& lse, const Tensor& logits,
                                         const int32_t* labels, int64_t num_labels,
                                         const CrossEntropyOptions& options) {
  std::vector<float> picked(static_cast<size_t>(std::max<int64_t>(num_labels, 0)));
  cross_entropy_rows(lse, Tensor::contiguous(picked.data(), DType::F32, {num_labels}), logits,
                     labels, num_labels, options.ignore_index);
  const double sum = cross_entropy_row_sum(lse.f32(), picked.data(), labels, num_labels,
                                           options.ignore_index);
  const int64_t count = count_rows(labels, num_labels, options.ignore_index);
  return {finish(sum, count, options.reduction), count};
}

// backward: dx_ij += (exp(x_ij - lse_i) - [j == y_i]) * scale, scale = dloss (/ count for Mean).
void cross_entropy_backward(const Tensor& dlogits, const Tensor& logits, const Tensor& lse,
                            const int32_t* labels, int64_t num_labels, float dloss,
                            const CrossEntropyOptions& options, bool overwrite) {
  const Dims d = check(logits, labels, num_labels, options);
  expect_f32(lse, {d.N}, kOp, "lse");
  if (dlogits.data == nullptr) return;
  const bool bf16 = dlogits.dtype == DType::BF16;
  const int64_t ldd = opu::expect_dlogits(dlogits, logits, d.N, d.V, overwrite, kOp);
  const int64_t count = count_rows(labels, d.N, options.ignore_index);
  const float scale = options.reduction == LossReduction::Mean
                          ? static_cast<float>(double(dloss) / double(count))
                          : dloss;
  const float* x = logits.f32();
  const float* l = lse.f32();
  const ActKernels& k = act_kernels();
  if (bf16) {
    uint16_t* dx = dlogits.u16();
    parallel_for(d.N, row_grain(d.V), [&](int64_t r0, int64_t r1) {
      for (int64_t i = r0; i < r1; ++i) {
        uint16_t* dxi = dx + i * ldd;
        if (count == 0 || labels[i] == options.ignore_index) {
          std::fill(dxi, dxi + d.V, uint16_t(0));  // bf16 +0
          continue;
        }
        k.ce_row_backward_bf16(dxi, x + i * d.ld, d.V, l[i], scale, labels[i]);
      }
    });
    return;
  }
  float* dx = dlogits.f32();
  if (count == 0) {
    if (overwrite) {
      parallel_for(d.N, row_grain(d.V), [&](int64_t r0, int64_t r1) {
        for (int64_t i = r0; i < r1; ++i) std::fill(dx + i * ldd, dx + i * ldd + d.V, 0.f);
      });
    }
    return;
  }
  parallel_for(d.N, row_grain(d.V), [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      float* dxi = dx + i * ldd;
      if (labels[i] == options.ignore_index) {
        if (overwrite) std::fill(dxi, dxi + d.V, 0.f);
        continue;
      }
      k.ce_row_backward(dxi, x + i * d.ld, d.V, l[i], scale, overwrite);
      dxi[labels[i]] -= scale;
    }
  });
}

// ---------------------------------------------------------------------------------------------
// reference
CrossEntropyResult cross_entropy_forward_reference(const Tensor& lse, const Tensor& logits,
                                                   const int32_t* labels, int64_t num_labels,
                                                   const CrossEntropyOptions& options) {
  const Dims d = check(logits, labels, num_labels, options);
  expect_f32(lse, {d.N}, kOp, "lse");
  double sum = 0;
  for (int64_t i = 0; i < d.N; ++i) {
    if (labels[i] == options.ignore_index) {
      lse.f32()[i] = 0.f;
      continue;
    }
    const float* xi = logits.f32() + i * d.ld;
    double m = -INFINITY;
    for (int64_t j = 0; j < d.V; ++j) m = std::fmax(m, double(xi[j]));
    double s = 0;
    for (int64_t j = 0; j < d.V; ++j) s += std::exp(double(xi[j]) - m);
    const double li = m + std::log(s);
    lse.f32()[i] = static_cast<float>(li);
    sum += li - double(xi[labels[i]]);
  }
  const int64_t count = count_rows(labels, d.N, options.ignore_index);
  return {finish(sum, count, options.reduction), count};
}

void cross_entropy_backward_reference(const Tensor& dlogits, const Tensor& logits,
                                      const int32_t* labels, int64_t num_labels, float dloss,
                                      const CrossEntropyOptions& options) {
  const Dims d = check(logits, labels, num_labels, options);
  if (dlogits.data == nullptr) return;
  expect_f32(dlogits, {d.N, d.V}, kOp, "dlogits");
  const int64_t count = count_rows(labels, d.N, options.ignore_index);
  if (count == 0) return;
  const double scale =
      options.reduction == LossReduction::Mean ? double(dloss) / double(count) : double(dloss);
  for (int64_t i = 0; i < d.N; ++i) {
    if (labels[i] == options.ignore_index) continue;
    const float* xi = logits.f32() + i * d.ld;
    double m = -INFINITY;
    for (int64_t j = 0; j < d.V; ++j) m = std::fmax(m, double(xi[j]));
    double s = 0;
    for (int64_t j = 0; j < d.V; ++j) s += std::exp(double(xi[j]) - m);
    for (int64_t j = 0; j < d.V; ++j) {
      const double p = std::exp(double(xi[j]) - m) / s;
      float& g = dlogits.f32()[i * d.V + j];
      g = static_cast<float>(double(g) + (p - (j == labels[i] ? 1.0 : 0.0)) * scale);
    }
  }
}

}  // namespace s2s
