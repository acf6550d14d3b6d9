// linear on CUDA (s2s/ops/linear.h semantics) through cuda::gemm (cuBLASLt). A bf16 or f16
// weight runs on tensor cores: inp (forward) and dout, inp (backward) are rounded to the
// weight's dtype in arena scratch first, exactly as the CPU bf16 path rounds them; accumulation
// and every output stay fp32, but a forward out asked for in the weight's 16-bit type (the fp32
// values rounded in cuBLASLt's epilogue, gemm_rounded). The forward's bias is added in the
// GEMM's epilogue; dbias is a deterministic column sum of the fp32 dout, whose pass also writes
// dout's rounded copy.
// linear_gelu_backward is the backward of gelu(linear(x)) (GPT-2's c_fc): gelu's backward is
// made in that same pass, so the f32 gradient of the pre-activation is never stored.
// linear_split_backward is the backward of split_last(linear(x)) (GPT-2's c_attn): that pass
// reads the parts' gradients where they lie, so the (N, 3C) f32 gradient is never assembled.
// linear_residual_forward is residual + linear(x) in one GEMM (cuBLASLt adds the residual as its
// C input): the product is neither written nor read back by an add.
// Legend: N rows, IC in_features, OC out_features.
// Napkin: 2*N*IC*OC flops forward, 4*N*IC*OC backward; at GPT-2 124M shapes (N = 16K rows) the
// GEMMs are compute bound and the casts + bias cost a few percent. The fused gelu saves writing
// and reading the (N, 3072) f32 gradient: 0.4 GB a layer at 16 x 1024 tokens; the fused split
// the (N, 2304) one: 0.3 GB.
#include "backends/cuda/act.cuh"
#include "backends/cuda/check.cuh"
#include "backends/cuda/cuda_ops.h"
#include "backends/cuda/gemm.h"
#include "backends/cuda/rows.cuh"
#include "ops/op_util.h"
#include "s2s/nn/backend.h"  // Backend::kMaxLinearSplitParts

