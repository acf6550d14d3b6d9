// Training ops: cross_entropy (vs reference, finite differences, ignore_index, mean/sum, NaN,
// determinism, errors), adamw (vs torch golden steps and the double reference), grad_norm and
// clip_grad_norm (vs reference, determinism, clipping rule, non-finite norms).
#include <cmath>
#include <cstring>
#include <limits>

#include "harness.h"
#include "ops_test_util.h"
#include "s2s/cpu_features.h"
#include "s2s/ops/adamw.h"
#include "s2s/ops/cast.h"
#include "s2s/ops/cross_entropy.h"
#include "s2s/ops/elementwise.h"
#include "s2s/ops/grad_norm.h"
#include "s2s/thread_pool.h"

using namespace s2s;
using s2s_test::random_vector;

namespace {
#include "fixtures/adamw_golden.inc"

std::vector<int32_t> make_labels(int64_t N, int64_t V, uint64_t seed, int32_t ignore, int every) {
  s2s_test::Rng rng(seed);
  std::vector<int32_t> y(N);
  for (int64_t i = 0; i < N; ++i) {
    y[i] = static_cast<int32_t>(rng.next() % uint64_t(V));
    if (every > 0 && i % every == 1) y[i] = ignore;
  }
  return y;
}

double rel(double a, double b) { return std::fabs(a - b) / std::fmax(1.0, std::fabs(b)); }
}  // namespace

// ---------------------------------------------------------------------------------------------
// cross_entropy

TEST(cross_entropy_matches_reference) {
  set_num_threads(2);
  struct Case { int64_t N, V; int ignore_every; LossReduction r; int32_t ignore; };
  const Case cases[] = {{1, 1, 0, LossReduction::Mean, -100},   {7, 5, 3, LossReduction::Mean, -100},
                        {33, 1000, 4, LossReduction::Sum, -100}, {6, 50257, 2, LossReduction::Mean, -1},
                        {3, 151936, 0, LossReduction::Sum, -100}};
  // Every ISA path of the row kernels (ops/act_kernels.h).
  opt::for_each_isa([&](Isa isa) {
  for (const Case& c : cases) {
    // Logits spread like a real LM head's (scale ~ +-8).
    std::vector<float> x = random_vector(c.N * c.V, c.N * 31 + c.V, -8.f, 8.f);
    std::vector<int32_t> y = make_labels(c.N, c.V, c.V, c.ignore, c.ignore_every);
    CrossEntropyOptions o;
    o.reduction = c.r;
    o.ignore_index = c.ignore;
    std::vector<float> lse(c.N, -1.f), lse_ref(c.N, -2.f);
    Tensor tx = Tensor::contiguous(x.data(), DType::F32, {c.N, c.V});
    const auto got = cross_entropy_forward(Tensor::contiguous(lse.data(), DType::F32, {c.N}), tx, y.data(), c.N, o);
    const auto want = cross_entropy_forward_reference(Tensor::contiguous(lse_ref.data(), DType::F32, {c.N}), tx, y.data(), c.N, o);
    const std::string what = std::string(isa_name(isa)) + " N" + std::to_string(c.N) + " V" + std::to_string(c.V);
    CHECK(got.count == want.count);
    CHECK_ERR(rel(got.loss, want.loss), 1e-6, "loss " + what);
    CHECK_ERR(s2s_test::max_normalized_error(lse.data(), lse_ref.data(), c.N), 1e-6, "lse " + what);
    std::vector<float> dx(c.N * c.V, 0.25f), dref(c.N * c.V, 0.25f);
    cross_entropy_backward(Tensor::contiguous(dx.data(), DType::F32, {c.N, c.V}), tx,
                           Tensor::contiguous(lse.data(), DType::F32, {c.N}), y.data(), c.N, 1.5f, o);
    cross_entropy_backward_reference(Tensor::contiguous(dref.data(), DType::F32, {c.N, c.V}), tx, y.data(), c.N, 1.5f, o);
    CHECK_ERR(s2s_test::max_abs_error(dx.data(), dref.data(), dx.size()), 1e-6, "dlogits " + what);
    // Ignored rows are untouched.
    bool untouched = true;
    for (int64_t i = 0; i < c.N; ++i)
      if (y[i] == c.ignore)
        for (int64_t j = 0; j < c.V; ++j) untouched = untouched && dx[i * c.V + j] == 0.25f;
    CHECK(untouched);
    // Overwrite mode (first writer of dlogits): the same values, ignored rows zeroed.
    std::vector<float> dw(c.N * c.V, NAN);
    cross_entropy_backward(Tensor::contiguous(dw.data(), DType::F32, {c.N, c.V}), tx,
                           Tensor::contiguous(lse.data(), DType::F32, {c.N}), y.data(), c.N, 1.5f, o,
                           true);
    for (size_t n = 0; n < dw.size(); ++n) dw[n] += 0.25f;
    CHECK_ERR(s2s_test::max_abs_error(dw.data(), dref.data(), dw.size()), 1e-6, "overwrite " + what);
  }
  });
}

