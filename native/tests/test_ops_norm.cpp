// layernorm and rmsnorm: fast vs reference on odd sizes (2-D and 3-D inputs, with and without
// bias), saved statistics, backward vs reference and vs central finite differences for every
// input and parameter, accumulation, null gradients, determinism at 1 and 2 threads, errors.
#include <cmath>

#include "ops_test_util.h"
#include "s2s/ops/layernorm.h"
#include "s2s/ops/rmsnorm.h"

using namespace s2s;
using opt::none;
using opt::view;
using s2s_test::max_normalized_error;
using s2s_test::random_vector;

namespace {
const int64_t kSizes[][2] = {{1, 1}, {1, 5}, {7, 5}, {7, 64}, {33, 64}, {33, 257}, {300, 257}};
}

// From python3: x = [1, 2, 3], weight 1, bias 0, eps 1e-5 (LayerNorm) / 1e-6 (RMSNorm).
TEST(norm_known_values) {
  std::vector<float> x = {1, 2, 3}, w = {1, 1, 1}, b = {0, 0, 0}, y(3), mean(1), rstd(1);
  layernorm_forward(view(y, {1, 3}), view(mean, {1}), view(rstd, {1}), view(x, {1, 3}),
                    view(w, {3}), view(b, {3}), 1e-5f);
  CHECK(std::fabs(y[0] + 1.22473569f) < 1e-6f && y[1] == 0.0f &&
        std::fabs(y[2] - 1.22473569f) < 1e-6f);
  CHECK(mean[0] == 2.0f && std::fabs(rstd[0] - 1.22473569f) < 1e-6f);
  rmsnorm_forward(view(y, {1, 3}), view(rstd, {1}), view(x, {1, 3}), view(w, {3}), 1e-6f);
  CHECK(std::fabs(y[0] - 0.46291f) < 1e-6f && std::fabs(y[1] - 0.925820001f) < 1e-6f &&
        std::fabs(y[2] - 1.38873f) < 1e-6f && std::fabs(rstd[0] - 0.46291f) < 1e-6f);
}

TEST(layernorm_fast_matches_reference) {
  for (auto& s : kSizes) {
    const int64_t N = s[0], C = s[1];
    for (bool with_bias : {true, false}) {
      std::vector<float> x = random_vector(N * C, 100 + C, -3, 5), w = random_vector(C, 101);
      std::vector<float> b = random_vector(C, 102), y(N * C), y_ref(N * C);
      std::vector<float> m(N), r(N), m_ref(N), r_ref(N);
      const Tensor bias = with_bias ? view(b, {C}) : none();
      layernorm_forward(view(y, {N, C}), view(m, {N}), view(r, {N}), view(x, {N, C}),
                        view(w, {C}), bias, 1e-5f);
      layernorm_forward_reference(view(y_ref, {N, C}), view(m_ref, {N}), view(r_ref, {N}),
                                  view(x, {N, C}), view(w, {C}), bias, 1e-5f);
      CHECK_ERR(max_normalized_error(y.data(), y_ref.data(), y.size()), 1e-5, "layernorm out");
      CHECK_ERR(max_normalized_error(m.data(), m_ref.data(), N), 1e-6, "layernorm mean");
      CHECK_ERR(max_normalized_error(r.data(), r_ref.data(), N), 1e-5, "layernorm rstd");
      // Backward on non-zero gradients, from the reference's saved statistics.
      std::vector<float> dy = random_vector(N * C, 103), dx = random_vector(N * C, 104);
      std::vector<float> dw = random_vector(C, 105), db = random_vector(C, 106);
      std::vector<float> dx_ref = dx, dw_ref = dw, db_ref = db;
      layernorm_backward(view(dx, {N, C}), view(dw, {C}), view(db, {C}), view(dy, {N, C}),
                         view(x, {N, C}), view(w, {C}), view(m_ref, {N}), view(r_ref, {N}));
      layernorm_backward_reference(view(dx_ref, {N, C}), view(dw_ref, {C}), view(db_ref, {C}),
                                   view(dy, {N, C}), view(x, {N, C}), view(w, {C}),
                                   view(m_ref, {N}), view(r_ref, {N}));
      CHECK_ERR(max_normalized_error(dx.data(), dx_ref.data(), dx.size()), 2e-5, "layernorm dinp");
      CHECK_ERR(max_normalized_error(dw.data(), dw_ref.data(), C), 2e-5, "layernorm dweight");
      CHECK_ERR(max_normalized_error(db.data(), db_ref.data(), C), 2e-5, "layernorm dbias");
    }
  }
  // (B, T, C) input with (B, T) statistics.
  std::vector<float> x = random_vector(2 * 3 * 8, 107), w = random_vector(8, 108), y(48), yr(48);
  std::vector<float> m(6), r(6);
  layernorm_forward(view(y, {2, 3, 8}), view(m, {2, 3}), view(r, {2, 3}), view(x, {2, 3, 8}),
                    view(w, {8}), none(), 1e-5f);
  layernorm_forward_reference(view(yr, {2, 3, 8}), none(), none(), view(x, {2, 3, 8}),
                              view(w, {8}), none(), 1e-5f);
  CHECK_ERR(max_normalized_error(y.data(), yr.data(), 48), 1e-5, "layernorm 3-D");
}

