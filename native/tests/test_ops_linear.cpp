// linear: fast (GEMM) vs reference loops for both weight layouts, with and without bias, f32,
// bf16 and f16 weights, on odd sizes; backward vs reference and vs central finite differences;
// the bf16 compute path's dweight vs reference and vs fp32 within the bf16 rounding bound; the
// f16 path on every ISA, and its overflow (a dout beyond fp16's range gives Inf/NaN gradients);
// accumulation, null gradients, determinism, errors.
#include <cmath>
#include <cstdio>
#include <limits>

#include "ops_test_util.h"
#include "s2s/ops/linear.h"

using namespace s2s;
using opt::none;
using opt::view;
using s2s_test::max_normalized_error;
using s2s_test::random_vector;

namespace {
std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> o(v.size());
  for (size_t i = 0; i < v.size(); ++i) o[i] = f32_to_bf16(v[i]);
  return o;
}
std::vector<uint16_t> to_f16(const std::vector<float>& v) {
  std::vector<uint16_t> o(v.size());
  for (size_t i = 0; i < v.size(); ++i) o[i] = f32_to_f16(v[i]);
  return o;
}
// The weight as `dt`: w itself for f32, else wh (its 16-bit bits in that format).
Tensor weight_view(std::vector<float>& w, std::vector<uint16_t>& wh, DType dt, WeightLayout l,
                   int64_t IC, int64_t OC) {
  const int64_t r = l == WeightLayout::OutIn ? OC : IC, c = l == WeightLayout::OutIn ? IC : OC;
  return dt == DType::F32 ? view(w, {r, c}) : opt::view16(wh, dt, {r, c});
}
}  // namespace

TEST(linear_fast_matches_reference) {
  for (WeightLayout layout : {WeightLayout::OutIn, WeightLayout::InOut}) {
    for (DType wt : {DType::F32, DType::BF16, DType::F16}) {
      for (int64_t N : {1, 7, 33}) {
        for (int64_t IC : {1, 5, 64}) {
          for (int64_t OC : {1, 5, 257}) {
            const std::string tag = std::string(layout == WeightLayout::OutIn ? "OutIn" : "InOut") +
                                    " " + dtype_name(wt) + " " + std::to_string(N) + "x" +
                                    std::to_string(IC) + "x" + std::to_string(OC);
            std::vector<float> x = random_vector(N * IC, N + IC), w = random_vector(IC * OC, OC);
            std::vector<uint16_t> wb = wt == DType::F16 ? to_f16(w) : to_bf16(w);
            std::vector<float> b = random_vector(OC, 3), y(N * OC), y_ref(N * OC);
            const Tensor W = weight_view(w, wb, wt, layout, IC, OC);
            const bool with_bias = (N + IC + OC) % 2 == 1;
            const Tensor bias = with_bias ? view(b, {OC}) : none();
            linear_forward(view(y, {N, OC}), view(x, {N, IC}), W, bias, layout);
            linear_forward_reference(view(y_ref, {N, OC}), view(x, {N, IC}), W, bias, layout);
            CHECK_ERR(max_normalized_error(y.data(), y_ref.data(), y.size()), 2e-5, tag + " out");
            std::vector<float> dy = random_vector(N * OC, 4), dx = random_vector(N * IC, 5);
            std::vector<float> dw = random_vector(IC * OC, 6), db = random_vector(OC, 7);
            std::vector<float> dx_ref = dx, dw_ref = dw, db_ref = db;
            // dweight is f32 for every weight dtype (bf16 / f16: from rounded dout and inp).
            const Tensor dW = weight_view(dw, wb, DType::F32, layout, IC, OC);
            const Tensor dW_ref = weight_view(dw_ref, wb, DType::F32, layout, IC, OC);
            linear_backward(view(dx, {N, IC}), dW, view(db, {OC}), view(dy, {N, OC}),
                            view(x, {N, IC}), W, layout);
            linear_backward_reference(view(dx_ref, {N, IC}), dW_ref, view(db_ref, {OC}),
                                      view(dy, {N, OC}), view(x, {N, IC}), W, layout);
            CHECK_ERR(max_normalized_error(dx.data(), dx_ref.data(), dx.size()), 2e-5, tag + " dinp");
            CHECK_ERR(max_normalized_error(dw.data(), dw_ref.data(), dw.size()), 2e-5,
                      tag + " dweight");
            CHECK_ERR(max_normalized_error(db.data(), db_ref.data(), db.size()), 2e-5, tag + " dbias");
          }
        }
      }
    }
  }
  // (B, T, IC) input gives (B, T, OC).
  std::vector<float> x = random_vector(2 * 3 * 4, 8), w = random_vector(5 * 4, 9);
  std::vector<float> y(2 * 3 * 5), y_ref(2 * 3 * 5);
  linear_forward(view(y, {2, 3, 5}), view(x, {2, 3, 4}), view(w, {5, 4}), none());
  linear_forward_reference(view(y_ref, {2, 3, 5}), view(x, {2, 3, 4}), view(w, {5, 4}), none());
  CHECK_ERR(max_normalized_error(y.data(), y_ref.data(), y.size()), 2e-5, "linear 3-D");
}

