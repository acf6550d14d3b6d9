// embedding, dropout (+ the Philox4x32-10 generator) and cast: fast vs reference, gradients,
// accumulation, null gradients, determinism across thread counts, bad ids/shapes/dtypes.
#include <cmath>
#include <cstring>

#include "core/philox.h"
#include "ops_test_util.h"
#include "s2s/ops/cast.h"
#include "s2s/ops/dropout.h"
#include "s2s/ops/embedding.h"

using namespace s2s;
using opt::none;
using opt::view;
using s2s_test::random_vector;

// ---- embedding ----

TEST(embedding_fast_matches_reference) {
  const int64_t B = 3, T = 5, V = 11, P = 8;
  std::vector<int32_t> ids(B * T), pos(B * T);
  for (int64_t i = 0; i < B * T; ++i) {
    ids[i] = int32_t((i * 7) % V);
    pos[i] = int32_t((i * 3) % P);
  }
  ids[4] = ids[9] = ids[0];  // repeated ids: the backward must add, not overwrite
  for (int64_t C : {1, 5, 64, 257}) {
    std::vector<float> wte = random_vector(V * C, 1), wpe = random_vector(P * C, 2);
    std::vector<uint16_t> wte_b(V * C), wte_h(V * C);
    for (int64_t i = 0; i < V * C; ++i) {
      wte_b[i] = f32_to_bf16(wte[i]);
      wte_h[i] = f32_to_f16(wte[i]);
    }
    const Tensor tables[] = {view(wte, {V, C}), opt::view16(wte_b, DType::BF16, {V, C}),
                             opt::view16(wte_h, DType::F16, {V, C})};
    for (const Tensor& table : tables) {
      for (int mode = 0; mode < 3; ++mode) {  // no wpe, default positions, given positions
        const Tensor pe = mode == 0 ? none() : view(wpe, {P, C});
        const int32_t* p = mode == 2 ? pos.data() : nullptr;
        const int64_t np = mode == 2 ? B * T : 0;
        std::vector<float> y(B * T * C), y_ref(B * T * C);
        embedding_forward(view(y, {B, T, C}), table, pe, ids.data(), B * T, p, np);
        embedding_forward_reference(view(y_ref, {B, T, C}), table, pe, ids.data(), B * T, p, np);
        CHECK_MSG(opt::bit_equal(y, y_ref), "embedding forward C=" + std::to_string(C));
      }
    }
    // Backward: exactly the reference (same adds in the same order).
    std::vector<float> dy = random_vector(B * T * C, 3);
    std::vector<float> dwte = random_vector(V * C, 4), dwpe = random_vector(P * C, 5);
    std::vector<float> dwte_ref = dwte, dwpe_ref = dwpe;
    embedding_backward(view(dwte, {V, C}), view(dwpe, {P, C}), view(dy, {B, T, C}), ids.data(),
                       B * T, pos.data(), B * T);
    embedding_backward_reference(view(dwte_ref, {V, C}), view(dwpe_ref, {P, C}),
                                 view(dy, {B, T, C}), ids.data(), B * T, pos.data(), B * T);
    CHECK(opt::bit_equal(dwte, dwte_ref) && opt::bit_equal(dwpe, dwpe_ref));
  }
}

