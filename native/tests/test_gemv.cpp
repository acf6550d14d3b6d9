// The small-M product (s2s/gemv.h) on every ISA path this CPU runs, at 1 and 2 threads: both
// weight layouts, f32, bf16 and f16 weights, M = 1..8, N and K with SIMD tails, padded strides,
// with and without bias, against the double reference; bit-determinism; argument errors; f16:
// NaN / inf / out-of-range x and NaN / inf W against the reference and linear's f16 reference.
// Tolerance unit: max |ours - ref| / max(1, |ref|); fp32 sums of K terms of size ~1 round to
// ~6e-8 * sqrt(K), so 1e-6 * sqrt(K) + 1e-6 as in test_gemm.
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "harness.h"
#include "ops_test_util.h"
#include "s2s/dtype.h"
#include "s2s/error.h"
#include "s2s/gemv.h"
#include "s2s/ops/linear.h"

using namespace s2s;

namespace {

struct Problem {
  bool out_in;
  int64_t M, N, K, ldx, ldw, ldy;
  std::vector<float> x, W, bias;
  std::vector<uint16_t> W16;  // W as bf16
  std::vector<uint16_t> Wh;   // W as f16
};

const char* dtype_tag(DType wt) {
  return wt == DType::BF16 ? " bf16" : wt == DType::F16 ? " f16" : " f32";
}

Problem make(bool out_in, int64_t M, int64_t N, int64_t K, int pad, uint64_t seed) {
  Problem p{out_in, M, N, K, K + pad, (out_in ? K : N) + pad, N + pad, {}, {}, {}, {}, {}};
  p.x = s2s_test::random_vector(size_t(M * p.ldx), seed);
  const int64_t wrows = out_in ? N : K;
  p.W = s2s_test::random_vector(size_t(wrows * p.ldw), seed + 1);
  p.W16.resize(p.W.size());
  p.Wh.resize(p.W.size());
  for (size_t i = 0; i < p.W.size(); ++i) {
    p.W16[i] = f32_to_bf16(p.W[i]);
    p.Wh[i] = f32_to_f16(p.W[i]);
  }
  p.bias = s2s_test::random_vector(size_t(N), seed + 2);
  return p;
}

// Runs one problem through gemv_f32 / gemv_bf16 / gemv_f16 and the reference; returns the
// error and whether y's padding survived.
double run(const Problem& p, DType wt, bool with_bias, std::vector<float>* out = nullptr) {
  constexpr float kSentinel = 777.f;
  std::vector<float> y(size_t(p.M * p.ldy), kSentinel), ref(y.size(), kSentinel);
  const float* b = with_bias ? p.bias.data() : nullptr;
  const void* W = wt == DType::BF16 ? static_cast<const void*>(p.W16.data())
                  : wt == DType::F16 ? static_cast<const void*>(p.Wh.data())
                                     : static_cast<const void*>(p.W.data());
  if (wt == DType::BF16) {
    gemv_bf16(p.out_in, p.M, p.N, p.K, p.x.data(), p.ldx, p.W16.data(), p.ldw, b, y.data(), p.ldy);
  } else if (wt == DType::F16) {
    gemv_f16(p.out_in, p.M, p.N, p.K, p.x.data(), p.ldx, p.Wh.data(), p.ldw, b, y.data(), p.ldy);
  } else {
    gemv_f32(p.out_in, p.M, p.N, p.K, p.x.data(), p.ldx, p.W.data(), p.ldw, b, y.data(), p.ldy);
  }
  gemv_reference(p.out_in, wt, p.M, p.N, p.K, p.x.data(), p.ldx, W, p.ldw, b, ref.data(), p.ldy);
  for (int64_t m = 0; m < p.M; ++m)
    for (int64_t n = p.N; n < p.ldy; ++n)
      if (y[size_t(m * p.ldy + n)] != kSentinel) return 1e30;  // wrote outside y
  if (out) *out = y;
  return s2s_test::max_normalized_error(y.data(), ref.data(), y.size());
}

}  // namespace