namespace s2s {
namespace cuda {

namespace {
constexpr const char* kOp = "linear";

// ldo: the row stride of out (forward) or dout (linear_backward), OC unless their rows are
// padded (a 2-D view, opu::row_stride: nn::linear_cross_entropy's logits and their gradient, at
// the 16-byte aligned rows cuBLASLt's fast kernels want).
// ldw: the weight's row stride, its last dimension unless it is a slice of a wider matrix's
// columns (nn::linear_split's parts: a 2-D view, opu::row_stride).
struct Dims { int64_t N, IC, OC, ldo, ldw; };

// Returns the weight's row stride.
int64_t check_weight(const Tensor& weight, WeightLayout layout, int64_t* IC, int64_t* OC) {
  S2S_REQUIRE(layout == WeightLayout::OutIn || layout == WeightLayout::InOut, code::kArgument,
              kOp, "expected layout OutIn (0) or InOut (1), got ", int(layout));
  S2S_REQUIRE(weight.dtype == DType::F32 || weight.dtype == DType::BF16 ||
                  weight.dtype == DType::F16,
              code::kDType, kOp, "expected weight to be float32, bfloat16 or float16, got ",
              dtype_name(weight.dtype));
  S2S_REQUIRE(weight.ndim == 2, code::kShape, kOp, "expected weight to be 2-D (",
              layout == WeightLayout::OutIn ? "out, in" : "in, out", "), got ",
              weight.shape_string());
  *OC = layout == WeightLayout::OutIn ? weight.shape[0] : weight.shape[1];
  *IC = layout == WeightLayout::OutIn ? weight.shape[1] : weight.shape[0];
  return opu::row_stride(weight, kOp, "weight");
}

// Returns t's row stride: contiguous, or a 2-D view with padded rows where padded_ok.
int64_t expect_rows_like(const Tensor& t, const Tensor& rows_like, int64_t last, const char* name,
                         const char* like_name, bool padded_ok = false) {
  expect_dtype(t, DType::F32, kOp, name);
  bool ok = t.ndim == rows_like.ndim && t.ndim >= 1 && t.shape[t.ndim - 1] == last;
  for (int i = 0; ok && i + 1 < t.ndim; ++i) ok = t.shape[i] == rows_like.shape[i];
  if (!ok) {
    Tensor want = rows_like;
    want.shape[want.ndim - 1] = last;
    fail(code::kShape, kOp, "expected ", name, " of shape ", want.shape_string(), " (", like_name,
         "'s rows), got ", t.shape_string());
  }
  if (padded_ok) return opu::row_stride(t, kOp, name);
  expect_contiguous(t, kOp, name);
  return last;
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

// The forward's weight and inp checked against each other: N, IC, OC and the weight's stride.
Dims check_forward(const Tensor& inp, const Tensor& weight, WeightLayout layout) {
  Dims d;
  d.ldw = check_weight(weight, layout, &d.IC, &d.OC);
  int64_t ic = 0;
  d.N = expect_inp_rows(inp, weight, &ic);
  S2S_REQUIRE(ic == d.IC, code::kShape, kOp, "expected inp with last dimension ", d.IC,
              " (weight ", weight.shape_string(), "), got ", inp.shape_string());
  return d;
}
}  // namespace

void linear_forward(Context& ctx, const Tensor& out, const Tensor& inp, const Tensor& weight,
                    const Tensor& bias, WeightLayout layout) {
  Dims d = check_forward(inp, weight, layout);
  // out in f32, or in the 16-bit weight's dtype: the f32 values rounded (its only readers would
  // round them so: GPT-2's q, k, v for the tensor-core attention).
  const bool half_out = out.dtype != DType::F32;
  S2S_REQUIRE(!half_out || (out.dtype == weight.dtype && weight.dtype != DType::F32),
              code::kDType, kOp, "expected out to be float32 or ", dtype_name(weight.dtype),
              " (the 16-bit weight's dtype), got ", dtype_name(out.dtype));
  Tensor out_shape = out;  // the row checks look at the shape only
  out_shape.dtype = DType::F32;
  d.ldo = expect_rows_like(out_shape, inp, d.OC, "out", "inp", /*padded_ok=*/true);
  if (opu::present(bias)) expect_f32(bias, {d.OC}, kOp, "bias");
  if (d.N == 0 || d.OC == 0) return;
  ArenaScope scope(ctx.arena());
  const DType t = weight.dtype;
  const void* x = gemm_operand(ctx, inp, d.N * d.IC, t);
  // out (N,OC) = x (N,IC) @ W^T: W (OC,IC) transposed, or W (IC,OC) as is.
  const bool out_in = layout == WeightLayout::OutIn;
  // The bias rides in cuBLASLt's epilogue: added to the fp32 product, as the CPU adds it.
  const float* b = opu::present(bias) ? bias.f32() : nullptr;
  if (half_out) {
    gemm_rounded(ctx, false, out_in, d.N, d.OC, d.IC, x, d.IC, weight.data, d.ldw, t, out.data,
                 d.ldo, b);
  } else {
    gemm(ctx, false, out_in, d.N, d.OC, d.IC, 1.f, x, d.IC, weight.data, d.ldw, t, 0.f,
         out.f32(), d.ldo, b);
  }
}

void linear_residual_forward(Context& ctx, const Tensor& out, const Tensor& inp,
                             const Tensor& weight, const Tensor& bias, const Tensor& residual,
                             WeightLayout layout) {
  Dims d = check_forward(inp, weight, layout);
  d.ldo = expect_rows_like(out, inp, d.OC, "out", "inp");
  expect_rows_like(residual, inp, d.OC, "residual", "inp");
  if (opu::present(bias)) expect_f32(bias, {d.OC}, kOp, "bias");
  if (d.N == 0 || d.OC == 0) return;
  ArenaScope scope(ctx.arena());
  const DType t = weight.dtype;
  const void* x = gemm_operand(ctx, inp, d.N * d.IC, t);
  // out (N,OC) = residual + x (N,IC) @ W^T (or @ W), the bias in the epilogue.
  gemm_onto(ctx, false, layout == WeightLayout::OutIn, d.N, d.OC, d.IC, x, d.IC, weight.data,
            d.ldw, t, residual.f32(), out.f32(), d.ldo,
            opu::present(bias) ? bias.f32() : nullptr);
}

namespace {
// Where the backward's dout comes from, element i = (row r, column c) of the (N, OC) gradient:
// an f32 tensor with row stride ld (linear_backward); gelu's backward of the activation's gradient and the pre-activation, made
// as it is read (linear_gelu_backward); or the column blocks' gradients of split_last's parts,
// zeros for a part without one, read where they lie (linear_split_backward).
struct DoutRead {
  const float* dy;
  int64_t ld;
  __device__ float operator()(int64_t, int64_t r, int64_t c) const { return dy[r * ld + c]; }
};
struct DoutOfGelu {
  const float* dact;
  const float* pre;
  bool tanh;
  // gelu_backward's value (gelu.cu), its product rounded on its own (__fmul_rn) so that it is
  // not fused into the column sum's addition: the unfused path's bits.
  __device__ float operator()(int64_t i, int64_t, int64_t) const {
    return __fmul_rn(dact[i], act::gelu_grad(pre[i], tanh));
  }
};
constexpr int kMaxSplitParts = Backend::kMaxLinearSplitParts;
struct DoutOfParts {
  const float* part[kMaxSplitParts];  // (N, width) each, or null: zeros
  int64_t begin[kMaxSplitParts], width[kMaxSplitParts];
  int count;
  __device__ float operator()(int64_t, int64_t r, int64_t c) const {
    int p = 0;
    while (p + 1 < count && c >= begin[p + 1]) ++p;
    return part[p] != nullptr ? part[p][r * width[p] + (c - begin[p])] : 0.f;
  }
};

// Checks the backward's tensors against the weight and dout (f32, or bf16 with a bf16 weight
// and no dbias; dout_name: what the caller calls it; rows padded where padded_ok), returns the
// dims.
Dims check_backward(const Tensor& dinp, const Tensor& dweight, const Tensor& dbias,
                    const Tensor& dout, const Tensor& inp, const Tensor& weight,
                    WeightLayout layout, const char* dout_name, bool padded_ok = false) {
  Dims d;
  d.ldw = check_weight(weight, layout, &d.IC, &d.OC);
  int64_t oc = 0;
  if (dout.dtype == DType::BF16) {
    // Already rounded by its writer (cross_entropy_backward for a bf16-compute head, as on the
    // CPU): only where it would be rounded anyway, and never summed into dbias.
    S2S_REQUIRE(weight.dtype == DType::BF16, code::kDType, kOp,
                "expected a bfloat16 weight with bfloat16 dout, got ", dtype_name(weight.dtype));
    S2S_REQUIRE(!opu::present(dbias), code::kArgument, kOp,
                "expected no dbias with bfloat16 dout");
  } else {
    expect_dtype(dout, DType::F32, kOp, dout_name);
  }
  S2S_REQUIRE(dout.ndim >= 1, code::kShape, kOp, "expected ", dout_name,
              " to be at least 1-D, got a scalar");
  oc = dout.shape[dout.ndim - 1];
  d.N = oc == 0 ? 0 : dout.numel() / oc;
  if (padded_ok) {
    d.ldo = opu::row_stride(dout, kOp, dout_name);
  } else {
    expect_contiguous(dout, kOp, dout_name);
    d.ldo = oc;
  }
  S2S_REQUIRE(oc == d.OC, code::kShape, kOp, "expected ", dout_name, " with last dimension ",
              d.OC, " (weight ", weight.shape_string(), "), got ", dout.shape_string());
  if (opu::present(dinp)) expect_rows_like(dinp, dout, d.IC, "dinp", dout_name);
  if (opu::present(dweight)) {
    int64_t ic = 0;
    const int64_t rows = expect_inp_rows(inp, weight, &ic);
    S2S_REQUIRE(rows == d.N && ic == d.IC, code::kShape, kOp, "expected inp with ", d.N,
                " rows of ", d.IC, " (", dout_name, "'s rows), got ", inp.shape_string());
    expect_dtype(dweight, DType::F32, kOp, "dweight");
    expect_shape(dweight, {weight.shape[0], weight.shape[1]}, kOp, "dweight");
    expect_contiguous(dweight, kOp, "dweight");
  }
  if (opu::present(dbias)) expect_f32(dbias, {d.OC}, kOp, "dbias");
  return d;
}

// The backward from dout(i), dout's element i in f32. dout_operand: dout as the GEMMs read it
// when it is stored in their dtype already (an f32 dout under an f32 weight, a bf16 dout under a
// bf16 one), else nullptr and the pass that reads dout (dbias's column sum, or a plain one)
// writes the GEMMs' copy: rounded to the 16-bit weight's dtype, or f32 when dout is made here.
// dout_f32, where not null: that pass stores dout's f32 values there too (a caller's copy).
// The GEMMs read dout with d.ldo as its row stride, and the copy is laid out so too (a padded
// dout's aligned rows stay aligned).
template <typename Dout>
void backward_from(Context& ctx, const Dims& d, const Tensor& dinp, const Tensor& dweight,
                   const Tensor& dbias, Dout dout, const void* dout_operand, const Tensor& inp,
                   const Tensor& weight, WeightLayout layout, bool overwrite_dinp,
                   float* dout_f32 = nullptr) {
  if (d.N == 0) return;
  const bool want_dinp = opu::present(dinp), want_dw = opu::present(dweight);
  const bool want_g = want_dinp || want_dw;
  ArenaScope scope(ctx.arena());
  const DType t = weight.dtype;
  const bool out_in = layout == WeightLayout::OutIn;
  const int64_t OC = d.OC, ld = d.ldo;
  ActivationOut copy{nullptr, t};  // the GEMMs' dout, written by the pass below
  if (want_g && dout_operand == nullptr) {
    copy.data = ctx.arena().allocate(size_t((d.N - 1) * ld + OC) * dtype_size(t));
  }
  if (opu::present(dbias)) {
    // dbias: a deterministic column sum of the fp32 dout, whose pass also writes the GEMMs'
    // copy as it reads each element (every element is read exactly once), so dout is read, or
    // made, once for both.
    column_sum_into(ctx, d.N, OC, dbias.f32(), [=] __device__(int64_t r, int64_t c) {
      const float v = dout(r * OC + c, r, c);
      if (copy.data != nullptr) copy.store(r * ld + c, v);
      if (dout_f32 != nullptr) dout_f32[r * OC + c] = v;
      return v;
    }, kOp);
  } else if (copy.data != nullptr || dout_f32 != nullptr) {
    for_each(ctx, d.N * OC, kOp, [=] __device__(int64_t i) {
      const int64_t r = i / OC, c = i % OC;
      const float v = dout(i, r, c);
      if (copy.data != nullptr) copy.store(r * ld + c, v);
      if (dout_f32 != nullptr) dout_f32[i] = v;
    });
  }
  const void* g = copy.data != nullptr ? copy.data : dout_operand;
  if (want_dinp && d.IC > 0) {
    // dinp (N,IC) (+)= dout (N,OC) @ W (OC,IC), or dout @ W^T for W (IC,OC).
    gemm(ctx, false, !out_in, d.N, d.IC, d.OC, 1.f, g, ld, weight.data, d.ldw,
         t, overwrite_dinp ? 0.f : 1.f, dinp.f32(), d.IC);
  }
  if (want_dw && d.IC > 0 && d.OC > 0) {
    const void* x = gemm_operand(ctx, inp, d.N * d.IC, t);
    if (out_in) {  // dW (OC,IC) += dout^T (OC,N) @ x (N,IC)
      gemm(ctx, true, false, d.OC, d.IC, d.N, 1.f, g, ld, x, d.IC, t, 1.f, dweight.f32(), d.IC);
    } else {       // dW (IC,OC) += x^T (IC,N) @ dout (N,OC)
      gemm(ctx, true, false, d.IC, d.OC, d.N, 1.f, x, d.IC, g, ld, t, 1.f, dweight.f32(), d.OC);
    }
  }
}
}  // namespace

void linear_backward(Context& ctx, const Tensor& dinp, const Tensor& dweight, const Tensor& dbias,
                     const Tensor& dout, const Tensor& inp, const Tensor& weight,
                     WeightLayout layout, bool overwrite_dinp) {
  const Dims d = check_backward(dinp, dweight, dbias, dout, inp, weight, layout, "dout",
                                /*padded_ok=*/true);
  // dout is the GEMMs' operand as it is when it is in their dtype already (f32 with an f32
  // weight; bf16, rounded by its writer, with a bf16 one); else the rounded copy is made.
  const bool as_is = dout.dtype == weight.dtype;
  if (dout.dtype == DType::BF16) {
    backward_from(ctx, d, dinp, dweight, dbias, DoutRead{nullptr, 0}, dout.data, inp, weight,
                  layout, overwrite_dinp);
  } else {
    backward_from(ctx, d, dinp, dweight, dbias, DoutRead{dout.f32(), d.ldo},
                  as_is ? dout.data : nullptr, inp, weight, layout, overwrite_dinp);
  }
}

void linear_gelu_backward(Context& ctx, const Tensor& dinp, const Tensor& dweight,
                          const Tensor& dbias, const Tensor& dpre, const Tensor& dact,
                          const Tensor& pre, const Tensor& inp, const Tensor& weight,
                          WeightLayout layout, GeluApprox approximate, bool overwrite_dinp) {
  S2S_REQUIRE(approximate == GeluApprox::None || approximate == GeluApprox::Tanh,
              code::kArgument, kOp, "expected approximate to be None (0) or Tanh (1), got ",
              int(approximate));
  const Dims d = check_backward(dinp, dweight, dbias, pre, inp, weight, layout, "pre");
  expect_rows_like(dact, pre, d.OC, "dact", "pre");
  if (opu::present(dpre)) expect_rows_like(dpre, pre, d.OC, "dpre", "pre");
  backward_from(ctx, d, dinp, dweight, dbias,
                DoutOfGelu{dact.f32(), pre.f32(), approximate == GeluApprox::Tanh}, nullptr, inp,
                weight, layout, overwrite_dinp, opu::present(dpre) ? dpre.f32() : nullptr);
}

void linear_split_backward(Context& ctx, const Tensor& dinp, const Tensor& dweight,
                           const Tensor& dbias, const std::vector<Tensor>& dparts,
                           const std::vector<int64_t>& widths, const Tensor& inp,
                           const Tensor& weight, WeightLayout layout, bool overwrite_dinp) {
  S2S_REQUIRE(!dparts.empty() && dparts.size() <= size_t(kMaxSplitParts) &&
                  dparts.size() == widths.size(),
              code::kArgument, kOp, "expected 1 to ", kMaxSplitParts,
              " part gradients with a width each, got ", dparts.size(), " and ", widths.size());
  DoutOfParts parts{};
  parts.count = int(dparts.size());
  int64_t OC = 0, N = -1;
  const Tensor* any = nullptr;
  for (size_t p = 0; p < dparts.size(); ++p) {
    S2S_REQUIRE(widths[p] >= 0, code::kShape, kOp, "expected part widths >= 0, got ", widths[p]);
    parts.begin[p] = OC;
    parts.width[p] = widths[p];
    OC += widths[p];
    if (!opu::present(dparts[p])) continue;
    int64_t w = 0;
    const int64_t rows = opu::expect_rows(dparts[p], kOp, "dparts", &w);
    S2S_REQUIRE(w == widths[p] && (N < 0 || rows == N), code::kShape, kOp, "expected dparts[",
                p, "] with ", N < 0 ? std::string("its") : std::to_string(N), " rows of ",
                widths[p], ", got ", dparts[p].shape_string());
    N = rows;
    parts.part[p] = dparts[p].f32();
    any = &dparts[p];
  }
  S2S_REQUIRE(any != nullptr, code::kArgument, kOp, "expected at least one part gradient");
  // The checks of linear_backward, on dout's shape: the parts' rows, their widths' sum (a view
  // for the checks only, which read no memory).
  int64_t shape[kMaxDims];
  for (int i = 0; i < any->ndim; ++i) shape[i] = any->shape[i];
  shape[any->ndim - 1] = OC;
  const Tensor dout_shape = Tensor::contiguous(any->data, DType::F32, any->ndim, shape);
  const Dims d = check_backward(dinp, dweight, dbias, dout_shape, inp, weight, layout, "dparts");
  backward_from(ctx, d, dinp, dweight, dbias, parts, nullptr, inp, weight, layout,
                overwrite_dinp);
}

}  // namespace cuda
}  // namespace s2s
