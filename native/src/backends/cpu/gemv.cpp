// The small-M product driver (s2s/gemv.h): argument checks, bf16 / fp16 rounding of x, the fixed split
// of N over threads, ISA dispatch; then the portable scalar kernels and the double reference.
// Napkin (GPT-2 124M, one token): every weight is read once, ~500 MB in fp32 / ~250 MB in bf16,
// against 2 flops per weight: at 20 GB/s memory bandwidth that is 25 ms / 12.5 ms per token,
// far below what the FMA units could do, so the kernels are written to keep loads streaming.
#include <algorithm>
#include <cmath>
#include <vector>

#include "backends/cpu/gemv_internal.h"
#include "s2s/cpu_features.h"
#include "s2s/error.h"
#include "s2s/gemv.h"
#include "s2s/thread_pool.h"

namespace s2s {
namespace gemv_detail {

namespace {

// ---- portable kernels: plain loops the compiler vectorises for the baseline ISA ------------
template <typename WT>
inline float widen(WT w) { return static_cast<float>(w); }
template <>
inline float widen<uint16_t>(uint16_t w) { return bf16_to_f32(w); }
template <>
inline float widen<F16Bits>(F16Bits w) { return f16_to_f32(w.bits); }

template <typename WT>
void out_in_scalar(const Args& a, int64_t n0, int64_t n1) {
  const WT* W = static_cast<const WT*>(a.W);
  for (int64_t m = 0; m < a.M; ++m) {
    const float* x = a.x + m * a.ldx;
    for (int64_t n = n0; n < n1; ++n) {
      const WT* w = W + n * a.ldw;
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      int64_t k = 0;
      for (; k + 8 <= a.K; k += 8) {
        for (int u = 0; u < 8; ++u) acc[u] += widen(w[k + u]) * x[k + u];
      }
      for (; k < a.K; ++k) acc[k & 7] += widen(w[k]) * x[k];
      float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
      a.y[m * a.ldy + n] = s + (a.bias ? a.bias[n] : 0.0f);
    }
  }
}

template <typename WT>
void in_out_scalar(const Args& a, int64_t n0, int64_t n1) {
  const WT* W = static_cast<const WT*>(a.W);
  for (int64_t m = 0; m < a.M; ++m) {
    const float* x = a.x + m * a.ldx;
    float* y = a.y + m * a.ldy;
    for (int64_t n = n0; n < n1; ++n) y[n] = 0.0f;
    for (int64_t k = 0; k < a.K; ++k) {
      const WT* w = W + k * a.ldw;
      const float xk = x[k];
      for (int64_t n = n0; n < n1; ++n) y[n] += xk * widen(w[n]);
    }
    if (a.bias) {
      for (int64_t n = n0; n < n1; ++n) y[n] += a.bias[n];
    }
  }
}

}  // namespace

const Kernels& scalar_kernels() {
  static const Kernels k{"scalar f32", "scalar bf16 (widened)", "scalar f16 (widened)",
                         out_in_scalar<float>, in_out_scalar<float>,
                         out_in_scalar<uint16_t>, in_out_scalar<uint16_t>,
                         out_in_scalar<F16Bits>, in_out_scalar<F16Bits>, 8, 64};
  return k;
}

namespace {

const Kernels& active_kernels() {
#if defined(S2S_HAVE_X86_KERNELS)
  switch (active_isa()) {
    case Isa::Avx512Bf16: return avx512bf16_kernels();
    case Isa::Avx512: return avx512_kernels();
    case Isa::Avx2: return avx2_kernels();
    default: break;
  }
#endif
  return scalar_kernels();
}

void check(int64_t M, int64_t N, int64_t K, const void* x, int64_t ldx, const void* W,
           int64_t ldw, bool out_in, const float* y, int64_t ldy) {
  constexpr const char* op = "gemv";
  S2S_REQUIRE(M >= 0 && M <= kGemvMaxRows, code::kArgument, op, "expected 0 <= M <= ",
              kGemvMaxRows, ", got M = ", M);
  S2S_REQUIRE(N >= 0 && K >= 0, code::kArgument, op, "expected N, K >= 0, got N = ", N,
              ", K = ", K);
  S2S_REQUIRE(ldx >= K && ldy >= N && ldw >= (out_in ? K : N), code::kArgument, op,
              "expected ldx >= K, ldy >= N and ldw >= ", out_in ? "K" : "N", ", got ldx = ", ldx,
              ", ldy = ", ldy, ", ldw = ", ldw);
  S2S_REQUIRE(M == 0 || N == 0 || (x != nullptr && W != nullptr && y != nullptr),
              code::kArgument, op, "expected non-null x, W and y");
}

// Runs `fn` over N in blocks of `block` outputs, each chunk worth at least ~256 KB of W so that
// a tiny layer stays on one thread.
void split(const Args& a, int64_t N, int64_t block, int64_t bytes_per_output, KernelFn fn) {
  const int64_t blocks = (N + block - 1) / block;
  const int64_t block_bytes = std::max<int64_t>(1, block * bytes_per_output);
  const int64_t grain = std::max<int64_t>(1, (int64_t(256) << 10) / block_bytes);
  parallel_for(blocks, grain, [&](int64_t b0, int64_t b1) {
    fn(a, b0 * block, std::min(N, b1 * block));
  });
}

}  // namespace
}  // namespace gemv_detail

using namespace gemv_detail;

void gemv_f32(bool out_in, int64_t M, int64_t N, int64_t K, const float* x, int64_t ldx,
              const float* W, int64_t ldw, const float* bias, float* y, int64_t ldy) {
  check(M, N, K, x, ldx, W, ldw, out_in, y, ldy);
  if (M == 0 || N == 0) return;
  const Kernels& k = active_kernels();
  const Args a{M, K, x, nullptr, ldx, W, ldw, bias, y, ldy};
  split(a, N, out_in ? k.block_out_in : k.block_in_out, K * 4,
        out_in ? k.f32_out_in : k.f32_in_out);
}

namespace {
// x rounded to a 16-bit format once (bf16 or fp16, exactly as f32_to_bf16 / f32_to_f16) and
// widened back, the form the widening kernels read; `bits` also gets the rounded bits (the
// vdpbf16ps kernel reads those). Thread-local scratch that only grows: after the first call
// of a given size, decoding allocates nothing here.
struct RoundedX {
  const float* values;
  const uint16_t* bits;
};
RoundedX round_x(DType to, int64_t M, int64_t K, const float* x, int64_t ldx) {
  thread_local std::vector<float> xr;
  thread_local std::vector<uint16_t> xb;
  if (xr.size() < size_t(M * K)) {
    xr.resize(size_t(M * K));
    xb.resize(size_t(M * K) + 32);  // kernels may read a masked-off tail past K
  }
  const bool bf16 = to == DType::BF16;
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t i = 0; i < K; ++i) {
      const float v = x[m * ldx + i];
      const uint16_t h = bf16 ? f32_to_bf16(v) : f32_to_f16(v);
      xb[size_t(m * K + i)] = h;
      xr[size_t(m * K + i)] = bf16 ? bf16_to_f32(h) : f16_to_f32(h);
    }
  }
  return {xr.data(), xb.data()};
}
}  // namespace