TEST(cross_entropy_backward_matches_finite_differences) {
  const int64_t N = 5, V = 7;
  std::vector<float> x = random_vector(N * V, 4, -3.f, 3.f);
  std::vector<int32_t> y = {3, -100, 0, 6, 2};
  opt::for_each_isa([&](Isa) {
  for (LossReduction r : {LossReduction::Mean, LossReduction::Sum}) {
    CrossEntropyOptions o;
    o.reduction = r;
    std::vector<float> lse(N), dx(N * V, 0.f);
    cross_entropy_forward(Tensor::contiguous(lse.data(), DType::F32, {N}),
                          Tensor::contiguous(x.data(), DType::F32, {N, V}), y.data(), N, o);
    cross_entropy_backward(Tensor::contiguous(dx.data(), DType::F32, {N, V}),
                           Tensor::contiguous(x.data(), DType::F32, {N, V}),
                           Tensor::contiguous(lse.data(), DType::F32, {N}), y.data(), N, 1.f, o);
    auto loss = [&]() {
      std::vector<float> l(N);
      return cross_entropy_forward(Tensor::contiguous(l.data(), DType::F32, {N}),
                                   Tensor::contiguous(x.data(), DType::F32, {N, V}), y.data(), N, o)
          .loss;
    };
    CHECK_ERR(s2s_test::gradient_check(x, dx, loss), 1e-4, "fd dlogits");
  }
  });
}

TEST(cross_entropy_mean_sum_count_and_accumulation) {
  const int64_t N = 9, V = 31;
  std::vector<float> x = random_vector(N * V, 5, -4.f, 4.f);
  std::vector<int32_t> y = make_labels(N, V, 6, -100, 3);
  Tensor tx = Tensor::contiguous(x.data(), DType::F32, {N, V});
  std::vector<float> lse(N);
  Tensor tl = Tensor::contiguous(lse.data(), DType::F32, {N});
  CrossEntropyOptions mean, sum;
  sum.reduction = LossReduction::Sum;
  const auto m = cross_entropy_forward(tl, tx, y.data(), N, mean);
  const auto s = cross_entropy_forward(tl, tx, y.data(), N, sum);
  CHECK(m.count == 6 && s.count == 6);
  CHECK(rel(m.loss * m.count, s.loss) < 1e-12);
  // Sum with dloss = 1/count gives Mean's gradient (gradient accumulation recipe).
  std::vector<float> gm(N * V, 0.f), gs(N * V, 0.f);
  cross_entropy_backward(Tensor::contiguous(gm.data(), DType::F32, {N, V}), tx, tl, y.data(), N, 1.f, mean);
  cross_entropy_backward(Tensor::contiguous(gs.data(), DType::F32, {N, V}), tx, tl, y.data(), N, 1.f / 6, sum);
  CHECK_ERR(s2s_test::max_abs_error(gm.data(), gs.data(), gm.size()), 1e-8, "sum/count vs mean");
  // Accumulation: twice = 2x; null dlogits is skipped.
  std::vector<float> twice(N * V, 0.f);
  for (int k = 0; k < 2; ++k)
    cross_entropy_backward(Tensor::contiguous(twice.data(), DType::F32, {N, V}), tx, tl, y.data(), N, 1.f, mean);
  double worst = 0;
  for (size_t n = 0; n < gm.size(); ++n) worst = std::fmax(worst, std::fabs(twice[n] - 2 * gm[n]));
  CHECK_ERR(worst, 1e-7, "accumulate");
  cross_entropy_backward(Tensor{}, tx, tl, y.data(), N, 1.f, mean);
  // Every row ignored: Mean is NaN (as PyTorch), Sum is 0, no gradient either way.
  std::vector<int32_t> none(N, -100);
  const auto mn = cross_entropy_forward(tl, tx, none.data(), N, mean);
  CHECK(mn.count == 0 && std::isnan(mn.loss));
  CHECK(cross_entropy_forward(tl, tx, none.data(), N, sum).loss == 0.0);
  std::vector<float> g0(N * V, 0.f);
  cross_entropy_backward(Tensor::contiguous(g0.data(), DType::F32, {N, V}), tx, tl, none.data(), N, 1.f, mean);
  bool zero = true;
  for (float v : g0) zero = zero && v == 0.f;
  CHECK(zero);
}

