// The backward of layernorm and rmsnorm in one pass over dout and x (launch.h's
// norm_backward_plan): dinp per row, as the separate dinp kernels, and the rows' terms of
// dweight (and layernorm's dbias) summed per column on the way. Separately, dinp read dout and x,
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

// kCentered: layernorm (xhat = (x - mean) * rstd, dinp also subtracts mean(dn)); else rmsnorm
// (xhat = x * rstd). dinp's expressions are the separate kernels', so its bits are theirs.
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
  for (int64_t row = r0 + team; row < r1; row += teams) {
    const float* x = a.inp + row * C;
    const float* dy = a.dout + row * C;
    const float m = kCentered ? a.mean[row] : 0.f, r = a.rstd[row];
    float mean_dn = 0.f, mean_dn_xhat = 0.f;
    if (a.dinp != nullptr) {
      for (int64_t c = t.tid; c < C; c += t.size) {
        const float dn = dy[c] * a.weight[c];
        if (kCentered) {
          mean_dn += dn;
          mean_dn_xhat += dn * (x[c] - m) * r;
        } else {
          mean_dn_xhat += dy[c] * a.weight[c] * x[c] * r;
        }
      }
      if (kCentered) mean_dn = t.sum(mean_dn) / float(C);
      mean_dn_xhat = t.sum(mean_dn_xhat) / float(C);
    }
    for (int64_t c = t.tid; c < C; c += t.size) {
      const float xhat = kCentered ? (x[c] - m) * r : x[c] * r;
      if (a.dinp != nullptr) {
        const float g = kCentered ? r * (dy[c] * a.weight[c] - mean_dn - xhat * mean_dn_xhat)
                                  : r * (dy[c] * a.weight[c] - xhat * mean_dn_xhat);
        write_grad(a.dinp + row * C + c, g, a.overwrite);
      }
      // The product rounded before the sum (no fused multiply-add): the bits do not depend on
      // the compiler's contraction.
      if (a.want_dweight) dw[c] = __fadd_rn(dw[c], __fmul_rn(dy[c], xhat));
      if (a.want_dbias) db[c] += dy[c];
    }
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
