// Position ops: T5 relative-position buckets vs torch-generated golden integers, bias gather and
// scatter vs reference and finite differences; RoPE vs transformers' numbers, vs its reference,
// backward vs finite differences, in place, accumulation, determinism and argument errors.
#include <cmath>
#include <cstring>

#include "harness.h"
#include "ops_test_util.h"
#include "s2s/ops/rope.h"
#include "s2s/ops/t5_relative_position.h"
#include "s2s/thread_pool.h"

using namespace s2s;
using s2s_test::random_vector;

namespace {
#include "fixtures/rope_golden.inc"
#include "fixtures/t5_buckets_golden.inc"
}  // namespace

// ---------------------------------------------------------------------------------------------
// T5 relative positions

TEST(t5_buckets_match_transformers) {
  for (const GoldenBuckets& g : kGoldenBuckets) {
    int mismatches = 0;
    for (int rel = kGoldenRelLo; rel <= kGoldenRelHi; ++rel) {
      const int32_t got = t5_relative_position_bucket(rel, g.bidirectional, g.num_buckets, g.max_distance);
      const int want = g.buckets[rel - kGoldenRelLo];
      if (got != want && mismatches++ < 5) {
        CHECK_MSG(false, "bucket(" + std::to_string(rel) + ", bidirectional=" +
                             std::to_string(g.bidirectional) + ", " + std::to_string(g.num_buckets) +
                             ", " + std::to_string(g.max_distance) + ") = " + std::to_string(got) +
                             ", transformers says " + std::to_string(want));
      }
    }
    CHECK(mismatches == 0);
  }
}

namespace {
void t5_case(int64_t Hq, int64_t Tq, int64_t Tk, int64_t NB, T5RelativePositionOptions o, uint64_t seed) {
  std::vector<float> table = random_vector(NB * Hq, seed);
  std::vector<float> bias(Hq * Tq * Tk, -1.f), ref(Hq * Tq * Tk, -2.f);
  Tensor tt = Tensor::contiguous(table.data(), DType::F32, {NB, Hq});
  t5_relative_position_forward(Tensor::contiguous(bias.data(), DType::F32, {Hq, Tq, Tk}), tt, o);
  t5_relative_position_forward_reference(Tensor::contiguous(ref.data(), DType::F32, {Hq, Tq, Tk}), tt, o);
  CHECK(std::memcmp(bias.data(), ref.data(), bias.size() * 4) == 0);  // a gather: exact
  std::vector<float> dbias = random_vector(Hq * Tq * Tk, seed + 1);
  std::vector<float> dt(NB * Hq, 0.25f), dref(NB * Hq, 0.25f);
  Tensor tdb = Tensor::contiguous(dbias.data(), DType::F32, {Hq, Tq, Tk});
  t5_relative_position_backward(Tensor::contiguous(dt.data(), DType::F32, {NB, Hq}), tdb, o);
  t5_relative_position_backward_reference(Tensor::contiguous(dref.data(), DType::F32, {NB, Hq}), tdb, o);
  // Both sum in double and round once: equal to the last bit.
  CHECK(std::memcmp(dt.data(), dref.data(), dt.size() * 4) == 0);
}
}  // namespace

TEST(t5_bias_forward_backward_match_reference) {
  set_num_threads(2);
  for (bool bidirectional : {true, false}) {
    T5RelativePositionOptions o;
    o.bidirectional = bidirectional;
    t5_case(4, 7, 7, 32, o, 1);
    t5_case(6, 130, 130, 32, o, 2);
    t5_case(3, 1, 200, 32, o, 3);  // decoding one token
    o.q_offset = 150;
    t5_case(3, 1, 151, 32, o, 4);  // decoding at position 150 with a cache
    t5_case(2, 5, 160, 16, o, 5);
    o.q_offset = 0;
    o.max_distance = 64;
    t5_case(2, 40, 9, 16, o, 6);  // cross lengths
  }
}