TEST(layernorm_gradient_check) {
  const int64_t N = 3, C = 7;
  std::vector<float> x = random_vector(N * C, 111, -2, 2), w = random_vector(C, 112, 0.5f, 1.5f);
  std::vector<float> b = random_vector(C, 113), g = random_vector(N * C, 114);
  std::vector<float> y(N * C), m(N), r(N);
  auto forward = [&] {
    layernorm_forward(view(y, {N, C}), view(m, {N}), view(r, {N}), view(x, {N, C}), view(w, {C}),
                      view(b, {C}), 1e-5f);
    return opt::dot(y, g);
  };
  forward();
  std::vector<float> dx(N * C, 0.f), dw(C, 0.f), db(C, 0.f);
  layernorm_backward(view(dx, {N, C}), view(dw, {C}), view(db, {C}), view(g, {N, C}),
                     view(x, {N, C}), view(w, {C}), view(m, {N}), view(r, {N}));
  CHECK_ERR(s2s_test::gradient_check(x, dx, forward), 3e-3, "layernorm dinp vs finite diff");
  CHECK_ERR(s2s_test::gradient_check(w, dw, forward), 2e-3, "layernorm dweight vs finite diff");
  CHECK_ERR(s2s_test::gradient_check(b, db, forward), 2e-3, "layernorm dbias vs finite diff");
  // Accumulation doubles; each gradient can be skipped alone and the others are unchanged.
  forward();
  std::vector<float> dx2 = dx, dw2 = dw, db2 = db;
  layernorm_backward(view(dx2, {N, C}), view(dw2, {C}), view(db2, {C}), view(g, {N, C}),
                     view(x, {N, C}), view(w, {C}), view(m, {N}), view(r, {N}));
  CHECK(opt::bit_equal(dx2, opt::scaled(dx, 2.f)) && opt::bit_equal(dw2, opt::scaled(dw, 2.f)) &&
        opt::bit_equal(db2, opt::scaled(db, 2.f)));
  std::vector<float> dx3(N * C, 0.f), dw3(C, 0.f);
  layernorm_backward(view(dx3, {N, C}), none(), none(), view(g, {N, C}), view(x, {N, C}),
                     view(w, {C}), view(m, {N}), view(r, {N}));
  layernorm_backward(none(), view(dw3, {C}), none(), view(g, {N, C}), view(x, {N, C}),
                     view(w, {C}), view(m, {N}), view(r, {N}));
  CHECK(opt::bit_equal(dx3, dx) && opt::bit_equal(dw3, dw));
  layernorm_backward(none(), none(), none(), view(g, {N, C}), view(x, {N, C}), view(w, {C}),
                     view(m, {N}), view(r, {N}));
}

TEST(rmsnorm_fast_matches_reference) {
  for (auto& s : kSizes) {
    const int64_t N = s[0], C = s[1];
    std::vector<float> x = random_vector(N * C, 200 + C, -3, 5), w = random_vector(C, 201);
    std::vector<float> y(N * C), y_ref(N * C), r(N), r_ref(N);
    rmsnorm_forward(view(y, {N, C}), view(r, {N}), view(x, {N, C}), view(w, {C}), 1e-6f);
    rmsnorm_forward_reference(view(y_ref, {N, C}), view(r_ref, {N}), view(x, {N, C}),
                              view(w, {C}), 1e-6f);
    CHECK_ERR(max_normalized_error(y.data(), y_ref.data(), y.size()), 1e-5, "rmsnorm out");
    CHECK_ERR(max_normalized_error(r.data(), r_ref.data(), N), 1e-5, "rmsnorm rstd");
    std::vector<float> dy = random_vector(N * C, 203), dx = random_vector(N * C, 204);
    std::vector<float> dw = random_vector(C, 205), dx_ref = dx, dw_ref = dw;
    rmsnorm_backward(view(dx, {N, C}), view(dw, {C}), view(dy, {N, C}), view(x, {N, C}),
                     view(w, {C}), view(r_ref, {N}));
    rmsnorm_backward_reference(view(dx_ref, {N, C}), view(dw_ref, {C}), view(dy, {N, C}),
                               view(x, {N, C}), view(w, {C}), view(r_ref, {N}));
    CHECK_ERR(max_normalized_error(dx.data(), dx_ref.data(), dx.size()), 2e-5, "rmsnorm dinp");
    CHECK_ERR(max_normalized_error(dw.data(), dw_ref.data(), C), 2e-5, "rmsnorm dweight");
  }
}