TEST(linear_bf16_weight_rounds_input_to_bf16) {
  // With a bf16 weight the input is rounded to bf16: x = 1 + 2^-10 becomes 1.
  std::vector<float> x = {1.0f + 1.0f / 1024.0f}, y(1);
  std::vector<uint16_t> w = {f32_to_bf16(1.0f)};
  linear_forward(view(y, {1, 1}), view(x, {1, 1}), opt::view16(w, DType::BF16, {1, 1}), none());
  CHECK(y[0] == 1.0f);
}

TEST(linear_f16_weight_rounds_input_to_f16) {
  // With an f16 weight the input is rounded to f16 (10 mantissa bits): 1 + 2^-12 becomes 1, and
  // 1 + 2^-10 stays (exact in f16 but not in bf16).
  std::vector<float> x = {1.0f + 1.0f / 4096.0f, 1.0f + 1.0f / 1024.0f}, y(2);
  std::vector<uint16_t> w = {f32_to_f16(1.0f)};
  linear_forward(view(y, {2, 1}), view(x, {2, 1}), opt::view16(w, DType::F16, {1, 1}), none());
  CHECK(y[0] == 1.0f && y[1] == 1.0f + 1.0f / 1024.0f);
}

// The f16 compute path on every ISA at 1 and 2 threads, both layouts, bias, accumulate and
// overwrite: against the reference loops (which round inp and dout with f32_to_f16), on shapes
// past the register tiles and, for dweight, several K blocks (N = 700 rows).
TEST(linear_f16_weight_matches_reference_on_every_isa) {
  opt::for_each_isa([](Isa isa) {
    for (int threads : {1, 2}) {
      opt::Threads t(threads);
      for (WeightLayout layout : {WeightLayout::OutIn, WeightLayout::InOut}) {
        const int64_t N = 700, IC = 45, OC = 66;
        const int64_t r = layout == WeightLayout::OutIn ? OC : IC, c = layout == WeightLayout::OutIn ? IC : OC;
        std::vector<float> x = random_vector(N * IC, 71, -2.f, 2.f), w = random_vector(IC * OC, 72);
        std::vector<float> b = random_vector(OC, 73), dy = random_vector(N * OC, 74, -3.f, 3.f);
        std::vector<uint16_t> wh = to_f16(w);
        const Tensor W = opt::view16(wh, DType::F16, {r, c});
        std::vector<float> y(N * OC), y_ref(N * OC);
        linear_forward(view(y, {N, OC}), view(x, {N, IC}), W, view(b, {OC}), layout);
        linear_forward_reference(view(y_ref, {N, OC}), view(x, {N, IC}), W, view(b, {OC}), layout);
        const std::string what = opt::where(isa, layout == WeightLayout::OutIn ? "f16 OutIn" : "f16 InOut",
                                            threads);
        CHECK_ERR(max_normalized_error(y.data(), y_ref.data(), y.size()), 2e-5, what + " out");
        for (bool overwrite : {false, true}) {
          std::vector<float> dx = random_vector(N * IC, 75), dw = random_vector(IC * OC, 76);
          std::vector<float> db = random_vector(OC, 77);
          std::vector<float> dx_ref = dx, dw_ref = dw, db_ref = db;
          if (overwrite) std::fill(dx_ref.begin(), dx_ref.end(), 0.f);
          linear_backward(view(dx, {N, IC}), view(dw, {r, c}), view(db, {OC}), view(dy, {N, OC}),
                          view(x, {N, IC}), W, layout, overwrite);
          linear_backward_reference(view(dx_ref, {N, IC}), view(dw_ref, {r, c}), view(db_ref, {OC}),
                                    view(dy, {N, OC}), view(x, {N, IC}), W, layout);
          const std::string w2 = what + (overwrite ? " overwrite" : " accumulate");
          CHECK_ERR(max_normalized_error(dx.data(), dx_ref.data(), dx.size()), 2e-5, w2 + " dinp");
          CHECK_ERR(max_normalized_error(dw.data(), dw_ref.data(), dw.size()), 5e-5, w2 + " dweight");
          CHECK_ERR(max_normalized_error(db.data(), db_ref.data(), db.size()), 5e-5, w2 + " dbias");
        }
      }
    }
  });
}