TEST(cross_entropy_is_stable_propagates_nan_and_is_deterministic) {
  opt::for_each_isa([](Isa) {
  const int64_t N = 4, V = 1000;
  std::vector<float> x = random_vector(N * V, 8, -1.f, 1.f);
  x[0] = 3e4f;           // huge logit: no overflow
  x[V + 5] = -3e4f;
  x[2 * V + 17] = NAN;   // row 2 is NaN
  std::vector<int32_t> y = {0, 5, 17, 999};
  std::vector<float> lse(N);
  Tensor tx = Tensor::contiguous(x.data(), DType::F32, {N, V});
  Tensor tl = Tensor::contiguous(lse.data(), DType::F32, {N});
  CrossEntropyOptions sum;
  sum.reduction = LossReduction::Sum;
  cross_entropy_forward(tl, tx, y.data(), N, sum);
  CHECK(lse[0] == 3e4f && std::isfinite(lse[1]) && std::isnan(lse[2]) && std::isfinite(lse[3]));
  CHECK(std::isnan(cross_entropy_forward(tl, tx, y.data(), N, sum).loss));
  std::vector<float> g(N * V, 0.f);
  cross_entropy_backward(Tensor::contiguous(g.data(), DType::F32, {N, V}), tx, tl, y.data(), N, 1.f, sum);
  CHECK(g[0] == 0.f && std::isnan(g[2 * V]) && !std::isnan(g[3 * V]));
  // A NaN among -inf only (the chunk whose max is -inf is scanned for NaN on its own), in the
  // first and in a later 2048-wide chunk, and a row of -inf only (lse -inf).
  {
    const int64_t V3 = 5000;
    std::vector<float> x3(3 * V3, -INFINITY);
    x3[17] = NAN;
    x3[V3 + 4500] = NAN;
    x3[V3 + 3] = 1.f;  // row 1: finite max in chunk 0, the NaN in chunk 2 (max -inf there)
    std::vector<float> l3(3);
    cross_entropy_forward(Tensor::contiguous(l3.data(), DType::F32, {3}),
                          Tensor::contiguous(x3.data(), DType::F32, {3, V3}),
                          std::vector<int32_t>{0, 0, 0}.data(), 3);
    CHECK(std::isnan(l3[0]) && std::isnan(l3[1]) && l3[2] == -INFINITY);
  }
  // Bit-identical at 1 and 2 threads.
  const int64_t N2 = 64, V2 = 4099;
  std::vector<float> x2 = random_vector(N2 * V2, 9, -6.f, 6.f);
  std::vector<int32_t> y2 = make_labels(N2, V2, 10, -100, 5);
  Tensor tx2 = Tensor::contiguous(x2.data(), DType::F32, {N2, V2});
  std::vector<float> l1(N2), l2(N2), g1(N2 * V2, 0.f), g2(N2 * V2, 0.f);
  set_num_threads(1);
  const double a = cross_entropy_forward(Tensor::contiguous(l1.data(), DType::F32, {N2}), tx2, y2.data(), N2).loss;
  cross_entropy_backward(Tensor::contiguous(g1.data(), DType::F32, {N2, V2}), tx2,
                         Tensor::contiguous(l1.data(), DType::F32, {N2}), y2.data(), N2, 1.f);
  set_num_threads(2);
  const double b = cross_entropy_forward(Tensor::contiguous(l2.data(), DType::F32, {N2}), tx2, y2.data(), N2).loss;
  cross_entropy_backward(Tensor::contiguous(g2.data(), DType::F32, {N2, V2}), tx2,
                         Tensor::contiguous(l2.data(), DType::F32, {N2}), y2.data(), N2, 1.f);
  CHECK(a == b);
  CHECK(std::memcmp(g1.data(), g2.data(), g1.size() * 4) == 0);
  });
}

// The rows without their sum (the chunked loss's forward): each row's lse and label logit, from
// which cross_entropy_row_sum gives the forward's Sum to the bit, however the rows were split.
TEST(cross_entropy_rows_sum_to_the_forward) {
  set_num_threads(2);
  const int64_t N = 37, V = 1000;
  std::vector<float> x = random_vector(N * V, 91, -8.f, 8.f);
  const std::vector<int32_t> y = make_labels(N, V, 5, -100, 3);
  CrossEntropyOptions o;
  o.reduction = LossReduction::Sum;
  std::vector<float> lse(N);
  const CrossEntropyResult whole = cross_entropy_forward(
      Tensor::contiguous(lse.data(), DType::F32, {N}),
      Tensor::contiguous(x.data(), DType::F32, {N, V}), y.data(), N, o);
  // Three uneven chunks of rows, as the chunked loss makes them.
  std::vector<float> lse_rows(N, NAN), picked(N, NAN);
  for (int64_t r0 : {int64_t{0}, int64_t{5}, int64_t{21}}) {
    const int64_t rows = r0 == 0 ? 5 : r0 == 5 ? 16 : N - 21;
    cross_entropy_rows(Tensor::contiguous(lse_rows.data() + r0, DType::F32, {rows}),
                       Tensor::contiguous(picked.data() + r0, DType::F32, {rows}),
                       Tensor::contiguous(x.data() + r0 * V, DType::F32, {rows, V}),
                       y.data() + r0, rows, o.ignore_index);
  }
  CHECK(lse_rows == lse);
  bool picked_ok = true;
  for (int64_t i = 0; i < N; ++i) {
    picked_ok = picked_ok && picked[i] == (y[i] == o.ignore_index ? 0.f : x[i * V + y[i]]);
  }
  CHECK_MSG(picked_ok, "label_logit is not logits[i, labels[i]] (0 for ignored rows)");
  const double sum = cross_entropy_row_sum(lse_rows.data(), picked.data(), y.data(), N, -100);
  CHECK_MSG(sum == whole.loss, "the rows' sum is not the forward's Sum: " +
                                   std::to_string(sum) + " vs " + std::to_string(whole.loss));
  // cross_entropy_loss writes the forward's loss, rounded to f32 once: Sum, Mean, and Mean over
  // no counted row (NaN).
  for (const LossReduction r : {LossReduction::Sum, LossReduction::Mean}) {
    CrossEntropyOptions ro = o;
    ro.reduction = r;
    const CrossEntropyResult want = cross_entropy_forward(
        Tensor::contiguous(lse.data(), DType::F32, {N}),
        Tensor::contiguous(x.data(), DType::F32, {N, V}), y.data(), N, ro);
    float loss = 0;
    cross_entropy_loss(Tensor::contiguous(&loss, DType::F32, {1}),
                       Tensor::contiguous(lse_rows.data(), DType::F32, {N}),
                       Tensor::contiguous(picked.data(), DType::F32, {N}), y.data(), N, ro);
    CHECK_MSG(loss == static_cast<float>(want.loss), "cross_entropy_loss is not the forward's");
  }
  const std::vector<int32_t> none(size_t(N), -100);
  CrossEntropyOptions mean = o;
  mean.reduction = LossReduction::Mean;
  float empty = 0;
  cross_entropy_loss(Tensor::contiguous(&empty, DType::F32, {1}),
                     Tensor::contiguous(lse_rows.data(), DType::F32, {N}),
                     Tensor::contiguous(picked.data(), DType::F32, {N}), none.data(), N, mean);
  CHECK_MSG(std::isnan(empty), "the mean over no counted row is not NaN");
  // A wrong label_logit shape, and a bad label, are refused as by the forward.
  std::vector<int32_t> bad = y;
  bad[4] = int32_t(V);
  CHECK_THROWS_CODE(cross_entropy_rows(Tensor::contiguous(lse.data(), DType::F32, {N}),
                                       Tensor::contiguous(picked.data(), DType::F32, {N - 1}),
                                       Tensor::contiguous(x.data(), DType::F32, {N, V}),
                                       y.data(), N, -100),
                    code::kShape);
  CHECK_THROWS_CODE(cross_entropy_rows(Tensor::contiguous(lse.data(), DType::F32, {N}),
                                       Tensor::contiguous(picked.data(), DType::F32, {N}),
                                       Tensor::contiguous(x.data(), DType::F32, {N, V}),
                                       bad.data(), N, -100),
                    code::kArgument);
}

