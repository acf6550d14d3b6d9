// embedding on CUDA (s2s/ops/embedding.h semantics). Forward: one thread per output element,
// the table row widened from f32/bf16/f16. Backward: a thread per (token, channel) with an
// atomicAdd into the f32 table (fast, order not fixed), or, with ContextOptions::deterministic,
// a thread per channel adding every token in (b, t) order as the CPU op does (slower: the token
// loop is serial). Ids and positions out of range are reported through Context::synchronize()
// (the thread writes zeros / adds nothing instead of reading outside the table).
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

// Backward, deterministic: thread c walks every token in order.
__global__ void embedding_backward_ordered_kernel(float* dwte, float* dwpe, const float* dout,
                                                  const int32_t* ids, const int32_t* pos,
                                                  int64_t n, int64_t T, int64_t C, int64_t V,
                                                  int64_t P, unsigned long long* err) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  for (int64_t i = 0; i < n; ++i) {
    const float g = dout[i * C + c];
    if (dwte != nullptr) {
      const int32_t id = ids[i];
      if (id >= 0 && id < V) dwte[int64_t(id) * C + c] += g;
      else if (c == 0) report_bad_input(err, KernelReport::EmbeddingId, i, id, V);
    }
    if (dwpe != nullptr) {
      const int64_t p = pos != nullptr ? pos[i] : i % T;
      if (p >= 0 && p < P) dwpe[p * C + c] += g;
      else if (c == 0) report_bad_input(err, KernelReport::EmbeddingPosition, i, p, P);
    }
  }
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
  const float* dy = dout.f32();
  unsigned long long* err = ctx.error_slot();
  if (ctx.options().deterministic) {
    if (n == 0 || C == 0) return;
    ctx.activate();
    const int threads = 128;
    embedding_backward_ordered_kernel<<<grid(ceil_div(C, threads)), threads, 0, stream_of(ctx)>>>(
        gte, gpe, dy, ids, pp, n, T, C, V, P, err);
    check_launch(kOp);
    return;
  }
  for_each(ctx, n * C, kOp, [=] __device__(int64_t e) {
    const int64_t i = e / C, c = e % C;
    const float g = dy[e];
    if (gte != nullptr) {
      const int32_t id = ids[i];
      if (id >= 0 && id < V) atomicAdd(gte + int64_t(id) * C + c, g);
      else if (c == 0) report_bad_input(err, KernelReport::EmbeddingId, i, id, V);
    }
    if (gpe != nullptr) {
      const int64_t p = pp != nullptr ? pp[i] : i % T;
      if (p >= 0 && p < P) atomicAdd(gpe + p * C + c, g);
      else if (c == 0) report_bad_input(err, KernelReport::EmbeddingPosition, i, p, P);
    }
  });
}

}  // namespace cuda
}  // namespace s2s
