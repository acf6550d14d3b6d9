// cast on CUDA (s2s/ops/cast.h semantics), bit-identical to the CPU conversions (check.cuh).
#include "backends/cuda/check.cuh"
#include "backends/cuda/cuda_ops.h"

namespace s2s {
namespace cuda {

namespace {
constexpr const char* kOp = "cast";
void check_same_shape(const Tensor& out, const Tensor& inp, const char* out_name, const char* inp_name) {
  expect_contiguous(inp, kOp, inp_name);
  expect_contiguous(out, kOp, out_name);
  bool same = out.ndim == inp.ndim;
  for (int i = 0; same && i < out.ndim; ++i) same = out.shape[i] == inp.shape[i];
  S2S_REQUIRE(same, code::kShape, kOp, "expected ", out_name, " of shape ", inp.shape_string(),
              " (as ", inp_name, "), got ", out.shape_string());
}
}  // namespace

void cast_forward(Context& ctx, const Tensor& out, const Tensor& inp) {
  check_same_shape(out, inp, "out", "inp");
  const int64_t n = inp.numel();
  if (out.dtype == inp.dtype) {
    if (out.data != inp.data) copy_device(ctx, out.data, inp.data, n * dtype_size(inp.dtype));
    return;
  }
  const DType from = inp.dtype, to = out.dtype;
  const void* src = inp.data;
  void* dst = out.data;
  for_each(ctx, n, kOp, [=] __device__(int64_t i) {
    float f;
    if (from == DType::F32) f = static_cast<const float*>(src)[i];
    else f = widen16(static_cast<const uint16_t*>(src)[i], from == DType::BF16);
    if (to == DType::F32) static_cast<float*>(dst)[i] = f;
    else if (to == DType::BF16) static_cast<uint16_t*>(dst)[i] = f32_to_bf16_bits(f);
    else static_cast<uint16_t*>(dst)[i] = f32_to_f16_bits(f);
  });
}

void cast_backward(Context& ctx, const Tensor& dinp, const Tensor& dout) {
  if (dinp.data == nullptr) return;
  expect_dtype(dinp, DType::F32, kOp, "dinp");
  check_same_shape(dinp, dout, "dinp", "dout");
  const DType from = dout.dtype;
  const void* src = dout.data;
  float* dx = dinp.f32();
  for_each(ctx, dout.numel(), kOp, [=] __device__(int64_t i) {
    float f;
    if (from == DType::F32) f = static_cast<const float*>(src)[i];
    else f = widen16(static_cast<const uint16_t*>(src)[i], from == DType::BF16);
    dx[i] += f;
  });
}

}  // namespace cuda
}  // namespace s2s