TEST(rmsnorm_gradient_check) {
  const int64_t N = 3, C = 7;
  std::vector<float> x = random_vector(N * C, 211, -2, 2), w = random_vector(C, 212, 0.5f, 1.5f);
  std::vector<float> g = random_vector(N * C, 214), y(N * C), r(N);
  auto forward = [&] {
    rmsnorm_forward(view(y, {N, C}), view(r, {N}), view(x, {N, C}), view(w, {C}), 1e-6f);
    return opt::dot(y, g);
  };
  forward();
  std::vector<float> dx(N * C, 0.f), dw(C, 0.f);
  rmsnorm_backward(view(dx, {N, C}), view(dw, {C}), view(g, {N, C}), view(x, {N, C}),
                   view(w, {C}), view(r, {N}));
  CHECK_ERR(s2s_test::gradient_check(x, dx, forward), 3e-3, "rmsnorm dinp vs finite diff");
  CHECK_ERR(s2s_test::gradient_check(w, dw, forward), 2e-3, "rmsnorm dweight vs finite diff");
  forward();
  std::vector<float> dx2 = dx, dw2 = dw, dw3(C, 0.f);
  rmsnorm_backward(view(dx2, {N, C}), view(dw2, {C}), view(g, {N, C}), view(x, {N, C}),
                   view(w, {C}), view(r, {N}));
  CHECK(opt::bit_equal(dx2, opt::scaled(dx, 2.f)) && opt::bit_equal(dw2, opt::scaled(dw, 2.f)));
  rmsnorm_backward(none(), view(dw3, {C}), view(g, {N, C}), view(x, {N, C}), view(w, {C}),
                   view(r, {N}));
  CHECK(opt::bit_equal(dw3, dw));
  rmsnorm_backward(none(), none(), view(g, {N, C}), view(x, {N, C}), view(w, {C}), view(r, {N}));
}

// overwrite_dinp: dinp is written, never read (it starts as NaN here), with the values that
// accumulating into zeros gives; dweight and dbias still accumulate, to the same bits.
TEST(norms_overwrite_dinp) {
  for (auto& s : kSizes) {
    const int64_t N = s[0], C = s[1];
    std::vector<float> x = random_vector(N * C, 120 + C, -3, 5), w = random_vector(C, 121);
    std::vector<float> b = random_vector(C, 122), dy = random_vector(N * C, 123), y(N * C);
    std::vector<float> m(N), r(N);
    layernorm_forward(view(y, {N, C}), view(m, {N}), view(r, {N}), view(x, {N, C}),
                      view(w, {C}), view(b, {C}), 1e-5f);
    std::vector<float> dx_w = opt::garbage(N * C), dx_0(N * C, 0.f);
    std::vector<float> dw_w = random_vector(C, 124), db_w = random_vector(C, 125);
    std::vector<float> dw_0 = dw_w, db_0 = db_w;
    layernorm_backward(view(dx_w, {N, C}), view(dw_w, {C}), view(db_w, {C}), view(dy, {N, C}),
                       view(x, {N, C}), view(w, {C}), view(m, {N}), view(r, {N}), true);
    layernorm_backward(view(dx_0, {N, C}), view(dw_0, {C}), view(db_0, {C}), view(dy, {N, C}),
                       view(x, {N, C}), view(w, {C}), view(m, {N}), view(r, {N}), false);
    CHECK(opt::same_values(dx_w, dx_0) && opt::bit_equal(dw_w, dw_0) &&
          opt::bit_equal(db_w, db_0));
    rmsnorm_forward(view(y, {N, C}), view(r, {N}), view(x, {N, C}), view(w, {C}), 1e-6f);
    dx_w = opt::garbage(N * C);
    dx_0.assign(N * C, 0.f);
    rmsnorm_backward(view(dx_w, {N, C}), view(dw_w, {C}), view(dy, {N, C}), view(x, {N, C}),
                     view(w, {C}), view(r, {N}), true);
    rmsnorm_backward(view(dx_0, {N, C}), view(dw_0, {C}), view(dy, {N, C}), view(x, {N, C}),
                     view(w, {C}), view(r, {N}), false);
    CHECK(opt::same_values(dx_w, dx_0) && opt::bit_equal(dw_w, dw_0));
  }
}