TEST(cross_entropy_rejects_bad_arguments) {
  const int64_t N = 4, V = 10;
  std::vector<float> x(N * V, 0.f), lse(N);
  Tensor tx = Tensor::contiguous(x.data(), DType::F32, {N, V});
  Tensor tl = Tensor::contiguous(lse.data(), DType::F32, {N});
  std::vector<int32_t> y = {1, 2, 3, 10};
  try {
    cross_entropy_forward(tl, tx, y.data(), N);
    CHECK_MSG(false, "label == V accepted");
  } catch (const Error& e) {
    CHECK(e.code() == code::kArgument);
    CHECK(std::string(e.what()).find("labels[3]") != std::string::npos);
  }
  y[3] = -1;  // not the ignore_index
  CHECK_THROWS_CODE(cross_entropy_forward(tl, tx, y.data(), N), code::kArgument);
  y[3] = -100;
  CHECK_THROWS_CODE(cross_entropy_forward(tl, tx, y.data(), N - 1), code::kShape);
  Tensor bad_lse = Tensor::contiguous(lse.data(), DType::F32, {N - 1});
  CHECK_THROWS_CODE(cross_entropy_forward(bad_lse, tx, y.data(), N), code::kShape);
  Tensor xbf = tx;
  xbf.dtype = DType::BF16;
  CHECK_THROWS_CODE(cross_entropy_forward(tl, xbf, y.data(), N), code::kDType);
  CHECK_THROWS_CODE(cross_entropy_backward(tx, tx, tl, y.data(), N, 1.f), code::kArgument);  // aliasing
}