// fp16 tops out at 65504 (65520 and above round to Inf): one dout entry of 1e5 with an f16
// weight must give Inf/NaN in that row of dinp and that row (OutIn) / column (InOut) of dweight,
// which is what the dynamic loss scaler checks for before it skips the step. dbias sums the fp32
// dout and stays finite. An input beyond the range likewise gives an Inf output.
TEST(linear_f16_overflow_reaches_the_gradients) {
  opt::for_each_isa([](Isa isa) {
    for (WeightLayout layout : {WeightLayout::OutIn, WeightLayout::InOut}) {
      const int64_t N = 40, IC = 24, OC = 36;
      const int64_t r = layout == WeightLayout::OutIn ? OC : IC, c = layout == WeightLayout::OutIn ? IC : OC;
      std::vector<float> x = random_vector(N * IC, 81), w = random_vector(IC * OC, 82, 0.1f, 1.f);
      std::vector<float> dy = random_vector(N * OC, 83);
      std::vector<uint16_t> wh = to_f16(w);
      const Tensor W = opt::view16(wh, DType::F16, {r, c});
      const int64_t bad_row = 17, bad_col = 5;
      dy[bad_row * OC + bad_col] = 1e5f;
      std::vector<float> dx(N * IC, 0.f), dw(IC * OC, 0.f), db(OC, 0.f);
      linear_backward(view(dx, {N, IC}), view(dw, {r, c}), view(db, {OC}), view(dy, {N, OC}),
                      view(x, {N, IC}), W, layout);
      const std::string what = opt::where(isa, layout == WeightLayout::OutIn ? "OutIn" : "InOut");
      bool dx_row_bad = true, dx_others_finite = true;
      for (int64_t n = 0; n < N; ++n)
        for (int64_t i = 0; i < IC; ++i) {
          const bool fin = std::isfinite(dx[n * IC + i]);
          if (n == bad_row) dx_row_bad = dx_row_bad && !fin;  // +Inf * w, w > 0: all Inf
          else dx_others_finite = dx_others_finite && fin;
        }
      CHECK_MSG(dx_row_bad && dx_others_finite, "dinp overflow pattern " + what);
      bool dw_bad = true, dw_others_finite = true;
      for (int64_t o = 0; o < OC; ++o)
        for (int64_t i = 0; i < IC; ++i) {
          const float v = dw[layout == WeightLayout::OutIn ? o * IC + i : i * OC + o];
          if (o == bad_col) dw_bad = dw_bad && !std::isfinite(v);
          else dw_others_finite = dw_others_finite && std::isfinite(v);
        }
      CHECK_MSG(dw_bad && dw_others_finite, "dweight overflow pattern " + what);
      bool db_finite = true;
      for (float v : db) db_finite = db_finite && std::isfinite(v);
      CHECK_MSG(db_finite, "dbias from fp32 dout stays finite " + what);
      // Forward: an input of 1e5 rounds to Inf too.
      x[3 * IC + 2] = 1e5f;
      std::vector<float> y(N * OC);
      linear_forward(view(y, {N, OC}), view(x, {N, IC}), W, none(), layout);
      bool y_bad = true;
      for (int64_t o = 0; o < OC; ++o) y_bad = y_bad && !std::isfinite(y[3 * OC + o]);
      CHECK_MSG(y_bad && std::isfinite(y[4 * OC]), "forward overflow " + what);
      // The same dout with an f32 weight is finite everywhere (the overflow is fp16's).
      std::vector<float> dx32(N * IC, 0.f);
      linear_backward(view(dx32, {N, IC}), none(), none(), view(dy, {N, OC}), none(),
                      view(w, {r, c}), layout);
      bool all_finite = true;
      for (float v : dx32) all_finite = all_finite && std::isfinite(v);
      CHECK_MSG(all_finite, "f32 weight: no overflow " + what);
    }
  });
}

