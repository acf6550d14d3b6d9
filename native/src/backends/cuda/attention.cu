// attention on CUDA (s2s/ops/attention.h semantics): fused flash-style forward and backward in
// fp32 on the CUDA cores. Causal or bidirectional, key padding mask, additive bias (T5) and its
// gradient, grouped-query heads (kv head = h / (Hq / Hkv)), head dim up to 256, dropout on the
// probabilities (the CPU op's mask: ops/dropout_mask.h compiled for the device, one Philox block
// per element, so both backends drop the same elements bit for bit).
//
// Layout of the work (launch.h): a block is 4 warps; a warp owns 8 rows (query rows in the
// forward and the Q pass, keys in the KV pass) and its 32 lanes stand for the 32 columns of the
// current tile (keys, or queries in the KV pass) while scores are formed, then for head-dim
// slices (d = lane, lane + 32, ...) while outputs accumulate in registers. Tiles live in shared
// memory with rows padded to D+1 floats, so 32 lanes reading 32 different rows hit 32 banks.
//
// Forward, per (query tile, head, batch): for each key tile, s = scale q.k + bias (masked keys
// -inf), online softmax (running max m and sum l per row, O rescaled by e^(m_old - m_new)),
// O += P V; finally out = O / l and lse = m + log l; rows with no allowed key give zeros and
// lse = -inf (as the CPU op). With dropout, P is multiplied by its factor Z = keep / (1 - p)
// after l has summed it (lse stays that of the undropped row), before O += P V.
// Backward, as the CPU op, in two passes so that every gradient element has one owner (no
// atomics, deterministic): Di = <dout, out> per row; the KV pass (key tile, kv head, batch)
// rebuilds P = exp(s - lse) and dS = P (dout.v - Di) for all query tiles of the G query heads
// of its kv head and accumulates dK = scale dS^T Q, dV = P^T dO; the Q pass (query tile, head,
// batch) accumulates dQ = scale dS K and dbias = dS (per-batch slices added in batch order
// afterwards, attention_dbias.cu; beyond its memory cap the blocks loop over the batch, so a
// dbias element is summed over b by one thread in order). With dropout both passes
// regenerate Z: dV takes P o Z and dS = P o (Z o dP - Di) (Di from the dropped out, as saved).
// Napkin: forward 4 Tq Tk D flops per (b, h) (halved when causal), backward 14 (7/5 of flash-
// attention 2's count, the price of determinism without atomics). fp32 FMAs from shared memory
// reach roughly 15-25 TFLOP/s on an H100; a bf16 tensor-core version (mma) is the next step for
// speed and is measured in bench_cuda_train.
#include <cuda_runtime.h>

#include <cmath>

#include "backends/cuda/attention_mma.cuh"
#include "backends/cuda/check.cuh"
#include "backends/cuda/cuda_ops.h"
#include "ops/dropout_mask.h"

