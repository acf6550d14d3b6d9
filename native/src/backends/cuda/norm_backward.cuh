// The backward of layernorm and rmsnorm: the per-row math (norm_row_backward), the dinp kernel,
// and the pass that gives dinp and the column sums of dweight (and layernorm's dbias) in one
// read of dout and x where launch.h's norm_backward_plan allows. Separately, dinp read dout and x,
// dweight's column sum read both again and dbias's read dout a third time: 7 passes over an
// (N, C) f32 tensor for layernorm (with dinp's read and write), 4 here.
#pragma once
#include "backends/cuda/launch.h"
#include "backends/cuda/rows.cuh"
#include "ops/op_util.h"

namespace s2s {
namespace cuda {

struct NormBackwardArgs {
  float* dinp;           // null: no dinp
  bool overwrite;        // dinp = instead of +=
  float* partial;        // (chunks, sums * C): dweight's columns, then dbias's
  bool want_dweight, want_dbias;
  const float* dout;     // (rows, C)
  const float* inp;      // (rows, C)
  const float* weight;   // (C,)
  const float* mean;     // (rows,); layernorm only
  const float* rstd;     // (rows,)
  int64_t rows, C;
  int teams;             // the plan's: > 1 warps of the block, 1 the block
};

// One row's backward by its team (rows.cuh's RowTeam). kCentered: layernorm, xhat =
// (x - m) * r and dx = r * (dn - mean(dn) - xhat * mean(dn * xhat)), dn = dout * weight; else
// rmsnorm, xhat = x * r and dx = r * (dn - xhat * mean(dn * xhat)). dx is written (or added,
// per overwrite) where not null; each(c, dy, xhat) sees every column the thread owns. The one
// copy of the math that layernorm's and rmsnorm's dinp kernels and the fused pass all run.
template <bool kCentered, typename Each>
__device__ inline void norm_row_backward(const RowTeam& t, const float* x, const float* dy,
                                         const float* weight, float m, float r, int64_t C,
                                         float* dx, bool overwrite, Each each) {
  float mean_dn = 0.f, mean_dn_xhat = 0.f;
  if (dx != nullptr) {
    for (int64_t c = t.tid; c < C; c += t.size) {
      const float dn = dy[c] * weight[c];
      if (kCentered) {
        mean_dn += dn;
        mean_dn_xhat += dn * (x[c] - m) * r;
      } else {
        mean_dn_xhat += dn * x[c] * r;
      }
    }
    if (kCentered) mean_dn = t.sum(mean_dn) / float(C);
    mean_dn_xhat = t.sum(mean_dn_xhat) / float(C);
  }
  for (int64_t c = t.tid; c < C; c += t.size) {
    const float xhat = kCentered ? (x[c] - m) * r : x[c] * r;
    if (dx != nullptr) {
      const float g = kCentered ? r * (dy[c] * weight[c] - mean_dn - xhat * mean_dn_xhat)
                                : r * (dy[c] * weight[c] - xhat * mean_dn_xhat);
      write_grad(dx + c, g, overwrite);
    }
    each(c, dy[c], xhat);
  }
}

// dinp alone: a team per row, as row_launch lays them out.
template <bool kCentered>
__global__ void norm_dinp_kernel(float* dinp, const float* dout, const float* inp,
                                 const float* weight, const float* mean, const float* rstd,
                                 int64_t rows, int64_t C, int rows_per_block, bool overwrite) {
  __shared__ float scratch[32];
  __shared__ double dscratch[32];
  RowTeam t;
  int64_t row;
  if (!row_of(rows, rows_per_block, scratch, dscratch, &t, &row)) return;
  norm_row_backward<kCentered>(t, inp + row * C, dout + row * C, weight,
                               kCentered ? mean[row] : 0.f, rstd[row], C, dinp + row * C,
                               overwrite, [](int64_t, float, float) {});
}

// The fused pass: each team's rows' terms of the column sums go into its shared-memory row.
template <bool kCentered>
__global__ void norm_backward_kernel(NormBackwardArgs a) {
  extern __shared__ float team_sums[];  // (teams, sums * C)
  __shared__ float scratch[32];
  __shared__ double dscratch[32];
  const int teams = a.teams;
  const bool warp = teams > 1;
  const int team = warp ? int(threadIdx.x) / 32 : 0;
  const RowTeam t{warp ? int(threadIdx.x % 32) : int(threadIdx.x), warp ? 32 : int(blockDim.x),
                  warp, scratch, dscratch};
  const int64_t C = a.C;
  const int sums = int(a.want_dweight) + int(a.want_dbias);
  float* dw = team_sums + int64_t(team) * sums * C;  // this team's rows' sums
  float* db = a.want_dweight ? dw + C : dw;
  for (int64_t c = t.tid; c < sums * C; c += t.size) dw[c] = 0.f;
  __syncthreads();
  const int64_t r0 = int64_t(blockIdx.x) * kNormChunkRows;
  const int64_t r1 = r0 + kNormChunkRows < a.rows ? r0 + kNormChunkRows : a.rows;
  const bool want_dw = a.want_dweight, want_db = a.want_dbias;
  for (int64_t row = r0 + team; row < r1; row += teams) {
    norm_row_backward<kCentered>(
        t, a.inp + row * C, a.dout + row * C, a.weight, kCentered ? a.mean[row] : 0.f,
        a.rstd[row], C, a.dinp != nullptr ? a.dinp + row * C : nullptr, a.overwrite,
        [=](int64_t c, float dy, float xhat) {
          // The product rounded before the sum (no fused multiply-add): the bits do not
          // depend on the compiler's contraction.
          if (want_dw) dw[c] = __fadd_rn(dw[c], __fmul_rn(dy, xhat));
          if (want_db) db[c] += dy;
        });
  }
  __syncthreads();
  // The chunk's partial row: the teams' sums added in team order.
  const int64_t width = sums * C;
  for (int64_t c = threadIdx.x; c < width; c += blockDim.x) {
    float s = team_sums[c];
    for (int k = 1; k < teams; ++k) s += team_sums[int64_t(k) * width + c];
    a.partial[int64_t(blockIdx.x) * width + c] = s;
  }
}

// Pass 2: dweight[c] += the partials of column c in chunk order; dbias (when summed) likewise
// from columns C.. of the partial rows.
static __global__ void norm_backward_finish_kernel(int64_t chunks, int64_t C, int sums,
                                                   const float* partial, float* dweight,
                                                   float* dbias) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t width = sums * C;
  if (c >= width) return;
  float acc = 0.f;
  for (int64_t k = 0; k < chunks; ++k) acc += partial[k * width + c];
  float* dst = dweight != nullptr ? (c < C ? dweight + c : dbias + (c - C)) : dbias + c;
  *dst += acc;
}

// Launches both passes per `p` (p.fused) for the norm op's checked tensors: dinp, dweight and
// dbias absent where not wanted (at least one of dweight, dbias), mean for layernorm only.
template <bool kCentered>
void norm_backward(Context& ctx, const NormBackwardPlan& p, const Tensor& dinp, bool overwrite,
                   const Tensor& dweight, const Tensor& dbias, const Tensor& dout,
                   const Tensor& inp, const Tensor& weight, const Tensor& mean,
                   const Tensor& rstd, const char* op) {
  NormBackwardArgs a{};
  a.dinp = opu::present(dinp) ? dinp.f32() : nullptr;
  a.overwrite = overwrite;
  a.want_dweight = opu::present(dweight);
  a.want_dbias = opu::present(dbias);
  a.dout = dout.f32();
  a.inp = inp.f32();
  a.weight = weight.f32();
  a.mean = mean.f32();
  a.rstd = rstd.f32();
  a.rows = p.rows;
  a.C = p.cols;
  ArenaScope scope(ctx.arena());
  const int sums = int(a.want_dweight) + int(a.want_dbias);
  a.partial = ctx.arena().allocate_array<float>(size_t(p.chunks * sums * a.C));
  a.teams = p.teams;
  norm_backward_kernel<kCentered><<<grid(p.chunks), p.threads, size_t(p.smem_bytes),
                                    stream_of(ctx)>>>(a);
  check_launch(op);
  norm_backward_finish_kernel<<<grid(p.finish_blocks), 128, 0, stream_of(ctx)>>>(
      p.chunks, a.C, sums, a.partial, dweight.f32(), dbias.f32());
  check_launch(op);
}

}  // namespace cuda
}  // namespace s2s
