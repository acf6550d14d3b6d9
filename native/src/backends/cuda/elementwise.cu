// elementwise on CUDA (s2s/ops/elementwise.h semantics): adds, axpy, scaling, column blocks.
#include "backends/cuda/check.cuh"
#include "backends/cuda/cuda_ops.h"

namespace s2s {
namespace cuda {

namespace {
void expect_same(const Tensor& t, const Tensor& like, const char* op, const char* name) {
  expect_dtype(t, DType::F32, op, name);
  expect_contiguous(t, op, name);
  S2S_REQUIRE(t.numel() == like.numel(), code::kShape, op, "expected ", name, " to have ",
              like.numel(), " elements like ", like.shape_string(), ", got ", t.shape_string());
}
void expect_block(int64_t rows, int64_t cols, int64_t col0, int64_t width, const char* op) {
  S2S_REQUIRE(rows >= 0 && width >= 0 && col0 >= 0 && col0 + width <= cols, code::kShape, op,
              "expected columns [", col0, ", ", col0 + width, ") inside ", cols, " columns");
}
}  // namespace

void add_forward(Context& ctx, const Tensor& out, const Tensor& a, const Tensor& b) {
  expect_same(a, out, "add", "a");
  expect_same(b, out, "add", "b");
  expect_same(out, out, "add", "out");
  float* o = out.f32();
  const float* x = a.f32();
  const float* y = b.f32();
  for_each(ctx, out.numel(), "add", [=] __device__(int64_t i) { o[i] = x[i] + y[i]; });
}

void axpy(Context& ctx, const Tensor& dst, float alpha, const Tensor& src) {
  expect_same(dst, dst, "axpy", "dst");
  expect_same(src, dst, "axpy", "src");
  float* d = dst.f32();
  const float* s = src.f32();
  // alpha * s then the add, two roundings, as the CPU loop (no fused multiply-add).
  for_each(ctx, dst.numel(), "axpy",
           [=] __device__(int64_t i) { d[i] = __fadd_rn(d[i], __fmul_rn(alpha, s[i])); });
}

void scale_forward(Context& ctx, const Tensor& out, const Tensor& x, float s) {
  expect_same(out, out, "scale", "out");
  expect_same(x, out, "scale", "x");
  float* o = out.f32();
  const float* in = x.f32();
  for_each(ctx, out.numel(), "scale", [=] __device__(int64_t i) { o[i] = in[i] * s; });
}

void set_scalar(Context& ctx, float* dst, float value) {
  for_each(ctx, 1, "set_scalar", [=] __device__(int64_t) { dst[0] = value; });
}

void copy_columns(Context& ctx, float* dst, const float* src, int64_t rows, int64_t src_cols,
                  int64_t col0, int64_t width) {
  expect_block(rows, src_cols, col0, width, "copy_columns");
  for_each(ctx, rows * width, "copy_columns", [=] __device__(int64_t i) {
    const int64_t r = i / width, c = i % width;
    dst[i] = src[r * src_cols + col0 + c];
  });
}

void copy_columns_rounded(Context& ctx, uint16_t* dst, DType dtype, const float* src,
                          int64_t rows, int64_t src_cols, int64_t col0, int64_t width) {
  expect_block(rows, src_cols, col0, width, "copy_columns");
  S2S_REQUIRE(dtype == DType::BF16 || dtype == DType::F16, code::kDType, "copy_columns",
              "expected a bfloat16 or float16 destination, got ", dtype_name(dtype));
  const ActivationOut out{dst, dtype};
  for_each(ctx, rows * width, "copy_columns", [=] __device__(int64_t i) {
    const int64_t r = i / width, c = i % width;
    out.store(i, src[r * src_cols + col0 + c]);
  });
}

void add_to_columns(Context& ctx, float* dst, const float* src, int64_t rows, int64_t dst_cols,
                    int64_t col0, int64_t width) {
  expect_block(rows, dst_cols, col0, width, "add_to_columns");
  for_each(ctx, rows * width, "add_to_columns", [=] __device__(int64_t i) {
    const int64_t r = i / width, c = i % width;
    dst[r * dst_cols + col0 + c] += src[i];
  });
}

}  // namespace cuda
}  // namespace s2s