TEST(gemv_matches_reference_on_every_isa) {
  const int64_t shapes[][2] = {{1, 1}, {7, 5}, {16, 16}, {33, 47}, {130, 64}, {257, 96}, {96, 300}};
  for (int threads : {1, 2}) {
    opt::Threads guard(threads);
    opt::for_each_isa([&](Isa isa) {
      for (bool out_in : {true, false}) {
        for (const auto& s : shapes) {
          for (int64_t M = 1; M <= kGemvMaxRows; ++M) {
            const Problem p = make(out_in, M, s[0], s[1], (M & 1) ? 0 : 3, uint64_t(M * 1000 + s[0]));
            for (DType wt : {DType::F32, DType::BF16, DType::F16}) {
              for (bool bias : {false, true}) {
                const double err = run(p, wt, bias);
                const std::string what = opt::where(isa, out_in ? "out_in" : "in_out", long(M), long(s[0])) +
                                         " K " + std::to_string(s[1]) + dtype_tag(wt) +
                                         (bias ? " bias" : "") + " threads " + std::to_string(threads);
                CHECK_ERR(err, 1e-6 * std::sqrt(double(s[1])) + 1e-6, what);
              }
            }
          }
        }
      }
    });
  }
}

TEST(gemv_large_layers_split_across_threads_bit_identically) {
  // Big enough for the 256 KB-per-chunk split to use both threads.
  for (bool out_in : {true, false}) {
    const Problem p = make(out_in, 3, 2304, 768, 0, 99);
    for (DType wt : {DType::F32, DType::BF16, DType::F16}) {
      std::vector<float> a, b, c;
      {
        opt::Threads guard(2);
        CHECK_ERR(run(p, wt, true, &a), 1e-6 * std::sqrt(768.0) + 1e-6,
                  std::string("2 threads") + dtype_tag(wt));
        run(p, wt, true, &b);
      }
      {
        opt::Threads guard(1);
        run(p, wt, true, &c);
      }
      CHECK_MSG(opt::bit_equal(a, b), "gemv is not bit-deterministic run to run");
      // Each output is computed the same way whichever thread owns it.
      CHECK_MSG(opt::bit_equal(a, c), "gemv differs between 1 and 2 threads");
    }
  }
}

namespace {
// Same value, or both NaN (a NaN's sign and payload are not specified through a sum).
bool same_or_both_nan(float a, float b) {
  return (std::isnan(a) && std::isnan(b)) || a == b;
}
}  // namespace

// fp16's edges with an f16 W, every ISA, both layouts, M = 1..8: x entries of NaN, +-inf, 65520
// (rounds to inf in fp16), -1e6 (overflows to -inf), 65504 (fp16's max, stays), 1e-8 (rounds
// to a subnormal... or zero); W entries of inf, quiet and signalling NaN bits (0x7e00, 0x7c01)
// and subnormals. Each output is compared with the double reference and with linear's f16
// reference (linear_forward_reference, which the few-row linear must equal): the same
// infinities, NaN exactly where the reference has NaN, finite values within tolerance.
TEST(gemv_f16_special_values_match_the_linear_reference) {
  const float kSpecial[] = {NAN, INFINITY, -INFINITY, 65520.f, -1e6f, 65504.f, 1e-8f, -3e-7f};
  const uint16_t kSpecialW[] = {0x7c00, 0xfc00, 0x7e00, 0x7c01, 0x0001, 0x83ff};
  opt::for_each_isa([&](Isa isa) {
    for (bool out_in : {true, false}) {
      for (int64_t M = 1; M <= kGemvMaxRows; ++M) {
        const int64_t N = 37, K = 53;  // SIMD tails on every path
        Problem p = make(out_in, M, N, K, 0, uint64_t(500 + M));
        // A few special x entries per row and special W entries in a few outputs, so most
        // outputs stay finite and are still checked numerically.
        for (int64_t m = 0; m < M; ++m) {
          if (m % 3 == 2) continue;  // some rows have no special x at all
          const float v = kSpecial[size_t(m) % 8];
          p.x[size_t(m * p.ldx + (7 * m + 3) % K)] = v;
        }
        for (size_t j = 0; j < 6; ++j) {
          const int64_t n = int64_t(5 * j + 1), k = int64_t(11 * j + 2) % K;
          p.Wh[size_t(out_in ? n * p.ldw + k : k * p.ldw + n)] = kSpecialW[j];
        }
        std::vector<float> y(size_t(M * N)), ref(y.size()), lin(y.size());
        gemv_f16(out_in, M, N, K, p.x.data(), p.ldx, p.Wh.data(), p.ldw, p.bias.data(), y.data(), N);
        gemv_reference(out_in, DType::F16, M, N, K, p.x.data(), p.ldx, p.Wh.data(), p.ldw,
                       p.bias.data(), ref.data(), N);
        const WeightLayout layout = out_in ? WeightLayout::OutIn : WeightLayout::InOut;
        const Tensor W = opt::view16(p.Wh, DType::F16, {out_in ? N : K, out_in ? K : N});
        std::vector<float> b = p.bias;
        linear_forward_reference(opt::view(lin, {M, N}), opt::view(p.x, {M, K}), W,
                                 opt::view(b, {N}), layout);
        // The few-row linear itself (gemv_f16 since N <= kGemvMaxRows).
        std::vector<float> fwd(y.size());
        linear_forward(opt::view(fwd, {M, N}), opt::view(p.x, {M, K}), W, opt::view(b, {N}), layout);
        int nonfinite = 0;
        for (size_t i = 0; i < y.size(); ++i) {
          const std::string what = opt::where(isa, out_in ? "f16 out_in" : "f16 in_out", long(M),
                                              long(i));
          CHECK_MSG(same_or_both_nan(ref[i], lin[i]), what + ": gemv_reference vs linear reference");
          CHECK_MSG(same_or_both_nan(y[i], fwd[i]),
                    what + ": linear_forward vs gemv_f16");
          if (!std::isfinite(ref[i])) {
            ++nonfinite;
            CHECK_MSG(same_or_both_nan(y[i], ref[i]),
                      what + ": got " + std::to_string(y[i]) + ", expected " + std::to_string(ref[i]));
          } else {
            const double err = std::fabs(double(y[i]) - ref[i]) / std::max(1.0, std::fabs(double(ref[i])));
            CHECK_ERR(err, 1e-6 * std::sqrt(double(K)) + 1e-6, what);
          }
        }
        CHECK_MSG(nonfinite > 0, "the special values made no output non-finite");
      }
    }
  });
}