namespace s2s {
namespace cuda {

namespace {

constexpr const char* kOp = "attention";
constexpr int R = kAttnRowsPerWarp;  // rows per warp
constexpr int TILE = kAttnRows;      // rows (and columns) per tile: 32

using Geometry = AttentionGeometry;  // attention_mma.cuh

// q, k or v: float32, or bfloat16 / float16 (checked against the products in check_inputs).
void expect_input(const Tensor& t, std::initializer_list<int64_t> shape, const char* name) {
  S2S_REQUIRE(t.dtype == DType::F32 || t.dtype == DType::BF16 || t.dtype == DType::F16,
              code::kDType, kOp, "expected ", name, " to be float32, bfloat16 or float16, got ",
              dtype_name(t.dtype));
  expect_shape(t, shape, kOp, name);
  expect_contiguous(t, kOp, name);
}

// The tensor-core kernels (attention_mma.cu) when the options allow 16-bit products and the head
// dim has one; the fp32 kernels otherwise.
bool use_tensor_cores(const Geometry& g, const AttentionOptions& options) {
  return attention_reads_16bit_inputs(options, g.D);
}

// A 16-bit q, k or v holds the products' values already: only the tensor-core kernels take it.
bool input_is_16bit(const Tensor& t, const Geometry& g, const AttentionOptions& options,
                    const char* name) {
  if (t.dtype == DType::F32) return false;
  S2S_REQUIRE(use_tensor_cores(g, options) && t.dtype == options.products, code::kDType, kOp,
              "expected ", name, " in float32, or in the products' dtype where the tensor-core "
              "kernels run (bf16/f16 products, head dim 32, 64, 96 or 128), got ",
              dtype_name(t.dtype), " with products ", dtype_name(options.products),
              " and head dim ", g.D);
  return true;
}

// The saved out (forward: written; backward: read): float32, or the products' 16-bit dtype
// where the tensor-core kernels run (the values a 16-bit linear reading it rounds to). Returns
// whether it is 16-bit.
bool expect_out(const Tensor& out, const Geometry& g, const AttentionOptions& options) {
  expect_shape(out, {g.B, g.Tq, g.Hq, g.D}, kOp, "out");
  expect_contiguous(out, kOp, "out");
  if (out.dtype == DType::F32) return false;
  S2S_REQUIRE(use_tensor_cores(g, options) && out.dtype == options.products, code::kDType, kOp,
              "expected out in float32, or in the products' dtype where the tensor-core kernels "
              "run (bf16/f16 products, head dim 32, 64, 96 or 128), got ",
              dtype_name(out.dtype), " with products ", dtype_name(options.products),
              " and head dim ", g.D);
  return true;
}

Geometry check_inputs(Context& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                      const Tensor& bias, const uint8_t* key_mask, int64_t key_mask_size,
                      const AttentionOptions& options) {
  expect_input(q, {-1, -1, -1, -1}, "q");
  Geometry g{};
  g.B = q.shape[0];
  g.Tq = q.shape[1];
  g.Hq = q.shape[2];
  g.D = q.shape[3];
  S2S_REQUIRE(g.D >= 1, code::kShape, kOp, "expected q with head dim >= 1, got ",
              q.shape_string());
  attention_head_chunks(g.D);  // D <= 256 on CUDA
  expect_input(k, {g.B, -1, -1, g.D}, "k");
  g.Tk = k.shape[1];
  g.Hkv = k.shape[2];
  expect_input(v, {g.B, g.Tk, g.Hkv, g.D}, "v");
  S2S_REQUIRE(g.Hkv >= 1 && g.Hq % g.Hkv == 0, code::kShape, kOp,
              "expected query heads to be a multiple of kv heads, got Hq = ", g.Hq,
              " and Hkv = ", g.Hkv);
  g.G = g.Hq / g.Hkv;
  g.offset = g.Tk - g.Tq;
  g.causal = options.causal;
  if (options.scale.has_value()) {
    S2S_REQUIRE(std::isfinite(*options.scale), code::kArgument, kOp,
                "expected a finite scale, got ", *options.scale);
    g.scale = *options.scale;
  } else {
    g.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(g.D)));
  }
  S2S_REQUIRE(options.dropout_p >= 0.0f && options.dropout_p < 1.0f, code::kArgument, kOp,
              "expected dropout_p in [0, 1), got ", options.dropout_p);
  S2S_REQUIRE(options.products == DType::F32 || options.products == DType::BF16 ||
                  options.products == DType::F16,
              code::kArgument, kOp, "expected products F32, BF16 or F16, got ",
              dtype_name(options.products));
  g.dropout = options.dropout_p > 0.0f;
  g.dropout_p = options.dropout_p;
  g.dropout_scale = 1.0f / (1.0f - options.dropout_p);
  g.dropout_seed = options.dropout_seed.value;
  g.dropout_seed_on_device = options.dropout_seed.on_device;
  g.dropout_offset = options.dropout_offset;
  g.bias = nullptr;
  if (bias.data != nullptr) {
    expect_f32(bias, {g.Hq, g.Tq, g.Tk}, kOp, "bias");
    g.bias = bias.f32();
  }
  g.mask = key_mask;
  S2S_REQUIRE(key_mask_size == (key_mask != nullptr ? g.B * g.Tk : 0), code::kShape, kOp,
              "expected key_mask of ", key_mask != nullptr ? g.B * g.Tk : 0,
              key_mask != nullptr ? " values (B*Tk)" : " values (no mask pointer)", ", got ",
              key_mask_size);
  g.err = ctx.error_slot();
  g.q16 = input_is_16bit(q, g, options, "q");
  g.k16 = input_is_16bit(k, g, options, "k");
  g.v16 = input_is_16bit(v, g, options, "v");
  check_attention_grid(ceil_div(g.Tq > g.Tk ? g.Tq : g.Tk, TILE), g.Hq, g.B);
  return g;
}

// Whether key j of batch row b may be attended (mask only; the caller checks j < Tk). A mask
// value other than 0/1 is reported (and treated as 1).
__device__ inline bool key_allowed(const Geometry& g, int64_t b, int64_t j) {
  if (g.mask == nullptr) return true;
  const uint8_t m = g.mask[b * g.Tk + j];
  if (m > 1) report_bad_input(g.err, KernelReport::AttentionKeyMask, b * g.Tk + j, m, 2);
  return m != 0;
}

// The CPU op's mask, 1 without dropout (g.dropout decides at run time in these kernels).
__device__ __forceinline__ float dropout_factor(const AttentionGeometry& g, int64_t b, int64_t h,
                                                int64_t i, int64_t j) {
  return mma_detail::dropout_factor<true>(g, b, h, i, j);
}

// Loads rows [r0, r0 + 32) of head `head` of a (B, T, H, D) tensor into a padded (32, D+1)
// tile; rows past T are zero. All threads of the block take part.
__device__ inline void load_tile(float* tile, const float* x, int64_t b, int64_t r0, int64_t T,
                                 int64_t H, int64_t head, int64_t D) {
  for (int64_t idx = threadIdx.x; idx < TILE * D; idx += blockDim.x) {
    const int64_t r = idx / D, d = idx % D, t = r0 + r;
    tile[r * (D + 1) + d] = t < T ? x[((b * T + t) * H + head) * D + d] : 0.f;
  }
}

// Last key (exclusive) any of query rows [i0, i0 + 32) may see.
__device__ inline int64_t key_end(const Geometry& g, int64_t i0) {
  return mma_detail::key_end(g, i0, TILE);
}

// ---- forward --------------------------------------------------------------------------------
template <int NDC>  // head-dim slices of 32 per lane: ceil(D / 32)
__global__ void __launch_bounds__(128) attention_forward_kernel(Geometry g, const float* q,
                                                                const float* k, const float* v,
                                                                float* out, float* lse) {
  extern __shared__ float smem[];
  mma_detail::read_dropout_seed<true>(g);
  const int64_t D = g.D, P = D + 1;
  float* Qs = smem;
  float* Ks = Qs + TILE * P;
  float* Vs = Ks + TILE * P;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t i0 = int64_t(blockIdx.x) * TILE, h = blockIdx.y, b = blockIdx.z, hk = h / g.G;
  load_tile(Qs, q, b, i0, g.Tq, g.Hq, h, D);

  float m[R], l[R], o[R][NDC];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.f;
#pragma unroll
    for (int c = 0; c < NDC; ++c) o[r][c] = 0.f;
  }
  const int64_t kend = key_end(g, i0);
  for (int64_t j0 = 0; j0 < kend; j0 += TILE) {
    __syncthreads();  // the previous tile is no longer read
    load_tile(Ks, k, b, j0, g.Tk, g.Hkv, hk, D);
    load_tile(Vs, v, b, j0, g.Tk, g.Hkv, hk, D);
    __syncthreads();
    const int64_t j = j0 + lane;
    const bool key_ok = j < g.Tk && key_allowed(g, b, j);
    float s[R];
#pragma unroll
    for (int r = 0; r < R; ++r) s[r] = 0.f;
    for (int64_t d = 0; d < D; ++d) {
      const float kd = Ks[lane * P + d];
#pragma unroll
      for (int r = 0; r < R; ++r) s[r] += Qs[(warp * R + r) * P + d] * kd;
    }
    float p[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int64_t i = i0 + warp * R + r;
      const bool allowed = i < g.Tq && key_ok && (!g.causal || j <= i + g.offset);
      float sc = -INFINITY;
      if (allowed) sc = g.scale * s[r] + (g.bias != nullptr ? g.bias[(h * g.Tq + i) * g.Tk + j] : 0.f);
      const float m_new = nan_max(m[r], warp_max(sc));
      if (m_new == -INFINITY) {  // nothing allowed in this row so far (warp-uniform)
        p[r] = 0.f;
        continue;
      }
      const float alpha = expf(m[r] - m_new);  // 0 when m was -inf
      p[r] = expf(sc - m_new);
      l[r] = l[r] * alpha + warp_sum(p[r]);
      m[r] = m_new;
#pragma unroll
      for (int c = 0; c < NDC; ++c) o[r][c] *= alpha;
      if (g.dropout && allowed) p[r] *= dropout_factor(g, b, h, i, j);  // after l summed it
    }
    // O += P V: lane holds head-dim slice d = c*32 + lane; p of key jj comes from lane jj.
    for (int jj = 0; jj < TILE; ++jj) {
      float vj[NDC];
#pragma unroll
      for (int c = 0; c < NDC; ++c) {
        const int64_t d = c * 32 + lane;
        vj[c] = d < D ? Vs[jj * P + d] : 0.f;
      }
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const float pj = __shfl_sync(0xffffffffu, p[r], jj);
#pragma unroll
        for (int c = 0; c < NDC; ++c) o[r][c] += pj * vj[c];
      }
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int64_t i = i0 + warp * R + r;
    if (i >= g.Tq) continue;
    float* orow = out + ((b * g.Tq + i) * g.Hq + h) * D;
    const bool empty = l[r] == 0.f;
    const float inv = empty ? 0.f : 1.f / l[r];
#pragma unroll
    for (int c = 0; c < NDC; ++c) {
      const int64_t d = c * 32 + lane;
      if (d < D) orow[d] = empty ? 0.f : o[r][c] * inv;
    }
    if (lane == 0) lse[(b * g.Hq + h) * g.Tq + i] = empty ? -INFINITY : m[r] + logf(l[r]);
  }
}