TEST(linear_bf16_dweight_within_the_bf16_rounding_bound_of_fp32) {
  // The bf16 compute path rounds dout and inp to bf16 (relative error <= u = 2^-9 each, round to
  // nearest even) and accumulates exact bf16 products in fp32. So per element
  //   |dW_bf16 - dW_f32| <= (2u + u^2) * sum_r |dout| |inp|  (+ fp32 accumulation, ~N * 2^-24),
  // a bound that holds for any data. Checked with 1.05x that bound, and the observed ratio of
  // the error to the bound printed.
  const double u = 1.0 / 512.0;
  double worst_ratio = 0;
  for (WeightLayout layout : {WeightLayout::OutIn, WeightLayout::InOut}) {
    const int64_t N = 129, IC = 48, OC = 37;
    const int64_t r = layout == WeightLayout::OutIn ? OC : IC, c = layout == WeightLayout::OutIn ? IC : OC;
    std::vector<float> x = random_vector(N * IC, 31, -3.f, 3.f), w = random_vector(IC * OC, 32);
    std::vector<float> dy = random_vector(N * OC, 33);
    std::vector<uint16_t> wb = to_bf16(w);
    std::vector<float> dw16(IC * OC, 0.f), dw32(IC * OC, 0.f), dx16(N * IC, 0.f);
    linear_backward(view(dx16, {N, IC}), view(dw16, {r, c}), none(), view(dy, {N, OC}),
                    view(x, {N, IC}), opt::view16(wb, DType::BF16, {r, c}), layout);
    linear_backward(none(), view(dw32, {r, c}), none(), view(dy, {N, OC}), view(x, {N, IC}),
                    view(w, {r, c}), layout);
    for (int64_t o = 0; o < OC; ++o) {
      for (int64_t i = 0; i < IC; ++i) {
        double mag = 0;
        for (int64_t n = 0; n < N; ++n) mag += std::fabs(double(dy[n * OC + o]) * x[n * IC + i]);
        const int64_t idx = layout == WeightLayout::OutIn ? o * IC + i : i * OC + o;
        const double bound = (2 * u + u * u) * mag + N * 6e-8 * mag;
        const double err = std::fabs(double(dw16[idx]) - dw32[idx]);
        CHECK_ERR(err, 1.05 * bound, "bf16 dweight vs fp32");
        worst_ratio = std::fmax(worst_ratio, err / bound);
      }
    }
    // Not bit-equal to fp32 (the rounding happened), and accumulation is += (beta = 1).
    CHECK(!opt::bit_equal(dw16, dw32));
    std::vector<float> dw16b = dw16;
    linear_backward(none(), view(dw16b, {r, c}), none(), view(dy, {N, OC}), view(x, {N, IC}),
                    opt::view16(wb, DType::BF16, {r, c}), layout);
    // (Within fp32 rounding, not bit for bit: the AMX kernel adds its products onto C in its
    // accumulator tiles rather than adding a finished block sum to C.)
    CHECK_ERR(s2s_test::max_normalized_error(dw16b.data(), opt::scaled(dw16, 2.f).data(),
                                             dw16b.size()),
              1e-5, "bf16 dweight accumulates (beta = 1)");
  }
  std::printf("    bf16 dweight vs fp32: worst error %.3f of the 2u bound\n", worst_ratio);
}

