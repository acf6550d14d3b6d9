// grad_norm / clip_grad_norm: global L2 norm over a gradient list in fixed blocks (thread-count
// independent), clipping as torch.nn.utils.clip_grad_norm_; then the reference loops.
// Napkin: 4 bytes read per element for the norm, 8 more when clipping: memory bound.
#include "s2s/ops/grad_norm.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "s2s/thread_pool.h"

namespace s2s {

namespace {

constexpr const char* kOp = "grad_norm";
constexpr int64_t kBlock = int64_t(1) << 16;

struct Block { float* data; int64_t n; };

std::vector<Block> blocks_of(const std::vector<Tensor>& grads) {
  std::vector<Block> blocks;
  for (size_t t = 0; t < grads.size(); ++t) {
    const Tensor& g = grads[t];
    if (g.data == nullptr) continue;
    const std::string name = "grads[" + std::to_string(t) + "]";
    expect_dtype(g, DType::F32, kOp, name.c_str());
    expect_contiguous(g, kOp, name.c_str());
    const int64_t n = g.numel();
    for (int64_t off = 0; off < n; off += kBlock) {
      blocks.push_back({g.f32() + off, std::min(kBlock, n - off)});
    }
  }
  return blocks;
}

// kLanes independent double accumulators, element i into lane i % kLanes, summed pairwise at
// the end. The adds are a dependency chain per lane (4 cycles each): with 4 lanes the baseline
// build (2 doubles per register) summed ~1 element per cycle, slower than one core streams the
// gradients from memory; 16 lanes keep 8 chains in flight.
constexpr int kLanes = 16;

double reduce_lanes(double (&acc)[kLanes]) {
  for (int w = kLanes / 2; w >= 1; w /= 2)
    for (int u = 0; u < w; ++u) acc[u] += acc[u + w];
  return acc[0];
}

double sum_squares(const float* x, int64_t n) {
  double acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int u = 0; u < kLanes; ++u) acc[u] += double(x[i + u]) * double(x[i + u]);
  }
  for (; i < n; ++i) acc[i % kLanes] += double(x[i]) * double(x[i]);
  return reduce_lanes(acc);
}

// sum_squares of float(x[i] * s): the same accumulators and order, the fp32 product first.
double sum_squares_scaled(const float* x, int64_t n, float s) {
  double acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int u = 0; u < kLanes; ++u) {
      const float y = x[i + u] * s;
      acc[u] += double(y) * double(y);
    }
  }
  for (; i < n; ++i) {
    const float y = x[i] * s;
    acc[i % kLanes] += double(y) * double(y);
  }
  return reduce_lanes(acc);
}

void check_max_norm(double max_norm) {
  S2S_REQUIRE(std::isfinite(max_norm) && max_norm > 0, code::kArgument, "clip_grad_norm",
              "expected max_norm > 0 and finite, got ", max_norm);
}

}  // namespace

double grad_norm(const std::vector<Tensor>& grads) { return scaled_grad_norm(grads, 1.0f); }

double scaled_grad_norm(const std::vector<Tensor>& grads, float scale) {
  const std::vector<Block> blocks = blocks_of(grads);
  std::vector<double> partial(blocks.size(), 0.0);
  parallel_for(static_cast<int64_t>(blocks.size()), 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      partial[b] = scale == 1.0f ? sum_squares(blocks[b].data, blocks[b].n)
                                 : sum_squares_scaled(blocks[b].data, blocks[b].n, scale);
    }
  });
  double total = 0;
  for (double s : partial) total += s;
  return std::sqrt(total);
}

float clip_coefficient(double total_norm, double max_norm) {
  check_max_norm(max_norm);
  const double coef = max_norm / (total_norm + 1e-6);
  return coef < 1.0 ? static_cast<float>(coef) : 1.0f;
}

double clip_grad_norm(const std::vector<Tensor>& grads, double max_norm) {
  check_max_norm(max_norm);
  const double total = grad_norm(grads);
  if (!std::isfinite(total)) return total;
  const float c = clip_coefficient(total, max_norm);
  if (c != 1.0f) {
    const std::vector<Block> blocks = blocks_of(grads);
    parallel_for(static_cast<int64_t>(blocks.size()), 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        float* x = blocks[b].data;
        for (int64_t i = 0; i < blocks[b].n; ++i) x[i] *= c;
      }
    });
  }
  return total;
}

double grad_norm_reference(const std::vector<Tensor>& grads) {
  double total = 0;
  for (const Tensor& g : grads) {
    if (g.data == nullptr) continue;
    for (int64_t i = 0; i < g.numel(); ++i) total += double(g.f32()[i]) * double(g.f32()[i]);
  }
  return std::sqrt(total);
}

double clip_grad_norm_reference(const std::vector<Tensor>& grads, double max_norm) {
  check_max_norm(max_norm);
  const double total = grad_norm_reference(grads);
  if (!std::isfinite(total)) return total;
  const double coef = max_norm / (total + 1e-6);
  if (coef < 1.0) {
    for (const Tensor& g : grads) {
      if (g.data == nullptr) continue;
      for (int64_t i = 0; i < g.numel(); ++i) g.f32()[i] = float(double(g.f32()[i]) * coef);
    }
  }
  return total;
}

}  // namespace s2s