// ---- backward: Di = <dout, out> per (b, i, h) row, a warp per row, summed in double ----------
// out in fp32, or (g.out16) the operand type's 16 bits as the forward wrote it (FlashAttention's
// Di, from the output it saved in 16 bits). For the tensor-core kernels it also writes dout16:
// dout rounded to their operand type (bf16, else f16), the values their staging would make, so
// they copy dout's tiles with cp.async.
__global__ void attention_di_kernel(Geometry g, const float* dout, const void* out, float* di,
                                    uint16_t* dout16, bool bf16) {
  const int64_t row = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= g.B * g.Tq * g.Hq) return;
  const float* a = dout + row * g.D;
  const float* o = static_cast<const float*>(out) + row * g.D;
  const uint16_t* o16 = static_cast<const uint16_t*>(out) + row * g.D;
  double acc = 0.0;
  for (int64_t d = lane; d < g.D; d += 32) {
    const float od = !g.out16 ? o[d] : bf16 ? bf16_bits_to_f32(o16[d]) : f16_bits_to_f32(o16[d]);
    acc += double(a[d]) * double(od);
    if (dout16 != nullptr) {
      dout16[row * g.D + d] = bf16 ? f32_to_bf16_bits(a[d]) : f32_to_f16_bits(a[d]);
    }
  }
  acc = warp_sum(acc);
  if (lane == 0) {
    const int64_t h = row % g.Hq, i = (row / g.Hq) % g.Tq, b = row / (g.Hq * g.Tq);
    di[(b * g.Hq + h) * g.Tq + i] = static_cast<float>(acc);
  }
}