TEST(embedding_gradients_accumulate_skip_and_are_deterministic) {
  const int64_t B = 2, T = 3, C = 4, V = 5, P = 3;
  std::vector<int32_t> ids = {1, 4, 1, 0, 4, 4};
  std::vector<float> wte = random_vector(V * C, 11), wpe = random_vector(P * C, 12);
  std::vector<float> g = random_vector(B * T * C, 13), y(B * T * C);
  auto forward = [&] {
    embedding_forward(view(y, {B, T, C}), view(wte, {V, C}), view(wpe, {P, C}), ids.data(), B * T);
    return opt::dot(y, g);
  };
  std::vector<float> dwte(V * C, 0.f), dwpe(P * C, 0.f);
  embedding_backward(view(dwte, {V, C}), view(dwpe, {P, C}), view(g, {B, T, C}), ids.data(), B * T);
  CHECK_ERR(s2s_test::gradient_check(wte, dwte, forward), 1e-3, "embedding dwte vs finite diff");
  CHECK_ERR(s2s_test::gradient_check(wpe, dwpe, forward), 1e-3, "embedding dwpe vs finite diff");
  std::vector<float> dwte2 = dwte, dwpe_only(P * C, 0.f);
  embedding_backward(view(dwte2, {V, C}), none(), view(g, {B, T, C}), ids.data(), B * T);
  CHECK(opt::bit_equal(dwte2, opt::scaled(dwte, 2.f)));
  embedding_backward(none(), view(dwpe_only, {P, C}), view(g, {B, T, C}), ids.data(), B * T);
  CHECK(opt::bit_equal(dwpe_only, dwpe));
  // Many tokens on a few ids, many channel slices: same bits at 1 and 2 threads.
  const int64_t B2 = 8, T2 = 64, C2 = 257, V2 = 13;
  std::vector<int32_t> ids2(B2 * T2);
  for (size_t i = 0; i < ids2.size(); ++i) ids2[i] = int32_t((i * 5 + i / 7) % V2);
  std::vector<float> dy2 = random_vector(B2 * T2 * C2, 14);
  std::vector<std::vector<float>> runs;
  for (int threads : {1, 2, 2}) {
    opt::Threads t(threads);
    std::vector<float> d(V2 * C2, 0.f), dp(T2 * C2, 0.f);
    embedding_backward(view(d, {V2, C2}), view(dp, {T2, C2}), view(dy2, {B2, T2, C2}), ids2.data(),
                       B2 * T2);
    d.insert(d.end(), dp.begin(), dp.end());
    runs.push_back(d);
  }
  CHECK(opt::bit_equal(runs[0], runs[1]) && opt::bit_equal(runs[1], runs[2]));
}

TEST(embedding_bad_arguments) {
  const int64_t B = 1, T = 3, C = 2, V = 4;
  std::vector<float> wte(V * C), wpe(2 * C), y(B * T * C);
  std::vector<int32_t> ids = {0, 4, 1}, good = {0, 3, 1}, pos = {0, 1, 2};
  try {
    embedding_forward(view(y, {B, T, C}), view(wte, {V, C}), none(), ids.data(), 3);
    CHECK_MSG(false, "expected an out-of-range id to throw");
  } catch (const Error& e) {
    CHECK(e.code() == code::kArgument);
    CHECK_MSG(std::string(e.what()) == "[embedding] expected ids in [0, 4), got ids[1] = 4",
              std::string("message: ") + e.what());
  }
  ids[1] = -1;
  CHECK_THROWS_CODE(embedding_forward(view(y, {B, T, C}), view(wte, {V, C}), none(), ids.data(), 3),
                    code::kArgument);
  CHECK_THROWS_CODE(embedding_backward(view(wte, {V, C}), none(), view(y, {B, T, C}), ids.data(), 3),
                    code::kArgument);
  CHECK_THROWS_CODE(embedding_forward(view(y, {B, T, C}), view(wte, {V, C}), none(), good.data(), 2),
                    code::kShape);
  CHECK_THROWS_CODE(embedding_forward(view(y, {B * T, C}), view(wte, {V, C}), none(), good.data(), 3),
                    code::kShape);
  CHECK_THROWS_CODE(embedding_forward(view(y, {B, T, C}), view(wte, {C, V}), none(), good.data(), 3),
                    code::kShape);
  // wpe has 2 rows: default positions 0..2 do not fit, nor does given position 2.
  CHECK_THROWS_CODE(embedding_forward(view(y, {B, T, C}), view(wte, {V, C}), view(wpe, {2, C}),
                                      good.data(), 3),
                    code::kArgument);
  CHECK_THROWS_CODE(embedding_forward(view(y, {B, T, C}), view(wte, {V, C}), view(wpe, {2, C}),
                                      good.data(), 3, pos.data(), 3),
                    code::kArgument);
  std::vector<uint16_t> h(V * C);
  CHECK_THROWS_CODE(embedding_backward(opt::view16(h, DType::BF16, {V, C}), none(),
                                       view(y, {B, T, C}), good.data(), 3),
                    code::kDType);
}

