// elementwise ops (see s2s/ops/elementwise.h): plain loops the compiler vectorises, split over
// the thread pool for large tensors. Each output element is computed once, so results do not
// depend on the thread count.
#include "s2s/ops/elementwise.h"

#include <algorithm>
#include <cstring>

#include "s2s/thread_pool.h"

namespace s2s {

namespace {
constexpr int64_t kGrain = 1 << 16;  // elements per thread below which one thread is faster

void expect_same(const Tensor& t, const Tensor& like, const char* op, const char* name) {
  expect_dtype(t, DType::F32, op, name);
  expect_contiguous(t, op, name);
  S2S_REQUIRE(t.numel() == like.numel(), code::kShape, op, "expected ", name, " to have ",
              like.numel(), " elements like ", like.shape_string(), ", got ", t.shape_string());
}
}  // namespace

void add_forward(const Tensor& out, const Tensor& a, const Tensor& b) {
  const char* op = "add";
  expect_same(a, out, op, "a");
  expect_same(b, out, op, "b");
  expect_same(out, out, op, "out");
  float* o = out.f32();
  const float* x = a.f32();
  const float* y = b.f32();
  parallel_for(out.numel(), kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) o[i] = x[i] + y[i];
  });
}

void axpy(const Tensor& dst, float alpha, const Tensor& src) {
  const char* op = "axpy";
  expect_same(dst, dst, op, "dst");
  expect_same(src, dst, op, "src");
  float* d = dst.f32();
  const float* s = src.f32();
  parallel_for(dst.numel(), kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) d[i] += alpha * s[i];
  });
}

void scale_forward(const Tensor& out, const Tensor& x, float s) {
  const char* op = "scale";
  expect_same(out, out, op, "out");
  expect_same(x, out, op, "x");
  float* o = out.f32();
  const float* in = x.f32();
  parallel_for(out.numel(), kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) o[i] = in[i] * s;
  });
}

void copy_values(const Tensor& dst, const Tensor& src) {
  const char* op = "copy_values";
  expect_same(dst, dst, op, "dst");
  expect_same(src, dst, op, "src");
  float* d = dst.f32();
  const float* s = src.f32();
  parallel_for(dst.numel(), kGrain, [&](int64_t begin, int64_t end) {
    std::memcpy(d + begin, s + begin, sizeof(float) * size_t(end - begin));
  });
}

void copy_columns(float* dst, const float* src, int64_t rows, int64_t src_cols, int64_t col0,
                  int64_t width) {
  parallel_for(rows, std::max<int64_t>(1, kGrain / std::max<int64_t>(width, 1)),
               [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      std::memcpy(dst + r * width, src + r * src_cols + col0, sizeof(float) * width);
    }
  });
}

void add_to_columns(float* dst, const float* src, int64_t rows, int64_t dst_cols, int64_t col0,
                    int64_t width) {
  parallel_for(rows, std::max<int64_t>(1, kGrain / std::max<int64_t>(width, 1)),
               [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      float* d = dst + r * dst_cols + col0;
      const float* s = src + r * width;
      for (int64_t j = 0; j < width; ++j) d[j] += s[j];
    }
  });
}

void set_columns(float* dst, const float* src, int64_t rows, int64_t dst_cols, int64_t col0,
                 int64_t width) {
  parallel_for(rows, std::max<int64_t>(1, kGrain / std::max<int64_t>(width, 1)),
               [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      float* d = dst + r * dst_cols + col0;
      if (src != nullptr) std::memcpy(d, src + r * width, sizeof(float) * width);
      else std::memset(d, 0, sizeof(float) * width);
    }
  });
}

}  // namespace s2s
