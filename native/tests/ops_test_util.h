// Helpers shared by the op tests (test_ops_*.cpp): tensor views over std::vector, the
// sum(out * g) loss used for gradient checks, bit comparison, and guards that set and restore
// the thread count and the instruction-set path.
#pragma once
#include <algorithm>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <limits>
#include <vector>

#include "harness.h"
#include "s2s/cpu_features.h"
#include "s2s/tensor.h"
#include "s2s/thread_pool.h"

namespace opt {

inline s2s::Tensor view(std::vector<float>& v, std::initializer_list<int64_t> shape) {
  return s2s::Tensor::contiguous(v.data(), s2s::DType::F32, shape);
}
inline s2s::Tensor view16(std::vector<uint16_t>& v, s2s::DType dt,
                          std::initializer_list<int64_t> shape) {
  return s2s::Tensor::contiguous(v.data(), dt, shape);
}
// A tensor with data == nullptr: "not given" / "gradient not needed".
inline s2s::Tensor none() { return s2s::Tensor{}; }

// sum_i out[i] * g[i] in double.
inline double dot(const std::vector<float>& out, const std::vector<float>& g) {
  double s = 0;
  for (size_t i = 0; i < out.size(); ++i) s += double(out[i]) * g[i];
  return s;
}

inline bool bit_equal(const std::vector<float>& a, const std::vector<float>& b) {
  // memcmp may not be handed an empty vector's null data, even for 0 bytes (UBSan reports it).
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// Equal as numbers (-0 == +0): what a backward op overwriting a fresh gradient must give against
// the same op accumulating into a zeroed one (0 + -0 is +0 there).
inline bool same_values(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!(a[i] == b[i])) return false;
  }
  return true;
}
// A fresh gradient's contents: NaN, so an op that reads it instead of overwriting it shows.
inline std::vector<float> garbage(size_t n) {
  return std::vector<float>(n, std::numeric_limits<float>::quiet_NaN());
}
inline std::vector<float> scaled(const std::vector<float>& v, float s) {
  std::vector<float> o(v);
  for (auto& x : o) x *= s;
  return o;
}

// Rows of `cols` elements laid `ld` apart (an op's padded-row view, opu::row_stride), the pads
// holding `pad`; and back.
template <typename T>
std::vector<T> padded_rows(const std::vector<T>& v, int64_t rows, int64_t cols, int64_t ld,
                           T pad) {
  std::vector<T> out(static_cast<size_t>(rows * ld), pad);
  for (int64_t r = 0; r < rows; ++r) {
    std::copy(v.begin() + r * cols, v.begin() + (r + 1) * cols, out.begin() + r * ld);
  }
  return out;
}
template <typename T>
std::vector<T> unpadded_rows(const std::vector<T>& v, int64_t rows, int64_t cols, int64_t ld) {
  std::vector<T> out(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    std::copy(v.begin() + r * ld, v.begin() + r * ld + cols, out.begin() + r * cols);
  }
  return out;
}
// Whether every pad (columns cols..ld of each row) still holds exactly `pad`'s bits.
template <typename T>
bool pads_untouched(const std::vector<T>& v, int64_t rows, int64_t cols, int64_t ld, T pad) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = cols; c < ld; ++c) {
      if (std::memcmp(&v[size_t(r * ld + c)], &pad, sizeof(T)) != 0) return false;
    }
  }
  return true;
}
// A (rows, cols) view of `data` whose rows are ld elements apart.
inline s2s::Tensor padded_view(void* data, s2s::DType dt, int64_t rows, int64_t cols,
                               int64_t ld) {
  s2s::Tensor t = s2s::Tensor::contiguous(data, dt, {rows, cols});
  t.strides[0] = ld;
  return t;
}

struct Threads {
  explicit Threads(int n) { s2s::set_num_threads(n); }
  ~Threads() { s2s::set_num_threads(2); }
};

// Runs fn once per instruction-set path this machine supports, then restores the best one.
inline void for_each_isa(const std::function<void(s2s::Isa)>& fn) {
  for (s2s::Isa isa : s2s::supported_isas()) {
    s2s::set_isa(isa);
    fn(isa);
  }
  s2s::set_isa(s2s::best_isa());
}

inline std::string where(s2s::Isa isa, const char* what, long a = -1, long b = -1) {
  std::string s = std::string(what) + " [" + s2s::isa_name(isa) + "]";
  if (a >= 0) s += " " + std::to_string(a);
  if (b >= 0) s += "x" + std::to_string(b);
  return s;
}

}  // namespace opt
