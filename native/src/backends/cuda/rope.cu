// rope on CUDA (s2s/ops/rope.h semantics): one thread per (token, head, rotation pair). The
// angle is the fp32 product pos * inv_freq[i] (inv_freq from the CPU's rope_inv_freq), cos/sin
// are taken in double and rounded, and the rotation is written with explicit fp32 roundings
// (no fused multiply-add), as the CPU loop computes it. Positions outside [0, 2^24) are reported
// through Context::synchronize(). Legend: B batch, T time, H heads, D head dim (even).
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "backends/cuda/check.cuh"
#include "backends/cuda/cuda_ops.h"
#include "ops/op_util.h"
#include "s2s/ops/rope.h"

namespace s2s {
namespace cuda {

namespace {
constexpr const char* kOp = "rope";
constexpr int32_t kMaxPosition = 1 << 24;

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
  return d;
}

// dst (=, or += when accumulate, f32 only) R(sign * angle) src for every token, head and pair.
void rotate(Context& ctx, ActivationOut dst, const float* src, const Dims& d,
            const int32_t* positions, float theta, float sign, bool accumulate) {
  const int64_t half = d.D / 2, n = d.B * d.T * d.H * half;
  if (n == 0) return;
  // The frequencies depend on D and theta only: uploaded once per context, not per call.
  std::string key = "rope_inv_freq " + std::to_string(d.D) + " ";
  uint32_t theta_bits = 0;
  std::memcpy(&theta_bits, &theta, sizeof(theta_bits));
  key += std::to_string(theta_bits);
  const int64_t T = d.T, H = d.H, D = d.D;
  const float* inv_freq = ctx.constant_table(key, [half, D, theta] {
    std::vector<float> host(static_cast<size_t>(half));
    rope_inv_freq(host.data(), D, theta);
    return host;
  });
  unsigned long long* err = ctx.error_slot();
  for_each(ctx, n, kOp, [=] __device__(int64_t e) {
    const int64_t i = e % half, head_row = e / half;  // head_row = (b*T + t)*H + h
    const int64_t row = head_row / H;                 // b*T + t
    int32_t pos = positions != nullptr ? positions[row] : int32_t(row % T);
    if (pos < 0 || pos >= kMaxPosition) {
      if (i == 0 && head_row % H == 0) report_bad_input(err, KernelReport::RopePosition, row, pos, kMaxPosition);
      pos = 0;
    }
    const float a = __fmul_rn(static_cast<float>(pos), inv_freq[i]);
    const float c = static_cast<float>(cos(static_cast<double>(a)));
    const float s = sign * static_cast<float>(sin(static_cast<double>(a)));
    const float* x = src + head_row * D;
    const float x1 = x[i], x2 = x[i + half];
    const float y1 = __fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, s));
    const float y2 = __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, s));
    if (accumulate) {
      float* y = static_cast<float*>(dst.data) + head_row * D;
      y[i] += y1;
      y[i + half] += y2;
    } else {
      dst.store(head_row * D + i, y1);
      dst.store(head_row * D + i + half, y2);
    }
  });
}
}  // namespace

void rope_forward(Context& ctx, const Tensor& out, const Tensor& inp, const int32_t* positions,
                  int64_t num_positions, float theta) {
  const Dims d = check(inp, "inp", positions, num_positions, theta);
  // f32, or bf16/f16 for the tensor-core attention that alone reads it (nn::attention_input_dtype)
  const ActivationOut y = activation_out(out, inp, kOp);
  rotate(ctx, y, inp.f32(), d, positions, theta, 1.f, false);
}

void rope_backward(Context& ctx, const Tensor& dinp, const Tensor& dout,
                   const int32_t* positions, int64_t num_positions, float theta, bool overwrite) {
  const Dims d = check(dout, "dout", positions, num_positions, theta);
  if (dinp.data == nullptr) return;
  // bf16 only when overwritten: the f32 values rounded, for a bias-less bf16 q/k projection.
  const bool bf16 = opu::expect_grad_like(dinp, dout, overwrite, kOp, "dinp", "dout");
  S2S_REQUIRE(dinp.data != dout.data, code::kArgument, kOp,
              "expected dinp and dout to be different buffers, got the same one");
  rotate(ctx, ActivationOut{dinp.data, bf16 ? DType::BF16 : DType::F32}, dout.f32(), d,
         positions, theta, -1.f, !overwrite);
}

}  // namespace cuda
}  // namespace s2s