TEST(t5_backward_matches_finite_differences_and_accumulates) {
  const int64_t Hq = 3, Tq = 6, Tk = 9, NB = 8;
  T5RelativePositionOptions o;
  o.bidirectional = true;
  o.max_distance = 12;
  std::vector<float> table = random_vector(NB * Hq, 10);
  std::vector<float> g = random_vector(Hq * Tq * Tk, 11);
  std::vector<float> dtable(NB * Hq, 0.f);
  Tensor tg = Tensor::contiguous(g.data(), DType::F32, {Hq, Tq, Tk});
  t5_relative_position_backward(Tensor::contiguous(dtable.data(), DType::F32, {NB, Hq}), tg, o);
  auto loss = [&]() {
    std::vector<float> bias(Hq * Tq * Tk);
    t5_relative_position_forward(Tensor::contiguous(bias.data(), DType::F32, {Hq, Tq, Tk}),
                                 Tensor::contiguous(table.data(), DType::F32, {NB, Hq}), o);
    double acc = 0;
    for (size_t n = 0; n < bias.size(); ++n) acc += double(bias[n]) * g[n];
    return acc;
  };
  CHECK_ERR(s2s_test::gradient_check(table, dtable, loss), 1e-4, "fd dtable");
  // Accumulates; a null dtable is skipped.
  std::vector<float> twice = dtable;
  t5_relative_position_backward(Tensor::contiguous(twice.data(), DType::F32, {NB, Hq}), tg, o);
  double worst = 0;
  for (size_t n = 0; n < twice.size(); ++n) worst = std::fmax(worst, std::fabs(twice[n] - 2 * dtable[n]));
  CHECK_ERR(worst, 1e-6, "dtable accumulates");
  t5_relative_position_backward(Tensor{}, tg, o);
}

TEST(t5_is_deterministic_at_1_and_2_threads) {
  const int64_t Hq = 8, Tq = 100, Tk = 100, NB = 32;
  std::vector<float> g = random_vector(Hq * Tq * Tk, 3);
  T5RelativePositionOptions o;
  std::vector<float> a(NB * Hq, 0.f), b(NB * Hq, 0.f);
  Tensor tg = Tensor::contiguous(g.data(), DType::F32, {Hq, Tq, Tk});
  set_num_threads(1);
  t5_relative_position_backward(Tensor::contiguous(a.data(), DType::F32, {NB, Hq}), tg, o);
  set_num_threads(2);
  t5_relative_position_backward(Tensor::contiguous(b.data(), DType::F32, {NB, Hq}), tg, o);
  CHECK(std::memcmp(a.data(), b.data(), a.size() * 4) == 0);
}

TEST(t5_rejects_bad_arguments) {
  std::vector<float> table(32 * 4), bias(4 * 3 * 5);
  Tensor tt = Tensor::contiguous(table.data(), DType::F32, {32, 4});
  Tensor tb = Tensor::contiguous(bias.data(), DType::F32, {4, 3, 5});
  T5RelativePositionOptions o;
  Tensor wrong_heads = Tensor::contiguous(table.data(), DType::F32, {16, 8});
  CHECK_THROWS_CODE(t5_relative_position_forward(tb, wrong_heads, o), code::kShape);
  o.q_offset = -1;
  CHECK_THROWS_CODE(t5_relative_position_forward(tb, tt, o), code::kArgument);
  o.q_offset = 0;
  o.max_distance = 8;  // bidirectional 32 buckets: exact range is 8
  CHECK_THROWS_CODE(t5_relative_position_forward(tb, tt, o), code::kArgument);
  CHECK_THROWS_CODE(t5_relative_position_bucket(3, true, 2, 128), code::kArgument);
  Tensor t2 = Tensor::contiguous(table.data(), DType::F32, {128});
  o.max_distance = 128;
  CHECK_THROWS_CODE(t5_relative_position_forward(tb, t2, o), code::kShape);
}

// Decoding's bias over a cache of Tk positions, the queries' offset read from key_end[0], is
// the plain bias with q_offset = key_end[0] - Tq, bit for bit; key_end[0] outside [Tq, Tk] and a
// q_offset given besides are refused.
TEST(t5_decoding_bias_reads_the_offset_from_key_end) {
  const int64_t Hq = 3, NB = 32, Tk = 40;
  std::vector<float> table = s2s_test::random_vector(size_t(NB * Hq), 7);
  const Tensor tt = Tensor::contiguous(table.data(), DType::F32, {NB, Hq});
  T5RelativePositionOptions o;
  o.bidirectional = false;
  o.max_distance = 20;  // 32 causal buckets: exact up to 16, logarithmic to 20
  for (const int64_t Tq : {1, 3}) {
    for (const int32_t end : {int32_t(Tq), 17, int32_t(Tk)}) {
      std::vector<float> got(size_t(Hq * Tq * Tk)), want(got.size());
      t5_relative_position_decoding_forward(
          Tensor::contiguous(got.data(), DType::F32, {Hq, Tq, Tk}), tt, &end, o);
      T5RelativePositionOptions plain = o;
      plain.q_offset = end - Tq;
      t5_relative_position_forward(Tensor::contiguous(want.data(), DType::F32, {Hq, Tq, Tk}), tt,
                                   plain);
      CHECK(opt::bit_equal(got, want));
    }
  }
  std::vector<float> bias(size_t(Hq * 2 * Tk));
  const Tensor tb = Tensor::contiguous(bias.data(), DType::F32, {Hq, 2, Tk});
  for (const int32_t bad : {1, int32_t(Tk + 1)}) {  // before the 2 new queries; past the cache
    CHECK_THROWS_CODE(t5_relative_position_decoding_forward(tb, tt, &bad, o), code::kArgument);
  }
  const int32_t end = 5;
  o.q_offset = 1;
  CHECK_THROWS_CODE(t5_relative_position_decoding_forward(tb, tt, &end, o), code::kArgument);
}

