// Core: dtype conversions, tensor checks, arena, thread pool split and determinism, ISA choice.
#include <atomic>
#include <cmath>
#include <cstring>

#include "harness.h"
#include "s2s/arena.h"
#include "s2s/cpu_features.h"
#include "s2s/dtype.h"
#include "s2s/tensor.h"
#include "s2s/thread_pool.h"

using namespace s2s;

static uint32_t bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
static float from_bits(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

TEST(bf16_rounds_to_nearest_even) {
  CHECK(f32_to_bf16(1.0f) == 0x3f80);
  // 1 + 2^-8 is exactly half way between two bf16 values: ties go to the even one (1.0).
  CHECK(f32_to_bf16(from_bits(0x3f808000u)) == 0x3f80);
  CHECK(f32_to_bf16(from_bits(0x3f818000u)) == 0x3f82);  // tie, odd below: rounds up
  CHECK(f32_to_bf16(from_bits(0x3f808001u)) == 0x3f81);  // just above half: up
  CHECK(f32_to_bf16(INFINITY) == 0x7f80);
  CHECK(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
  CHECK(std::isnan(bf16_to_f32(f32_to_bf16(from_bits(0x7f800001u)))));  // payload in low bits
  CHECK(f32_to_bf16(from_bits(0x7f7fffffu)) == 0x7f80);  // max float rounds to Inf
  // Round trip of every bf16 value that is not NaN is exact.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    float f = bf16_to_f32(static_cast<uint16_t>(h));
    if (!std::isnan(f)) CHECK(f32_to_bf16(f) == h);
  }
}

TEST(f16_round_trips_and_rounds) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    float f = f16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) CHECK(std::isnan(f16_to_f32(f32_to_f16(f))));
    else CHECK(f32_to_f16(f) == h);
  }
  CHECK(f16_to_f32(0x3c00) == 1.0f);
  CHECK(f16_to_f32(0x0001) == std::ldexp(1.0f, -24));  // smallest subnormal
  CHECK(f32_to_f16(65520.f) == 0x7c00);                 // rounds to Inf
  CHECK(f32_to_f16(65519.f) == 0x7bff);                 // max finite
  CHECK(f32_to_f16(std::ldexp(1.0f, -25)) == 0x0000);   // tie to even (zero)
  CHECK(f32_to_f16(std::ldexp(1.5f, -25)) == 0x0001);   // above the tie
  CHECK(f32_to_f16(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);  // tie to even
  CHECK(f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3c02);
  CHECK(bits(f16_to_f32(0x8000)) == 0x80000000u);
}

TEST(tensor_checks_name_op_and_argument) {
  float buf[6];
  Tensor t = Tensor::contiguous(buf, DType::F32, {2, 3});
  CHECK(t.numel() == 6 && t.is_contiguous() && t.strides[0] == 3);
  CHECK(t.shape_string() == "(2, 3)");
  expect_f32(t, {2, -1}, "op", "x");
  CHECK_THROWS_CODE(expect_shape(t, {3, 2}, "layernorm", "inp"), code::kShape);
  CHECK_THROWS_CODE(expect_dtype(t, DType::BF16, "layernorm", "inp"), code::kDType);
  try {
    expect_shape(t, {3, -1}, "layernorm", "inp");
  } catch (const Error& e) {
    CHECK(std::string(e.what()) == "[layernorm] expected inp of shape (3, *), got (2, 3)");
  }
  Tensor v = t;
  v.strides[1] = 2;
  CHECK(!v.is_contiguous());
  CHECK_THROWS_CODE(expect_contiguous(v, "op", "x"), code::kLayout);
}

TEST(arena_aligns_grows_and_rewinds) {
  Arena arena(1024);
  void* a = arena.allocate(10);
  void* b = arena.allocate(100);
  CHECK(reinterpret_cast<uintptr_t>(a) % 64 == 0 && reinterpret_cast<uintptr_t>(b) % 64 == 0);
  CHECK(static_cast<char*>(b) - static_cast<char*>(a) == 64);
  Arena::Mark m = arena.mark();
  void* big = arena.allocate(5000);  // larger than a block: gets its own
  std::memset(big, 1, 5000);
  CHECK(arena.bytes_reserved() >= 5000 + 1024);
  arena.rewind(m);
  void* c = arena.allocate(64);
  CHECK(c == static_cast<char*>(b) + 128);
  arena.reset();
  CHECK(arena.allocate(1) == a);
  Tensor t = arena.tensor(DType::BF16, {4, 8});
  CHECK(t.numel() == 32 && t.dtype == DType::BF16);
}

TEST(thread_pool_covers_range_once_with_fixed_split) {
  for (int threads : {1, 2, 3, 8}) {
    set_num_threads(threads);
    for (int64_t n : {0, 1, 7, 1000, 100003}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      std::vector<int64_t> begins(static_cast<size_t>(threads) + 1, -1);
      std::atomic<int> chunks{0};
      parallel_for(n, 1, [&](int64_t b, int64_t e) {
        ++chunks;
        for (int64_t i = b; i < e; ++i) hits[i]++;
      });
      bool once = true;
      for (auto& h : hits) once = once && h.load() == 1;
      CHECK(once);
      CHECK(chunks.load() == plan_threads(n, 1));
    }
    // Grain keeps small work on one thread.
    CHECK(plan_threads(100, 1000) == 1);
  }
  set_num_threads(2);
}

TEST(thread_pool_rethrows_worker_errors) {
  set_num_threads(4);
  CHECK_THROWS_CODE(parallel_for(100, 1,
                                 [](int64_t b, int64_t) {
                                   if (b > 0) fail(code::kArgument, "test", "boom");
                                 }),
                    code::kArgument);
  // The pool still works afterwards, and nested parallel_for runs inline.
  std::atomic<int64_t> sum{0};
  parallel_for(10, 1, [&](int64_t b, int64_t e) {
    parallel_for(e - b, 1, [&](int64_t bb, int64_t ee) { sum += ee - bb; });
  });
  CHECK(sum.load() == 10);
  CHECK(!in_parallel_region());
  std::atomic<int> inside{0};
  parallel_run(2, [&](int) { inside += in_parallel_region() ? 1 : 0; });
  CHECK(inside.load() == 2);
  CHECK(!in_parallel_region());
  set_num_threads(2);
}

TEST(isa_detection_and_override) {
  auto isas = supported_isas();
  CHECK(!isas.empty() && isas.front() == Isa::Scalar);
  Isa best = best_isa();
  for (Isa isa : isas) {
    set_isa(isa);
    CHECK(active_isa() == isa);
  }
  set_isa(best);
  CHECK(parse_isa("avx2") == Isa::Avx2);
  CHECK_THROWS_CODE(parse_isa("sse9"), code::kArgument);
}
