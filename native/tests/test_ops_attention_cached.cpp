// attention_cached (decoding against a KV cache): against its double reference (GQA, shuffled
// slots, left-pad key ranges, causal chunks of several queries, T5-style bias, fully masked
// queries), and against the training attention op on the same numbers laid out contiguously;
// q read in place in a fused qkv row. kv_cache_append, the cache write, against explicit copies.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "harness.h"
#include "ops/act_kernels.h"
#include "ops_test_util.h"
#include "s2s/cpu_features.h"
#include "s2s/dtype.h"
#include "s2s/error.h"
#include "s2s/ops/attention.h"
#include "s2s/ops/attention_cached.h"
#include "s2s/ops/kv_cache_append.h"

using namespace s2s;

TEST(attention_cached_matches_reference) {
  const int64_t R = 3, S = 4, Tc = 20, Hq = 4, Hkv = 2, D = 12;
  std::vector<float> kc = s2s_test::random_vector(size_t(S * Tc * Hkv * D), 1);
  std::vector<float> vc = s2s_test::random_vector(kc.size(), 2);
  const int32_t slot[R] = {2, 0, 3};
  const int32_t begin[R] = {0, 5, 19};  // row 2 has one key only
  for (int64_t Tq : {1, 3}) {
    for (bool causal : {false, true}) {
      for (bool with_bias : {false, true}) {
        const int32_t end[R] = {17, 17, 20};
        std::vector<float> q = s2s_test::random_vector(size_t(R * Tq * Hq * D), 3);
        std::vector<float> bias = s2s_test::random_vector(size_t(Hq * Tq * Tc), 4);
        std::vector<float> out(q.size()), ref(q.size());
        AttentionOptions o;
        o.causal = causal;
        if (with_bias) o.scale = 1.0f;  // T5: unscaled scores
        const Tensor b = with_bias ? opt::view(bias, {Hq, Tq, Tc}) : opt::none();
        opt::for_each_isa([&](Isa isa) {
          attention_cached_forward(opt::view(out, {R, Tq, Hq, D}), opt::view(q, {R, Tq, Hq, D}),
                                   opt::view(kc, {S, Tc, Hkv, D}), opt::view(vc, {S, Tc, Hkv, D}),
                                   slot, begin, end, b, o);
          attention_cached_forward_reference(opt::view(ref, {R, Tq, Hq, D}),
                                             opt::view(q, {R, Tq, Hq, D}),
                                             opt::view(kc, {S, Tc, Hkv, D}),
                                             opt::view(vc, {S, Tc, Hkv, D}), slot, begin, end, b, o);
          CHECK_ERR(s2s_test::max_normalized_error(out.data(), ref.data(), out.size()), 2e-6,
                    opt::where(isa, "attention_cached", long(Tq), causal));
        });
      }
    }
  }
}

