// attention_cached: queries of the new positions against a KV cache (see the header), then the
// double-precision reference loops. Legend as in the header.
// Napkin (GPT-2 124M decoding one token at position t): 12 layers x 12 heads x t keys x 64 x 4
// flops = 37K t flops, and the cache read 2 x 12 x t x 768 x 4 bytes = 74 KB per position (half
// from a 16-bit cache), per row: at t = 1,024, 75 MB against the ~500 MB of fp32 weights (250 MB
// bf16) that the batch shares, so at batch 8 the cache is most of what a step reads.
// The inner loops (scores, weighted sum of the values) are the ActKernels table's, compiled per
// instruction set. Two task layouts: decoding (a few queries per row) streams each row's cache in
// chunks of positions, every head at once, and merges the chunks (attention_streamed); a prefill
// runs a task per query and head group (attention_per_query).
#include "s2s/ops/attention_cached.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "ops/act_kernels.h"
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

// A cache's element `index` as a double (the reference loops).
double cache_at(const Tensor& cache, int64_t index) {
  if (cache.dtype == DType::F32) return cache.f32()[index];
  const uint16_t h = cache.u16()[index];
  return cache.dtype == DType::BF16 ? bf16_to_f32(h) : f16_to_f32(h);
}

// Prefill (more than kStreamedQueries new positions per row): a task per query, row and group
// of heads, over that head's rows of the cache. Query heads per task: all G heads that share a
// key/value head, so each cached row is read once for all of them, when that still leaves every
// thread a few tasks; else one head per task, so a model with few key/value heads keeps both
// cores busy. Each head's arithmetic is the same either way: the bits do not depend on it.
int64_t heads_per_task(const Geometry& g) {
  const int64_t grouped_tasks = g.R * g.Hkv * g.Tq;
  return grouped_tasks >= 4 * int64_t(num_threads()) ? g.G : 1;
}

void attention_per_query(const Geometry& g, const Tensor& out, const Tensor& q,
                         const Tensor& k_cache, const Tensor& v_cache, const int32_t* slot,
                         const int32_t* key_begin, const int32_t* key_end) {
  const int64_t heads = heads_per_task(g), groups = g.Hq / heads;  // head groups per row
  const int64_t tasks = g.R * groups * g.Tq;
  const ActKernels& k = act_kernels();
  const DType dtype = k_cache.dtype;
  const size_t elem = dtype_size(dtype);
  const uint8_t* keys = static_cast<const uint8_t*>(k_cache.data);
  const uint8_t* values = static_cast<const uint8_t*>(v_cache.data);
  const int64_t D = g.D, kv_row = g.Hkv * D;  // elements between consecutive cache positions
  // ~4 flops per key, head and head dim; keep chunks >= ~64K flops.
  const int64_t grain =
      std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(1, 4 * g.Tc * D * heads));
  parallel_for(tasks, grain, [&](int64_t t0, int64_t t1) {
    // The heads' scores, row after row (then their probabilities, in place), and the cache
    // kernels' scratch: grown to the largest need once per thread, then reused.
    thread_local std::vector<float> scores, widened;
    if (scores.size() < size_t(heads * g.Tc)) scores.resize(size_t(heads * g.Tc));
    const int64_t scratch = cache_kernel_scratch(D, heads);
    if (widened.size() < size_t(scratch)) widened.resize(size_t(scratch));
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t i = t % g.Tq, h0 = (t / g.Tq) % groups * heads, r = t / (g.Tq * groups);
      const int64_t j0 = key_begin[r];
      int64_t j1 = key_end[r];
      if (g.causal) j1 = std::min<int64_t>(j1, key_end[r] - g.Tq + i + 1);
      float* o = out.f32() + ((r * g.Tq + i) * g.Hq + h0) * D;
      if (j1 <= j0) {  // nothing to attend: zeros
        for (int64_t d = 0; d < heads * D; ++d) o[d] = 0.0f;
        continue;
      }
      const int64_t n = j1 - j0;
      const int64_t first = (int64_t(slot[r]) * g.Tc + j0) * kv_row + h0 / g.G * D;
      const float* qv = q.f32() + r * q.strides[0] + i * q.strides[1] + h0 * D;
      float* s = scores.data();
      k.attn_cache_scores(s, n, qv, 0, 1, 1, heads, keys + size_t(first) * elem, kv_row, n, D,
                          dtype, g.scale, widened.data());
      for (int64_t h = 0; h < heads; ++h) {
        float* row = s + h * n;
        if (g.bias) {
          const float* brow = g.bias + ((h0 + h) * g.Tq + i) * g.Tb + j0;
          for (int64_t j = 0; j < n; ++j) row[j] += brow[j];
        }
        float mx = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j < n; ++j) mx = (row[j] > mx || row[j] != row[j]) ? row[j] : mx;
        if (mx == -std::numeric_limits<float>::infinity()) {  // every score -inf (bias): zeros
          for (int64_t j = 0; j < n; ++j) row[j] = 0.0f;
        } else {
          k.softmax_forward(row, row, 1, n);  // a NaN score makes the head's row NaN
        }
      }
      k.attn_cache_weighted_sum(o, s, n, 1, 1, heads, values + size_t(first) * elem, kv_row, n,
                                D, dtype, widened.data());
    }
  });
}

