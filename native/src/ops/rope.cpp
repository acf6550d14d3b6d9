// rope: rotary position embedding (rotate-half layout), forward and backward side by side, then
// the reference loops. Legend: B batch, T time, H heads, D head dim, D/2 pairs (i, i + D/2).
// Napkin: 6 flops per pair and per head, plus D/2 cos+sin per token shared by all heads: bound by
// reading and writing x (8 bytes per element).
#include "s2s/ops/rope.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "ops/op_util.h"
#include "s2s/thread_pool.h"

namespace s2s {

namespace {

constexpr const char* kOp = "rope";
constexpr int32_t kMaxPosition = 1 << 24;  // positions are exact in fp32 below this

struct Dims { int64_t B, T, H, D; };

Dims check(const Tensor& x, const char* name, const int32_t* positions, int64_t num_positions,
           float theta) {
  expect_f32(x, {-1, -1, -1, -1}, kOp, name);
  Dims d{x.shape[0], x.shape[1], x.shape[2], x.shape[3]};
  S2S_REQUIRE(d.D >= 2 && d.D % 2 == 0, code::kShape, kOp, "expected an even head dim, got ",
              name, " of shape ", x.shape_string());
  S2S_REQUIRE(std::isfinite(theta) && theta > 0.f, code::kArgument, kOp,
              "expected theta > 0 and finite, got ", theta);
  const int64_t want = positions != nullptr ? d.B * d.T : 0;
  S2S_REQUIRE(num_positions == want, code::kShape, kOp, "expected ", want,
              positions != nullptr ? " positions (B*T)" : " positions (no positions pointer)",
              ", got ", num_positions);
  if (positions != nullptr) {
    for (int64_t n = 0; n < d.B * d.T; ++n) {
      S2S_REQUIRE(positions[n] >= 0 && positions[n] < kMaxPosition, code::kArgument, kOp,
                  "expected positions[", n / d.T, ", ", n % d.T, "] in [0, ", kMaxPosition,
                  "), got ", positions[n]);
    }
  }
  return d;
}

inline int32_t position_of(const int32_t* positions, const Dims& d, int64_t row) {
  return positions != nullptr ? positions[row] : static_cast<int32_t>(row % d.T);
}

// cos/sin (D/2) of the fp32 angles pos * inv_freq for one token.
void angles(const float* inv_freq, int64_t half, int32_t pos, float* c, float* s) {
  const float p = static_cast<float>(pos);
  for (int64_t i = 0; i < half; ++i) {
    const float a = p * inv_freq[i];  // fp32 product, as transformers
    c[i] = static_cast<float>(std::cos(static_cast<double>(a)));
    s[i] = static_cast<float>(std::sin(static_cast<double>(a)));
  }
}

// Applies the rotation (sign = +1) or its inverse (sign = -1) to every token row and head.
// accumulate: dst += R x instead of dst = R x.
// dst (f32; accumulated into or written) or dst16 (bf16, written: the f32 values rounded).
void rotate(float* dst, uint16_t* dst16, const float* src, const Dims& d,
            const int32_t* positions, float theta, float sign, bool accumulate) {
  const int64_t half = d.D / 2;
  std::vector<float> inv_freq(half);
  rope_inv_freq(inv_freq.data(), d.D, theta);
  const int64_t rows = d.B * d.T;
  const int64_t grain = std::max<int64_t>(1, 16384 / (d.H * d.D + half * 8));
  parallel_for(rows, grain, [&](int64_t r0, int64_t r1) {
    std::vector<float> c(half), s(half);
    for (int64_t row = r0; row < r1; ++row) {
      angles(inv_freq.data(), half, position_of(positions, d, row), c.data(), s.data());
      if (sign < 0) for (int64_t i = 0; i < half; ++i) s[i] = -s[i];
      for (int64_t h = 0; h < d.H; ++h) {
        const float* x = src + (row * d.H + h) * d.D;
        if (dst16 != nullptr) {
          uint16_t* y = dst16 + (row * d.H + h) * d.D;
          for (int64_t i = 0; i < half; ++i) {
            const float x1 = x[i], x2 = x[i + half];
            y[i] = opu::bf16_rne(x1 * c[i] - x2 * s[i]);
            y[i + half] = opu::bf16_rne(x2 * c[i] + x1 * s[i]);
          }
          continue;
        }
        float* y = dst + (row * d.H + h) * d.D;
        for (int64_t i = 0; i < half; ++i) {
          // Read both halves before writing either: dst may be src (in place).
          const float x1 = x[i], x2 = x[i + half];
          const float y1 = x1 * c[i] - x2 * s[i];
          const float y2 = x2 * c[i] + x1 * s[i];
          if (accumulate) {
            y[i] += y1;
            y[i + half] += y2;
          } else {
            y[i] = y1;
            y[i + half] = y2;
          }
        }
      }
    }
  });
}

}  // namespace

void rope_inv_freq(float* inv_freq, int64_t D, float theta) {
  for (int64_t i = 0; i < D / 2; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(D);
    inv_freq[i] = 1.0f / std::pow(theta, exponent);
  }
}

// ---------------------------------------------------------------------------------------------
// forward: y1 = x1 cos - x2 sin,  y2 = x2 cos + x1 sin   (pairs (i, i + D/2))
void rope_forward(const Tensor& out, const Tensor& inp, const int32_t* positions,
                  int64_t num_positions, float theta) {
  const Dims d = check(inp, "inp", positions, num_positions, theta);
  expect_f32(out, {d.B, d.T, d.H, d.D}, kOp, "out");
  rotate(out.f32(), nullptr, inp.f32(), d, positions, theta, 1.f, false);
}

// backward: the transpose of a rotation is the rotation by -angle:
//   dx1 += dy1 cos + dy2 sin,  dx2 += dy2 cos - dy1 sin   (= with overwrite)
void rope_backward(const Tensor& dinp, const Tensor& dout, const int32_t* positions,
                   int64_t num_positions, float theta, bool overwrite) {
  const Dims d = check(dout, "dout", positions, num_positions, theta);
  if (dinp.data == nullptr) return;
  const bool bf16 = opu::expect_grad_like(dinp, dout, overwrite, kOp, "dinp", "dout");
  S2S_REQUIRE(dinp.data != dout.data, code::kArgument, kOp,
              "expected dinp and dout to be different buffers, got the same one");
  rotate(bf16 ? nullptr : static_cast<float*>(dinp.data),
         bf16 ? static_cast<uint16_t*>(dinp.data) : nullptr, dout.f32(), d, positions, theta,
         -1.f, !overwrite);
}

// ---------------------------------------------------------------------------------------------
// reference: explicit cat(freqs, freqs) cos/sin vectors and rotate_half, in double.
namespace {
void reference(const Tensor& dst, const Tensor& src, const Dims& d, const int32_t* positions,
               float theta, bool inverse, bool accumulate) {
  std::vector<float> inv_freq(d.D / 2);
  rope_inv_freq(inv_freq.data(), d.D, theta);
  std::vector<double> cosv(d.D), sinv(d.D), rot(d.D), x(d.D);
  for (int64_t row = 0; row < d.B * d.T; ++row) {
    const float p = static_cast<float>(position_of(positions, d, row));
    for (int64_t e = 0; e < d.D; ++e) {
      const float a = p * inv_freq[e % (d.D / 2)];
      cosv[e] = std::cos(double(a));
      sinv[e] = std::sin(double(a));
    }
    for (int64_t h = 0; h < d.H; ++h) {
      const int64_t base = (row * d.H + h) * d.D;
      for (int64_t e = 0; e < d.D; ++e) x[e] = src.f32()[base + e];
      // rotate_half(x) = cat(-x2, x1); its transpose is cat(x2, -x1).
      for (int64_t e = 0; e < d.D / 2; ++e) {
        rot[e] = inverse ? x[e + d.D / 2] : -x[e + d.D / 2];
        rot[e + d.D / 2] = inverse ? -x[e] : x[e];
      }
      for (int64_t e = 0; e < d.D; ++e) {
        const double y = x[e] * cosv[e] + rot[e] * sinv[e];
        float& o = dst.f32()[base + e];
        o = static_cast<float>(accumulate ? double(o) + y : y);
      }
    }
  }
}
}  // namespace

void rope_forward_reference(const Tensor& out, const Tensor& inp, const int32_t* positions,
                            int64_t num_positions, float theta) {
  const Dims d = check(inp, "inp", positions, num_positions, theta);
  expect_f32(out, {d.B, d.T, d.H, d.D}, kOp, "out");
  reference(out, inp, d, positions, theta, false, false);
}

void rope_backward_reference(const Tensor& dinp, const Tensor& dout, const int32_t* positions,
                             int64_t num_positions, float theta) {
  const Dims d = check(dout, "dout", positions, num_positions, theta);
  if (dinp.data == nullptr) return;
  expect_f32(dinp, {d.B, d.T, d.H, d.D}, kOp, "dinp");
  reference(dinp, dout, d, positions, theta, true, true);
}

}  // namespace s2s
