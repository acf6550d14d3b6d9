// attention_cached: queries of the new positions against a KV cache (see the header), then the
// double-precision reference loops. Legend as in the header.
// Napkin (GPT-2 124M decoding one token at position t): 12 layers x 12 heads x t keys x 64 x 4
// flops = 37K t flops, and the cache read 2 x 12 x t x 768 x 4 bytes = 74 KB per position: at
// t = 256, 19 MB per token against ~500 MB of weights, so this op is a few percent of a step.
#include "s2s/ops/attention_cached.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "ops/vec_math.h"
#include "s2s/ops/kv_cache_append.h"
#include "s2s/thread_pool.h"

namespace s2s {

namespace {

constexpr const char* kOp = "attention_cached";

struct Geometry {
  int64_t R, Tq, Hq, D, S, Tc, Hkv, G, Tb;
  float scale;
  bool causal;
  const float* bias;
};

Geometry check(const Tensor& out, const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
               const int32_t* slot, const int32_t* key_begin, const int32_t* key_end,
               const Tensor& bias, const AttentionOptions& options) {
  expect_f32_heads(q, {-1, -1, -1, -1}, kOp, "q");
  Geometry g{};
  g.R = q.shape[0];
  g.Tq = q.shape[1];
  g.Hq = q.shape[2];
  g.D = q.shape[3];
  expect_f32(out, {g.R, g.Tq, g.Hq, g.D}, kOp, "out");
  expect_kv_cache_dtype(k_cache, v_cache, kOp);
  expect_shape(k_cache, {-1, -1, -1, g.D}, kOp, "k_cache");
  expect_contiguous(k_cache, kOp, "k_cache");
  g.S = k_cache.shape[0];
  g.Tc = k_cache.shape[1];
  g.Hkv = k_cache.shape[2];
  expect_shape(v_cache, {g.S, g.Tc, g.Hkv, g.D}, kOp, "v_cache");
  expect_contiguous(v_cache, kOp, "v_cache");
  S2S_REQUIRE(g.Hkv >= 1 && g.Hq % g.Hkv == 0, code::kShape, kOp,
              "expected query heads to be a multiple of kv heads, got Hq = ", g.Hq,
              " and Hkv = ", g.Hkv);
  g.G = g.Hq / g.Hkv;
  g.causal = options.causal;
  g.scale = options.scale.has_value() ? *options.scale
                                      : static_cast<float>(1.0 / std::sqrt(double(g.D)));
  S2S_REQUIRE(std::isfinite(g.scale), code::kArgument, kOp, "expected a finite scale, got ",
              g.scale);
  S2S_REQUIRE(g.R == 0 || (slot && key_begin && key_end), code::kArgument, kOp,
              "expected slot, key_begin and key_end arrays");
  int64_t max_end = 0;
  for (int64_t r = 0; r < g.R; ++r) {
    S2S_REQUIRE(slot[r] >= 0 && slot[r] < g.S, code::kArgument, kOp, "expected slot[", r,
                "] in [0, ", g.S, "), got ", slot[r]);
    S2S_REQUIRE(key_begin[r] >= 0 && key_begin[r] <= key_end[r] && key_end[r] <= g.Tc,
                code::kArgument, kOp, "expected 0 <= key_begin[", r, "] <= key_end[", r,
                "] <= ", g.Tc, ", got ", key_begin[r], " and ", key_end[r]);
    S2S_REQUIRE(!g.causal || key_end[r] >= g.Tq, code::kArgument, kOp,
                "causal: expected key_end[", r, "] >= Tq = ", g.Tq, ", got ", key_end[r]);
    max_end = std::max<int64_t>(max_end, key_end[r]);
  }
  g.bias = nullptr;
  g.Tb = 0;
  if (bias.data != nullptr) {
    expect_f32(bias, {g.Hq, g.Tq, -1}, kOp, "bias");
    g.Tb = bias.shape[2];
    S2S_REQUIRE(g.Tb >= max_end, code::kShape, kOp, "expected bias with at least ", max_end,
                " keys (the largest key_end), got ", bias.shape_string());
    g.bias = bias.f32();
  }
  return g;
}

// <a, b> over D floats in 8 interleaved lanes (vectorises; fixed order).
inline float dot(const float* a, const float* b, int64_t D) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t d = 0;
  for (; d + 8 <= D; d += 8) {
    for (int u = 0; u < 8; ++u) acc[u] += a[d + u] * b[d + u];
  }
  for (; d < D; ++d) acc[d & 7] += a[d] * b[d];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// Cache rows as f32: in place for an F32 cache, widened (exactly) into the caller's buffer for
// a 16-bit one.
struct CacheRows {
  const Tensor& cache;
  const float* row(int64_t first, int64_t D, float* buf) const {
    if (cache.dtype == DType::F32) return cache.f32() + first;
    const uint16_t* h = cache.u16() + first;
    const bool bf16 = cache.dtype == DType::BF16;
    for (int64_t d = 0; d < D; ++d) buf[d] = bf16 ? bf16_to_f32(h[d]) : f16_to_f32(h[d]);
    return buf;
  }
  double at(int64_t index) const {
    if (cache.dtype == DType::F32) return cache.f32()[index];
    const uint16_t h = cache.u16()[index];
    return cache.dtype == DType::BF16 ? bf16_to_f32(h) : f16_to_f32(h);
  }
};

}  // namespace

void attention_cached_forward(const Tensor& out, const Tensor& q, const Tensor& k_cache,
                              const Tensor& v_cache, const int32_t* slot,
                              const int32_t* key_begin, const int32_t* key_end,
                              const Tensor& bias, const AttentionOptions& options) {
  const Geometry g = check(out, q, k_cache, v_cache, slot, key_begin, key_end, bias, options);
  const int64_t tasks = g.R * g.Hq * g.Tq;
  if (tasks == 0) return;
  const float* qd = q.f32();
  const CacheRows keys{k_cache}, values{v_cache};
  float* od = out.f32();
  const int64_t D = g.D, kv_row = g.Hkv * D;  // values between consecutive cache positions
  // ~4 flops per key and head dim: a task of t keys is 4 t D flops; keep chunks >= ~64K flops.
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(1, 4 * g.Tc * D));
  parallel_for(tasks, grain, [&](int64_t t0, int64_t t1) {
    // Scores of one query: grows to the longest key range once per thread, then is reused.
    thread_local std::vector<float> scores, widened;
    if (scores.size() < size_t(g.Tc)) scores.resize(size_t(g.Tc));
    if (widened.size() < size_t(D)) widened.resize(size_t(D));
    float* s = scores.data();
    float* buf = widened.data();  // a 16-bit cache's row, widened
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t i = t % g.Tq, h = (t / g.Tq) % g.Hq, r = t / (g.Tq * g.Hq);
      const int64_t hk = h / g.G;
      const int64_t j0 = key_begin[r];
      int64_t j1 = key_end[r];
      if (g.causal) j1 = std::min<int64_t>(j1, key_end[r] - g.Tq + i + 1);
      float* o = od + ((r * g.Tq + i) * g.Hq + h) * D;
      if (j1 <= j0) {  // nothing to attend: zeros
        for (int64_t d = 0; d < D; ++d) o[d] = 0.0f;
        continue;
      }
      const float* qv = qd + r * q.strides[0] + i * q.strides[1] + h * D;
      const int64_t base = (int64_t(slot[r]) * g.Tc * g.Hkv + hk) * D;
      const float* brow = g.bias ? g.bias + (h * g.Tq + i) * g.Tb : nullptr;
      float mx = -std::numeric_limits<float>::infinity();
      for (int64_t j = j0; j < j1; ++j) {
        float v = g.scale * dot(qv, keys.row(base + j * kv_row, D, buf), D);
        if (brow) v += brow[j];
        s[j] = v;
        mx = (v > mx || v != v) ? v : mx;  // NaN propagates
      }
      if (mx == -std::numeric_limits<float>::infinity()) {  // every score -inf (bias)
        for (int64_t d = 0; d < D; ++d) o[d] = 0.0f;
        continue;
      }
      float sum = 0.0f;
      for (int64_t j = j0; j < j1; ++j) {
        s[j] = vm::exp_f(s[j] - mx);
        sum += s[j];
      }
      const float inv = 1.0f / sum;
      for (int64_t d = 0; d < D; ++d) o[d] = 0.0f;
      for (int64_t j = j0; j < j1; ++j) {
        const float p = s[j] * inv;
        const float* vj = values.row(base + j * kv_row, D, buf);
        for (int64_t d = 0; d < D; ++d) o[d] += p * vj[d];
      }
    }
  });
}

