// embedding on CUDA (s2s/ops/embedding.h semantics). Forward: one thread per output element,
// the table row widened from f32/bf16/f16. Backward: every table row has one owner block, which
// adds the row's tokens in (b, t) order, as the CPU op does: the CPU's bits, the same every run,
// with no atomics (see embedding_backward_rows_kernel). Ids and positions out of range are
// reported through Context::synchronize() (the thread writes zeros / adds nothing instead of
// reading outside the table).
// Legend: B batch, T time, C channels, V vocab, P positions.
#include "backends/cuda/check.cuh"
#include "backends/cuda/cuda_ops.h"
#include "ops/op_util.h"

namespace s2s {
namespace cuda {

namespace {
constexpr const char* kOp = "embedding";

struct Dims { int64_t B, T, C; };

void check_table(const Tensor& t, int64_t C, const char* name) {
  if (t.ndim != 2 || t.shape[1] != C) {
    fail(code::kShape, kOp, "expected ", name, " of shape (*, ", C, "), got ", t.shape_string());
  }
  expect_contiguous(t, kOp, name);
}

Dims out_dims(const Tensor& t, const char* name) {
  expect_dtype(t, DType::F32, kOp, name);
  expect_shape(t, {-1, -1, -1}, kOp, name);
  expect_contiguous(t, kOp, name);
  return Dims{t.shape[0], t.shape[1], t.shape[2]};
}

// Checks the counts; returns whether explicit positions are used (else 0..T-1 per row).
bool check_counts(const Dims& d, const int32_t* ids, int64_t num_ids, const int32_t* pos,
                  int64_t num_pos, bool use_pos, int64_t P) {
  S2S_REQUIRE(ids != nullptr || d.B * d.T == 0, code::kArgument, kOp,
              "expected ids, got a null pointer");
  S2S_REQUIRE(num_ids == d.B * d.T, code::kShape, kOp, "expected ", d.B * d.T, " ids (B*T = ",
              d.B, "*", d.T, "), got ", num_ids);
  if (!use_pos) return false;
  const bool explicit_pos = pos != nullptr && num_pos != 0;
  S2S_REQUIRE(!explicit_pos || num_pos == d.B * d.T, code::kShape, kOp, "expected ", d.B * d.T,
              " positions (B*T) or none, got ", num_pos);
  S2S_REQUIRE(explicit_pos || d.T <= P, code::kArgument, kOp, "expected T <= ", P,
              " (rows of wpe) for default positions, got T = ", d.T);
  return explicit_pos;
}

__device__ inline float load_elem(const void* table, DType t, int64_t i) {
  if (t == DType::F32) return static_cast<const float*>(table)[i];
  return widen16(static_cast<const uint16_t*>(table)[i], t == DType::BF16);
}

// Backward of one table (wte by ids, or wpe by positions): row r belongs to block r % kOwners
// (blockIdx.y picks a slab of kOwnerThreads * kOwnerChannels channels). The owner walks the
// tokens in order, a chunk of kOwnerThreads at a time: each thread checks one token's row, a
// ballot compacts the chunk's own tokens in order into shared memory, and then the whole block
// adds their gradient rows, each thread its channels. A run of tokens on one row accumulates in
// registers between one load and one store of the row, in the very order of the CPU's
// `row += dout[i]`; the gradients of kOwnerBatch tokens are loaded at once before they are
// added in order, so a frequent row (padding) waits for memory once per batch, not per token.
// Rows outside the table are reported (by block 0) and skipped.
constexpr int kOwnerThreads = 128;
constexpr int kOwnerChannels = 4;
constexpr int kOwners = 256;
constexpr int kOwnerBatch = 8;

__global__ void __launch_bounds__(kOwnerThreads)
    embedding_backward_rows_kernel(float* __restrict__ table, int64_t rows,
                                   const float* __restrict__ dout,
                                   const int32_t* keys, bool by_position, int64_t n, int64_t T,
                                   int64_t C, unsigned long long* err) {
  __shared__ int64_t own_token[kOwnerThreads];
  __shared__ int64_t own_row[kOwnerThreads];
  __shared__ int warp_count[kOwnerThreads / 32];
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int64_t owner = blockIdx.x, c0 = int64_t(blockIdx.y) * kOwnerThreads * kOwnerChannels;
  const KernelReport what = by_position ? KernelReport::EmbeddingPosition
                                        : KernelReport::EmbeddingId;
  float acc[kOwnerChannels] = {};
  int64_t current = -1;  // the row held in acc
  for (int64_t base = 0; base < n; base += kOwnerThreads) {
    const int64_t i = base + tid;
    int64_t row = -1;
    if (i < n) {
      const int64_t r = by_position && keys == nullptr ? i % T : int64_t(keys[i]);
      if (r < 0 || r >= rows) {
        if (owner == 0 && blockIdx.y == 0) report_bad_input(err, what, i, r, rows);
      } else if (r % kOwners == owner) {
        row = r;
      }
    }
    const unsigned mine = __ballot_sync(0xffffffffu, row >= 0);
    if (lane == 0) warp_count[warp] = __popc(mine);
    __syncthreads();
    int before = 0, total = 0;
    for (int w = 0; w < kOwnerThreads / 32; ++w) {
      before += w < warp ? warp_count[w] : 0;
      total += warp_count[w];
    }
    if (row >= 0) {
      const int at = before + __popc(mine & ((1u << lane) - 1u));
      own_token[at] = i;
      own_row[at] = row;
    }
    __syncthreads();
    for (int k0 = 0; k0 < total; k0 += kOwnerBatch) {
      float g[kOwnerBatch][kOwnerChannels];
#pragma unroll
      for (int u = 0; u < kOwnerBatch; ++u) {
#pragma unroll
        for (int j = 0; j < kOwnerChannels; ++j) {
          const int64_t c = c0 + tid + j * kOwnerThreads;
          g[u][j] = k0 + u < total && c < C ? dout[own_token[k0 + u] * C + c] : 0.f;
        }
      }
#pragma unroll
      for (int u = 0; u < kOwnerBatch; ++u) {
        if (k0 + u >= total) break;
        const int64_t r = own_row[k0 + u];
        if (r != current) {  // block-uniform: every thread reads the same list
#pragma unroll
          for (int j = 0; j < kOwnerChannels; ++j) {
            const int64_t c = c0 + tid + j * kOwnerThreads;
            if (c >= C) continue;
            if (current >= 0) table[current * C + c] = acc[j];
            acc[j] = table[r * C + c];
          }
          current = r;
        }
#pragma unroll
        for (int j = 0; j < kOwnerChannels; ++j) acc[j] += g[u][j];
      }
    }
    __syncthreads();  // the next chunk overwrites the lists
  }
  if (current < 0) return;
  for (int j = 0; j < kOwnerChannels; ++j) {
    const int64_t c = c0 + tid + j * kOwnerThreads;
    if (c < C) table[current * C + c] = acc[j];
  }
}

void backward_rows(Context& ctx, float* table, int64_t rows, const float* dout,
                   const int32_t* keys, bool by_position, int64_t n, int64_t T, int64_t C) {
  const dim3 blocks(unsigned(kOwners), grid(ceil_div(C, kOwnerThreads * kOwnerChannels)));
  embedding_backward_rows_kernel<<<blocks, kOwnerThreads, 0, stream_of(ctx)>>>(
      table, rows, dout, keys, by_position, n, T, C, ctx.error_slot());
  check_launch(kOp);
}
}  // namespace

void embedding_forward(Context& ctx, const Tensor& out, const Tensor& wte, const Tensor& wpe,
                       const int32_t* ids, int64_t num_ids, const int32_t* pos, int64_t num_pos) {
  const Dims d = out_dims(out, "out");
  check_table(wte, d.C, "wte");
  const bool use_pos = opu::present(wpe);
  if (use_pos) check_table(wpe, d.C, "wpe");
  const int64_t P = use_pos ? wpe.shape[0] : 0;
  const bool explicit_pos = check_counts(d, ids, num_ids, pos, num_pos, use_pos, P);
  const int64_t V = wte.shape[0], C = d.C, T = d.T;
  const void* te = wte.data;
  const void* pe = use_pos ? wpe.data : nullptr;
  const DType tt = wte.dtype, pt = wpe.dtype;
  const int32_t* pp = explicit_pos ? pos : nullptr;
  float* y = out.f32();
  unsigned long long* err = ctx.error_slot();
  for_each(ctx, d.B * d.T * C, kOp, [=] __device__(int64_t e) {
    const int64_t i = e / C, c = e % C;
    const int32_t id = ids[i];
    float v = 0.f;
    if (id >= 0 && id < V) v = load_elem(te, tt, int64_t(id) * C + c);
    else if (c == 0) report_bad_input(err, KernelReport::EmbeddingId, i, id, V);
    if (pe != nullptr) {
      const int64_t p = pp != nullptr ? pp[i] : i % T;
      if (p >= 0 && p < P) v += load_elem(pe, pt, p * C + c);
      else if (c == 0) report_bad_input(err, KernelReport::EmbeddingPosition, i, p, P);
    }
    y[e] = v;
  });
}

void embedding_backward(Context& ctx, const Tensor& dwte, const Tensor& dwpe, const Tensor& dout,
                        const int32_t* ids, int64_t num_ids, const int32_t* pos, int64_t num_pos) {
  const Dims d = out_dims(dout, "dout");
  const bool want_te = opu::present(dwte), want_pe = opu::present(dwpe);
  if (want_te) {
    expect_dtype(dwte, DType::F32, kOp, "dwte");
    check_table(dwte, d.C, "dwte");
  }
  if (want_pe) {
    expect_dtype(dwpe, DType::F32, kOp, "dwpe");
    check_table(dwpe, d.C, "dwpe");
  }
  const int64_t P = want_pe ? dwpe.shape[0] : 0;
  const bool explicit_pos = check_counts(d, ids, num_ids, pos, num_pos, want_pe, P);
  if (!want_te && !want_pe) return;
  const int64_t V = want_te ? dwte.shape[0] : 0, C = d.C, T = d.T, n = d.B * d.T;
  float* gte = want_te ? dwte.f32() : nullptr;
  float* gpe = want_pe ? dwpe.f32() : nullptr;
  const int32_t* pp = explicit_pos ? pos : nullptr;
  if (n == 0 || C == 0) return;
  ctx.activate();
  if (want_te) backward_rows(ctx, gte, V, dout.f32(), ids, false, n, T, C);
  if (want_pe) backward_rows(ctx, gpe, P, dout.f32(), pp, true, n, T, C);
}

}  // namespace cuda
}  // namespace s2s
