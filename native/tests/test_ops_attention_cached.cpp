// attention_cached (decoding against a KV cache): against its double reference (GQA, shuffled
// slots, left-pad key ranges, causal chunks of several queries, T5-style bias, fully masked
// queries), and against the training attention op on the same numbers laid out contiguously.
#include <cmath>
#include <vector>

#include "harness.h"
#include "ops_test_util.h"
#include "s2s/error.h"
#include "s2s/ops/attention.h"
#include "s2s/ops/attention_cached.h"

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