void attention_cached_forward_reference(const Tensor& out, const Tensor& q, const Tensor& k_cache,
                                        const Tensor& v_cache, const int32_t* slot,
                                        const int32_t* key_begin, const int32_t* key_end,
                                        const Tensor& bias, const AttentionOptions& options) {
  const Geometry g = check(out, q, k_cache, v_cache, slot, key_begin, key_end, bias, options);
  const float* qd = q.f32();
  const CacheRows kd{k_cache}, vd{v_cache};
  for (int64_t r = 0; r < g.R; ++r)
    for (int64_t i = 0; i < g.Tq; ++i)
      for (int64_t h = 0; h < g.Hq; ++h) {
        const int64_t hk = h / g.G;
        float* o = out.f32() + ((r * g.Tq + i) * g.Hq + h) * g.D;
        std::vector<double> s;
        std::vector<int64_t> keys;
        for (int64_t j = key_begin[r]; j < key_end[r]; ++j) {
          if (g.causal && j > key_end[r] - g.Tq + i) continue;
          double v = 0;
          for (int64_t d = 0; d < g.D; ++d) {
            v += double(qd[r * q.strides[0] + i * q.strides[1] + h * g.D + d]) *
                 kd.at(((slot[r] * g.Tc + j) * g.Hkv + hk) * g.D + d);
          }
          v *= g.scale;
          if (g.bias) v += g.bias[(h * g.Tq + i) * g.Tb + j];
          s.push_back(v);
          keys.push_back(j);
        }
        double mx = -INFINITY;
        for (double v : s) mx = std::max(mx, v);
        for (int64_t d = 0; d < g.D; ++d) o[d] = 0.0f;
        if (s.empty() || mx == -INFINITY) continue;
        double sum = 0;
        for (double& v : s) sum += (v = std::exp(v - mx));
        for (int64_t d = 0; d < g.D; ++d) {
          double acc = 0;
          for (size_t n = 0; n < keys.size(); ++n) {
            acc += s[n] / sum * vd.at(((slot[r] * g.Tc + keys[n]) * g.Hkv + hk) * g.D + d);
          }
          o[d] = static_cast<float>(acc);
        }
      }
}

}  // namespace s2s