// Logits and dlogits whose rows are padded (nn::linear_cross_entropy's chunks where the backend
// pads them, Backend::aligned_row_stride): the bits of the contiguous call, the pads neither read
// (NaN there would show) nor written; other strides are refused.
TEST(cross_entropy_on_padded_rows_gives_the_contiguous_bits) {
  using opt::padded_rows;
  using opt::padded_view;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  struct Case { int64_t N, V, ld; LossReduction r; };
  for (const Case& c : {Case{5, 7, 8, LossReduction::Mean}, Case{9, 97, 128, LossReduction::Sum},
                        Case{3, 4099, 4160, LossReduction::Mean}}) {
    const std::string what = "N" + std::to_string(c.N) + " V" + std::to_string(c.V);
    std::vector<float> x = random_vector(c.N * c.V, c.N + c.V, -8.f, 8.f);
    const std::vector<int32_t> y = make_labels(c.N, c.V, c.V, -100, 3);
    CrossEntropyOptions o;
    o.reduction = c.r;
    std::vector<float> xp = padded_rows(x, c.N, c.V, c.ld, nan);
    const Tensor tx = Tensor::contiguous(x.data(), DType::F32, {c.N, c.V});
    const Tensor txp = padded_view(xp.data(), DType::F32, c.N, c.V, c.ld);
    // The rows' lse and label logits, and the forward's loss.
    std::vector<float> lse(c.N), picked(c.N), lse_p(c.N), picked_p(c.N);
    cross_entropy_rows(opt::view(lse, {c.N}), opt::view(picked, {c.N}), tx, y.data(), c.N, -100);
    cross_entropy_rows(opt::view(lse_p, {c.N}), opt::view(picked_p, {c.N}), txp, y.data(), c.N,
                       -100);
    CHECK_MSG(opt::bit_equal(lse, lse_p) && opt::bit_equal(picked, picked_p), what + " rows");
    const CrossEntropyResult a = cross_entropy_forward(opt::view(lse, {c.N}), tx, y.data(), c.N, o);
    const CrossEntropyResult b =
        cross_entropy_forward(opt::view(lse_p, {c.N}), txp, y.data(), c.N, o);
    CHECK_MSG(a.loss == b.loss && a.count == b.count, what + " forward");
    // The gradient: f32 overwritten, f32 accumulated, bf16; padded dlogits, padded logits.
    for (int mode = 0; mode < 3; ++mode) {
      const bool overwrite = mode != 1, bf16 = mode == 2;
      std::vector<float> g(c.N * c.V, 0.5f);
      std::vector<uint16_t> g16(c.N * c.V, 0x1234);
      const std::vector<float> gp0 = padded_rows(g, c.N, c.V, c.ld, nan);
      const std::vector<uint16_t> g16p0 = padded_rows(g16, c.N, c.V, c.ld, uint16_t(0x7fc1));
      std::vector<float> gp = gp0;
      std::vector<uint16_t> g16p = g16p0;
      const Tensor dl = bf16 ? Tensor::contiguous(g16.data(), DType::BF16, {c.N, c.V})
                             : Tensor::contiguous(g.data(), DType::F32, {c.N, c.V});
      const Tensor dlp = bf16 ? padded_view(g16p.data(), DType::BF16, c.N, c.V, c.ld)
                              : padded_view(gp.data(), DType::F32, c.N, c.V, c.ld);
      cross_entropy_backward(dl, tx, opt::view(lse, {c.N}), y.data(), c.N, 0.75f, o, overwrite);
      cross_entropy_backward(dlp, txp, opt::view(lse, {c.N}), y.data(), c.N, 0.75f, o,
                             overwrite);
      const std::string m = what + (bf16 ? " bf16" : overwrite ? " overwrite" : " accumulate");
      if (bf16) {
        CHECK_MSG(opt::unpadded_rows(g16p, c.N, c.V, c.ld) == g16, m + ": not the bits");
        CHECK_MSG(opt::pads_untouched(g16p, c.N, c.V, c.ld, uint16_t(0x7fc1)), m + ": pads");
      } else {
        CHECK_MSG(opt::bit_equal(opt::unpadded_rows(gp, c.N, c.V, c.ld), g), m + ": not the bits");
        CHECK_MSG(opt::pads_untouched(gp, c.N, c.V, c.ld, nan), m + ": pads");
      }
    }
  }
  // A row stride below the columns, or a column stride, is not a padded row: refused.
  std::vector<float> x(64, 0.f), lse(4);
  std::vector<int32_t> y = {1, 2, 3, 4};
  CHECK_THROWS_CODE(cross_entropy_rows(opt::view(lse, {4}), opt::view(lse, {4}),
                                       padded_view(x.data(), DType::F32, 4, 8, 6), y.data(), 4,
                                       -100),
                    code::kLayout);
  Tensor cols = padded_view(x.data(), DType::F32, 4, 8, 16);
  cols.strides[1] = 2;
  CHECK_THROWS_CODE(cross_entropy_rows(opt::view(lse, {4}), opt::view(lse, {4}), cols, y.data(),
                                       4, -100),
                    code::kLayout);
}

// ---------------------------------------------------------------------------------------------
// adamw

TEST(adamw_matches_torch_on_every_isa) {
  // Tolerance 0: we do torch's fp32 operations, fused multiply-adds included, so the parameters
  // and moments equal torch 1.13's bit for bit (plain mul+add would be ~2 ulp off). Every ISA
  // path (portable, AVX2) is run and must agree.
  const Isa saved = active_isa();
  for (Isa isa : supported_isas()) {
    set_isa(isa);
    for (const AdamGolden& g : kAdamGolden) {
      std::vector<float> p(kAdamP0, kAdamP0 + kAdamN), m(kAdamN, 0.f), v(kAdamN, 0.f);
      AdamWOptions o;
      o.lr = g.lr;
      o.beta1 = g.beta1;
      o.beta2 = g.beta2;
      o.eps = g.eps;
      o.weight_decay = g.weight_decay;
      for (int step = 1; step <= kAdamSteps; ++step) {
        std::vector<float> grad(kAdamGrads[step - 1], kAdamGrads[step - 1] + kAdamN);
        adamw_update(Tensor::contiguous(p.data(), DType::F32, {kAdamN}),
                     Tensor::contiguous(grad.data(), DType::F32, {kAdamN}),
                     Tensor::contiguous(m.data(), DType::F32, {kAdamN}),
                     Tensor::contiguous(v.data(), DType::F32, {kAdamN}), step, o);
        double worst = 0;
        for (int i = 0; i < kAdamN; ++i) {
          const float* want[] = {g.p[step - 1], g.m[step - 1], g.v[step - 1]};
          const float got[] = {p[i], m[i], v[i]};
          for (int t = 0; t < 3; ++t)
            worst = std::fmax(worst, std::fabs(double(got[t]) - want[t][i]) /
                                         std::fmax(1e-30, std::fabs(double(want[t][i]))));
        }
        CHECK_ERR(worst, 0.0, std::string("adamw vs torch, isa ") + isa_name(isa) + ", lr " +
                                  std::to_string(g.lr) + " step " + std::to_string(step));
      }
    }
    // A long vector (vector body + tail) gives the same bits on every path.
    const int64_t n = 1037;
    std::vector<float> p = random_vector(n, 11), m(n, 0.f), v(n, 0.f), gr = random_vector(n, 12);
    auto T = [&](std::vector<float>& x) { return Tensor::contiguous(x.data(), DType::F32, {n}); };
    for (int step = 1; step <= 3; ++step) adamw_update(T(p), T(gr), T(m), T(v), step, AdamWOptions{});
    static std::vector<float> first;
    if (isa == supported_isas().front()) first = p;
    else CHECK(std::memcmp(first.data(), p.data(), n * 4) == 0);
  }
  set_isa(saved);
}

