// lora_merge: W += scaling * (B @ A) (transposed for the Conv1D layout) as one GEMM with beta = 1.
// Napkin: 2 * OC * IC * R flops and one read-modify-write of W (8 * OC * IC bytes); for R << IC
// that is memory bound, a few ms for a 4096 x 4096 layer.
#include "s2s/ops/lora_merge.h"

#include "s2s/gemm.h"

namespace s2s {

namespace {
constexpr const char* kOp = "lora_merge";

// Returns {OC, IC, R} after checking the three tensors.
void check(const Tensor& weight, const Tensor& A, const Tensor& B, WeightLayout layout,
           int64_t* OC, int64_t* IC, int64_t* R) {
  expect_dtype(A, DType::F32, kOp, "lora_A");
  expect_dtype(B, DType::F32, kOp, "lora_B");
  expect_dtype(weight, DType::F32, kOp, "weight");
  S2S_REQUIRE(A.ndim == 2, code::kShape, kOp, "expected lora_A (r, in) 2-D, got ",
              A.shape_string());
  *R = A.shape[0];
  *IC = A.shape[1];
  S2S_REQUIRE(B.ndim == 2 && B.shape[1] == *R, code::kShape, kOp, "expected lora_B (out, ", *R,
              ") to match lora_A ", A.shape_string(), ", got ", B.shape_string());
  *OC = B.shape[0];
  if (layout == WeightLayout::OutIn) {
    expect_shape(weight, {*OC, *IC}, kOp, "weight (out, in)");
  } else {
    expect_shape(weight, {*IC, *OC}, kOp, "weight (in, out) [fan_in_fan_out]");
  }
  expect_contiguous(weight, kOp, "weight");
  expect_contiguous(A, kOp, "lora_A");
  expect_contiguous(B, kOp, "lora_B");
}
}  // namespace

void lora_merge_forward(const Tensor& weight, const Tensor& A, const Tensor& B, float scaling,
                        WeightLayout layout) {
  int64_t OC, IC, R;
  check(weight, A, B, layout, &OC, &IC, &R);
  if (layout == WeightLayout::OutIn) {
    // W (OC,IC) += scaling * B (OC,R) @ A (R,IC)
    gemm_f32(false, false, OC, IC, R, scaling, B.f32(), R, A.f32(), IC, 1.0f, weight.f32(), IC);
  } else {
    // W (IC,OC) += scaling * A^T (IC,R) @ B^T (R,OC); A stored (R,IC), B stored (OC,R)
    gemm_f32(true, true, IC, OC, R, scaling, A.f32(), IC, B.f32(), R, 1.0f, weight.f32(), OC);
  }
}

void lora_merge_reference(const Tensor& weight, const Tensor& A, const Tensor& B, float scaling,
                          WeightLayout layout) {
  int64_t OC, IC, R;
  check(weight, A, B, layout, &OC, &IC, &R);
  const float* a = A.f32();
  const float* b = B.f32();
  float* w = weight.f32();
  for (int64_t o = 0; o < OC; ++o) {
    for (int64_t i = 0; i < IC; ++i) {
      double acc = 0;
      for (int64_t k = 0; k < R; ++k) acc += double(b[o * R + k]) * double(a[k * IC + i]);
      const float delta = static_cast<float>(acc) * scaling;
      float& dst = layout == WeightLayout::OutIn ? w[o * IC + i] : w[i * OC + o];
      dst += delta;
    }
  }
}

}  // namespace s2s
