// attention_cached on CUDA (s2s/ops/attention_cached.h semantics): the new positions' queries
// against a KV cache, for decoding. Decoding one token has few queries (rows x heads: 12 for
// GPT-2 at batch 1) and many keys, so a warp per query would leave an H100 almost idle, each
// warp walking a thousand keys one dependent step at a time. Instead the keys are split too
// (flash-decoding): a warp per (query, split) of up to `span` keys, 32 keys per step:
//   - scores: lane d reads dims d, d + 32, ... of all 32 keys (coalesced rows), and one
//     transposing reduction (31 shuffles) leaves lane L with key L's full dot product;
//   - an online softmax over the steps, the output accumulated in registers (lane d: dims d,
//     d + 32, ...), each step's probabilities broadcast by shuffles;
//   - with one split, the warp writes the output; otherwise it writes (m, l, o) and a combine
//     kernel merges the splits in split order, so the result is deterministic.
// The split count depends on the shapes only (queries and cache capacity), never on the GPU.
// fp32 arithmetic throughout, as on the CPU; a 16-bit cache (bf16 or f16: half the bytes, which
// are most of what decoding reads at long contexts) is widened as it is loaded. The index
// arrays live on the device: a slot or key range the CPU op would reject is reported through the
// context's error slot (raised at the next synchronize) and that query's output is zeros.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "backends/cuda/check.cuh"
#include "backends/cuda/cuda_ops.h"
#include "s2s/ops/kv_cache_append.h"