// The two paths of the op, each against the double reference on every ISA, over an f32 and a
// bf16 cache, with T5's bias and a head whose scores are all -inf (zeros), and bit for bit at two
// thread counts:
//   decoding (Tq <= 8): a task per row and chunk of keys (chunks of >= 64 positions, merged in
//     order): rows of different key ranges, so some rows' chunks are empty;
//   prefill (Tq > 8): a task per query and head group, all G heads of a key/value head when
//     there are tasks enough for the threads (1 thread), one head each otherwise (8 threads).
TEST(attention_cached_paths_against_reference_at_any_thread_count) {
  struct Case {
    int64_t R, Tq, Tc;
    std::vector<int32_t> slot, begin, end;
  };
  const Case cases[] = {{2, 1, 300, {1, 0}, {0, 150}, {290, 300}},
                        {2, 3, 300, {0, 1}, {10, 150}, {300, 153}},
                        {1, 9, 40, {0}, {3}, {40}}};
  const int64_t Hq = 6, Hkv = 2, D = 20, S = 2;
  for (const Case& c : cases) {
    std::vector<float> kc = s2s_test::random_vector(size_t(S * c.Tc * Hkv * D), 21);
    std::vector<float> vc = s2s_test::random_vector(kc.size(), 22);
    std::vector<uint16_t> kb(kc.size()), vb(vc.size());
    for (size_t i = 0; i < kc.size(); ++i) {
      kb[i] = f32_to_bf16(kc[i]);
      vb[i] = f32_to_bf16(vc[i]);
    }
    std::vector<float> q = s2s_test::random_vector(size_t(c.R * c.Tq * Hq * D), 23);
    std::vector<float> bias = s2s_test::random_vector(size_t(Hq * c.Tq * c.Tc), 24);
    for (int64_t i = 0; i < c.Tq; ++i)  // head 4: every score -inf
      for (int64_t j = 0; j < c.Tc; ++j) bias[size_t((4 * c.Tq + i) * c.Tc + j)] = -INFINITY;
    AttentionOptions o;
    o.causal = true;
    o.scale = 1.0f;
    const std::string what = "Tq " + std::to_string(c.Tq);
    for (const DType dt : {DType::F32, DType::BF16}) {
      const Tensor k = dt == DType::F32 ? opt::view(kc, {S, c.Tc, Hkv, D})
                                        : opt::view16(kb, dt, {S, c.Tc, Hkv, D});
      const Tensor v = dt == DType::F32 ? opt::view(vc, {S, c.Tc, Hkv, D})
                                        : opt::view16(vb, dt, {S, c.Tc, Hkv, D});
      const Tensor b = opt::view(bias, {Hq, c.Tq, c.Tc});
      const Tensor qt = opt::view(q, {c.R, c.Tq, Hq, D});
      opt::for_each_isa([&](Isa isa) {
        std::vector<float> out[2];
        const int threads[2] = {1, 8};
        for (int n = 0; n < 2; ++n) {
          opt::Threads t(threads[n]);
          out[n].assign(q.size(), 7.0f);
          attention_cached_forward(opt::view(out[n], {c.R, c.Tq, Hq, D}), qt, k, v, c.slot.data(),
                                   c.begin.data(), c.end.data(), b, o);
        }
        const std::string at = what + (dt == DType::F32 ? " f32 cache" : " bf16 cache");
        CHECK_MSG(opt::bit_equal(out[0], out[1]), opt::where(isa, at.c_str()));
        std::vector<float> ref(q.size());
        attention_cached_forward_reference(opt::view(ref, {c.R, c.Tq, Hq, D}), qt, k, v,
                                           c.slot.data(), c.begin.data(), c.end.data(), b, o);
        CHECK_ERR(s2s_test::max_normalized_error(out[0].data(), ref.data(), ref.size()), 2e-6,
                  opt::where(isa, at.c_str()));
        for (int64_t r = 0; r < c.R; ++r)  // the all -inf head: zeros
          for (int64_t i = 0; i < c.Tq; ++i)
            for (int64_t d = 0; d < D; ++d)
              CHECK(out[0][size_t(((r * c.Tq + i) * Hq + 4) * D + d)] == 0);
      });
    }
  }
}

TEST(attention_cached_fully_masked_query_is_zero) {
  // Causal chunk of 3 queries whose first two sit before key_begin (left padding): zeros.
  const int64_t R = 1, Tq = 3, H = 1, D = 4, Tc = 8;
  std::vector<float> kc = s2s_test::random_vector(size_t(Tc * D), 5), vc = kc;
  std::vector<float> q = s2s_test::random_vector(size_t(Tq * D), 6), out(q.size(), 9.f);
  const int32_t slot[1] = {0}, begin[1] = {4}, end[1] = {5};  // queries at positions 2, 3, 4
  AttentionOptions o;
  o.causal = true;
  attention_cached_forward(opt::view(out, {R, Tq, H, D}), opt::view(q, {R, Tq, H, D}),
                           opt::view(kc, {1, Tc, H, D}), opt::view(vc, {1, Tc, H, D}), slot, begin,
                           end, opt::none(), o);
  for (int64_t d = 0; d < 2 * D; ++d) CHECK(out[size_t(d)] == 0.0f);
  // The last query sees exactly key 4: its output is v[4].
  for (int64_t d = 0; d < D; ++d) CHECK(std::fabs(out[size_t(2 * D + d)] - vc[size_t(4 * D + d)]) < 1e-6f);
}