TEST(adamw_matches_reference_is_deterministic_and_validates) {
  const int64_t n = 100003;
  std::vector<float> p = random_vector(n, 1), m(n, 0.f), v(n, 0.f);
  std::vector<float> pr = p, mr = m, vr = v;
  AdamWOptions o;
  o.lr = 2e-3;
  o.weight_decay = 0.05;
  auto T = [&](std::vector<float>& x) { return Tensor::contiguous(x.data(), DType::F32, {n}); };
  set_num_threads(2);
  for (int step = 1; step <= 4; ++step) {
    std::vector<float> g = random_vector(n, 100 + step, -0.5f, 0.5f);
    adamw_update(T(p), T(g), T(m), T(v), step, o);
    adamw_update_reference(T(pr), T(g), T(mr), T(vr), step, o);
  }
  // fp32 vs double per step, 4 steps: the update itself is ~lr, its relative error ~1e-6.
  CHECK_ERR(s2s_test::max_normalized_error(p.data(), pr.data(), n), 5e-7, "param vs reference");
  CHECK_ERR(s2s_test::max_normalized_error(m.data(), mr.data(), n), 1e-6, "exp_avg vs reference");
  CHECK_ERR(s2s_test::max_normalized_error(v.data(), vr.data(), n), 1e-6, "exp_avg_sq vs reference");
  // 1 vs 2 threads: bit-identical.
  std::vector<float> p1 = random_vector(n, 2), m1(n, 0.f), v1(n, 0.f), g1 = random_vector(n, 3);
  std::vector<float> p2 = p1, m2 = m1, v2 = v1;
  set_num_threads(1);
  adamw_update(T(p1), T(g1), T(m1), T(v1), 1, o);
  set_num_threads(2);
  adamw_update(T(p2), T(g1), T(m2), T(v2), 1, o);
  CHECK(std::memcmp(p1.data(), p2.data(), n * 4) == 0 && std::memcmp(v1.data(), v2.data(), n * 4) == 0);
  // Errors.
  std::vector<float> small(5);
  Tensor ts = Tensor::contiguous(small.data(), DType::F32, {5});
  CHECK_THROWS_CODE(adamw_update(T(p), ts, T(m), T(v), 1, o), code::kShape);
  CHECK_THROWS_CODE(adamw_update(T(p), T(g1), T(m), T(v), 0, o), code::kArgument);
  AdamWOptions bad = o;
  bad.beta2 = 1.0;
  CHECK_THROWS_CODE(adamw_update(T(p), T(g1), T(m), T(v), 1, bad), code::kArgument);
  bad = o;
  bad.lr = -1;
  CHECK_THROWS_CODE(adamw_update(T(p), T(g1), T(m), T(v), 1, bad), code::kArgument);
  Tensor gbf = T(g1);
  gbf.dtype = DType::BF16;
  CHECK_THROWS_CODE(adamw_update(T(p), gbf, T(m), T(v), 1, o), code::kDType);
}

