// Tensor view helpers and the argument checks every op runs at its entry.
#include "s2s/tensor.h"

#include <sstream>

namespace s2s {

Tensor Tensor::contiguous(void* data, DType dtype, int ndim, const int64_t* shape) {
  if (ndim < 0 || ndim > kMaxDims) {
    fail(code::kShape, "tensor", "expected at most ", kMaxDims, " dimensions, got ", ndim);
  }
  Tensor t;
  t.data = data;
  t.dtype = dtype;
  t.ndim = ndim;
  int64_t stride = 1;
  for (int i = ndim - 1; i >= 0; --i) {
    if (shape[i] < 0) fail(code::kShape, "tensor", "expected sizes >= 0, got ", shape[i]);
    t.shape[i] = shape[i];
    t.strides[i] = stride;
    stride *= shape[i];
  }
  return t;
}

Tensor Tensor::contiguous(void* data, DType dtype, std::initializer_list<int64_t> shape) {
  int64_t dims[kMaxDims] = {};
  int n = 0;
  for (int64_t s : shape) {
    if (n == kMaxDims) fail(code::kShape, "tensor", "expected at most ", kMaxDims, " dimensions");
    dims[n++] = s;
  }
  return contiguous(data, dtype, n, dims);
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= shape[i];
  return n;
}

int64_t Tensor::extent() const {
  if (numel() == 0) return 0;
  int64_t last = 0;
  for (int i = 0; i < ndim; ++i) last += (shape[i] - 1) * strides[i];
  return last + 1;
}

bool Tensor::is_contiguous() const {
  int64_t stride = 1;
  for (int i = ndim - 1; i >= 0; --i) {
    if (shape[i] != 1 && strides[i] != stride) return false;
    stride *= shape[i];
  }
  return true;
}

std::string Tensor::shape_string() const {
  std::ostringstream os;
  os << "(";
  for (int i = 0; i < ndim; ++i) os << (i ? ", " : "") << shape[i];
  os << (ndim == 1 ? ",)" : ")");
  return os.str();
}

static std::string expected_shape_string(std::initializer_list<int64_t> shape) {
  std::ostringstream os;
  os << "(";
  int i = 0;
  for (int64_t s : shape) {
    os << (i++ ? ", " : "");
    if (s < 0) os << "*"; else os << s;
  }
  os << (shape.size() == 1 ? ",)" : ")");
  return os.str();
}

void expect_dtype(const Tensor& t, DType dtype, const char* op, const char* name) {
  if (t.dtype != dtype) {
    fail(code::kDType, op, "expected ", name, " to be ", dtype_name(dtype), ", got ",
         dtype_name(t.dtype));
  }
}

void expect_contiguous(const Tensor& t, const char* op, const char* name) {
  if (!t.is_contiguous()) fail(code::kLayout, op, "expected ", name, " to be contiguous");
  if (t.data == nullptr && t.numel() > 0) {
    fail(code::kArgument, op, "expected ", name, " to have data, got a null pointer");
  }
}

void expect_shape(const Tensor& t, std::initializer_list<int64_t> shape, const char* op,
                  const char* name) {
  bool ok = static_cast<size_t>(t.ndim) == shape.size();
  if (ok) {
    int i = 0;
    for (int64_t s : shape) {
      if (s >= 0 && t.shape[i] != s) ok = false;
      ++i;
    }
  }
  if (!ok) {
    fail(code::kShape, op, "expected ", name, " of shape ", expected_shape_string(shape),
         ", got ", t.shape_string());
  }
}

void expect_f32(const Tensor& t, std::initializer_list<int64_t> shape, const char* op,
                const char* name) {
  expect_dtype(t, DType::F32, op, name);
  expect_shape(t, shape, op, name);
  expect_contiguous(t, op, name);
}

void expect_f32_heads(const Tensor& t, std::initializer_list<int64_t> shape, const char* op,
                      const char* name) {
  expect_dtype(t, DType::F32, op, name);
  S2S_REQUIRE(shape.size() == 4, code::kInternal, op, "expect_f32_heads takes (R, T, H, D)");
  expect_shape(t, shape, op, name);
  const int64_t H = t.shape[2], D = t.shape[3];
  const bool packed = (D == 1 || t.strides[3] == 1) && (H == 1 || t.strides[2] == D) &&
                      t.strides[0] >= 0 && t.strides[1] >= 0;
  if (!packed) {
    fail(code::kLayout, op, "expected ", name, " (R, T, H, D) with each position's heads packed ",
         "(strides (*, *, ", D, ", 1)), got strides (", t.strides[0], ", ", t.strides[1], ", ",
         t.strides[2], ", ", t.strides[3], ")");
  }
  if (t.data == nullptr && t.numel() > 0) {
    fail(code::kArgument, op, "expected ", name, " to have data, got a null pointer");
  }
}

}  // namespace s2s