namespace s2s {
namespace cuda {

namespace {

constexpr const char* kOp = "attention_cached";
constexpr int kWarps = 4;
constexpr int kKeysPerStep = 32;  // one per lane
// Enough warps to keep many loads in flight on a large GPU; more splits only add combine work.
constexpr int64_t kTargetWarps = 4096;

struct CachedGeometry {
  int64_t R, Tq, Hq, D, S, Tc, Hkv, G, Tb;
  int64_t splits, span;  // key positions [s * span, (s + 1) * span) belong to split s
  int64_t q_row, q_pos;  // q's row and position strides (it may be a view into a fused qkv)
  float scale;
  bool causal;
  const float* bias;
  float* part_o;   // (queries, splits, D) when splits > 1
  float* part_ml;  // (queries, splits, 2): running max and sum
  unsigned long long* err;
};

// Lane L gets the sum over the 32 lanes of a[L]: a transpose and a reduction in one, 31
// shuffles where 32 separate warp sums would take 160. At each stage a lane keeps the half of
// its values whose index has the stage's lane bit, and adds its partner's copy of that half.
// One template instance per stage, so every index is a constant and `a` stays in registers.
template <int Half>
__device__ inline void transpose_sum_stage(float (&a)[kKeysPerStep], int lane) {
  const bool upper = (lane & Half) != 0;
#pragma unroll
  for (int i = 0; i < Half; ++i) {
    const float send = upper ? a[i] : a[i + Half];
    const float keep = upper ? a[i + Half] : a[i];
    a[i] = keep + __shfl_xor_sync(0xffffffffu, send, Half);
  }
  if constexpr (Half > 1) transpose_sum_stage<Half / 2>(a, lane);
}

__device__ inline float transpose_sum(float (&a)[kKeysPerStep], int lane) {
  transpose_sum_stage<kKeysPerStep / 2>(a, lane);
  return a[0];
}

// A cache's element type and how a value widens to f32.
struct CacheF32 {
  using T = float;
  static __device__ float load(const float* p, int64_t i) { return p[i]; }
};
struct CacheBf16 {
  using T = uint16_t;
  static __device__ float load(const uint16_t* p, int64_t i) { return bf16_bits_to_f32(p[i]); }
};
struct CacheF16 {
  using T = uint16_t;
  static __device__ float load(const uint16_t* p, int64_t i) { return f16_bits_to_f32(p[i]); }
};

template <int NDC, typename Cache>  // NDC: head-dim slices of 32 per lane, ceil(D / 32)
__global__ void __launch_bounds__(kWarps * 32)
    attention_cached_split_kernel(CachedGeometry g, const float* q,
                                  const typename Cache::T* k_cache,
                                  const typename Cache::T* v_cache, const int32_t* slot,
                                  const int32_t* key_begin, const int32_t* key_end, float* out) {
  const int lane = threadIdx.x % 32;
  const int64_t unit = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (unit >= g.R * g.Tq * g.Hq * g.splits) return;  // whole warps
  const int64_t split = unit % g.splits, query = unit / g.splits;
  // query = (r * Tq + i) * Hq + h, the row of q and out
  const int64_t h = query % g.Hq, i = (query / g.Hq) % g.Tq, r = query / (g.Tq * g.Hq);
  const int64_t hk = h / g.G, D = g.D;
  const int64_t s = slot[r], j0 = key_begin[r], end = key_end[r];
  const bool bad_slot = s < 0 || s >= g.S;
  const bool bad_range = j0 < 0 || j0 > end || end > g.Tc || (g.causal && end < g.Tq) ||
                         (g.bias != nullptr && end > g.Tb);
  int64_t lo = 0, hi = 0;  // this warp's keys; none for a rejected row (zeros)
  if (bad_slot || bad_range) {
    if (lane == 0 && i == 0 && h == 0 && split == 0) {
      if (bad_slot) report_bad_input(g.err, KernelReport::AttentionCacheSlot, r, s, g.S);
      else report_bad_input(g.err, KernelReport::AttentionCacheRange, r, end, g.Tc);
    }
  } else {
    int64_t j1 = end;
    if (g.causal && end - g.Tq + i + 1 < j1) j1 = end - g.Tq + i + 1;
    lo = j0 > split * g.span ? j0 : split * g.span;
    hi = j1 < (split + 1) * g.span ? j1 : (split + 1) * g.span;
  }

  const float* q_row = q + r * g.q_row + i * g.q_pos + h * D;
  float qv[NDC], o[NDC];
#pragma unroll
  for (int c = 0; c < NDC; ++c) {
    const int64_t d = c * 32 + lane;
    qv[c] = d < D ? q_row[d] : 0.f;
    o[c] = 0.f;
  }
  const int64_t kv_row = g.Hkv * D;  // values between consecutive cache positions
  const typename Cache::T* k_base = k_cache + ((bad_slot ? 0 : s) * g.Tc * g.Hkv + hk) * D;
  const typename Cache::T* v_base = v_cache + ((bad_slot ? 0 : s) * g.Tc * g.Hkv + hk) * D;
  const float* b_row = g.bias != nullptr ? g.bias + (h * g.Tq + i) * g.Tb : nullptr;
  float m = -INFINITY, l = 0.f;
  for (int64_t base = lo; base < hi; base += kKeysPerStep) {
    const int n = int(hi - base < kKeysPerStep ? hi - base : kKeysPerStep);  // warp-uniform
    float a[kKeysPerStep];
#pragma unroll
    for (int k = 0; k < kKeysPerStep; ++k) {
      // Past the range, the last key stands in (its score is masked below): no branches.
      const typename Cache::T* kj = k_base + (k < n ? base + k : hi - 1) * kv_row;
      float part = 0.f;
#pragma unroll
      for (int c = 0; c < NDC; ++c) {
        const int64_t d = c * 32 + lane;
        if (d < D) part += qv[c] * Cache::load(kj, d);
      }
      a[k] = part;
    }
    float sc = g.scale * transpose_sum(a, lane);
    if (lane >= n) sc = -INFINITY;
    else if (b_row != nullptr) sc += b_row[base + lane];
    const float m_new = nan_max(m, warp_max(sc));
    if (m_new == -INFINITY) continue;  // every key so far has bias -inf
    const float alpha = expf(m - m_new);  // 0 when m was -inf
    const float p = expf(sc - m_new);
    l = l * alpha + warp_sum(p);
    m = m_new;
#pragma unroll
    for (int c = 0; c < NDC; ++c) o[c] *= alpha;
    for (int k = 0; k < n; ++k) {
      const float pk = __shfl_sync(0xffffffffu, p, k);
      const typename Cache::T* vj = v_base + (base + k) * kv_row;
#pragma unroll
      for (int c = 0; c < NDC; ++c) {
        const int64_t d = c * 32 + lane;
        if (d < D) o[c] += pk * Cache::load(vj, d);
      }
    }
  }
  if (g.splits == 1) {
    const float inv = l > 0.f ? 1.f / l : 0.f;  // no allowed key: zeros
    float* o_row = out + query * D;
#pragma unroll
    for (int c = 0; c < NDC; ++c) {
      const int64_t d = c * 32 + lane;
      if (d < D) o_row[d] = o[c] * inv;
    }
    return;
  }
  float* part = g.part_o + unit * D;
#pragma unroll
  for (int c = 0; c < NDC; ++c) {
    const int64_t d = c * 32 + lane;
    if (d < D) part[d] = o[c];
  }
  if (lane == 0) {
    g.part_ml[2 * unit] = m;
    g.part_ml[2 * unit + 1] = l;
  }
}

// A warp per query merges its splits in split order: out = sum_s o_s e^(m_s - M) / L, with M
// the largest m_s and L = sum_s l_s e^(m_s - M). Splits with no allowed key have m_s = -inf.
__global__ void __launch_bounds__(kWarps * 32)
    attention_cached_combine_kernel(CachedGeometry g, float* out) {
  const int lane = threadIdx.x % 32;
  const int64_t query = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (query >= g.R * g.Tq * g.Hq) return;
  const int64_t D = g.D, first = query * g.splits;
  const float* ml = g.part_ml + 2 * first;
  float M = -INFINITY;
  for (int64_t s = 0; s < g.splits; ++s) M = nan_max(M, ml[2 * s]);
  float L = 0.f;
  if (M != -INFINITY)
    for (int64_t s = 0; s < g.splits; ++s) L += ml[2 * s + 1] * expf(ml[2 * s] - M);
  const float inv = L > 0.f ? 1.f / L : 0.f;  // no allowed key in any split: zeros
  for (int64_t d = lane; d < D; d += 32) {
    float acc = 0.f;
    if (M != -INFINITY)
      for (int64_t s = 0; s < g.splits; ++s)
        acc += g.part_o[(first + s) * D + d] * expf(ml[2 * s] - M);
    out[query * D + d] = acc * inv;
  }
}

template <int NDC, typename Cache>
void launch(Context& ctx, const CachedGeometry& g, const float* q, const void* k, const void* v,
            const int32_t* slot, const int32_t* begin, const int32_t* end, float* out) {
  const int64_t queries = g.R * g.Tq * g.Hq;
  using T = typename Cache::T;
  attention_cached_split_kernel<NDC, Cache><<<grid(ceil_div(queries * g.splits, kWarps)),
                                              kWarps * 32, 0, stream_of(ctx)>>>(
      g, q, static_cast<const T*>(k), static_cast<const T*>(v), slot, begin, end, out);
  check_launch(kOp);
  if (g.splits == 1) return;
  attention_cached_combine_kernel<<<grid(ceil_div(queries, kWarps)), kWarps * 32, 0,
                                    stream_of(ctx)>>>(g, out);
  check_launch(kOp);
}

// The kernel instance for D's slice count.
template <typename Cache>
void launch_for(Context& ctx, const CachedGeometry& g, const Tensor& q, const Tensor& k,
                const Tensor& v, const int32_t* slot, const int32_t* begin, const int32_t* end,
                const Tensor& out) {
  const float* qd = q.f32();
  float* od = out.f32();
  switch (attention_head_chunks(g.D)) {
    case 1: launch<1, Cache>(ctx, g, qd, k.data, v.data, slot, begin, end, od); break;
    case 2: launch<2, Cache>(ctx, g, qd, k.data, v.data, slot, begin, end, od); break;
    case 3: launch<3, Cache>(ctx, g, qd, k.data, v.data, slot, begin, end, od); break;
    case 4: launch<4, Cache>(ctx, g, qd, k.data, v.data, slot, begin, end, od); break;
    case 5: launch<5, Cache>(ctx, g, qd, k.data, v.data, slot, begin, end, od); break;
    case 6: launch<6, Cache>(ctx, g, qd, k.data, v.data, slot, begin, end, od); break;
    case 7: launch<7, Cache>(ctx, g, qd, k.data, v.data, slot, begin, end, od); break;
    default: launch<8, Cache>(ctx, g, qd, k.data, v.data, slot, begin, end, od); break;
  }
}

}  // namespace
void attention_cached_forward(Context& ctx, const Tensor& out, const Tensor& q,
                              const Tensor& k_cache, const Tensor& v_cache, const int32_t* slot,
                              const int32_t* key_begin, const int32_t* key_end,
                              const Tensor& bias, const AttentionOptions& options) {
  expect_f32_heads(q, {-1, -1, -1, -1}, kOp, "q");
  CachedGeometry g{};
  g.R = q.shape[0];
  g.Tq = q.shape[1];
  g.Hq = q.shape[2];
  g.D = q.shape[3];
  g.q_row = q.strides[0];
  g.q_pos = q.strides[1];
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
  const int64_t queries = g.R * g.Tq * g.Hq;
  if (queries == 0) return;
  ctx.activate();
  // Split the cache positions when the queries alone leave the GPU idle (decoding), in steps of
  // whole 32-key rounds; a split that misses a row's keys merges as empty.
  const int64_t rounds = std::max<int64_t>(1, ceil_div(g.Tc, kKeysPerStep));
  g.splits = std::min(rounds, ceil_div(kTargetWarps, queries));
  g.span = ceil_div(rounds, g.splits) * kKeysPerStep;
  g.splits = std::max<int64_t>(1, ceil_div(g.Tc, g.span));  // no split left without positions
  ArenaScope scope(ctx.arena());
  g.part_o = g.part_ml = nullptr;
  if (g.splits > 1) {
    g.part_o = ctx.arena().allocate_array<float>(size_t(queries * g.splits * g.D));
    g.part_ml = ctx.arena().allocate_array<float>(size_t(queries * g.splits * 2));
  }
  switch (k_cache.dtype) {
    case DType::F32:
      launch_for<CacheF32>(ctx, g, q, k_cache, v_cache, slot, key_begin, key_end, out);
      break;
    case DType::BF16:
      launch_for<CacheBf16>(ctx, g, q, k_cache, v_cache, slot, key_begin, key_end, out);
      break;
    case DType::F16:
      launch_for<CacheF16>(ctx, g, q, k_cache, v_cache, slot, key_begin, key_end, out);
      break;
  }
}

}  // namespace cuda
}  // namespace s2s