// ---- backward, KV pass: block (key tile, kv head, batch); warp owns 8 keys, lane = query ----
template <int NDC>
__global__ void __launch_bounds__(128) attention_backward_kv_kernel(
    Geometry g, const float* q, const float* k, const float* v, const float* dout,
    const float* lse, const float* di, float* dk, float* dv) {
  extern __shared__ float smem[];
  mma_detail::read_dropout_seed<true>(g);
  const int64_t D = g.D, P = D + 1;
  float* Ks = smem;
  float* Vs = Ks + TILE * P;
  float* Qs = Vs + TILE * P;
  float* Os = Qs + TILE * P;  // dout tile
  float* lse_s = Os + TILE * P;
  float* di_s = lse_s + TILE;
  float* key_ok_s = di_s + TILE;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t j0 = int64_t(blockIdx.x) * TILE, hk = blockIdx.y, b = blockIdx.z;
  load_tile(Ks, k, b, j0, g.Tk, g.Hkv, hk, D);
  load_tile(Vs, v, b, j0, g.Tk, g.Hkv, hk, D);
  if (threadIdx.x < TILE) {
    const int64_t j = j0 + threadIdx.x;
    key_ok_s[threadIdx.x] = (j < g.Tk && key_allowed(g, b, j)) ? 1.f : 0.f;
  }
  float dk_acc[R][NDC], dv_acc[R][NDC];
#pragma unroll
  for (int r = 0; r < R; ++r) {
#pragma unroll
    for (int c = 0; c < NDC; ++c) dk_acc[r][c] = dv_acc[r][c] = 0.f;
  }
  // First query row that may see key j0 under the causal rule.
  int64_t first_row = g.causal ? j0 - g.offset : 0;
  if (first_row < 0) first_row = 0;
  for (int64_t h = hk * g.G; h < (hk + 1) * g.G; ++h) {
    for (int64_t i0 = (first_row / TILE) * TILE; i0 < g.Tq; i0 += TILE) {
      __syncthreads();
      load_tile(Qs, q, b, i0, g.Tq, g.Hq, h, D);
      load_tile(Os, dout, b, i0, g.Tq, g.Hq, h, D);
      if (threadIdx.x < TILE) {
        const int64_t i = i0 + threadIdx.x;
        lse_s[threadIdx.x] = i < g.Tq ? lse[(b * g.Hq + h) * g.Tq + i] : -INFINITY;
        di_s[threadIdx.x] = i < g.Tq ? di[(b * g.Hq + h) * g.Tq + i] : 0.f;
      }
      __syncthreads();
      const int64_t i = i0 + lane;  // this lane's query row
      float s[R], dp[R];
#pragma unroll
      for (int r = 0; r < R; ++r) s[r] = dp[r] = 0.f;
      for (int64_t d = 0; d < D; ++d) {
        const float qd = Qs[lane * P + d], od = Os[lane * P + d];
#pragma unroll
        for (int r = 0; r < R; ++r) {
          s[r] += qd * Ks[(warp * R + r) * P + d];
          dp[r] += od * Vs[(warp * R + r) * P + d];
        }
      }
      const float li = lse_s[lane], dii = di_s[lane];
      float pr[R], ds[R];
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const int64_t j = j0 + warp * R + r;
        const bool allowed = i < g.Tq && key_ok_s[warp * R + r] != 0.f &&
                             (!g.causal || j <= i + g.offset) && li != -INFINITY;
        pr[r] = 0.f;
        ds[r] = 0.f;
        if (allowed) {
          const float sc = g.scale * s[r] + (g.bias != nullptr ? g.bias[(h * g.Tq + i) * g.Tk + j] : 0.f);
          const float p = expf(sc - li), z = dropout_factor(g, b, h, i, j);
          pr[r] = p * z;  // dV takes the dropped probability
          ds[r] = p * (z * dp[r] - dii);
        }
      }
      // dV_j += sum_i P_ij dO_i;  dK_j += sum_i dS_ij Q_i (times scale at the end).
      for (int ii = 0; ii < TILE; ++ii) {
        float od[NDC], qd[NDC];
#pragma unroll
        for (int c = 0; c < NDC; ++c) {
          const int64_t d = c * 32 + lane;
          od[c] = d < D ? Os[ii * P + d] : 0.f;
          qd[c] = d < D ? Qs[ii * P + d] : 0.f;
        }
#pragma unroll
        for (int r = 0; r < R; ++r) {
          const float p = __shfl_sync(0xffffffffu, pr[r], ii);
          const float x = __shfl_sync(0xffffffffu, ds[r], ii);
#pragma unroll
          for (int c = 0; c < NDC; ++c) {
            dv_acc[r][c] += p * od[c];
            dk_acc[r][c] += x * qd[c];
          }
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int64_t j = j0 + warp * R + r;
    if (j >= g.Tk) continue;
    const int64_t base = ((b * g.Tk + j) * g.Hkv + hk) * D;
#pragma unroll
    for (int c = 0; c < NDC; ++c) {
      const int64_t d = c * 32 + lane;
      if (d >= D) continue;
      if (dk != nullptr) write_grad(dk + base + d, g.scale * dk_acc[r][c], g.overwrite_grads);
      if (dv != nullptr) write_grad(dv + base + d, dv_acc[r][c], g.overwrite_grads);
    }
  }
}

// ---- backward, Q pass: block (query tile, head, batch; every batch row with serial dbias) --
template <int NDC>
__global__ void __launch_bounds__(128) attention_backward_q_kernel(
    Geometry g, const float* q, const float* k, const float* v, const float* dout,
    const float* lse, const float* di, float* dq, float* dbias) {
  extern __shared__ float smem[];
  mma_detail::read_dropout_seed<true>(g);
  const int64_t D = g.D, P = D + 1;
  float* Qs = smem;
  float* Os = Qs + TILE * P;
  float* Ks = Os + TILE * P;
  float* Vs = Ks + TILE * P;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t i0 = int64_t(blockIdx.x) * TILE, h = blockIdx.y, hk = h / g.G;
  const bool serial = dbias != nullptr && !g.dbias_partials;  // attention_dbias.cu
  const int64_t b_first = serial ? 0 : blockIdx.z;
  const int64_t b_last = serial ? g.B : b_first + 1;
  const int64_t kend = key_end(g, i0);
  for (int64_t b = b_first; b < b_last; ++b) {
    __syncthreads();
    load_tile(Qs, q, b, i0, g.Tq, g.Hq, h, D);
    load_tile(Os, dout, b, i0, g.Tq, g.Hq, h, D);
    float li[R], dii[R], dq_acc[R][NDC];
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int64_t i = i0 + warp * R + r;
      li[r] = i < g.Tq ? lse[(b * g.Hq + h) * g.Tq + i] : -INFINITY;
      dii[r] = i < g.Tq ? di[(b * g.Hq + h) * g.Tq + i] : 0.f;
#pragma unroll
      for (int c = 0; c < NDC; ++c) dq_acc[r][c] = 0.f;
    }
    for (int64_t j0 = 0; j0 < kend; j0 += TILE) {
      __syncthreads();
      load_tile(Ks, k, b, j0, g.Tk, g.Hkv, hk, D);
      load_tile(Vs, v, b, j0, g.Tk, g.Hkv, hk, D);
      __syncthreads();
      const int64_t j = j0 + lane;
      const bool key_ok = j < g.Tk && key_allowed(g, b, j);
      float s[R], dp[R];
#pragma unroll
      for (int r = 0; r < R; ++r) s[r] = dp[r] = 0.f;
      for (int64_t d = 0; d < D; ++d) {
        const float kd = Ks[lane * P + d], vd = Vs[lane * P + d];
#pragma unroll
        for (int r = 0; r < R; ++r) {
          s[r] += Qs[(warp * R + r) * P + d] * kd;
          dp[r] += Os[(warp * R + r) * P + d] * vd;
        }
      }
      float ds[R];
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const int64_t i = i0 + warp * R + r;
        const bool allowed = i < g.Tq && key_ok && (!g.causal || j <= i + g.offset) &&
                             li[r] != -INFINITY;
        ds[r] = 0.f;
        if (allowed) {
          const float sc = g.scale * s[r] + (g.bias != nullptr ? g.bias[(h * g.Tq + i) * g.Tk + j] : 0.f);
          ds[r] = expf(sc - li[r]) * (dropout_factor(g, b, h, i, j) * dp[r] - dii[r]);
        }
        if (dbias != nullptr && i < g.Tq && j < g.Tk) {
          if (g.dbias_partials) {
            dbias[((b * g.Hq + h) * g.Tq + i) * g.Tk + j] = ds[r];
          } else {
            dbias[(h * g.Tq + i) * g.Tk + j] += ds[r];
          }
        }
      }
      // dQ_i += sum_j dS_ij K_j (times scale at the end).
      for (int jj = 0; jj < TILE; ++jj) {
        float kd[NDC];
#pragma unroll
        for (int c = 0; c < NDC; ++c) {
          const int64_t d = c * 32 + lane;
          kd[c] = d < D ? Ks[jj * P + d] : 0.f;
        }
#pragma unroll
        for (int r = 0; r < R; ++r) {
          const float x = __shfl_sync(0xffffffffu, ds[r], jj);
#pragma unroll
          for (int c = 0; c < NDC; ++c) dq_acc[r][c] += x * kd[c];
        }
      }
    }
    if (dq == nullptr) continue;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int64_t i = i0 + warp * R + r;
      if (i >= g.Tq) continue;
      float* row = dq + ((b * g.Tq + i) * g.Hq + h) * D;
#pragma unroll
      for (int c = 0; c < NDC; ++c) {
        const int64_t d = c * 32 + lane;
        if (d < D) write_grad(row + d, g.scale * dq_acc[r][c], g.overwrite_grads);
      }
    }
  }
}

