// T5's position-bias gradient in the attention backward's Q pass (both kernel families): dbias
// (Hq, Tq, Tk) is shared by the batch rows, so each dbias element sums the B rows' dS. Summing
// them in batch order in one block per tile (the serial form) leaves the pass with 1/B of its
// blocks. Instead each block stores its batch row's dS in a slice of its own, and add_slices
// adds the slices onto dbias in batch order afterwards: the very additions the serial form
// makes, so the same bits, with the batch rows in parallel. The slices come from the arena (up
// to kMaxSliceBytes; past that the serial form runs).
#include <cuda_runtime.h>

#include "backends/cuda/attention_mma.cuh"
#include "backends/cuda/check.cuh"

namespace s2s {
namespace cuda {

namespace {
constexpr const char* kOp = "attention";
// T5-base at batch 16 and 512 tokens needs 200 MiB of slices.
constexpr int64_t kMaxSliceBytes = int64_t(1) << 30;
}  // namespace

float* dbias_slices_begin(Context& ctx, AttentionGeometry& g, float* dbias) {
  g.dbias_partials = false;
  if (dbias == nullptr) return nullptr;
  const int64_t n = g.B * g.Hq * g.Tq * g.Tk;
  if (n * int64_t(sizeof(float)) > kMaxSliceBytes) return dbias;
  float* slices = ctx.arena().allocate_array<float>(size_t(n));
  check_cuda(cudaMemsetAsync(slices, 0, size_t(n) * sizeof(float), stream_of(ctx)), kOp,
             "cudaMemsetAsync (dbias slices)");
  g.dbias_partials = true;
  return slices;
}

void dbias_slices_end(Context& ctx, const AttentionGeometry& g, const float* slices,
                      float* dbias) {
  if (!g.dbias_partials) return;
  const int64_t n = g.Hq * g.Tq * g.Tk, B = g.B;
  for_each(ctx, n, kOp, [=] __device__(int64_t e) {
    float acc = dbias[e];
    for (int64_t b = 0; b < B; ++b) acc += slices[b * n + e];
    dbias[e] = acc;
  });
}

}  // namespace cuda
}  // namespace s2s