TEST(attention_cached_equals_training_attention_on_a_full_cache) {
  // Prefill-shaped: Tq = Tk keys in slots 0..B-1 from position 0, causal, GQA; same numbers as
  // attention_forward on contiguous (B,T,H,D) tensors.
  const int64_t B = 2, T = 9, Hq = 4, Hkv = 2, D = 8;
  std::vector<float> q = s2s_test::random_vector(size_t(B * T * Hq * D), 7);
  std::vector<float> k = s2s_test::random_vector(size_t(B * T * Hkv * D), 8);
  std::vector<float> v = s2s_test::random_vector(k.size(), 9);
  std::vector<float> out(q.size()), ref(q.size()), lse(size_t(B * Hq * T));
  AttentionOptions o;
  o.causal = true;
  attention_forward(opt::view(ref, {B, T, Hq, D}), opt::view(lse, {B, Hq, T}),
                    opt::view(q, {B, T, Hq, D}), opt::view(k, {B, T, Hkv, D}),
                    opt::view(v, {B, T, Hkv, D}), opt::none(), nullptr, 0, o);
  const int32_t slot[B] = {0, 1}, begin[B] = {0, 0}, end[B] = {int32_t(T), int32_t(T)};
  attention_cached_forward(opt::view(out, {B, T, Hq, D}), opt::view(q, {B, T, Hq, D}),
                           opt::view(k, {B, T, Hkv, D}), opt::view(v, {B, T, Hkv, D}), slot,
                           begin, end, opt::none(), o);
  CHECK_ERR(s2s_test::max_normalized_error(out.data(), ref.data(), out.size()), 2e-6,
            "cached vs training attention");
}

TEST(attention_cached_rejects_bad_ranges) {
  std::vector<float> q(8), out(8), kc(64), vc(64);
  const int32_t slot[1] = {0}, bad_slot[1] = {2}, begin[1] = {0}, end[1] = {9};
  const int32_t ok_end[1] = {4};
  AttentionOptions o;
  auto call = [&](const int32_t* s, const int32_t* e) {
    attention_cached_forward(opt::view(out, {1, 1, 1, 8}), opt::view(q, {1, 1, 1, 8}),
                             opt::view(kc, {1, 8, 1, 8}), opt::view(vc, {1, 8, 1, 8}), s, begin, e,
                             opt::none(), o);
  };
  CHECK_THROWS_CODE(call(slot, end), code::kArgument);      // end > capacity
  CHECK_THROWS_CODE(call(bad_slot, ok_end), code::kArgument);  // slot out of range
}

namespace {
// Columns [col0, col0 + H * D) of a (R, T, W) row-major buffer as (R, T, H, D): one of q, k, v
// in a fused projection's output, as nn::split_heads views it.
Tensor head_view(std::vector<float>& fused, int64_t R, int64_t T, int64_t W, int64_t col0,
                 int64_t H, int64_t D) {
  Tensor t = Tensor::contiguous(fused.data() + col0, DType::F32, {R, T, H, D});
  t.strides[0] = T * W;
  t.strides[1] = W;
  return t;
}
}  // namespace

// q viewed in place in a fused qkv row gives the bits of the same q copied out contiguously.
TEST(attention_cached_reads_q_in_place_in_a_fused_row) {
  const int64_t R = 2, Tq = 2, Hq = 4, Hkv = 2, D = 8, S = 3, Tc = 10;
  const int64_t W = (Hq + 2 * Hkv) * D;  // q, k, v of each position side by side
  std::vector<float> fused = s2s_test::random_vector(size_t(R * Tq * W), 11);
  std::vector<float> q(size_t(R * Tq * Hq * D));
  for (int64_t row = 0; row < R * Tq; ++row)
    for (int64_t c = 0; c < Hq * D; ++c) q[size_t(row * Hq * D + c)] = fused[size_t(row * W + c)];
  std::vector<float> kc = s2s_test::random_vector(size_t(S * Tc * Hkv * D), 12);
  std::vector<float> vc = s2s_test::random_vector(kc.size(), 13);
  const int32_t slot[R] = {2, 0}, begin[R] = {1, 0}, end[R] = {7, 9};
  AttentionOptions o;
  o.causal = true;
  std::vector<float> want(q.size()), got(q.size());
  attention_cached_forward(opt::view(want, {R, Tq, Hq, D}), opt::view(q, {R, Tq, Hq, D}),
                           opt::view(kc, {S, Tc, Hkv, D}), opt::view(vc, {S, Tc, Hkv, D}), slot,
                           begin, end, opt::none(), o);
  attention_cached_forward(opt::view(got, {R, Tq, Hq, D}), head_view(fused, R, Tq, W, 0, Hq, D),
                           opt::view(kc, {S, Tc, Hkv, D}), opt::view(vc, {S, Tc, Hkv, D}), slot,
                           begin, end, opt::none(), o);
  CHECK(opt::bit_equal(got, want));
  // A view whose heads are not packed is refused, naming q.
  Tensor gappy = head_view(fused, R, Tq, W, 0, Hq, D);
  gappy.strides[2] = D + 1;
  CHECK_THROWS_CODE(attention_cached_forward(opt::view(got, {R, Tq, Hq, D}), gappy,
                                             opt::view(kc, {S, Tc, Hkv, D}),
                                             opt::view(vc, {S, Tc, Hkv, D}), slot, begin, end,
                                             opt::none(), o),
                    code::kLayout);
}