void gemv_bf16(bool out_in, int64_t M, int64_t N, int64_t K, const float* x, int64_t ldx,
               const uint16_t* W, int64_t ldw, const float* bias, float* y, int64_t ldy) {
  check(M, N, K, x, ldx, W, ldw, out_in, y, ldy);
  if (M == 0 || N == 0) return;
  const RoundedX xr = round_x(DType::BF16, M, K, x, ldx);
  const Kernels& k = active_kernels();
  const Args a{M, K, xr.values, xr.bits, K, W, ldw, bias, y, ldy};
  split(a, N, out_in ? k.block_out_in : k.block_in_out, K * 2,
        out_in ? k.bf16_out_in : k.bf16_in_out);
}

void gemv_f16(bool out_in, int64_t M, int64_t N, int64_t K, const float* x, int64_t ldx,
              const uint16_t* W, int64_t ldw, const float* bias, float* y, int64_t ldy) {
  check(M, N, K, x, ldx, W, ldw, out_in, y, ldy);
  if (M == 0 || N == 0) return;
  // x is rounded in scalar code (f32_to_f16 itself): M*K values against the N*K weights read.
  const RoundedX xr = round_x(DType::F16, M, K, x, ldx);
  const Kernels& k = active_kernels();
  const Args a{M, K, xr.values, nullptr, K, W, ldw, bias, y, ldy};
  split(a, N, out_in ? k.block_out_in : k.block_in_out, K * 2,
        out_in ? k.f16_out_in : k.f16_in_out);
}

void gemv_reference(bool out_in, DType w_dtype, int64_t M, int64_t N, int64_t K, const float* x,
                    int64_t ldx, const void* W, int64_t ldw, const float* bias, float* y,
                    int64_t ldy) {
  // W widened and x rounded to W's format, as the kernels multiply them.
  const auto w_at = [&](int64_t i) -> double {
    switch (w_dtype) {
      case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(W)[i]);
      case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(W)[i]);
      default: return static_cast<const float*>(W)[i];
    }
  };
  const auto x_as = [&](float v) -> double {
    switch (w_dtype) {
      case DType::BF16: return bf16_to_f32(f32_to_bf16(v));
      case DType::F16: return f16_to_f32(f32_to_f16(v));
      default: return v;
    }
  };
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) {
      double s = bias ? bias[n] : 0.0;
      for (int64_t k = 0; k < K; ++k) {
        const int64_t wi = out_in ? n * ldw + k : k * ldw + n;
        s += w_at(wi) * x_as(x[m * ldx + k]);
      }
      y[m * ldy + n] = static_cast<float>(s);
    }
  }
}

const char* gemv_kernel_name(DType w_dtype) {
  const Kernels& k = active_kernels();
  switch (w_dtype) {
    case DType::BF16: return k.name_bf16;
    case DType::F16: return k.name_f16;
    default: return k.name_f32;
  }
}

}  // namespace s2s