TEST(adamw_fused_update_matches_unfused_sequence) {
  // The optimizer step's fused pass equals scale_forward, the clip multiply, adamw_update,
  // cast_forward to the bf16 copy and zeroing the gradient, bit for bit, on every ISA path at 1
  // and 2 threads (sizes cross the 32K-element blocks; some tensors have no bf16 copy or no decay).
  const Isa saved = active_isa();
  const int saved_threads = num_threads();
  const int64_t sizes[] = {5, 1037, 70000, 32768, 33001};
  struct State { std::vector<float> p, g, m, v; std::vector<uint16_t> c; bool bf16, decay; };
  auto make = [&](uint64_t seed) {
    std::vector<State> st;
    for (size_t k = 0; k < 5; ++k) {
      const int64_t n = sizes[k];
      st.push_back({random_vector(n, seed + 10 * k), {}, std::vector<float>(n, 0.f),
                    std::vector<float>(n, 0.f), std::vector<uint16_t>(n, 0), k % 2 == 0, k != 1});
    }
    return st;
  };
  const float scales[] = {1.0f, 0.37f};
  const float clips[] = {1.0f, 0.123f};
  for (Isa isa : supported_isas()) {
    set_isa(isa);
    for (int threads = 1; threads <= 2; ++threads) {
      set_num_threads(threads);
      for (float scale : scales) {
        for (float clip : clips) {
          std::vector<State> a = make(100), b = make(100);
          AdamWOptions o;
          o.lr = 3e-3;
          for (int step = 1; step <= 3; ++step) {
            for (size_t k = 0; k < a.size(); ++k) {
              a[k].g = random_vector(sizes[k], 1000 * step + k);
              b[k].g = a[k].g;
            }
            // Unfused: today's sequence, one op per pass.
            for (State& x : a) {
              const int64_t n = static_cast<int64_t>(x.p.size());
              auto T = [&](std::vector<float>& y) { return Tensor::contiguous(y.data(), DType::F32, {n}); };
              if (scale != 1.0f) scale_forward(T(x.g), T(x.g), scale);
              for (float& y : x.g) y *= clip;
              AdamWOptions ox = o;
              if (!x.decay) ox.weight_decay = 0;
              adamw_update(T(x.p), T(x.g), T(x.m), T(x.v), step, ox);
              if (x.bf16) cast_f32_to_bf16(x.c.data(), x.p.data(), n);
              std::memset(x.g.data(), 0, sizeof(float) * n);
            }
            // Fused.
            std::vector<AdamWFusedTensor> ts;
            for (State& x : b) {
              const int64_t n = static_cast<int64_t>(x.p.size());
              auto T = [&](std::vector<float>& y) { return Tensor::contiguous(y.data(), DType::F32, {n}); };
              AdamWFusedTensor t{T(x.p), T(x.g), T(x.m), T(x.v), Tensor{}, x.decay};
              if (x.bf16) t.compute = Tensor::contiguous(x.c.data(), DType::BF16, {n});
              ts.push_back(t);
            }
            adamw_fused_update(ts, step, o, scale, clip);
            bool same = true;
            for (size_t k = 0; k < a.size(); ++k) {
              const size_t n = a[k].p.size();
              same = same && std::memcmp(a[k].p.data(), b[k].p.data(), 4 * n) == 0 &&
                     std::memcmp(a[k].m.data(), b[k].m.data(), 4 * n) == 0 &&
                     std::memcmp(a[k].v.data(), b[k].v.data(), 4 * n) == 0 &&
                     std::memcmp(a[k].g.data(), b[k].g.data(), 4 * n) == 0 &&
                     std::memcmp(a[k].c.data(), b[k].c.data(), 2 * n) == 0;
            }
            CHECK_MSG(same, std::string("fused vs unfused, isa ") + isa_name(isa) + " threads " +
                                std::to_string(threads) + " scale " + std::to_string(scale) +
                                " clip " + std::to_string(clip) + " step " + std::to_string(step));
          }
        }
      }
    }
  }
  set_isa(saved);
  set_num_threads(saved_threads);
  // Errors: a bf16 copy of the wrong shape or dtype.
  std::vector<float> p(8, 1.f), g(8, 1.f), m(8, 0.f), v(8, 0.f);
  std::vector<uint16_t> c(8, 0);
  auto T = [](std::vector<float>& y) { return Tensor::contiguous(y.data(), DType::F32, {8}); };
  AdamWFusedTensor t{T(p), T(g), T(m), T(v), Tensor::contiguous(c.data(), DType::BF16, {4, 2}), true};
  CHECK_THROWS_CODE(adamw_fused_update({t}, 1, AdamWOptions{}, 1.f, 1.f), code::kShape);
  t.compute = T(p);
  CHECK_THROWS_CODE(adamw_fused_update({t}, 1, AdamWOptions{}, 1.f, 1.f), code::kDType);
  CHECK(g[0] == 1.f && p[0] == 1.f);  // nothing written on an error
}

// ---------------------------------------------------------------------------------------------
// grad_norm / clip_grad_norm

TEST(scaled_grad_norm_equals_scale_then_grad_norm) {
  // Bit for bit: the fused optimizer's read-only norm pass against scale_forward + grad_norm,
  // and clip_coefficient against clip_grad_norm's multiply.
  std::vector<float> a = random_vector(3, 1), b = random_vector(70000, 2), c = random_vector(200001, 3);
  auto grads_of = [](std::vector<float>& x, std::vector<float>& y, std::vector<float>& z) {
    return std::vector<Tensor>{Tensor::contiguous(x.data(), DType::F32, {3}), Tensor{},
                               Tensor::contiguous(y.data(), DType::F32, {700, 100}),
                               Tensor::contiguous(z.data(), DType::F32, {200001})};
  };
  for (float s : {1.0f, 0.37f, 1.0f / 1024, 3.5f}) {
    for (int threads = 1; threads <= 2; ++threads) {
      set_num_threads(threads);
      std::vector<float> a2 = a, b2 = b, c2 = c;
      const double fused = scaled_grad_norm(grads_of(a, b, c), s);
      for (const Tensor& t : grads_of(a2, b2, c2)) {
        if (t.data != nullptr) scale_forward(t, t, s);
      }
      const double unfused = grad_norm(grads_of(a2, b2, c2));
      CHECK_MSG(std::memcmp(&fused, &unfused, sizeof(double)) == 0,
                "scaled_grad_norm vs scale + grad_norm, scale " + std::to_string(s));
      // clip_coefficient is the factor clip_grad_norm applies.
      std::vector<float> b3 = b2;
      const float coef = clip_coefficient(unfused, 1.0);
      clip_grad_norm(grads_of(a2, b2, c2), 1.0);
      bool same = true;
      for (size_t i = 0; i < b3.size(); ++i) same = same && (b3[i] * coef == b2[i]);
      CHECK(same);
    }
  }
  CHECK(clip_coefficient(0.5, 1.0) == 1.0f);
  CHECK_THROWS_CODE(clip_coefficient(0.5, 0.0), code::kArgument);
}

TEST(grad_norm_matches_reference_and_is_deterministic) {
  std::vector<float> a = random_vector(3, 1), b = random_vector(70000, 2), c = random_vector(200001, 3);
  std::vector<Tensor> grads = {Tensor::contiguous(a.data(), DType::F32, {3}), Tensor{},
                               Tensor::contiguous(b.data(), DType::F32, {700, 100}),
                               Tensor::contiguous(c.data(), DType::F32, {200001})};
  set_num_threads(1);
  const double n1 = grad_norm(grads);
  set_num_threads(2);
  const double n2 = grad_norm(grads);
  CHECK(n1 == n2);
  CHECK_ERR(rel(n2, grad_norm_reference(grads)), 1e-12, "grad_norm vs reference");
  CHECK(grad_norm({}) == 0.0);
}