// Decoding (at most kStreamedQueries new positions per row): a task per row and chunk of its
// key range reads the chunk's positions in order, every head of each (a position's heads are
// adjacent in the cache, so the cache streams from memory), and leaves an unnormalised partial
// per query and head: its max score m, sum of weights l and weighted sum of values. The partials
// are then merged in chunk order. The chunks depend on the shapes only (the rows and the longest
// key range), never on the thread count, so neither do the bits.
constexpr int64_t kStreamedQueries = 8;
constexpr int64_t kMinChunk = 64;     // positions per chunk, at least
constexpr int64_t kTargetTasks = 16;  // chunks per row: enough for this many tasks over all rows

void attention_streamed(const Geometry& g, const Tensor& out, const Tensor& q,
                        const Tensor& k_cache, const Tensor& v_cache, const int32_t* slot,
                        const int32_t* key_begin, const int32_t* key_end) {
  int64_t span = 0;
  for (int64_t r = 0; r < g.R; ++r) span = std::max<int64_t>(span, key_end[r] - key_begin[r]);
  const int64_t chunks = std::max<int64_t>(
      1, std::min((kTargetTasks + g.R - 1) / g.R, (span + kMinChunk - 1) / kMinChunk));
  const int64_t len = std::max<int64_t>(1, (span + chunks - 1) / chunks);
  const int64_t H = g.Hq, D = g.D, QH = g.Tq * H, kv_row = g.Hkv * D;
  const ActKernels& k = act_kernels();
  const DType dtype = k_cache.dtype;
  const size_t elem = dtype_size(dtype);
  const uint8_t* keys = static_cast<const uint8_t*>(k_cache.data);
  const uint8_t* values = static_cast<const uint8_t*>(v_cache.data);
  // Per task (row, chunk): m (QH), l (QH), then the weighted sums (QH x D).
  const int64_t part = QH * (D + 2);
  thread_local std::vector<float> partials;
  if (partials.size() < size_t(g.R * chunks * part)) partials.resize(size_t(g.R * chunks * part));
  float* pd = partials.data();
  parallel_for(g.R * chunks, 1, [&](int64_t t0, int64_t t1) {
    thread_local std::vector<float> scores, alpha, widened;
    if (scores.size() < size_t(QH * len)) scores.resize(size_t(QH * len));
    if (alpha.size() < size_t(QH)) alpha.resize(size_t(QH));
    const int64_t scratch = cache_kernel_scratch(D, QH);
    if (widened.size() < size_t(scratch)) widened.resize(size_t(scratch));
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t r = t / chunks, c = t % chunks;
      float *m = pd + t * part, *l = m + QH, *o = l + QH;
      const int64_t a = key_begin[r] + c * len, b = std::min<int64_t>(key_end[r], a + len);
      for (int64_t x = 0; x < QH; ++x) {
        m[x] = -std::numeric_limits<float>::infinity();
        l[x] = 0.0f;
      }
      if (b <= a) {  // past this row's keys: an empty partial
        for (int64_t x = 0; x < QH * D; ++x) o[x] = 0.0f;
        continue;
      }
      const int64_t n = b - a, first = (int64_t(slot[r]) * g.Tc + a) * kv_row;
      float* s = scores.data();
      k.attn_cache_scores(s, n, q.f32() + r * q.strides[0], q.strides[1], g.Tq, g.Hkv, g.G,
                          keys + size_t(first) * elem, kv_row, n, D, dtype, g.scale,
                          widened.data());
      for (int64_t i = 0; i < g.Tq; ++i) {
        // Query i's keys end at key_end - Tq + i + 1 under the causal mask.
        const int64_t stop = g.causal ? std::min<int64_t>(n, key_end[r] - g.Tq + i + 1 - a) : n;
        for (int64_t h = 0; h < H; ++h) {
          float* row = s + (i * H + h) * n;
          if (g.bias) {
            const float* brow = g.bias + (h * g.Tq + i) * g.Tb + a;
            for (int64_t j = 0; j < n; ++j) row[j] += brow[j];
          }
          for (int64_t j = std::max<int64_t>(0, stop); j < n; ++j) {
            row[j] = -std::numeric_limits<float>::infinity();
          }
        }
      }
      k.attn_online_softmax(s, n, QH, n, m, l, alpha.data());  // weights exp(s - m), l their sum
      k.attn_cache_weighted_sum(o, s, n, g.Tq, g.Hkv, g.G, values + size_t(first) * elem, kv_row,
                                n, D, dtype, widened.data());
    }
  });
  // Merge: out = sum_c e^(m_c - M) o_c / sum_c e^(m_c - M) l_c, M the largest m_c (NaN sticks);
  // a query and head with no allowed key anywhere (M = -inf) gets zeros.
  for (int64_t r = 0; r < g.R; ++r) {
    for (int64_t x = 0; x < QH; ++x) {
      float* dst = out.f32() + (r * QH + x) * D;
      float M = -std::numeric_limits<float>::infinity();
      for (int64_t c = 0; c < chunks; ++c) {
        const float mc = pd[(r * chunks + c) * part + x];
        M = (mc > M || mc != mc) ? mc : M;
      }
      for (int64_t d = 0; d < D; ++d) dst[d] = 0.0f;
      if (M == -std::numeric_limits<float>::infinity()) continue;
      float L = 0.0f;
      for (int64_t c = 0; c < chunks; ++c) {
        const float* p = pd + (r * chunks + c) * part;
        const float w = std::exp(p[x] - M);  // 0 for an empty chunk (m = -inf)
        if (w == 0.0f) continue;
        L += w * p[QH + x];
        const float* oc = p + 2 * QH + x * D;
        for (int64_t d = 0; d < D; ++d) dst[d] += w * oc[d];
      }
      const float inv = 1.0f / L;
      for (int64_t d = 0; d < D; ++d) dst[d] *= inv;
    }
  }
}

}  // namespace