// ---------------------------------------------------------------------------------------------
// RoPE

TEST(rope_matches_transformers) {
  const int D = kRopeGoldenD, T = kRopeGoldenT;
  std::vector<float> x(T * D), out(T * D);
  for (int t = 0; t < T; ++t)
    for (int d = 0; d < D; ++d) x[t * D + d] = static_cast<float>(0.25 * (d + 1) - 0.1 * t);
  for (const RopeGolden& g : kRopeGolden) {
    rope_forward(Tensor::contiguous(out.data(), DType::F32, {1, T, 1, D}),
                 Tensor::contiguous(x.data(), DType::F32, {1, T, 1, D}), kRopeGoldenPositions,
                 T, g.theta);
    // torch's fp32 cos/sin are within an ulp or so of ours; the angle itself is the same fp32
    // number (angles computed in double instead would miss by ~1e-4 here).
    CHECK_ERR(s2s_test::max_abs_error(out.data(), g.out, T * D), 1e-6,
              "rope vs transformers, theta " + std::to_string(g.theta));
  }
}

namespace {
struct RopeCase { int64_t B, T, H, D; bool explicit_positions; float theta; };
std::vector<int32_t> left_padded_positions(int64_t B, int64_t T) {
  std::vector<int32_t> p(B * T);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t pad = b % 3;  // row b has `pad` pad tokens on the left
    for (int64_t t = 0; t < T; ++t) p[b * T + t] = t < pad ? 1 : int32_t(t - pad + 1000 * b);
  }
  return p;
}
}  // namespace

TEST(rope_matches_reference_in_and_out_of_place) {
  set_num_threads(2);
  const RopeCase cases[] = {{2, 7, 3, 8, false, 10000.f}, {3, 65, 4, 64, true, 1e6f},
                            {1, 1, 1, 2, false, 10000.f}, {2, 33, 2, 128, true, 500000.f}};
  for (const RopeCase& c : cases) {
    const int64_t n = c.B * c.T * c.H * c.D;
    std::vector<float> x = random_vector(n, 7), out(n), ref(n);
    std::vector<int32_t> pos = left_padded_positions(c.B, c.T);
    const int32_t* pp = c.explicit_positions ? pos.data() : nullptr;
    const int64_t np = c.explicit_positions ? c.B * c.T : 0;
    Tensor tx = Tensor::contiguous(x.data(), DType::F32, {c.B, c.T, c.H, c.D});
    rope_forward(Tensor::contiguous(out.data(), DType::F32, {c.B, c.T, c.H, c.D}), tx, pp, np, c.theta);
    rope_forward_reference(Tensor::contiguous(ref.data(), DType::F32, {c.B, c.T, c.H, c.D}), tx, pp, np, c.theta);
    CHECK_ERR(s2s_test::max_abs_error(out.data(), ref.data(), n), 1e-6, "rope forward vs reference");
    // In place gives the same bits as out of place.
    std::vector<float> inplace = x;
    Tensor ti = Tensor::contiguous(inplace.data(), DType::F32, {c.B, c.T, c.H, c.D});
    rope_forward(ti, ti, pp, np, c.theta);
    CHECK(std::memcmp(inplace.data(), out.data(), n * 4) == 0);
    // Backward vs reference, accumulating onto a nonzero start.
    std::vector<float> dy = random_vector(n, 8), dx(n, 0.5f), dref(n, 0.5f);
    Tensor tdy = Tensor::contiguous(dy.data(), DType::F32, {c.B, c.T, c.H, c.D});
    rope_backward(Tensor::contiguous(dx.data(), DType::F32, {c.B, c.T, c.H, c.D}), tdy, pp, np, c.theta);
    rope_backward_reference(Tensor::contiguous(dref.data(), DType::F32, {c.B, c.T, c.H, c.D}), tdy, pp, np, c.theta);
    CHECK_ERR(s2s_test::max_abs_error(dx.data(), dref.data(), n), 1e-6, "rope backward vs reference");
    // The backward of the forward's output gives back the input (rotations are orthogonal).
    std::vector<float> back(n, 0.f);
    rope_backward(Tensor::contiguous(back.data(), DType::F32, {c.B, c.T, c.H, c.D}),
                  Tensor::contiguous(out.data(), DType::F32, {c.B, c.T, c.H, c.D}), pp, np, c.theta);
    CHECK_ERR(s2s_test::max_abs_error(back.data(), x.data(), n), 1e-6, "rope inverse");
    rope_backward(Tensor{}, tdy, pp, np, c.theta);  // null gradient: skipped
    // Overwriting a fresh (NaN) gradient gives what accumulating into zeros gives.
    std::vector<float> fresh = opt::garbage(n), zeroed(n, 0.f);
    rope_backward(Tensor::contiguous(fresh.data(), DType::F32, {c.B, c.T, c.H, c.D}), tdy, pp, np,
                  c.theta, true);
    rope_backward(Tensor::contiguous(zeroed.data(), DType::F32, {c.B, c.T, c.H, c.D}), tdy, pp,
                  np, c.theta, false);
    CHECK(opt::same_values(fresh, zeroed));
    // A bf16 gradient (overwritten only): the f32 values rounded, bit for bit.
    std::vector<uint16_t> half(n, 0xFFFF);
    rope_backward(opt::view16(half, DType::BF16, {c.B, c.T, c.H, c.D}), tdy, pp, np, c.theta,
                  true);
    bool rounded = true;
    for (int64_t i = 0; i < n; ++i) rounded = rounded && half[i] == f32_to_bf16(fresh[i]);
    CHECK(rounded);
    CHECK_THROWS_CODE(rope_backward(opt::view16(half, DType::BF16, {c.B, c.T, c.H, c.D}), tdy, pp,
                                    np, c.theta, false),
                      code::kDType);
  }
}