TEST(linear_gradient_check) {
  for (WeightLayout layout : {WeightLayout::OutIn, WeightLayout::InOut}) {
    const int64_t N = 3, IC = 4, OC = 5;
    const int64_t r = layout == WeightLayout::OutIn ? OC : IC, c = layout == WeightLayout::OutIn ? IC : OC;
    std::vector<float> x = random_vector(N * IC, 11), w = random_vector(IC * OC, 12);
    std::vector<float> b = random_vector(OC, 13), g = random_vector(N * OC, 14), y(N * OC);
    auto forward = [&] {
      linear_forward(view(y, {N, OC}), view(x, {N, IC}), view(w, {r, c}), view(b, {OC}), layout);
      return opt::dot(y, g);
    };
    std::vector<float> dx(N * IC, 0.f), dw(IC * OC, 0.f), db(OC, 0.f);
    linear_backward(view(dx, {N, IC}), view(dw, {r, c}), view(db, {OC}), view(g, {N, OC}),
                    view(x, {N, IC}), view(w, {r, c}), layout);
    CHECK_ERR(s2s_test::gradient_check(x, dx, forward), 1e-3, "linear dinp vs finite diff");
    CHECK_ERR(s2s_test::gradient_check(w, dw, forward), 1e-3, "linear dweight vs finite diff");
    CHECK_ERR(s2s_test::gradient_check(b, db, forward), 1e-3, "linear dbias vs finite diff");
    // Accumulation doubles every gradient exactly.
    std::vector<float> dx2 = dx, dw2 = dw, db2 = db;
    linear_backward(view(dx2, {N, IC}), view(dw2, {r, c}), view(db2, {OC}), view(g, {N, OC}),
                    view(x, {N, IC}), view(w, {r, c}), layout);
    CHECK(opt::bit_equal(dx2, opt::scaled(dx, 2.f)) && opt::bit_equal(dw2, opt::scaled(dw, 2.f)) &&
          opt::bit_equal(db2, opt::scaled(db, 2.f)));
    // Skipping: dinp alone needs no inp; dweight alone; nothing at all.
    std::vector<float> dx3(N * IC, 0.f), dw3(IC * OC, 0.f);
    linear_backward(view(dx3, {N, IC}), none(), none(), view(g, {N, OC}), none(), view(w, {r, c}),
                    layout);
    linear_backward(none(), view(dw3, {r, c}), none(), view(g, {N, OC}), view(x, {N, IC}),
                    view(w, {r, c}), layout);
    CHECK(opt::bit_equal(dx3, dx) && opt::bit_equal(dw3, dw));
    linear_backward(none(), none(), none(), view(g, {N, OC}), none(), view(w, {r, c}), layout);
  }
}

TEST(linear_deterministic_at_1_and_2_threads) {
  const int64_t N = 300, IC = 64, OC = 257;
  std::vector<float> x = random_vector(N * IC, 21), w = random_vector(OC * IC, 22);
  std::vector<float> b = random_vector(OC, 23), dy = random_vector(N * OC, 24);
  for (int threads : {1, 2}) {
    opt::Threads t(threads);
    std::vector<std::vector<float>> runs;
    for (int rep = 0; rep < 2; ++rep) {
      std::vector<float> y(N * OC), dx(N * IC, 0.f), dw(OC * IC, 0.f), db(OC, 0.f);
      linear_forward(view(y, {N, OC}), view(x, {N, IC}), view(w, {OC, IC}), view(b, {OC}));
      linear_backward(view(dx, {N, IC}), view(dw, {OC, IC}), view(db, {OC}), view(dy, {N, OC}),
                      view(x, {N, IC}), view(w, {OC, IC}));
      for (auto* v : {&dx, &dw, &db}) y.insert(y.end(), v->begin(), v->end());
      runs.push_back(y);
    }
    CHECK_MSG(opt::bit_equal(runs[0], runs[1]),
              "linear not bit-identical at " + std::to_string(threads) + " threads");
  }
}