// Launches kernel<NDC> for NDC = ceil(D / 32), raising the block's shared memory limit when the
// tiles need more than the default 48 KB.
template <template <int> class Launcher, typename... Args>
void dispatch_head_dim(int64_t D, Args&&... args) {
  switch (attention_head_chunks(D)) {
    case 1: Launcher<1>::run(args...); break;
    case 2: Launcher<2>::run(args...); break;
    case 3: Launcher<3>::run(args...); break;
    case 4: Launcher<4>::run(args...); break;
    case 5: Launcher<5>::run(args...); break;
    case 6: Launcher<6>::run(args...); break;
    case 7: Launcher<7>::run(args...); break;
    default: Launcher<8>::run(args...); break;
  }
}

// The limit is the current device's: set after making the context's device current.
template <typename Kernel>
void allow_smem(const Context& ctx, Kernel kernel, int64_t bytes) {
  if (bytes > 48 * 1024) {
    ctx.activate();
    check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)),
               kOp, "cudaFuncSetAttribute (shared memory)");
  }
}

template <int NDC>
struct ForwardLauncher {
  static void run(Context& ctx, const Geometry& g, const float* q, const float* k, const float* v,
                  float* out, float* lse) {
    const int64_t bytes = attention_smem_bytes(g.D, 3);
    allow_smem(ctx, attention_forward_kernel<NDC>, bytes);
    const dim3 grid_dim(grid(ceil_div(g.Tq, TILE)), grid(g.Hq), grid(g.B));
    attention_forward_kernel<NDC><<<grid_dim, 128, bytes, stream_of(ctx)>>>(g, q, k, v, out, lse);
    check_launch(kOp);
  }
};