TEST(rope_backward_matches_finite_differences) {
  const int64_t B = 2, T = 5, H = 2, D = 6;
  std::vector<float> x = random_vector(B * T * H * D, 1), g = random_vector(B * T * H * D, 2);
  std::vector<int32_t> pos = left_padded_positions(B, T);
  std::vector<float> dx(x.size(), 0.f);
  rope_backward(Tensor::contiguous(dx.data(), DType::F32, {B, T, H, D}),
                Tensor::contiguous(g.data(), DType::F32, {B, T, H, D}), pos.data(), B * T, 10000.f);
  auto loss = [&]() {
    std::vector<float> y(x.size());
    rope_forward(Tensor::contiguous(y.data(), DType::F32, {B, T, H, D}),
                 Tensor::contiguous(x.data(), DType::F32, {B, T, H, D}), pos.data(), B * T, 10000.f);
    double acc = 0;
    for (size_t n = 0; n < y.size(); ++n) acc += double(y[n]) * g[n];
    return acc;
  };
  CHECK_ERR(s2s_test::gradient_check(x, dx, loss), 1e-4, "fd rope dinp");
}

TEST(rope_is_deterministic_and_rejects_bad_arguments) {
  const int64_t B = 2, T = 40, H = 4, D = 32, n = B * T * H * D;
  std::vector<float> x = random_vector(n, 3), a(n), b(n);
  Tensor tx = Tensor::contiguous(x.data(), DType::F32, {B, T, H, D});
  set_num_threads(1);
  rope_forward(Tensor::contiguous(a.data(), DType::F32, {B, T, H, D}), tx, nullptr, 0, 10000.f);
  set_num_threads(2);
  rope_forward(Tensor::contiguous(b.data(), DType::F32, {B, T, H, D}), tx, nullptr, 0, 10000.f);
  CHECK(std::memcmp(a.data(), b.data(), n * 4) == 0);
  Tensor ta = Tensor::contiguous(a.data(), DType::F32, {B, T, H, D});
  std::vector<int32_t> pos(B * T, 3);
  pos[T + 7] = -2;
  try {
    rope_forward(ta, tx, pos.data(), B * T, 10000.f);
    CHECK_MSG(false, "negative position accepted");
  } catch (const Error& e) {
    CHECK(e.code() == code::kArgument);
    CHECK(std::string(e.what()).find("positions[1, 7]") != std::string::npos);
  }
  CHECK_THROWS_CODE(rope_forward(ta, tx, pos.data(), B * T - 1, 10000.f), code::kShape);
  Tensor odd = Tensor::contiguous(x.data(), DType::F32, {B, T, 8, 15});
  CHECK_THROWS_CODE(rope_forward(odd, odd, nullptr, 0, 10000.f), code::kShape);
  CHECK_THROWS_CODE(rope_forward(ta, tx, nullptr, 0, -1.f), code::kArgument);
  Tensor wrong = Tensor::contiguous(a.data(), DType::F32, {B, T, H * 2, D / 2});
  CHECK_THROWS_CODE(rope_forward(wrong, tx, nullptr, 0, 10000.f), code::kShape);
  CHECK_THROWS_CODE(rope_backward(tx, tx, nullptr, 0, 10000.f), code::kArgument);  // aliasing
}