// Each row's T new keys and values land in its slot at [key_end - T, key_end), read in place
// from a fused qkv row; every other cache position keeps its value.
TEST(kv_cache_append_writes_each_row_before_its_key_end) {
  const int64_t R = 3, T = 2, H = 2, D = 4, S = 4, Tc = 6, HD = H * D;
  const int64_t W = 3 * HD;
  std::vector<float> fused = s2s_test::random_vector(size_t(R * T * W), 21);
  std::vector<float> kc = s2s_test::random_vector(size_t(S * Tc * HD), 22);
  std::vector<float> vc = s2s_test::random_vector(kc.size(), 23);
  const std::vector<float> k_before = kc, v_before = vc;
  const int32_t slot[R] = {3, 0, 1}, end[R] = {2, 6, 4};
  kv_cache_append(opt::view(kc, {S, Tc, H, D}), opt::view(vc, {S, Tc, H, D}),
                  head_view(fused, R, T, W, HD, H, D), head_view(fused, R, T, W, 2 * HD, H, D),
                  slot, end);
  std::vector<float> k_want = k_before, v_want = v_before;
  for (int64_t r = 0; r < R; ++r)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t c = 0; c < HD; ++c) {
        const size_t dst = size_t((slot[r] * Tc + end[r] - T + t) * HD + c);
        k_want[dst] = fused[size_t((r * T + t) * W + HD + c)];
        v_want[dst] = fused[size_t((r * T + t) * W + 2 * HD + c)];
      }
  CHECK(opt::bit_equal(kc, k_want));
  CHECK(opt::bit_equal(vc, v_want));
}

TEST(kv_cache_append_rejects_bad_slots_and_ends) {
  const int64_t T = 2, H = 1, D = 4, S = 2, Tc = 5;
  std::vector<float> k(size_t(T * H * D)), v = k, kc(size_t(S * Tc * H * D)), vc = kc;
  auto call = [&](int32_t slot, int32_t end) {
    kv_cache_append(opt::view(kc, {S, Tc, H, D}), opt::view(vc, {S, Tc, H, D}),
                    opt::view(k, {1, T, H, D}), opt::view(v, {1, T, H, D}), &slot, &end);
  };
  call(1, 5);                                             // the last two positions: fine
  CHECK_THROWS_CODE(call(2, 4), code::kArgument);         // no slot 2
  CHECK_THROWS_CODE(call(-1, 4), code::kArgument);
  CHECK_THROWS_CODE(call(0, 6), code::kArgument);         // past the capacity
  CHECK_THROWS_CODE(call(0, 1), code::kArgument);         // two new positions before position 1
  CHECK_THROWS_CODE(kv_cache_append(opt::view(kc, {S, Tc, H, D}), opt::view(vc, {S, Tc, H, D}),
                                    opt::view(k, {1, T, H, D}), opt::view(v, {1, 1, H, 2 * D}),
                                    nullptr, nullptr),
                    code::kShape);                        // v's shape differs from k's
}

