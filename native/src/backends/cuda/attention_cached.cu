// attention_cached on CUDA (s2s/ops/attention_cached.h semantics): the new positions' queries
// against a KV cache, for decoding. A warp per (row, query, head): it walks the row's keys in
// order, each score a warp-wide dot product (lane d holds head dims d, d + 32, ...), with an
// online softmax and the output accumulated in registers; fp32 throughout. Decoding reads each
// cached key once per query head, so the op is bound by the cache's bytes, a few percent of a
// decoding step next to the weights (the CPU op's napkin). The index arrays live on the device:
// a slot or key range the CPU op would reject is reported through the context's error slot
// (raised at the next synchronize) and that query's output is zeros.
#include <cuda_runtime.h>

#include <cmath>

#include "backends/cuda/check.cuh"
#include "backends/cuda/cuda_ops.h"

namespace s2s {
namespace cuda {

namespace {

constexpr const char* kOp = "attention_cached";
constexpr int kWarps = 4;

struct CachedGeometry {
  int64_t R, Tq, Hq, D, S, Tc, Hkv, G, Tb;
  float scale;
  bool causal;
  const float* bias;
  unsigned long long* err;
};

template <int NDC>  // head-dim slices of 32 per lane: ceil(D / 32)
__global__ void __launch_bounds__(kWarps * 32)
    attention_cached_kernel(CachedGeometry g, const float* q, const float* k_cache,
                            const float* v_cache, const int32_t* slot, const int32_t* key_begin,
                            const int32_t* key_end, float* out) {
  const int lane = threadIdx.x % 32;
  const int64_t task = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (task >= g.R * g.Tq * g.Hq) return;  // whole warps
  const int64_t i = task % g.Tq, h = (task / g.Tq) % g.Hq, r = task / (g.Tq * g.Hq);
  const int64_t hk = h / g.G, D = g.D;
  float* o_row = out + ((r * g.Tq + i) * g.Hq + h) * D;
  const int64_t s = slot[r], j0 = key_begin[r], end = key_end[r];
  const bool bad_slot = s < 0 || s >= g.S;
  const bool bad_range = j0 < 0 || j0 > end || end > g.Tc || (g.causal && end < g.Tq) ||
                         (g.bias != nullptr && end > g.Tb);
  if (bad_slot || bad_range) {
    if (lane == 0 && i == 0 && h == 0) {
      if (bad_slot) report_bad_input(g.err, KernelReport::AttentionCacheSlot, r, s, g.S);
      else report_bad_input(g.err, KernelReport::AttentionCacheRange, r, end, g.Tc);
    }
    for (int64_t d = lane; d < D; d += 32) o_row[d] = 0.f;
    return;
  }
  int64_t j1 = end;
  if (g.causal && end - g.Tq + i + 1 < j1) j1 = end - g.Tq + i + 1;

  const float* q_row = q + ((r * g.Tq + i) * g.Hq + h) * D;
  float qv[NDC], o[NDC];
#pragma unroll
  for (int c = 0; c < NDC; ++c) {
    const int64_t d = c * 32 + lane;
    qv[c] = d < D ? q_row[d] : 0.f;
    o[c] = 0.f;
  }
  const int64_t kv_row = g.Hkv * D;  // floats between consecutive cache positions
  const float* k_base = k_cache + (s * g.Tc * g.Hkv + hk) * D;
  const float* v_base = v_cache + (s * g.Tc * g.Hkv + hk) * D;
  const float* b_row = g.bias != nullptr ? g.bias + (h * g.Tq + i) * g.Tb : nullptr;
  float m = -INFINITY, l = 0.f;
  for (int64_t j = j0; j < j1; ++j) {
    const float* kj = k_base + j * kv_row;
    float part = 0.f;
#pragma unroll
    for (int c = 0; c < NDC; ++c) {
      const int64_t d = c * 32 + lane;
      if (d < D) part += qv[c] * kj[d];
    }
    float sc = g.scale * warp_sum(part);
    if (b_row != nullptr) sc += b_row[j];
    const float m_new = nan_max(m, sc);
    if (m_new == -INFINITY) continue;  // every key so far has bias -inf
    const float alpha = expf(m - m_new);  // 0 when m was -inf
    const float p = expf(sc - m_new);
    l = l * alpha + p;
    m = m_new;
    const float* vj = v_base + j * kv_row;
#pragma unroll
    for (int c = 0; c < NDC; ++c) {
      const int64_t d = c * 32 + lane;
      o[c] = o[c] * alpha + (d < D ? p * vj[d] : 0.f);
    }
  }
  const float inv = l > 0.f ? 1.f / l : 0.f;  // no allowed key: zeros
#pragma unroll
  for (int c = 0; c < NDC; ++c) {
    const int64_t d = c * 32 + lane;
    if (d < D) o_row[d] = o[c] * inv;
  }
}

template <int NDC>
void launch(Context& ctx, const CachedGeometry& g, const float* q, const float* k,
            const float* v, const int32_t* slot, const int32_t* begin, const int32_t* end,
            float* out) {
  const int64_t blocks = ceil_div(g.R * g.Tq * g.Hq, kWarps);
  attention_cached_kernel<NDC><<<grid(blocks), kWarps * 32, 0, stream_of(ctx)>>>(
      g, q, k, v, slot, begin, end, out);
  check_launch(kOp);
}

}  // namespace

void attention_cached_forward(Context& ctx, const Tensor& out, const Tensor& q,
                              const Tensor& k_cache, const Tensor& v_cache, const int32_t* slot,
                              const int32_t* key_begin, const int32_t* key_end,
                              const Tensor& bias, const AttentionOptions& options) {
  expect_f32(q, {-1, -1, -1, -1}, kOp, "q");
  CachedGeometry g{};
  g.R = q.shape[0];
  g.Tq = q.shape[1];
  g.Hq = q.shape[2];
  g.D = q.shape[3];
  expect_f32(out, {g.R, g.Tq, g.Hq, g.D}, kOp, "out");
  expect_f32(k_cache, {-1, -1, -1, g.D}, kOp, "k_cache");
  g.S = k_cache.shape[0];
  g.Tc = k_cache.shape[1];
  g.Hkv = k_cache.shape[2];
  expect_f32(v_cache, {g.S, g.Tc, g.Hkv, g.D}, kOp, "v_cache");
  S2S_REQUIRE(g.Hkv >= 1 && g.Hq % g.Hkv == 0, code::kShape, kOp,
              "expected query heads to be a multiple of kv heads, got Hq = ", g.Hq,
              " and Hkv = ", g.Hkv);
  attention_head_chunks(g.D);  // D <= 256 on CUDA
  g.G = g.Hq / g.Hkv;
  g.causal = options.causal;
  g.scale = options.scale.has_value() ? *options.scale
                                      : static_cast<float>(1.0 / std::sqrt(double(g.D)));
  S2S_REQUIRE(std::isfinite(g.scale), code::kArgument, kOp, "expected a finite scale, got ",
              g.scale);
  S2S_REQUIRE(g.R == 0 || (slot && key_begin && key_end), code::kArgument, kOp,
              "expected slot, key_begin and key_end arrays");
  g.bias = nullptr;
  g.Tb = 0;
  if (bias.data != nullptr) {
    expect_f32(bias, {g.Hq, g.Tq, -1}, kOp, "bias");
    g.Tb = bias.shape[2];
    g.bias = bias.f32();
  }
  g.err = ctx.error_slot();
  if (g.R * g.Tq * g.Hq == 0) return;
  ctx.activate();
  switch (attention_head_chunks(g.D)) {
    case 1: launch<1>(ctx, g, q.f32(), k_cache.f32(), v_cache.f32(), slot, key_begin, key_end, out.f32()); break;
    case 2: launch<2>(ctx, g, q.f32(), k_cache.f32(), v_cache.f32(), slot, key_begin, key_end, out.f32()); break;
    case 3: launch<3>(ctx, g, q.f32(), k_cache.f32(), v_cache.f32(), slot, key_begin, key_end, out.f32()); break;
    case 4: launch<4>(ctx, g, q.f32(), k_cache.f32(), v_cache.f32(), slot, key_begin, key_end, out.f32()); break;
    case 5: launch<5>(ctx, g, q.f32(), k_cache.f32(), v_cache.f32(), slot, key_begin, key_end, out.f32()); break;
    case 6: launch<6>(ctx, g, q.f32(), k_cache.f32(), v_cache.f32(), slot, key_begin, key_end, out.f32()); break;
    case 7: launch<7>(ctx, g, q.f32(), k_cache.f32(), v_cache.f32(), slot, key_begin, key_end, out.f32()); break;
    default: launch<8>(ctx, g, q.f32(), k_cache.f32(), v_cache.f32(), slot, key_begin, key_end, out.f32()); break;
  }
}

}  // namespace cuda
}  // namespace s2s
