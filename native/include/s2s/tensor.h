// Tensor: a non-owning view (pointer, dtype, shape, strides in elements). Memory belongs to
// whoever made the view: a JS TypedArray, an Arena, a mmapped file. Ops validate the views they
// are given with the expect_* helpers below, which throw s2s::Error naming op and argument.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <string>

#include "s2s/dtype.h"
#include "s2s/error.h"

namespace s2s {

constexpr int kMaxDims = 6;

struct Tensor {
  void* data = nullptr;
  DType dtype = DType::F32;
  int ndim = 0;
  int64_t shape[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};  // in elements, not bytes

  // A contiguous (row-major) view over `data`.
  static Tensor contiguous(void* data, DType dtype, std::initializer_list<int64_t> shape);
  static Tensor contiguous(void* data, DType dtype, int ndim, const int64_t* shape);

  int64_t numel() const;
  // Elements from data to one past the last one, whatever the (non-negative) strides: numel()
  // for a contiguous tensor, more for a view with gaps.
  int64_t extent() const;
  bool is_contiguous() const;
  int64_t dim(int i) const { return shape[i < 0 ? ndim + i : i]; }
  std::string shape_string() const;  // "(2, 3, 4)"

  float* f32() const { return static_cast<float*>(data); }
  uint16_t* u16() const { return static_cast<uint16_t*>(data); }  // bf16 or f16 bits
};

// Validation used by every op at its entry. `op` and `name` appear in the message.
void expect_dtype(const Tensor& t, DType dtype, const char* op, const char* name);
void expect_contiguous(const Tensor& t, const char* op, const char* name);
// Shape check; a dimension given as -1 matches anything.
void expect_shape(const Tensor& t, std::initializer_list<int64_t> shape, const char* op,
                  const char* name);
// The common case: contiguous fp32 of exactly this shape.
void expect_f32(const Tensor& t, std::initializer_list<int64_t> shape, const char* op,
                const char* name);
// fp32 (R,T,H,D) of this shape whose H x D values at each (row, position) are packed, while rows
// and positions may have any non-negative strides: q, k or v viewed in place in a fused
// projection's output (nn::head_views). Decoding's ops take these; the others want contiguous.
void expect_f32_heads(const Tensor& t, std::initializer_list<int64_t> shape, const char* op,
                      const char* name);

}  // namespace s2s