// A 16-bit cache (what a GPU decodes with under bf16/f16 compute): kv_cache_append rounds each
// value to nearest even as it goes in, and attention_cached reads the widened values: the bits
// of the same op on an f32 cache that holds those widened values, for both 16-bit types. Mixed
// cache dtypes are refused.
TEST(attention_cached_reads_a_16_bit_cache_as_its_widened_values) {
  const int64_t R = 2, T = 1, S = 3, Tc = 9, Hq = 4, Hkv = 2, D = 8, HD = Hkv * D;
  const int32_t slot[R] = {2, 0}, begin[R] = {0, 3}, end[R] = {6, 9};
  std::vector<float> k = s2s_test::random_vector(size_t(R * T * HD), 11);
  std::vector<float> v = s2s_test::random_vector(k.size(), 12);
  std::vector<float> q = s2s_test::random_vector(size_t(R * T * Hq * D), 13);
  for (const DType dt : {DType::BF16, DType::F16}) {
    const bool bf16 = dt == DType::BF16;
    auto round = [bf16](float x) { return bf16 ? f32_to_bf16(x) : f32_to_f16(x); };
    auto widen = [bf16](uint16_t h) { return bf16 ? bf16_to_f32(h) : f16_to_f32(h); };
    std::vector<uint16_t> kc(size_t(S * Tc * HD)), vc(kc.size());
    std::vector<float> start = s2s_test::random_vector(kc.size(), 14);
    for (size_t i = 0; i < kc.size(); ++i) kc[i] = vc[i] = round(start[i]);
    kv_cache_append(opt::view16(kc, dt, {S, Tc, Hkv, D}), opt::view16(vc, dt, {S, Tc, Hkv, D}),
                    opt::view(k, {R, T, Hkv, D}), opt::view(v, {R, T, Hkv, D}), slot, end);
    std::vector<float> kw(kc.size()), vw(vc.size());
    for (size_t i = 0; i < kc.size(); ++i) {
      kw[i] = widen(kc[i]);
      vw[i] = widen(vc[i]);
    }
    for (int64_t r = 0; r < R; ++r) {  // the appended values, rounded
      const int64_t at = (slot[r] * Tc + end[r] - T) * HD;
      for (int64_t c = 0; c < HD; ++c) {
        CHECK(kc[size_t(at + c)] == round(k[size_t(r * HD + c)]));
        CHECK(vc[size_t(at + c)] == round(v[size_t(r * HD + c)]));
      }
    }
    AttentionOptions o;
    o.causal = true;
    std::vector<float> out(q.size()), want(q.size()), ref(q.size());
    attention_cached_forward(opt::view(out, {R, T, Hq, D}), opt::view(q, {R, T, Hq, D}),
                             opt::view16(kc, dt, {S, Tc, Hkv, D}),
                             opt::view16(vc, dt, {S, Tc, Hkv, D}), slot, begin, end,
                             opt::none(), o);
    attention_cached_forward(opt::view(want, {R, T, Hq, D}), opt::view(q, {R, T, Hq, D}),
                             opt::view(kw, {S, Tc, Hkv, D}), opt::view(vw, {S, Tc, Hkv, D}), slot,
                             begin, end, opt::none(), o);
    CHECK(opt::bit_equal(out, want));
    attention_cached_forward_reference(opt::view(ref, {R, T, Hq, D}), opt::view(q, {R, T, Hq, D}),
                                       opt::view16(kc, dt, {S, Tc, Hkv, D}),
                                       opt::view16(vc, dt, {S, Tc, Hkv, D}), slot, begin, end,
                                       opt::none(), o);
    double err = 0;
    for (size_t i = 0; i < out.size(); ++i) err = std::max(err, double(std::fabs(out[i] - ref[i])));
    CHECK_ERR(err, 1e-5, "16-bit cache against the reference");
    CHECK_THROWS_CODE(
        attention_cached_forward(opt::view(out, {R, T, Hq, D}), opt::view(q, {R, T, Hq, D}),
                                 opt::view16(kc, dt, {S, Tc, Hkv, D}),
                                 opt::view(vw, {S, Tc, Hkv, D}), slot, begin, end, opt::none(), o),
        code::kDType);
    CHECK_THROWS_CODE(
        kv_cache_append(opt::view(kw, {S, Tc, Hkv, D}), opt::view16(vc, dt, {S, Tc, Hkv, D}),
                        opt::view(k, {R, T, Hkv, D}), opt::view(v, {R, T, Hkv, D}), slot, end),
        code::kDType);
  }
}

// Decoding's inner loops (the ActKernels table's attn_cache_scores / attn_cache_weighted_sum)
// on each x86 path with FMA, bit for bit against their defined order: a score is scale times
// dot8's tree of 8 lanes, each lane an FMA chain over its dims; a weighted sum is an FMA chain
// over positions in order. The AVX2 / AVX-512 register kernels (a cached row widened once for
// its heads, 8 positions' lanes reduced together) must keep it for each head dim they take,
// every group, position count and cache dtype; other head dims take the generic loops (within
// 1e-5).
static bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

