// The small-M product (s2s/gemv.h) on every ISA path this CPU runs, at 1 and 2 threads: both
// weight layouts, f32 and bf16 weights, M = 1..8, N and K with SIMD tails, padded strides,
// with and without bias, against the double reference; bit-determinism; argument errors.
// Tolerance unit: max |ours - ref| / max(1, |ref|); fp32 sums of K terms of size ~1 round to
// ~6e-8 * sqrt(K), so 1e-6 * sqrt(K) + 1e-6 as in test_gemm.
#include <cmath>
#include <string>
#include <vector>

#include "harness.h"
#include "ops_test_util.h"
#include "s2s/dtype.h"
#include "s2s/error.h"
#include "s2s/gemv.h"

using namespace s2s;

namespace {

struct Problem {
  bool out_in;
  int64_t M, N, K, ldx, ldw, ldy;
  std::vector<float> x, W, bias;
  std::vector<uint16_t> W16;
};

Problem make(bool out_in, int64_t M, int64_t N, int64_t K, int pad, uint64_t seed) {
  Problem p{out_in, M, N, K, K + pad, (out_in ? K : N) + pad, N + pad, {}, {}, {}, {}};
  p.x = s2s_test::random_vector(size_t(M * p.ldx), seed);
  const int64_t wrows = out_in ? N : K;
  p.W = s2s_test::random_vector(size_t(wrows * p.ldw), seed + 1);
  p.W16.resize(p.W.size());
  for (size_t i = 0; i < p.W.size(); ++i) p.W16[i] = f32_to_bf16(p.W[i]);
  p.bias = s2s_test::random_vector(size_t(N), seed + 2);
  return p;
}

// Runs one problem through gemv_f32 / gemv_bf16 and the reference; returns the error and
// whether y's padding survived.
double run(const Problem& p, bool bf16, bool with_bias, std::vector<float>* out = nullptr) {
  constexpr float kSentinel = 777.f;
  std::vector<float> y(size_t(p.M * p.ldy), kSentinel), ref(y.size(), kSentinel);
  const float* b = with_bias ? p.bias.data() : nullptr;
  if (bf16) {
    gemv_bf16(p.out_in, p.M, p.N, p.K, p.x.data(), p.ldx, p.W16.data(), p.ldw, b, y.data(), p.ldy);
    gemv_reference(p.out_in, DType::BF16, p.M, p.N, p.K, p.x.data(), p.ldx, p.W16.data(), p.ldw,
                   b, ref.data(), p.ldy);
  } else {
    gemv_f32(p.out_in, p.M, p.N, p.K, p.x.data(), p.ldx, p.W.data(), p.ldw, b, y.data(), p.ldy);
    gemv_reference(p.out_in, DType::F32, p.M, p.N, p.K, p.x.data(), p.ldx, p.W.data(), p.ldw, b,
                   ref.data(), p.ldy);
  }
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
            for (bool bf16 : {false, true}) {
              for (bool bias : {false, true}) {
                const double err = run(p, bf16, bias);
                const std::string what = opt::where(isa, out_in ? "out_in" : "in_out", long(M), long(s[0])) +
                                         " K " + std::to_string(s[1]) + (bf16 ? " bf16" : " f32") +
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
    for (bool bf16 : {false, true}) {
      std::vector<float> a, b, c;
      {
        opt::Threads guard(2);
        CHECK_ERR(run(p, bf16, true, &a), 1e-6 * std::sqrt(768.0) + 1e-6, "2 threads");
        run(p, bf16, true, &b);
      }
      {
        opt::Threads guard(1);
        run(p, bf16, true, &c);
      }
      CHECK_MSG(opt::bit_equal(a, b), "gemv is not bit-deterministic run to run");
      // Each output is computed the same way whichever thread owns it.
      CHECK_MSG(opt::bit_equal(a, c), "gemv differs between 1 and 2 threads");
    }
  }
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
}