// A signalling fp16 NaN in W (0x7c01) reaches y as that NaN quieted, payload kept (0x7fc02000),
// on every path: the AVX kernels widen W with vcvtph2ps, which quiets it right away, the scalar
// one exactly (f16_to_f32) and its product quiets it; the same bits either way.
TEST(gemv_f16_signalling_nan_in_w_gives_the_same_bits_on_every_isa) {
  opt::for_each_isa([&](Isa isa) {
    for (bool out_in : {true, false}) {
      const int64_t N = 40, K = 70;
      Problem p = make(out_in, 1, N, K, 0, 31);
      for (float& v : p.x) v = std::fabs(v) + 0.5f;
      const int64_t n = 17, k = 33;
      p.Wh[size_t(out_in ? n * p.ldw + k : k * p.ldw + n)] = 0x7c01;
      std::vector<float> y(static_cast<size_t>(N));
      gemv_f16(out_in, 1, N, K, p.x.data(), p.ldx, p.Wh.data(), p.ldw, p.bias.data(), y.data(), N);
      uint32_t bits;
      std::memcpy(&bits, &y[size_t(n)], 4);
      CHECK_MSG(bits == 0x7fc02000u, opt::where(isa, out_in ? "sNaN out_in" : "sNaN in_out") +
                                         ": got bits " + std::to_string(bits));
      for (int64_t j = 0; j < N; ++j) CHECK(j == n || std::isfinite(y[size_t(j)]));
    }
  });
}

TEST(gemv_rejects_bad_arguments) {
  std::vector<float> x(64), W(64), y(64);
  CHECK_THROWS_CODE(gemv_f32(true, kGemvMaxRows + 1, 1, 1, x.data(), 1, W.data(), 1, nullptr,
                             y.data(), 1),
                    code::kArgument);
  CHECK_THROWS_CODE(gemv_f32(true, 1, 4, 8, x.data(), 4, W.data(), 8, nullptr, y.data(), 4),
                    code::kArgument);  // ldx < K
  CHECK_THROWS_CODE(gemv_f32(false, 1, 4, 8, x.data(), 8, W.data(), 3, nullptr, y.data(), 4),
                    code::kArgument);  // in_out: ldw < N
  std::vector<uint16_t> Wh(64);
  CHECK_THROWS_CODE(gemv_f16(true, 1, 4, 8, x.data(), 4, Wh.data(), 8, nullptr, y.data(), 4),
                    code::kArgument);  // ldx < K
}