TEST(norms_deterministic_at_1_and_2_threads) {
  const int64_t N = 300, C = 257;  // > 2 grains: two chunks of partial dweight sums at 2 threads
  std::vector<float> x = random_vector(N * C, 301, -2, 2), w = random_vector(C, 302);
  std::vector<float> b = random_vector(C, 303), dy = random_vector(N * C, 304);
  for (int threads : {1, 2}) {
    opt::Threads t(threads);
    std::vector<std::vector<float>> runs;
    for (int rep = 0; rep < 2; ++rep) {
      std::vector<float> y(N * C), m(N), r(N), dx(N * C, 0.f), dw(C, 0.f), db(C, 0.f);
      layernorm_forward(view(y, {N, C}), view(m, {N}), view(r, {N}), view(x, {N, C}),
                        view(w, {C}), view(b, {C}), 1e-5f);
      layernorm_backward(view(dx, {N, C}), view(dw, {C}), view(db, {C}), view(dy, {N, C}),
                         view(x, {N, C}), view(w, {C}), view(m, {N}), view(r, {N}));
      std::vector<float> y2(N * C), r2(N), dx2(N * C, 0.f), dw2(C, 0.f);
      rmsnorm_forward(view(y2, {N, C}), view(r2, {N}), view(x, {N, C}), view(w, {C}), 1e-6f);
      rmsnorm_backward(view(dx2, {N, C}), view(dw2, {C}), view(dy, {N, C}), view(x, {N, C}),
                       view(w, {C}), view(r2, {N}));
      for (auto* v : {&dx, &dw, &db, &y2, &dx2, &dw2}) y.insert(y.end(), v->begin(), v->end());
      runs.push_back(y);
    }
    CHECK_MSG(opt::bit_equal(runs[0], runs[1]),
              "norms not bit-identical at " + std::to_string(threads) + " threads");
  }
}

TEST(norms_bad_arguments) {
  std::vector<float> x(12), y(12), w(4), b(4), m(3), r(3), w5(5);
  std::vector<uint16_t> h(12);
  CHECK_THROWS_CODE(layernorm_forward(view(y, {3, 4}), view(m, {3}), view(r, {3}), view(x, {3, 4}),
                                      view(w5, {5}), none(), 1e-5f),
                    code::kShape);
  CHECK_THROWS_CODE(layernorm_forward(view(y, {4, 3}), view(m, {3}), view(r, {3}), view(x, {3, 4}),
                                      view(w, {4}), none(), 1e-5f),
                    code::kShape);
  CHECK_THROWS_CODE(layernorm_forward(view(y, {3, 4}), view(m, {2}), view(r, {3}), view(x, {3, 4}),
                                      view(w, {4}), none(), 1e-5f),
                    code::kShape);
  CHECK_THROWS_CODE(layernorm_forward(view(y, {3, 4}), none(), none(),
                                      opt::view16(h, DType::BF16, {3, 4}), view(w, {4}), none(),
                                      1e-5f),
                    code::kDType);
  CHECK_THROWS_CODE(layernorm_forward(view(y, {3, 4}), none(), none(), view(x, {3, 4}),
                                      view(w, {4}), view(b, {4}), -1.0f),
                    code::kArgument);
  CHECK_THROWS_CODE(layernorm_forward(view(y, {3, 4}), none(), none(), view(x, {3, 4}),
                                      view(w, {4}), view(b, {4}), std::nanf("")),
                    code::kArgument);
  CHECK_THROWS_CODE(layernorm_backward(view(y, {3, 4}), view(w5, {5}), none(), view(x, {3, 4}),
                                       view(x, {3, 4}), view(w, {4}), view(m, {3}), view(r, {3})),
                    code::kShape);
  CHECK_THROWS_CODE(layernorm_backward(view(y, {3, 4}), none(), none(), view(x, {3, 4}),
                                       view(x, {3, 4}), view(w, {4}), none(), view(r, {3})),
                    code::kArgument);
  CHECK_THROWS_CODE(rmsnorm_forward(view(y, {3, 4}), view(r, {3}), view(x, {3, 4}), view(w5, {5}),
                                    1e-6f),
                    code::kShape);
  CHECK_THROWS_CODE(rmsnorm_forward(view(y, {3, 4}), view(r, {3}), view(x, {3, 4}), view(w, {4}),
                                    -1e-6f),
                    code::kArgument);
  CHECK_THROWS_CODE(rmsnorm_backward(view(y, {3, 4}), none(), view(x, {3, 4}), view(x, {3, 4}),
                                     view(w, {4}), view(m, {2})),
                    code::kShape);
}
