// linear on CUDA (s2s/ops/linear.h semantics) through cuda::gemm (cuBLASLt). A bf16 or f16
// weight runs on tensor cores: inp (forward) and dout, inp (backward) are rounded to the
// weight's dtype in arena scratch first, exactly as the CPU bf16 path rounds them; accumulation
// and every output stay fp32. The forward's bias is added in the GEMM's epilogue; dbias is a
// deterministic column sum of the fp32 dout, whose pass also writes dout's rounded copy. Legend: N rows, IC in_features, OC out_features.
// Napkin: 2*N*IC*OC flops forward, 4*N*IC*OC backward; at GPT-2 124M shapes (N = 16K rows) the
// GEMMs are compute bound and the casts + bias cost a few percent.
#include "backends/cuda/check.cuh"
#include "backends/cuda/cuda_ops.h"
#include "backends/cuda/gemm.h"
#include "backends/cuda/rows.cuh"
#include "ops/op_util.h"

namespace s2s {
namespace cuda {

namespace {
constexpr const char* kOp = "linear";

struct Dims { int64_t N, IC, OC; };

void check_weight(const Tensor& weight, WeightLayout layout, int64_t* IC, int64_t* OC) {
  S2S_REQUIRE(layout == WeightLayout::OutIn || layout == WeightLayout::InOut, code::kArgument,
              kOp, "expected layout OutIn (0) or InOut (1), got ", int(layout));
  S2S_REQUIRE(weight.dtype == DType::F32 || weight.dtype == DType::BF16 ||
                  weight.dtype == DType::F16,
              code::kDType, kOp, "expected weight to be float32, bfloat16 or float16, got ",
              dtype_name(weight.dtype));
  S2S_REQUIRE(weight.ndim == 2, code::kShape, kOp, "expected weight to be 2-D (",
              layout == WeightLayout::OutIn ? "out, in" : "in, out", "), got ",
              weight.shape_string());
  expect_contiguous(weight, kOp, "weight");
  *OC = layout == WeightLayout::OutIn ? weight.shape[0] : weight.shape[1];
  *IC = layout == WeightLayout::OutIn ? weight.shape[1] : weight.shape[0];
}

void expect_rows_like(const Tensor& t, const Tensor& rows_like, int64_t last, const char* name,
                      const char* like_name) {
  expect_dtype(t, DType::F32, kOp, name);
  bool ok = t.ndim == rows_like.ndim && t.ndim >= 1 && t.shape[t.ndim - 1] == last;
  for (int i = 0; ok && i + 1 < t.ndim; ++i) ok = t.shape[i] == rows_like.shape[i];
  if (!ok) {
    Tensor want = rows_like;
    want.shape[want.ndim - 1] = last;
    fail(code::kShape, kOp, "expected ", name, " of shape ", want.shape_string(), " (", like_name,
         "'s rows), got ", t.shape_string());
  }
  expect_contiguous(t, kOp, name);
}

// inp in f32, or already in the 16-bit weight's dtype (written rounded by its producer,
// check.cuh's ActivationOut): the products are the same. Returns the row count.
int64_t expect_inp_rows(const Tensor& inp, const Tensor& weight, int64_t* last) {
  if (inp.dtype == DType::F32) return opu::expect_rows(inp, kOp, "inp", last);
  S2S_REQUIRE(inp.dtype == weight.dtype, code::kDType, kOp, "expected inp to be float32 or ",
              dtype_name(weight.dtype), " (the weight's dtype), got ", dtype_name(inp.dtype));
  Tensor as_f32 = inp;  // the row checks look at the shape only
  as_f32.dtype = DType::F32;
  return opu::expect_rows(as_f32, kOp, "inp", last);
}

// f32 data rounded to a 16-bit dtype in arena scratch (the caller holds an ArenaScope).
const void* rounded_copy(Context& ctx, const float* src, int64_t n, DType to) {
  uint16_t* dst = ctx.arena().allocate_array<uint16_t>(size_t(n));
  const bool bf16 = to == DType::BF16;
  for_each(ctx, n, kOp, [=] __device__(int64_t i) {
    dst[i] = bf16 ? f32_to_bf16_bits(src[i]) : f32_to_f16_bits(src[i]);
  });
  return dst;
}

// inp as the GEMM's operand for weight dtype t: itself when f32 or already in t, else rounded
// in arena scratch (the caller holds an ArenaScope).
const void* gemm_operand(Context& ctx, const Tensor& inp, int64_t n, DType t) {
  if (t == DType::F32 || inp.dtype == t) return inp.data;
  return rounded_copy(ctx, inp.f32(), n, t);
}
}  // namespace

void linear_forward(Context& ctx, const Tensor& out, const Tensor& inp, const Tensor& weight,
                    const Tensor& bias, WeightLayout layout) {
  Dims d;
  check_weight(weight, layout, &d.IC, &d.OC);
  int64_t ic = 0;
  d.N = expect_inp_rows(inp, weight, &ic);
  S2S_REQUIRE(ic == d.IC, code::kShape, kOp, "expected inp with last dimension ", d.IC,
              " (weight ", weight.shape_string(), "), got ", inp.shape_string());
  expect_rows_like(out, inp, d.OC, "out", "inp");
  if (opu::present(bias)) expect_f32(bias, {d.OC}, kOp, "bias");
  if (d.N == 0 || d.OC == 0) return;
  ArenaScope scope(ctx.arena());
  const DType t = weight.dtype;
  const void* x = gemm_operand(ctx, inp, d.N * d.IC, t);
  // out (N,OC) = x (N,IC) @ W^T: W (OC,IC) transposed, or W (IC,OC) as is.
  const bool out_in = layout == WeightLayout::OutIn;
  // The bias rides in cuBLASLt's epilogue: added to the fp32 product, as the CPU adds it.
  gemm(ctx, false, out_in, d.N, d.OC, d.IC, 1.f, x, d.IC, weight.data, out_in ? d.IC : d.OC, t,
       0.f, out.f32(), d.OC, opu::present(bias) ? bias.f32() : nullptr);
}

void linear_backward(Context& ctx, const Tensor& dinp, const Tensor& dweight, const Tensor& dbias,
                     const Tensor& dout, const Tensor& inp, const Tensor& weight,
                     WeightLayout layout, bool overwrite_dinp) {
  Dims d;
  check_weight(weight, layout, &d.IC, &d.OC);
  int64_t oc = 0;
  const bool want_dinp = opu::present(dinp), want_dw = opu::present(dweight);
  const bool want_db = opu::present(dbias);
  const bool dout_bf16 = dout.dtype == DType::BF16;
  if (dout_bf16) {
    // Already rounded by its writer (cross_entropy_backward for a bf16-compute head, as on the
    // CPU): only where it would be rounded anyway, and never summed into dbias.
    S2S_REQUIRE(weight.dtype == DType::BF16, code::kDType, kOp,
                "expected a bfloat16 weight with bfloat16 dout, got ", dtype_name(weight.dtype));
    S2S_REQUIRE(!want_db, code::kArgument, kOp, "expected no dbias with bfloat16 dout");
    Tensor as_f32 = dout;  // the row checks look at the shape only
    as_f32.dtype = DType::F32;
    d.N = opu::expect_rows(as_f32, kOp, "dout", &oc);
  } else {
    d.N = opu::expect_rows(dout, kOp, "dout", &oc);
  }
  S2S_REQUIRE(oc == d.OC, code::kShape, kOp, "expected dout with last dimension ", d.OC,
              " (weight ", weight.shape_string(), "), got ", dout.shape_string());
  if (want_dinp) expect_rows_like(dinp, dout, d.IC, "dinp", "dout");
  if (want_dw) {
    int64_t ic = 0;
    const int64_t rows = expect_inp_rows(inp, weight, &ic);
    S2S_REQUIRE(rows == d.N && ic == d.IC, code::kShape, kOp, "expected inp with ", d.N,
                " rows of ", d.IC, " (dout's rows), got ", inp.shape_string());
    expect_dtype(dweight, DType::F32, kOp, "dweight");
    expect_shape(dweight, {weight.shape[0], weight.shape[1]}, kOp, "dweight");
    expect_contiguous(dweight, kOp, "dweight");
  }
  if (want_db) expect_f32(dbias, {d.OC}, kOp, "dbias");
  if (d.N == 0) return;
  ArenaScope scope(ctx.arena());
  const DType t = weight.dtype;
  const bool out_in = layout == WeightLayout::OutIn;
  const void* g = dout_bf16 ? dout.data : nullptr;  // dout in the GEMM dtype
  const bool want_g = want_dinp || want_dw;
  if (want_db) {
    // dbias: a deterministic column sum of the fp32 dout. Where the GEMMs want dout rounded, the
    // column pass writes the rounded copy as it reads each element (every element is read
    // exactly once), so dout is read once for both.
    const float* dy = dout.f32();
    const int64_t OC = d.OC;
    if (want_g && t != DType::F32) {
      uint16_t* rounded = ctx.arena().allocate_array<uint16_t>(size_t(d.N * d.OC));
      const bool bf16 = t == DType::BF16;
      column_sum_into(ctx, d.N, OC, dbias.f32(), [=] __device__(int64_t r, int64_t c) {
        const float v = dy[r * OC + c];
        rounded[r * OC + c] = bf16 ? f32_to_bf16_bits(v) : f32_to_f16_bits(v);
        return v;
      }, kOp);
      g = rounded;
    } else {
      column_sum_into(ctx, d.N, OC, dbias.f32(),
                      [=] __device__(int64_t r, int64_t c) { return dy[r * OC + c]; }, kOp);
    }
  }
  if (want_g && g == nullptr) {
    g = t == DType::F32 ? static_cast<const void*>(dout.f32())
                        : rounded_copy(ctx, dout.f32(), d.N * d.OC, t);
  }
  if (want_dinp && d.IC > 0) {
    // dinp (N,IC) (+)= dout (N,OC) @ W (OC,IC), or dout @ W^T for W (IC,OC).
    gemm(ctx, false, !out_in, d.N, d.IC, d.OC, 1.f, g, d.OC, weight.data, out_in ? d.IC : d.OC,
         t, overwrite_dinp ? 0.f : 1.f, dinp.f32(), d.IC);
  }
  if (want_dw && d.IC > 0 && d.OC > 0) {
    const void* x = gemm_operand(ctx, inp, d.N * d.IC, t);
    if (out_in) {  // dW (OC,IC) += dout^T (OC,N) @ x (N,IC)
      gemm(ctx, true, false, d.OC, d.IC, d.N, 1.f, g, d.OC, x, d.IC, t, 1.f, dweight.f32(), d.IC);
    } else {       // dW (IC,OC) += x^T (IC,N) @ dout (N,OC)
      gemm(ctx, true, false, d.IC, d.OC, d.N, 1.f, x, d.IC, g, d.OC, t, 1.f, dweight.f32(), d.OC);
    }
  }
}

}  // namespace cuda
}  // namespace s2s