TEST(attention_cached_kernels_keep_the_fma_order) {
  using s2s_test::random_vector;
  auto fma_score = [](const float* q, const std::vector<float>& key, int64_t D, float scale) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t d = 0; d < D; ++d) acc[d % 8] = std::fma(q[d], key[d], acc[d % 8]);
    const float lo = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    return scale * (lo + ((acc[4] + acc[5]) + (acc[6] + acc[7])));
  };
  for (Isa isa : supported_isas()) {
    if (isa < Isa::Avx2 || isa == Isa::Neon) continue;  // the paths compiled with FMA
    set_isa(isa);
    const ActKernels& k = act_kernels();
    for (DType dtype : {DType::F32, DType::BF16, DType::F16}) {
      for (int64_t D : {64, 32, 128, 24, 20}) {
        for (int64_t G : {1, 3, 4, 7}) {
          for (int64_t n : {1, 8, 29}) {
            const int64_t nq = G == 3 ? 2 : 1, Hk = G == 1 ? 3 : 2, H = Hk * G;
            const int64_t pos_stride = Hk * D + 5;  // another layer's row between positions
            const uint64_t seed = uint64_t(D * 1000 + G * 100 + n);
            std::vector<float> cache = random_vector(n * pos_stride, seed, -2, 2);
            std::vector<uint16_t> cache16(cache.size());
            for (size_t x = 0; x < cache.size(); ++x) {
              cache16[x] = dtype == DType::BF16 ? f32_to_bf16(cache[x]) : f32_to_f16(cache[x]);
              cache[x] = dtype == DType::F32   ? cache[x]
                         : dtype == DType::BF16 ? bf16_to_f32(cache16[x])
                                                : f16_to_f32(cache16[x]);
            }
            const void* rows = dtype == DType::F32 ? static_cast<const void*>(cache.data())
                                                   : static_cast<const void*>(cache16.data());
            const int64_t q_stride = H * D + 3;
            std::vector<float> q = random_vector(nq * q_stride, seed + 1);
            const int64_t ld = n + 2;
            std::vector<float> s(nq * H * ld, -7.f), o(nq * H * D, -7.f);
            std::vector<float> widened(size_t(cache_kernel_scratch(D, nq * H)));
            const float scale = 0.125f;
            k.attn_cache_scores(s.data(), ld, q.data(), q_stride, nq, Hk, G, rows, pos_stride,
                                n, D, dtype, scale, widened.data());
            // Probabilities for the weighted sums: the scores themselves, any values serve.
            k.attn_cache_weighted_sum(o.data(), s.data(), ld, nq, Hk, G, rows, pos_stride, n, D,
                                      dtype, widened.data());
            bool scores_same = true, sums_same = true;
            double max_err_scores = 0, max_err_sums = 0;
            for (int64_t i = 0; i < nq; ++i) {
              for (int64_t h = 0; h < H; ++h) {
                const int64_t hk = h / G;
                std::vector<float> sum(D, 0.f);
                for (int64_t j = 0; j < n; ++j) {
                  const std::vector<float> row(cache.begin() + j * pos_stride + hk * D,
                                               cache.begin() + j * pos_stride + (hk + 1) * D);
                  const float got = s[(i * H + h) * ld + j];
                  const float want = fma_score(&q[i * q_stride + h * D], row, D, scale);
                  scores_same = scores_same && same_bits(got, want);
                  const double scale_of = std::max(1.0, std::fabs(double(want)));
                  max_err_scores =
                      std::max(max_err_scores, std::fabs(double(got) - want) / scale_of);
                  for (int64_t d = 0; d < D; ++d) sum[d] = std::fma(got, row[d], sum[d]);
                }
                for (int64_t d = 0; d < D; ++d) {
                  const float got = o[(i * H + h) * D + d];
                  sums_same = sums_same && same_bits(got, sum[d]);
                  const double scale_of = std::max(1.0, std::fabs(double(sum[d])));
                  max_err_sums = std::max(max_err_sums, std::fabs(double(got) - sum[d]) / scale_of);
                }
              }
            }
            const std::string tag = std::string(isa_name(isa)) + " " + dtype_name(dtype) +
                                    " D" + std::to_string(D) + " G" + std::to_string(G) + " n" +
                                    std::to_string(n);
            // The register kernels' head dims (act_kernels_impl.h's cache_dispatch).
            const bool registers = D == 32 || D == 64 || (D == 128 && isa >= Isa::Avx512);
            if (registers) {
              CHECK_MSG(scores_same, tag + ": scores");
              CHECK_MSG(sums_same, tag + ": weighted sums");
            } else {  // the generic loops: how far the compiler contracts them is its choice
              CHECK_MSG(max_err_scores <= 1e-5 && max_err_sums <= 1e-5, tag + ": generic");
            }
          }
        }
      }
    }
  }
  set_isa(best_isa());
}