TEST(linear_bad_arguments) {
  std::vector<float> x(12), y(15), w(20), b(5), dw(20);
  std::vector<uint16_t> wh(20);
  // inp last dim 3 vs weight (5, 4).
  CHECK_THROWS_CODE(linear_forward(view(y, {3, 5}), view(x, {4, 3}), view(w, {5, 4}), none()),
                    code::kShape);
  CHECK_THROWS_CODE(linear_forward(view(y, {5, 3}), view(x, {3, 4}), view(w, {5, 4}), none()),
                    code::kShape);
  CHECK_THROWS_CODE(linear_forward(view(y, {3, 5}), view(x, {3, 4}), view(w, {5, 4}),
                                   view(b, {4})),
                    code::kShape);
  CHECK_THROWS_CODE(linear_forward(view(y, {3, 5}), view(x, {3, 4}), view(w, {20}), none()),
                    code::kShape);
  // A dtype outside f32 / bf16 / f16 (a corrupt value): refused, the message naming all three.
  try {
    linear_forward(view(y, {3, 5}), view(x, {3, 4}),
                   opt::view16(wh, static_cast<DType>(7), {5, 4}), none());
    CHECK_MSG(false, "an unknown weight dtype must throw");
  } catch (const Error& e) {
    const std::string m = e.what();
    CHECK_MSG(e.code() == std::string(code::kDType) &&
                  m.find("float32, bfloat16 or float16") != std::string::npos,
              "unknown weight dtype message: " + m);
  }
  // An f16 weight's dout is f32 (there is no f16 gradient storage): f16 dout is refused, and
  // bf16 dout goes with a bf16 weight only.
  CHECK_THROWS_CODE(linear_backward(view(x, {3, 4}), none(), none(),
                                    opt::view16(wh, DType::F16, {3, 5}), none(),
                                    opt::view16(wh, DType::F16, {5, 4})),
                    code::kDType);
  CHECK_THROWS_CODE(linear_backward(view(x, {3, 4}), none(), none(),
                                    opt::view16(wh, DType::BF16, {3, 5}), none(),
                                    opt::view16(wh, DType::F16, {5, 4})),
                    code::kDType);
  CHECK_THROWS_CODE(linear_forward(view(y, {3, 5}), view(x, {3, 4}), view(w, {5, 4}), none(),
                                   static_cast<WeightLayout>(3)),
                    code::kArgument);
  // A bf16 weight's dweight is f32 with the weight's shape.
  CHECK_THROWS_CODE(linear_backward(none(), view(dw, {4, 5}), none(), view(y, {3, 5}),
                                    view(x, {3, 4}), opt::view16(wh, DType::BF16, {5, 4})),
                    code::kShape);
  CHECK_THROWS_CODE(linear_backward(none(), opt::view16(wh, DType::BF16, {5, 4}), none(),
                                    view(y, {3, 5}), view(x, {3, 4}),
                                    opt::view16(wh, DType::BF16, {5, 4})),
                    code::kDType);
  CHECK_THROWS_CODE(linear_backward(none(), view(dw, {4, 5}), none(), view(y, {3, 5}),
                                    view(x, {3, 4}), view(w, {5, 4})),
                    code::kShape);
}

