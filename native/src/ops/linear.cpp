// linear forward/backward through the GEMMs (gemm.h; a forward of at most kGemvMaxRows rows
// through gemv.h), bias add and dbias column sums, and the reference triple loops.
// Legend: N rows, IC in_features, OC out_features.
// Napkin: 2*N*IC*OC flops forward, twice that backward; the GEMM does the work.
#include "s2s/ops/linear.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "ops/op_util.h"
#include "s2s/gemm.h"
#include "s2s/gemv.h"
#include "s2s/ops/cast.h"
#include "s2s/thread_pool.h"

namespace s2s {

namespace {
constexpr const char* kOp = "linear";

// ldo: the row stride of out (forward) or dout (backward), OC unless their rows are padded (a
// 2-D view, opu::row_stride: nn::linear_cross_entropy's logits and their gradient).
// ldw: the weight's row stride, its last dimension unless it is a slice of a wider matrix's
// columns (a 2-D view, opu::row_stride).
struct Dims { int64_t N, IC, OC, ldo, ldw; };

void check_layout(WeightLayout layout) {
  if (layout != WeightLayout::OutIn && layout != WeightLayout::InOut) {
    fail(code::kArgument, kOp, "expected layout OutIn (0) or InOut (1), got ",
         static_cast<int>(layout));
  }
}

// The GEMM for a 16-bit weight: the other operand is rounded to the weight's format as it is
// packed, fp32 accumulation (gemm_bf16_rounding and gemm_f16_rounding share a signature).
using RoundingGemm = void (*)(bool, bool, int64_t, int64_t, int64_t, float, const void*, DType,
                              int64_t, const void*, DType, int64_t, float, float*, int64_t);
RoundingGemm rounding_gemm(DType weight_dtype) {
  return weight_dtype == DType::BF16 ? gemm_bf16_rounding : gemm_f16_rounding;
}

// weight: 2-D, f32, bf16 or f16, contiguous or a slice of a wider matrix's columns; returns
// (IC, OC) from it, and its row stride.
int64_t check_weight(const Tensor& weight, WeightLayout layout, int64_t* IC, int64_t* OC) {
  check_layout(layout);
  if (weight.dtype != DType::F32 && weight.dtype != DType::BF16 && weight.dtype != DType::F16) {
    fail(code::kDType, kOp, "expected weight to be float32, bfloat16 or float16, got ",
         dtype_name(weight.dtype));
  }
  if (weight.ndim != 2) {
    fail(code::kShape, kOp, "expected weight to be 2-D (", 
         layout == WeightLayout::OutIn ? "out, in" : "in, out", "), got ", weight.shape_string());
  }
  *OC = layout == WeightLayout::OutIn ? weight.shape[0] : weight.shape[1];
  *IC = layout == WeightLayout::OutIn ? weight.shape[1] : weight.shape[0];
  return opu::row_stride(weight, kOp, "weight");
}

// `t` is (..., last) with the leading dims of `rows_like` (whose last dim is ignored). Returns
// its row stride: contiguous, or a 2-D view with padded rows where padded_ok.
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

Dims check_forward(const Tensor& out, const Tensor& inp, const Tensor& weight,
                   const Tensor& bias, WeightLayout layout) {
  Dims d;
  d.ldw = check_weight(weight, layout, &d.IC, &d.OC);
  int64_t ic;
  d.N = opu::expect_rows(inp, kOp, "inp", &ic);
  if (ic != d.IC) {
    fail(code::kShape, kOp, "expected inp with last dimension ", d.IC, " (weight ",
         weight.shape_string(), "), got ", inp.shape_string());
  }
  d.ldo = expect_rows_like(out, inp, d.OC, "out", "inp", /*padded_ok=*/true);
  if (opu::present(bias)) expect_f32(bias, {d.OC}, kOp, "bias");
  return d;
}

Dims check_backward(const Tensor& dinp, const Tensor& dweight, const Tensor& dbias,
                    const Tensor& dout, const Tensor& inp, const Tensor& weight,
                    WeightLayout layout) {
  Dims d;
  d.ldw = check_weight(weight, layout, &d.IC, &d.OC);
  int64_t oc;
  if (dout.dtype == DType::BF16) {
    // A gradient already rounded to bf16 by its writer (cross_entropy for a bf16-compute head):
    // only where it would be rounded anyway, and never summed into dbias.
    S2S_REQUIRE(weight.dtype == DType::BF16, code::kDType, kOp,
                "expected a bfloat16 weight with bfloat16 dout, got ", dtype_name(weight.dtype));
    S2S_REQUIRE(!opu::present(dbias), code::kArgument, kOp,
                "expected no dbias with bfloat16 dout");
  } else {
    expect_dtype(dout, DType::F32, kOp, "dout");
  }
  S2S_REQUIRE(dout.ndim >= 1, code::kShape, kOp, "expected dout to be at least 1-D, got a scalar");
  oc = dout.shape[dout.ndim - 1];
  d.N = oc == 0 ? 0 : dout.numel() / oc;
  d.ldo = opu::row_stride(dout, kOp, "dout");
  if (oc != d.OC) {
    fail(code::kShape, kOp, "expected dout with last dimension ", d.OC, " (weight ",
         weight.shape_string(), "), got ", dout.shape_string());
  }
  if (opu::present(dinp)) expect_rows_like(dinp, dout, d.IC, "dinp", "dout");
  if (opu::present(dweight)) {
    expect_f32(dweight, {weight.shape[0], weight.shape[1]}, kOp, "dweight");
    expect_rows_like(inp, dout, d.IC, "inp", "dout");
  }
  if (opu::present(dbias)) expect_f32(dbias, {d.OC}, kOp, "dbias");
  return d;
}
}  // namespace

void linear_forward(const Tensor& out, const Tensor& inp, const Tensor& weight,
                    const Tensor& bias, WeightLayout layout) {
  if (out.dtype != DType::F32) {
    // A 16-bit out (the 16-bit weight's dtype): the f32 values, rounded to nearest even.
    S2S_REQUIRE(out.dtype == weight.dtype, code::kDType, kOp, "expected out to be float32 or ",
                dtype_name(weight.dtype), " (the 16-bit weight's dtype), got ",
                dtype_name(out.dtype));
    expect_contiguous(out, kOp, "out");
    std::vector<float> wide(static_cast<size_t>(out.numel()));
    linear_forward(Tensor::contiguous(wide.data(), DType::F32, out.ndim, out.shape), inp, weight,
                   bias, layout);
    cast_forward(out, Tensor::contiguous(wide.data(), DType::F32, out.ndim, out.shape));
    return;
  }
  const Dims d = check_forward(out, inp, weight, bias, layout);
  if (d.N == 0 || d.OC == 0) return;
  if (d.N <= kGemvMaxRows) {
    // A few rows (decoding): stream W once in its own layout instead of packing it (gemv.h).
    const bool out_in = layout == WeightLayout::OutIn;
    const float* b = opu::present(bias) ? bias.f32() : nullptr;
    const int64_t ldw = d.ldw;
    switch (weight.dtype) {
      case DType::F32:
        gemv_f32(out_in, d.N, d.OC, d.IC, inp.f32(), d.IC, weight.f32(), ldw, b, out.f32(), d.ldo);
        break;
      case DType::BF16:
        gemv_bf16(out_in, d.N, d.OC, d.IC, inp.f32(), d.IC, weight.u16(), ldw, b, out.f32(), d.ldo);
        break;
      case DType::F16:
        gemv_f16(out_in, d.N, d.OC, d.IC, inp.f32(), d.IC, weight.u16(), ldw, b, out.f32(), d.ldo);
        break;
    }
    return;
  }
  float* y = out.f32();
  float beta = 0.0f;
  if (opu::present(bias)) {
    // Start from the bias and let the GEMM add x W^T onto it (beta = 1).
    const float* b = bias.f32();
    parallel_for(d.N, opu::row_grain(d.OC), [&](int64_t rb, int64_t re) {
      for (int64_t r = rb; r < re; ++r) std::memcpy(y + r * d.ldo, b, sizeof(float) * d.OC);
    });
    beta = 1.0f;
  }
  const bool trans_b = layout == WeightLayout::OutIn;  // op(W) must be (IC, OC)
  const int64_t ldw = d.ldw;
  if (weight.dtype == DType::F32) {
    gemm_f32(false, trans_b, d.N, d.OC, d.IC, 1.0f, inp.f32(), d.IC, weight.f32(), ldw, beta, y,
             d.ldo);
  } else {
    // bf16 / f16 weight: x is rounded to the weight's format as the GEMM packs it (no rounded
    // copy in memory).
    rounding_gemm(weight.dtype)(false, trans_b, d.N, d.OC, d.IC, 1.0f, inp.f32(), DType::F32,
                                d.IC, weight.u16(), weight.dtype, ldw, beta, y, d.ldo);
  }
}

void linear_backward(const Tensor& dinp, const Tensor& dweight, const Tensor& dbias,
                     const Tensor& dout, const Tensor& inp, const Tensor& weight,
                     WeightLayout layout, bool overwrite_dinp) {
  const Dims d = check_backward(dinp, dweight, dbias, dout, inp, weight, layout);
  if (d.N == 0) return;
  const void* dy = dout.data;  // f32, or bf16 (then the weight is bf16 too; checked)
  const DType dy_type = dout.dtype;
  const int64_t ldw = d.ldw;
  const bool half = weight.dtype != DType::F32;
  const DType wt = weight.dtype;
  // bf16 / f16 weight: dout and inp are rounded to the weight's format as the GEMMs pack them
  // (gemm_bf16_rounding / gemm_f16_rounding), the same products as multiplying rounded copies,
  // without writing the copies. With f16, a dout beyond fp16's range (65504) rounds to +-Inf
  // and reaches dinp and dweight as Inf/NaN: what a dynamic loss scaler looks for.
  if (opu::present(dinp) && d.IC > 0) {
    // dinp (N,IC) += dout (N,OC) @ op(W) with op(W) (OC,IC): W itself for OutIn, W^T for InOut.
    // (overwrite_dinp: beta 0, dinp write-only; K = OC == 0 then writes zeros.)
    const bool trans_b = layout == WeightLayout::InOut;
    const float beta = overwrite_dinp ? 0.0f : 1.0f;
    if (!half) {
      gemm_f32(false, trans_b, d.N, d.IC, d.OC, 1.0f, dout.f32(), d.ldo, weight.f32(), ldw, beta,
               dinp.f32(), d.IC);
    } else {
      rounding_gemm(wt)(false, trans_b, d.N, d.IC, d.OC, 1.0f, dy, dy_type, d.ldo, weight.u16(),
                        wt, ldw, beta, dinp.f32(), d.IC);
    }
  }
  if (opu::present(dweight)) {
    if (layout == WeightLayout::OutIn) {
      // dW (OC,IC) += dout^T (OC,N) @ inp (N,IC)
      if (!half) {
        gemm_f32(true, false, d.OC, d.IC, d.N, 1.0f, dout.f32(), d.ldo, inp.f32(), d.IC, 1.0f,
                 dweight.f32(), d.IC);
      } else {
        rounding_gemm(wt)(true, false, d.OC, d.IC, d.N, 1.0f, dy, dy_type, d.ldo, inp.f32(),
                          DType::F32, d.IC, 1.0f, dweight.f32(), d.IC);
      }
    } else {
      // dW (IC,OC) += inp^T (IC,N) @ dout (N,OC)
      if (!half) {
        gemm_f32(true, false, d.IC, d.OC, d.N, 1.0f, inp.f32(), d.IC, dout.f32(), d.ldo, 1.0f,
                 dweight.f32(), d.OC);
      } else {
        rounding_gemm(wt)(true, false, d.IC, d.OC, d.N, 1.0f, inp.f32(), DType::F32, d.IC, dy,
                          dy_type, d.ldo, 1.0f, dweight.f32(), d.OC);
      }
    }
  }
  if (opu::present(dbias)) {
    // Column sums: each block of 64 columns belongs to one thread and adds the rows in order,
    // so the result does not depend on the thread count at all.
    constexpr int64_t kCols = 64;
    const int64_t blocks = (d.OC + kCols - 1) / kCols;
    const int64_t grain = std::max<int64_t>(1, opu::kElemGrain / std::max<int64_t>(1, d.N * kCols));
    float* db = dbias.f32();
    const float* dyf = dout.f32();
    parallel_for(blocks, grain, [&](int64_t bb, int64_t be) {
      for (int64_t blk = bb; blk < be; ++blk) {
        const int64_t c0 = blk * kCols, c1 = std::min(d.OC, c0 + kCols);
        float acc[kCols];
        for (int64_t c = c0; c < c1; ++c) acc[c - c0] = 0.0f;
        for (int64_t r = 0; r < d.N; ++r) {
          const float* row = dyf + r * d.ldo;
          for (int64_t c = c0; c < c1; ++c) acc[c - c0] += row[c];
        }
        for (int64_t c = c0; c < c1; ++c) db[c] += acc[c - c0];
      }
    });
  }
}

namespace {
// W as (OC, IC) element (o, i), in double, whatever the storage.
double w_at(const Tensor& w, WeightLayout layout, int64_t o, int64_t i) {
  const int64_t ld = w.strides[0];  // the row stride: a column slice's too
  const int64_t idx = layout == WeightLayout::OutIn ? o * ld + i : i * ld + o;
  switch (w.dtype) {
    case DType::BF16: return double(bf16_to_f32(w.u16()[idx]));
    case DType::F16: return double(f16_to_f32(w.u16()[idx]));
    default: return double(w.f32()[idx]);
  }
}
// An activation or gradient value as the fast path multiplies it: rounded to a 16-bit weight's
// format (f32_to_bf16 / f32_to_f16), as is for an f32 weight.
double round_like(const Tensor& w, float v) {
  switch (w.dtype) {
    case DType::BF16: return double(bf16_to_f32(f32_to_bf16(v)));
    case DType::F16: return double(f16_to_f32(f32_to_f16(v)));
    default: return double(v);
  }
}
}  // namespace

void linear_forward_reference(const Tensor& out, const Tensor& inp, const Tensor& weight,
                              const Tensor& bias, WeightLayout layout) {
  const Dims d = check_forward(out, inp, weight, bias, layout);
  for (int64_t r = 0; r < d.N; ++r) {
    for (int64_t o = 0; o < d.OC; ++o) {
      double acc = opu::present(bias) ? double(bias.f32()[o]) : 0.0;
      for (int64_t i = 0; i < d.IC; ++i) {
        acc += round_like(weight, inp.f32()[r * d.IC + i]) * w_at(weight, layout, o, i);
      }
      out.f32()[r * d.ldo + o] = static_cast<float>(acc);
    }
  }
}

void linear_backward_reference(const Tensor& dinp, const Tensor& dweight, const Tensor& dbias,
                               const Tensor& dout, const Tensor& inp, const Tensor& weight,
                               WeightLayout layout) {
  const Dims d = check_backward(dinp, dweight, dbias, dout, inp, weight, layout);
  const float* dy = dout.f32();
  if (opu::present(dinp)) {
    for (int64_t r = 0; r < d.N; ++r) {
      for (int64_t i = 0; i < d.IC; ++i) {
        double acc = 0;
        for (int64_t o = 0; o < d.OC; ++o) {
          acc += round_like(weight, dy[r * d.ldo + o]) * w_at(weight, layout, o, i);
        }
        float& dx = dinp.f32()[r * d.IC + i];
        dx = static_cast<float>(dx + acc);
      }
    }
  }
  if (opu::present(dweight)) {
    for (int64_t o = 0; o < d.OC; ++o) {
      for (int64_t i = 0; i < d.IC; ++i) {
        double acc = 0;
        for (int64_t r = 0; r < d.N; ++r) {
          acc += round_like(weight, dy[r * d.ldo + o]) * round_like(weight, inp.f32()[r * d.IC + i]);
        }
        const int64_t idx = layout == WeightLayout::OutIn ? o * d.IC + i : i * d.OC + o;
        dweight.f32()[idx] = static_cast<float>(dweight.f32()[idx] + acc);
      }
    }
  }
  if (opu::present(dbias)) {
    for (int64_t o = 0; o < d.OC; ++o) {
      double acc = 0;
      for (int64_t r = 0; r < d.N; ++r) acc += dy[r * d.ldo + o];
      dbias.f32()[o] = static_cast<float>(dbias.f32()[o] + acc);
    }
  }
}

}  // namespace s2s