// ---- Philox and dropout ----

// Random123's kat_vectors for philox4x32-10 (the published known answers).
TEST(philox_known_answers) {
  auto run = [](uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
    return philox4x32_10(Philox4x32{{c0, c1, c2, c3}}, k0, k1);
  };
  Philox4x32 a = run(0, 0, 0, 0, 0, 0);
  CHECK(a.v[0] == 0x6627e8d5u && a.v[1] == 0xe169c58du && a.v[2] == 0xbc57ac4cu &&
        a.v[3] == 0x9b00dbd8u);
  Philox4x32 b = run(~0u, ~0u, ~0u, ~0u, ~0u, ~0u);
  CHECK(b.v[0] == 0x408f276du && b.v[1] == 0x41c83b0eu && b.v[2] == 0xa20bc7c6u &&
        b.v[3] == 0x6d5451fdu);
  Philox4x32 c = run(0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u, 0xa4093822u, 0x299f31d0u);
  CHECK(c.v[0] == 0xd16cfe09u && c.v[1] == 0x94fdccebu && c.v[2] == 0x5001e420u &&
        c.v[3] == 0x24126ea1u);
}

TEST(dropout_matches_reference_and_is_counter_based) {
  const float p = 0.3f;
  const uint64_t seed = 0x1234abcd5678ull;
  for (int64_t n : {1, 7, 33, 257, 100003}) {
    for (uint64_t offset : {0ull, 5ull, (1ull << 34) + 3}) {
      std::vector<float> x = random_vector(n, 31), y(n), y_ref(n);
      dropout_forward(view(y, {n}), view(x, {n}), p, seed, offset);
      dropout_forward_reference(view(y_ref, {n}), view(x, {n}), p, seed, offset);
      CHECK_MSG(opt::bit_equal(y, y_ref), "dropout forward n=" + std::to_string(n));
      // The backward regenerates the same mask: dinp += dout * mask / (1 - p).
      std::vector<float> dx = random_vector(n, 32), dx_ref = dx;
      dropout_backward(view(dx, {n}), view(x, {n}), p, seed, offset);
      dropout_backward_reference(view(dx_ref, {n}), view(x, {n}), p, seed, offset);
      CHECK(opt::bit_equal(dx, dx_ref));
      // A seed given by address (DropoutSeed::on_device, host memory here) wins over the value.
      DropoutSeed at(~seed);
      at.on_device = &seed;
      std::vector<float> y_at(n), dx_at = random_vector(n, 32);
      dropout_forward(view(y_at, {n}), view(x, {n}), p, at, offset);
      dropout_backward(view(dx_at, {n}), view(x, {n}), p, at, offset);
      CHECK(opt::bit_equal(y_at, y_ref) && opt::bit_equal(dx_at, dx_ref));
    }
  }
  // Element i depends only on (seed, offset + i): a slice from k with offset + k matches.
  const int64_t n = 1000, k = 13;
  std::vector<float> x = random_vector(n, 33), y(n), tail(n - k);
  std::vector<float> xt(x.begin() + k, x.end());
  dropout_forward(view(y, {n}), view(x, {n}), p, seed, 100);
  dropout_forward(view(tail, {n - k}), view(xt, {n - k}), p, seed, 100 + k);
  CHECK(std::memcmp(y.data() + k, tail.data(), (n - k) * sizeof(float)) == 0);
  // Thread count does not change the mask.
  std::vector<float> big = random_vector(200003, 34), y1(big.size()), y2(big.size());
  {
    opt::Threads t(1);
    dropout_forward(view(y1, {int64_t(big.size())}), view(big, {int64_t(big.size())}), p, seed, 7);
  }
  {
    opt::Threads t(2);
    dropout_forward(view(y2, {int64_t(big.size())}), view(big, {int64_t(big.size())}), p, seed, 7);
  }
  CHECK(opt::bit_equal(y1, y2));
  // About 1 - p kept, and kept values scaled by 1 / (1 - p).
  int64_t kept = 0;
  bool scaled_ok = true;
  for (size_t i = 0; i < big.size(); ++i) {
    if (y1[i] != 0.0f) {
      ++kept;
      scaled_ok = scaled_ok && y1[i] == big[i] * (1.0f / (1.0f - p));
    }
  }
  const double frac = double(kept) / double(big.size());
  CHECK_MSG(std::fabs(frac - 0.7) < 0.005, "kept fraction " + std::to_string(frac));
  CHECK(scaled_ok);
  // Another seed gives another mask.
  std::vector<float> y3(big.size());
  dropout_forward(view(y3, {int64_t(big.size())}), view(big, {int64_t(big.size())}), p, seed + 1, 7);
  CHECK(!opt::bit_equal(y1, y3));
}