// bf16 dout (a gradient its writer already rounded) with a bf16 weight: dinp and dweight are bit
// for bit those from the fp32 dout it was rounded from, on every ISA path, both layouts,
// overwrite and accumulate; an fp32 weight or a dbias with bf16 dout is refused.
TEST(linear_backward_bf16_dout_equals_rounding_in_the_gemm) {
  opt::for_each_isa([](Isa isa) {
    for (WeightLayout layout : {WeightLayout::OutIn, WeightLayout::InOut}) {
      const int64_t N = 70, IC = 45, OC = 66;
      const int64_t r = layout == WeightLayout::OutIn ? OC : IC, c = layout == WeightLayout::OutIn ? IC : OC;
      std::vector<float> x = random_vector(N * IC, 61), w = random_vector(IC * OC, 62);
      std::vector<float> dy = random_vector(N * OC, 63, -2.f, 2.f);
      std::vector<uint16_t> wb = to_bf16(w), dyb = to_bf16(dy);
      for (bool overwrite : {false, true}) {
        std::vector<float> dx1(N * IC, 0.5f), dx2(N * IC, 0.5f), dw1(IC * OC, 0.25f), dw2(IC * OC, 0.25f);
        linear_backward(view(dx1, {N, IC}), view(dw1, {r, c}), none(), view(dy, {N, OC}),
                        view(x, {N, IC}), opt::view16(wb, DType::BF16, {r, c}), layout, overwrite);
        linear_backward(view(dx2, {N, IC}), view(dw2, {r, c}), none(),
                        opt::view16(dyb, DType::BF16, {N, OC}), view(x, {N, IC}),
                        opt::view16(wb, DType::BF16, {r, c}), layout, overwrite);
        const std::string what = std::string(isa_name(isa)) + (layout == WeightLayout::OutIn ? " OutIn" : " InOut") +
                                 (overwrite ? " overwrite" : " accumulate");
        CHECK_MSG(opt::bit_equal(dx1, dx2), "dinp " + what);
        CHECK_MSG(opt::bit_equal(dw1, dw2), "dweight " + what);
      }
      std::vector<float> dx(N * IC), db(OC);
      CHECK_THROWS_CODE(linear_backward(view(dx, {N, IC}), none(), none(),
                                        opt::view16(dyb, DType::BF16, {N, OC}), none(),
                                        view(w, {r, c}), layout),
                        code::kDType);
      CHECK_THROWS_CODE(linear_backward(view(dx, {N, IC}), none(), view(db, {OC}),
                                        opt::view16(dyb, DType::BF16, {N, OC}), none(),
                                        opt::view16(wb, DType::BF16, {r, c}), layout),
                        code::kArgument);
    }
  });
}

// out (forward) and dout (backward) whose rows are padded (nn::linear_cross_entropy's logits and
// their gradient where the backend pads them, Backend::aligned_row_stride): the bits of the
// contiguous call (the GEMMs and the few-row gemv path), the pads neither read (NaN there would
// show in dbias and the products) nor written.
TEST(linear_on_padded_rows_gives_the_contiguous_bits) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  opt::for_each_isa([nan](Isa isa) {
    for (WeightLayout layout : {WeightLayout::OutIn, WeightLayout::InOut}) {
      for (DType wt : {DType::F32, DType::BF16, DType::F16}) {
        for (int64_t N : {3, 40}) {
          const int64_t IC = 24, OC = 37, ld = 64;
          const int64_t r = layout == WeightLayout::OutIn ? OC : IC;
          const int64_t c = layout == WeightLayout::OutIn ? IC : OC;
          std::vector<float> x = random_vector(N * IC, 71), w = random_vector(IC * OC, 72);
          std::vector<float> b = random_vector(OC, 73), dy = random_vector(N * OC, 74);
          std::vector<uint16_t> wh = wt == DType::F16 ? to_f16(w) : to_bf16(w);
          const Tensor W = weight_view(w, wh, wt, layout, IC, OC);
          const std::string what = opt::where(isa, "", N) + dtype_name(wt) +
                                   (layout == WeightLayout::OutIn ? " OutIn" : " InOut");
          std::vector<float> y(N * OC), yp(N * ld, nan);
          linear_forward(view(y, {N, OC}), view(x, {N, IC}), W, view(b, {OC}), layout);
          linear_forward(opt::padded_view(yp.data(), DType::F32, N, OC, ld), view(x, {N, IC}), W,
                         view(b, {OC}), layout);
          CHECK_MSG(opt::bit_equal(opt::unpadded_rows(yp, N, OC, ld), y), what + " forward");
          CHECK_MSG(opt::pads_untouched(yp, N, OC, ld, nan), what + " forward's pads");
          // f32 dout (with dbias), and bf16 dout under a bf16 weight.
          std::vector<float> dyp = opt::padded_rows(dy, N, OC, ld, nan);
          std::vector<uint16_t> dyb = to_bf16(dy);
          std::vector<uint16_t> dybp = opt::padded_rows(dyb, N, OC, ld, uint16_t(0x7fc1));
          for (bool half : {false, true}) {
            if (half && wt != DType::BF16) continue;
            std::vector<float> dx1(N * IC), dx2(N * IC), dw1(IC * OC, 0.25f), dw2(IC * OC, 0.25f);
            std::vector<float> db1(OC, 0.5f), db2(OC, 0.5f);
            const Tensor dout = half ? opt::view16(dyb, DType::BF16, {N, OC}) : view(dy, {N, OC});
            const Tensor doutp = half ? opt::padded_view(dybp.data(), DType::BF16, N, OC, ld)
                                      : opt::padded_view(dyp.data(), DType::F32, N, OC, ld);
            linear_backward(view(dx1, {N, IC}), view(dw1, {r, c}), half ? none() : view(db1, {OC}),
                            dout, view(x, {N, IC}), W, layout, true);
            linear_backward(view(dx2, {N, IC}), view(dw2, {r, c}), half ? none() : view(db2, {OC}),
                            doutp, view(x, {N, IC}), W, layout, true);
            const std::string m = what + (half ? " bf16 dout" : " f32 dout");
            CHECK_MSG(opt::bit_equal(dx1, dx2), m + ": dinp");
            CHECK_MSG(opt::bit_equal(dw1, dw2), m + ": dweight");
            CHECK_MSG(opt::bit_equal(db1, db2), m + ": dbias");
          }
        }
      }
    }
  });
}