template <int NDC>
struct BackwardLauncher {
  static void run(Context& ctx, const Geometry& g, const float* q, const float* k, const float* v,
                  const float* dout, const float* lse, const float* di, float* dq, float* dk,
                  float* dv, float* dbias) {
    const int64_t bytes = attention_smem_bytes(g.D, 4);
    if (dk != nullptr || dv != nullptr) {
      allow_smem(ctx, attention_backward_kv_kernel<NDC>, bytes);
      const dim3 grid_dim(grid(ceil_div(g.Tk, TILE)), grid(g.Hkv), grid(g.B));
      attention_backward_kv_kernel<NDC><<<grid_dim, 128, bytes, stream_of(ctx)>>>(
          g, q, k, v, dout, lse, di, dk, dv);
      check_launch(kOp);
    }
    if (dq != nullptr || dbias != nullptr) {
      allow_smem(ctx, attention_backward_q_kernel<NDC>, bytes);
      ArenaScope scope(ctx.arena());
      Geometry gq = g;
      float* target = dbias_slices_begin(ctx, gq, dbias);  // T5's dbias: attention_dbias.cu
      const bool serial = dbias != nullptr && !gq.dbias_partials;
      const dim3 grid_dim(grid(ceil_div(g.Tq, TILE)), grid(g.Hq), grid(serial ? 1 : g.B));
      attention_backward_q_kernel<NDC><<<grid_dim, 128, bytes, stream_of(ctx)>>>(
          gq, q, k, v, dout, lse, di, dq, target);
      check_launch(kOp);
      dbias_slices_end(ctx, gq, target, dbias);
    }
  }
};

}  // namespace