void attention_cached_forward(const Tensor& out, const Tensor& q, const Tensor& k_cache,
                              const Tensor& v_cache, const int32_t* slot,
                              const int32_t* key_begin, const int32_t* key_end,
                              const Tensor& bias, const AttentionOptions& options) {
  const Geometry g = check(out, q, k_cache, v_cache, slot, key_begin, key_end, bias, options);
  if (g.R * g.Tq * g.Hq == 0) return;
  if (g.Tq <= kStreamedQueries) {
    attention_streamed(g, out, q, k_cache, v_cache, slot, key_begin, key_end);
  } else {
    attention_per_query(g, out, q, k_cache, v_cache, slot, key_begin, key_end);
  }
}

void attention_cached_forward_reference(const Tensor& out, const Tensor& q, const Tensor& k_cache,
                                        const Tensor& v_cache, const int32_t* slot,
                                        const int32_t* key_begin, const int32_t* key_end,
                                        const Tensor& bias, const AttentionOptions& options) {
  const Geometry g = check(out, q, k_cache, v_cache, slot, key_begin, key_end, bias, options);
  const float* qd = q.f32();
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
                 cache_at(k_cache, ((slot[r] * g.Tc + j) * g.Hkv + hk) * g.D + d);
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
            acc += s[n] / sum * cache_at(v_cache, ((slot[r] * g.Tc + keys[n]) * g.Hkv + hk) * g.D + d);
          }
          o[d] = static_cast<float>(acc);
        }
      }
}

}  // namespace s2s