// A weight that is a slice of a wider one (rows of OutIn, columns of InOut: nn::linear_split's
// parts, a 2-D view with the whole matrix's row stride) gives the whole product's columns, and a
// 16-bit out (the 16-bit weight's dtype) holds the f32 values rounded to nearest even.
TEST(linear_takes_weight_slices_and_writes_16bit_out) {
  const int64_t N = 13, IC = 20, P = 9, OC = 3 * P;
  std::vector<float> x = random_vector(N * IC, 81), w = random_vector(IC * OC, 82);
  std::vector<float> b = random_vector(OC, 83);
  for (WeightLayout layout : {WeightLayout::OutIn, WeightLayout::InOut}) {
    const bool out_in = layout == WeightLayout::OutIn;
    for (DType wt : {DType::F32, DType::BF16, DType::F16}) {
      std::vector<uint16_t> wh = wt == DType::F16 ? to_f16(w) : to_bf16(w);
      const Tensor W = weight_view(w, wh, wt, layout, IC, OC);
      std::vector<float> full(N * OC);
      linear_forward(view(full, {N, OC}), view(x, {N, IC}), W, view(b, {OC}), layout);
      const std::string tag = std::string(dtype_name(wt)) + (out_in ? " OutIn" : " InOut");
      for (int64_t p = 0; p < 3; ++p) {
        Tensor slice = W;
        slice.data = static_cast<char*>(W.data) +
                     size_t(out_in ? p * P * IC : p * P) * dtype_size(wt);
        slice.shape[out_in ? 0 : 1] = P;
        const Tensor bp = Tensor::contiguous(b.data() + p * P, DType::F32, {P});
        std::vector<float> part(N * P);
        linear_forward(view(part, {N, P}), view(x, {N, IC}), slice, bp, layout);
        std::vector<float> want(N * P);
        for (int64_t r = 0; r < N; ++r) {
          for (int64_t c = 0; c < P; ++c) want[r * P + c] = full[r * OC + p * P + c];
        }
        CHECK_MSG(opt::bit_equal(part, want), tag + " part " + std::to_string(p));
        if (wt == DType::F32) continue;
        std::vector<uint16_t> half(N * P), rounded = wt == DType::BF16 ? to_bf16(want)
                                                                        : to_f16(want);
        linear_forward(opt::view16(half, wt, {N, P}), view(x, {N, IC}), slice, bp, layout);
        CHECK_MSG(half == rounded, tag + " part " + std::to_string(p) + ": 16-bit out");
      }
    }
  }
  std::vector<uint16_t> half(N * OC);
  CHECK_THROWS_CODE(linear_forward(opt::view16(half, DType::BF16, {N, OC}), view(x, {N, IC}),
                                   view(w, {IC, OC}), none(), WeightLayout::InOut),
                    code::kDType);
}