TEST(dropout_gradients_identity_and_errors) {
  const int64_t n = 20;
  const float p = 0.25f;
  std::vector<float> x = random_vector(n, 41), g = random_vector(n, 42), y(n);
  auto forward = [&] {
    dropout_forward(view(y, {n}), view(x, {n}), p, 9, 0);
    return opt::dot(y, g);
  };
  std::vector<float> dx(n, 0.f);
  dropout_backward(view(dx, {n}), view(g, {n}), p, 9, 0);
  CHECK_ERR(s2s_test::gradient_check(x, dx, forward), 1e-3, "dropout dinp vs finite diff");
  std::vector<float> dx2 = dx;
  dropout_backward(view(dx2, {n}), view(g, {n}), p, 9, 0);
  CHECK(opt::bit_equal(dx2, opt::scaled(dx, 2.f)));
  dropout_backward(none(), view(g, {n}), p, 9, 0);
  // Overwriting a fresh (NaN) gradient gives what accumulating into zeros gives, p > 0 and 0.
  for (float q : {p, 0.0f}) {
    std::vector<float> fresh = opt::garbage(n), zeroed(n, 0.f);
    dropout_backward(view(fresh, {n}), view(g, {n}), q, 9, 0, true);
    dropout_backward(view(zeroed, {n}), view(g, {n}), q, 9, 0, false);
    CHECK(opt::same_values(fresh, zeroed));
  }
  // p == 0 is the identity; in place works.
  std::vector<float> z = x;
  dropout_forward(view(z, {n}), view(z, {n}), 0.0f, 9, 0);
  CHECK(opt::bit_equal(z, x));
  // A dropped NaN stays NaN (x * 0), as in PyTorch.
  std::vector<float> nan(64, std::nanf("")), out(64);
  dropout_forward(view(out, {64}), view(nan, {64}), 0.5f, 3, 0);
  bool all_nan = true;
  for (float v : out) all_nan = all_nan && std::isnan(v);
  CHECK(all_nan);
  CHECK_THROWS_CODE(dropout_forward(view(y, {n}), view(x, {n}), 1.0f, 9, 0), code::kArgument);
  CHECK_THROWS_CODE(dropout_forward(view(y, {n}), view(x, {n}), -0.1f, 9, 0), code::kArgument);
  CHECK_THROWS_CODE(dropout_forward(view(y, {n}), view(x, {n}), std::nanf(""), 9, 0),
                    code::kArgument);
  CHECK_THROWS_CODE(dropout_backward(view(y, {n / 2, 2}), view(x, {n}), 0.5f, 9, 0), code::kShape);
}

// ---- cast ----