bool attention_reads_16bit_inputs(const AttentionOptions& options, int64_t head_dim) {
  return (options.products == DType::BF16 || options.products == DType::F16) &&
         mma_head_dim_supported(head_dim);
}

void attention_forward(Context& ctx, const Tensor& out, const Tensor& lse, const Tensor& q,
                       const Tensor& k, const Tensor& v, const Tensor& bias,
                       const uint8_t* key_mask, int64_t key_mask_size,
                       const AttentionOptions& options) {
  Geometry g = check_inputs(ctx, q, k, v, bias, key_mask, key_mask_size, options);
  g.out16 = expect_out(out, g, options);
  expect_f32(lse, {g.B, g.Hq, g.Tq}, kOp, "lse");
  if (g.B * g.Tq * g.Hq == 0) return;
  ctx.activate();
  if (use_tensor_cores(g, options)) {
    mma_attention_forward_launch(ctx, g, options.products == DType::BF16, q.data, k.data, v.data,
                                 out.data, lse.f32());
    return;
  }
  dispatch_head_dim<ForwardLauncher>(g.D, ctx, g, q.f32(), k.f32(), v.f32(), out.f32(), lse.f32());
}

void attention_backward(Context& ctx, const Tensor& dq, const Tensor& dk, const Tensor& dv,
                        const Tensor& dbias, const Tensor& dout, const Tensor& q, const Tensor& k,
                        const Tensor& v, const Tensor& out, const Tensor& lse, const Tensor& bias,
                        const uint8_t* key_mask, int64_t key_mask_size,
                        const AttentionOptions& options, bool overwrite) {
  Geometry g = check_inputs(ctx, q, k, v, bias, key_mask, key_mask_size, options);
  g.overwrite_grads = overwrite;
  expect_f32(dout, {g.B, g.Tq, g.Hq, g.D}, kOp, "dout");
  g.out16 = expect_out(out, g, options);
  expect_f32(lse, {g.B, g.Hq, g.Tq}, kOp, "lse");
  const bool want_dq = dq.data != nullptr, want_dk = dk.data != nullptr;
  const bool want_dv = dv.data != nullptr, want_dbias = dbias.data != nullptr;
  if (want_dq) expect_f32(dq, {g.B, g.Tq, g.Hq, g.D}, kOp, "dq");
  if (want_dk) expect_f32(dk, {g.B, g.Tk, g.Hkv, g.D}, kOp, "dk");
  if (want_dv) expect_f32(dv, {g.B, g.Tk, g.Hkv, g.D}, kOp, "dv");
  if (want_dbias) {
    S2S_REQUIRE(g.bias != nullptr, code::kArgument, kOp,
                "expected a bias when dbias is requested, got none");
    expect_f32(dbias, {g.Hq, g.Tq, g.Tk}, kOp, "dbias");
  }
  if (g.B * g.Tq * g.Tk * g.Hq == 0) {  // no scores: the gradients are zeros
    for (const Tensor* d : {&dq, &dk, &dv}) {
      if (overwrite && d->data) fill_zero(ctx, d->data, sizeof(float) * size_t(d->numel()));
    }
    return;
  }
  if (!want_dq && !want_dk && !want_dv && !want_dbias) return;
  ctx.activate();
  ArenaScope scope(ctx.arena());
  float* di = ctx.arena().allocate_array<float>(size_t(g.B * g.Hq * g.Tq));
  const int64_t rows = g.B * g.Tq * g.Hq;
  const bool tensor_cores = use_tensor_cores(g, options);
  const bool bf16 = options.products == DType::BF16;
  uint16_t* dout16 =
      tensor_cores ? ctx.arena().allocate_array<uint16_t>(size_t(rows * g.D)) : nullptr;
  attention_di_kernel<<<grid(ceil_div(rows, 4)), 128, 0, stream_of(ctx)>>>(
      g, dout.f32(), out.data, di, dout16, bf16);
  check_launch(kOp);
  if (tensor_cores) {
    g.dout16 = true;
    mma_attention_backward_launch(ctx, g, bf16, q.data, k.data,
                                  v.data, dout16, lse.f32(), di, want_dq ? dq.f32() : nullptr,
                                  want_dk ? dk.f32() : nullptr, want_dv ? dv.f32() : nullptr,
                                  want_dbias ? dbias.f32() : nullptr);
    return;
  }
  dispatch_head_dim<BackwardLauncher>(g.D, ctx, g, q.f32(), k.f32(), v.f32(), dout.f32(),
                                      lse.f32(), di, want_dq ? dq.f32() : nullptr,
                                      want_dk ? dk.f32() : nullptr, want_dv ? dv.f32() : nullptr,
                                      want_dbias ? dbias.f32() : nullptr);
}

}  // namespace cuda
}  // namespace s2s