TEST(clip_grad_norm_follows_torch_rule) {
  std::vector<float> a = random_vector(1000, 4), b = random_vector(99999, 5);
  std::vector<Tensor> grads = {Tensor::contiguous(a.data(), DType::F32, {1000}),
                               Tensor::contiguous(b.data(), DType::F32, {99999})};
  const double before = grad_norm(grads);
  // Above the threshold: scaled by max_norm / (norm + 1e-6); returns the pre-clip norm.
  std::vector<float> ra = a, rb = b;
  std::vector<Tensor> ref = {Tensor::contiguous(ra.data(), DType::F32, {1000}),
                             Tensor::contiguous(rb.data(), DType::F32, {99999})};
  const double got = clip_grad_norm(grads, 1.0);
  CHECK(got == before);
  CHECK(rel(clip_grad_norm_reference(ref, 1.0), before) < 1e-12);
  CHECK_ERR(s2s_test::max_abs_error(b.data(), rb.data(), b.size()), 1e-7, "clipped vs reference");
  CHECK_ERR(std::fabs(grad_norm(grads) - 1.0), 1e-5, "norm after clipping");
  // Below the threshold: untouched bits.
  std::vector<float> keep = b;
  clip_grad_norm({grads[1]}, 10.0);
  CHECK(std::memcmp(keep.data(), b.data(), b.size() * 4) == 0);
  // Non-finite: returned as is, gradients untouched.
  b[7] = INFINITY;
  keep = b;
  CHECK(std::isinf(clip_grad_norm(grads, 1.0)));
  b[7] = NAN;
  CHECK(std::isnan(clip_grad_norm(grads, 1.0)));
  CHECK(std::memcmp(keep.data() + 8, b.data() + 8, (b.size() - 8) * 4) == 0);
  // Errors.
  CHECK_THROWS_CODE(clip_grad_norm(grads, 0.0), code::kArgument);
  Tensor bf = grads[0];
  bf.dtype = DType::BF16;
  CHECK_THROWS_CODE(grad_norm({bf}), code::kDType);
}

// bf16 dlogits (overwrite only): each value is the fp32 overwrite result rounded to nearest even,
// bit for bit, on every ISA path; ignored rows and count == 0 give +0; accumulating is refused.
TEST(cross_entropy_backward_bf16_is_the_rounded_fp32_gradient) {
  opt::for_each_isa([](Isa isa) {
    struct Case { int64_t N, V; int ignore_every; LossReduction r; };
    const Case cases[] = {{5, 7, 2, LossReduction::Mean}, {9, 5000, 3, LossReduction::Sum},
                          {3, 2048, 0, LossReduction::Mean}, {2, 4099, 0, LossReduction::Sum}};
    for (const Case& c : cases) {
      std::vector<float> x = random_vector(c.N * c.V, c.N + c.V, -8.f, 8.f);
      std::vector<int32_t> y = make_labels(c.N, c.V, c.V + 1, -100, c.ignore_every);
      if (c.V == 4099) y = {2048, 4098};  // labels on and after a chunk edge
      x[c.V + 17] = NAN;                  // row 1 is NaN throughout
      CrossEntropyOptions o;
      o.reduction = c.r;
      std::vector<float> lse(c.N), g32(c.N * c.V);
      Tensor tx = Tensor::contiguous(x.data(), DType::F32, {c.N, c.V});
      Tensor tl = Tensor::contiguous(lse.data(), DType::F32, {c.N});
      cross_entropy_forward(tl, tx, y.data(), c.N, o);
      cross_entropy_backward(Tensor::contiguous(g32.data(), DType::F32, {c.N, c.V}), tx, tl,
                             y.data(), c.N, 0.75f, o, true);
      std::vector<uint16_t> g16(c.N * c.V, 0x1234), want(c.N * c.V);
      cast_f32_to_bf16(want.data(), g32.data(), c.N * c.V);
      cross_entropy_backward(Tensor::contiguous(g16.data(), DType::BF16, {c.N, c.V}), tx, tl,
                             y.data(), c.N, 0.75f, o, true);
      CHECK_MSG(g16 == want, std::string(isa_name(isa)) + " N" + std::to_string(c.N) + " V" +
                                 std::to_string(c.V) + ": bf16 dlogits != rounded fp32 dlogits");
    }
    // Every row ignored: zeros.
    const int64_t N = 3, V = 9;
    std::vector<float> x = random_vector(N * V, 3), lse(N);
    std::vector<int32_t> none(N, -100);
    Tensor tx = Tensor::contiguous(x.data(), DType::F32, {N, V});
    Tensor tl = Tensor::contiguous(lse.data(), DType::F32, {N});
    std::vector<uint16_t> g16(N * V, 0x1234);
    cross_entropy_backward(Tensor::contiguous(g16.data(), DType::BF16, {N, V}), tx, tl,
                           none.data(), N, 1.f, CrossEntropyOptions{}, true);
    bool zero = true;
    for (uint16_t h : g16) zero = zero && h == 0;
    CHECK(zero);
    CHECK_THROWS_CODE(cross_entropy_backward(Tensor::contiguous(g16.data(), DType::BF16, {N, V}),
                                             tx, tl, none.data(), N, 1.f, CrossEntropyOptions{},
                                             false),
                      code::kArgument);
  });
}