namespace {
std::vector<float> bit_sweep() {
  // Every 2^32 / 40009-th bit pattern plus the edges: zeros, subnormals, ties, Inf, NaN.
  std::vector<float> v;
  for (uint64_t u = 0; u < (1ull << 32); u += 40009) {
    uint32_t b = uint32_t(u);
    float f;
    std::memcpy(&f, &b, 4);
    v.push_back(f);
  }
  const uint32_t edges[] = {0x00000000u, 0x80000000u, 0x00000001u, 0x007fffffu, 0x3f808000u,
                            0x3f818000u, 0x3f808001u, 0x7f7fffffu, 0x7f800000u, 0xff800000u,
                            0x7f800001u, 0x7fc00000u, 0xffffffffu, 0x477ff000u, 0x477fefffu,
                            0x47800000u, 0x38800000u, 0x387fffffu, 0x33000000u, 0x33000001u,
                            0x33c00000u, 0x3a800000u, 0x3f801000u, 0x3f803000u};
  for (uint32_t b : edges) {
    float f;
    std::memcpy(&f, &b, 4);
    v.push_back(f);
  }
  // Every f16 value and its neighbours' midpoints, for the f16 rounding paths.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float a = f16_to_f32(uint16_t(h));
    v.push_back(a);
    v.push_back(std::nextafter(a, 0.0f));
  }
  return v;
}
}  // namespace

TEST(cast_is_bit_exact_against_scalar_conversions) {
  std::vector<float> x = bit_sweep();
  const int64_t n = int64_t(x.size());
  for (DType dt : {DType::BF16, DType::F16}) {
    std::vector<uint16_t> h(n), h_ref(n);
    cast_forward(opt::view16(h, dt, {n}), view(x, {n}));
    cast_forward_reference(opt::view16(h_ref, dt, {n}), view(x, {n}));
    CHECK_MSG(h == h_ref, std::string("f32 -> ") + dtype_name(dt));
  }
  std::vector<uint16_t> all(0x10000);
  for (uint32_t i = 0; i < 0x10000; ++i) all[i] = uint16_t(i);
  for (DType dt : {DType::BF16, DType::F16}) {
    std::vector<float> y(0x10000), y_ref(0x10000);
    cast_forward(view(y, {0x10000}), opt::view16(all, dt, {0x10000}));
    cast_forward_reference(view(y_ref, {0x10000}), opt::view16(all, dt, {0x10000}));
    CHECK_MSG(opt::bit_equal(y, y_ref), std::string(dtype_name(dt)) + " -> f32");
    const DType other = dt == DType::BF16 ? DType::F16 : DType::BF16;
    std::vector<uint16_t> o(0x10000), o_ref(0x10000);
    cast_forward(opt::view16(o, other, {0x10000}), opt::view16(all, dt, {0x10000}));
    cast_forward_reference(opt::view16(o_ref, other, {0x10000}), opt::view16(all, dt, {0x10000}));
    CHECK_MSG(o == o_ref, std::string(dtype_name(dt)) + " -> " + dtype_name(other));
  }
  // f32 -> f32 copies; bf16 -> bf16 copies.
  std::vector<float> c(n);
  cast_forward(view(c, {n}), view(x, {n}));
  CHECK(std::memcmp(c.data(), x.data(), n * 4) == 0);
}

TEST(cast_backward_accumulates_and_errors) {
  const int64_t n = 9;
  std::vector<float> x = random_vector(n, 51), dx = random_vector(n, 52), dx_ref = dx;
  std::vector<uint16_t> gb(n);
  for (int64_t i = 0; i < n; ++i) gb[i] = f32_to_bf16(x[i]);
  cast_backward(view(dx, {3, 3}), opt::view16(gb, DType::BF16, {3, 3}));
  cast_backward_reference(view(dx_ref, {3, 3}), opt::view16(gb, DType::BF16, {3, 3}));
  CHECK(opt::bit_equal(dx, dx_ref));
  cast_backward(none(), opt::view16(gb, DType::BF16, {3, 3}));
  std::vector<uint16_t> hb(n);
  CHECK_THROWS_CODE(cast_backward(opt::view16(hb, DType::BF16, {3, 3}), view(x, {3, 3})),
                    code::kDType);
  CHECK_THROWS_CODE(cast_forward(opt::view16(hb, DType::BF16, {9}), view(x, {3, 3})), code::kShape);
}
