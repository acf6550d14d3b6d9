// attention: blockwise forward/backward vs the double-precision reference across tile
// boundaries, heads, masks, bias and causal/cache alignment; backward vs finite differences;
// accumulation, skipped gradients, determinism, fully masked rows, argument errors; fast exp.
// Backward checks run under both backward plans (one pass over (batch, kv head) tasks, two
// passes over key / query tiles), and shapes cross the forward's 256-key blocks. Dropout on the
// probabilities: vs the reference, finite differences with the mask fixed, the mask being
// dropout_forward's, its kept fraction, thread-count independence, p = 0 and bad p.
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "harness.h"
#include "ops_test_util.h"
#include "s2s/ops/attention.h"
#include "s2s/ops/dropout.h"
#include "s2s/thread_pool.h"

using namespace s2s;
using s2s_test::random_vector;

namespace {

struct Shape {
  int64_t B, Tq, Tk, Hq, Hkv, D;
  bool causal, mask, bias;
  float scale;  // <= 0: default 1/sqrt(D)
};

struct Problem {
  Shape s;
  std::vector<float> q, k, v, bias, dout;
  std::vector<uint8_t> mask;
  AttentionOptions opt;

  Problem(const Shape& shape, uint64_t seed) : s(shape) {
    q = random_vector(s.B * s.Tq * s.Hq * s.D, seed + 1, -1.5f, 1.5f);
    k = random_vector(s.B * s.Tk * s.Hkv * s.D, seed + 2, -1.5f, 1.5f);
    v = random_vector(s.B * s.Tk * s.Hkv * s.D, seed + 3);
    dout = random_vector(s.B * s.Tq * s.Hq * s.D, seed + 4);
    if (s.bias) bias = random_vector(s.Hq * s.Tq * s.Tk, seed + 5, -2.f, 2.f);
    if (s.mask) {
      s2s_test::Rng rng(seed + 6);
      mask.resize(s.B * s.Tk);
      for (auto& m : mask) m = rng.uniform(0.f, 1.f) < 0.75f ? 1 : 0;
      // Left padding in batch 0 (the usual case) and keep the last key of each batch.
      for (int64_t j = 0; j < s.Tk / 3; ++j) mask[j] = 0;
      for (int64_t b = 0; b < s.B; ++b) mask[b * s.Tk + s.Tk - 1] = 1;
    }
    opt.causal = s.causal;
    if (s.scale > 0) opt.scale = s.scale;
  }
  Tensor tq() { return Tensor::contiguous(q.data(), DType::F32, {s.B, s.Tq, s.Hq, s.D}); }
  Tensor tk() { return Tensor::contiguous(k.data(), DType::F32, {s.B, s.Tk, s.Hkv, s.D}); }
  Tensor tv() { return Tensor::contiguous(v.data(), DType::F32, {s.B, s.Tk, s.Hkv, s.D}); }
  Tensor tdout() { return Tensor::contiguous(dout.data(), DType::F32, {s.B, s.Tq, s.Hq, s.D}); }
  Tensor tbias() {
    return s.bias ? Tensor::contiguous(bias.data(), DType::F32, {s.Hq, s.Tq, s.Tk}) : Tensor{};
  }
  const uint8_t* mp() const { return s.mask ? mask.data() : nullptr; }
  int64_t msize() const { return s.mask ? s.B * s.Tk : 0; }
  int64_t nout() const { return s.B * s.Tq * s.Hq * s.D; }
  int64_t nkv() const { return s.B * s.Tk * s.Hkv * s.D; }

  void forward(std::vector<float>& out, std::vector<float>& lse) {
    out.assign(nout(), -7.f);  // garbage: forward must overwrite
    lse.assign(s.B * s.Hq * s.Tq, -7.f);
    attention_forward(Tensor::contiguous(out.data(), DType::F32, {s.B, s.Tq, s.Hq, s.D}),
                      Tensor::contiguous(lse.data(), DType::F32, {s.B, s.Hq, s.Tq}), tq(), tk(),
                      tv(), tbias(), mp(), msize(), opt);
  }
  struct Grads { std::vector<float> dq, dk, dv, dbias; };
  Grads zero_grads() {
    Grads g;
    g.dq.assign(nout(), 0.f);
    g.dk.assign(nkv(), 0.f);
    g.dv.assign(nkv(), 0.f);
    g.dbias.assign(s.bias ? s.Hq * s.Tq * s.Tk : 0, 0.f);
    return g;
  }
  Tensor gq(Grads& g) { return Tensor::contiguous(g.dq.data(), DType::F32, {s.B, s.Tq, s.Hq, s.D}); }
  Tensor gk(Grads& g) { return Tensor::contiguous(g.dk.data(), DType::F32, {s.B, s.Tk, s.Hkv, s.D}); }
  Tensor gv(Grads& g) { return Tensor::contiguous(g.dv.data(), DType::F32, {s.B, s.Tk, s.Hkv, s.D}); }
  Tensor gb(Grads& g) {
    return s.bias ? Tensor::contiguous(g.dbias.data(), DType::F32, {s.Hq, s.Tq, s.Tk}) : Tensor{};
  }
  void backward(Grads& g, std::vector<float>& out, std::vector<float>& lse,
                bool overwrite = false) {
    attention_backward(gq(g), gk(g), gv(g), gb(g), tdout(),
                       tq(), tk(), tv(),
                       Tensor::contiguous(out.data(), DType::F32, {s.B, s.Tq, s.Hq, s.D}),
                       Tensor::contiguous(lse.data(), DType::F32, {s.B, s.Hq, s.Tq}), tbias(),
                       mp(), msize(), opt, overwrite);
  }
  Grads backward_reference() {
    Grads g = zero_grads();
    attention_backward_reference(gq(g), gk(g), gv(g), gb(g), tdout(), tq(), tk(), tv(), tbias(),
                                 mp(), msize(), opt);
    return g;
  }
};

std::string describe(const Shape& s) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "B%lld Tq%lld Tk%lld H%lld/%lld D%lld%s%s%s scale%g",
                (long long)s.B, (long long)s.Tq, (long long)s.Tk, (long long)s.Hq,
                (long long)s.Hkv, (long long)s.D, s.causal ? " causal" : "",
                s.mask ? " mask" : "", s.bias ? " bias" : "", s.scale);
  return buf;
}

// Runs body once per backward plan, then restores Auto.
template <typename Fn>
void for_each_plan(Fn body) {
  for (AttentionBackwardPlan plan : {AttentionBackwardPlan::OnePass, AttentionBackwardPlan::TwoPass}) {
    set_attention_backward_plan(plan);
    body(plan == AttentionBackwardPlan::OnePass ? " [one-pass]" : " [two-pass]");
  }
  set_attention_backward_plan(AttentionBackwardPlan::Auto);
}

bool has_nan(const std::vector<float>& x) {
  for (float f : x) if (std::isnan(f)) return true;
  return false;
}

// Compares forward (out, lse) and backward (dq, dk, dv, dbias) with the reference.
void compare_problem_with_reference(Problem& p) {
  const Shape& s = p.s;
  std::vector<float> out, lse;
  p.forward(out, lse);
  std::vector<float> ref_out(p.nout()), ref_lse(s.B * s.Hq * s.Tq);
  attention_forward_reference(
      Tensor::contiguous(ref_out.data(), DType::F32, {s.B, s.Tq, s.Hq, s.D}),
      Tensor::contiguous(ref_lse.data(), DType::F32, {s.B, s.Hq, s.Tq}), p.tq(), p.tk(), p.tv(),
      p.tbias(), p.mp(), p.msize(), p.opt);
  std::string what = describe(s);
  if (p.opt.dropout_p > 0.f) what += " dropout " + std::to_string(p.opt.dropout_p);
  // Tolerances: fp32 accumulation over <= 130 keys and exp within 2 ulp: ~1e-6 typical.
  CHECK_ERR(s2s_test::max_normalized_error(out.data(), ref_out.data(), out.size()), 2e-5,
            "out " + what);
  bool lse_ok = true;
  for (size_t n = 0; n < lse.size(); ++n) {
    if (std::isinf(ref_lse[n])) lse_ok = lse_ok && lse[n] == ref_lse[n];
    else lse_ok = lse_ok && std::fabs(lse[n] - ref_lse[n]) <= 2e-5 * std::fmax(1.f, std::fabs(ref_lse[n]));
  }
  CHECK_MSG(lse_ok, "lse " + what);
  Problem::Grads r = p.backward_reference();
  for_each_plan([&](const char* plan) {
    Problem::Grads g = p.zero_grads();
    p.backward(g, out, lse);
    // Backward: dP - Di cancels; 1e-4 normalised covers fp32 at these sizes with margin.
    const std::string w = what + plan;
    CHECK_ERR(s2s_test::max_normalized_error(g.dq.data(), r.dq.data(), g.dq.size()), 1e-4, "dq " + w);
    CHECK_ERR(s2s_test::max_normalized_error(g.dk.data(), r.dk.data(), g.dk.size()), 1e-4, "dk " + w);
    CHECK_ERR(s2s_test::max_normalized_error(g.dv.data(), r.dv.data(), g.dv.size()), 1e-4, "dv " + w);
    CHECK_ERR(s2s_test::max_normalized_error(g.dbias.data(), r.dbias.data(), g.dbias.size()), 1e-4,
              "dbias " + w);
  });
}

// A problem with dropout on its probabilities (seed and offset derived from `seed`).
Problem dropout_problem(const Shape& s, uint64_t seed, float dropout_p) {
  Problem p(s, seed);
  p.opt.dropout_p = dropout_p;
  p.opt.dropout_seed = 0x5EED0000ull + seed;
  p.opt.dropout_offset = 1000 * seed + 3;  // not a multiple of 4: Philox blocks straddle rows
  return p;
}

void compare_with_reference(const Shape& s, uint64_t seed, float dropout_p = 0.f) {
  Problem p = dropout_problem(s, seed, dropout_p);
  compare_problem_with_reference(p);
}

}  // namespace

TEST(attention_matches_reference_across_tiles) {
  set_num_threads(2);
  const int64_t sizes[] = {1, 7, 65, 130};
  const int64_t heads[3][2] = {{4, 4}, {4, 2}, {4, 1}};
  int idx = 0;
  // Every (Tq, Tk, causal), cycling heads, D, mask, bias and scale through the cases.
  for (int64_t Tq : sizes) {
    for (int64_t Tk : sizes) {
      for (bool causal : {false, true}) {
        const int hc = idx % 3;
        const int64_t D = (idx / 3) % 2 ? 64 : 8;
        const bool mask = (idx / 2) % 2, bias = (idx / 4) % 2;
        const float scale = idx % 5 == 0 ? 1.0f : 0.f;
        const int64_t B = Tq * Tk > 4000 ? 1 : 2;
        compare_with_reference({B, Tq, Tk, heads[hc][0], heads[hc][1], D, causal, mask, bias, scale},
                               1000 + idx);
        ++idx;
      }
    }
  }
  // Every heads x D x causal x mask x bias combination on a tile-crossing size pair.
  for (int hc = 0; hc < 3; ++hc)
    for (int64_t D : {8, 64})
      for (bool causal : {false, true})
        for (bool mask : {false, true})
          for (bool bias : {false, true})
            compare_with_reference({1, 70, 67, heads[hc][0], heads[hc][1], D, causal, mask, bias, 0.f},
                                   2000 + idx++);
  // Across the 256-key blocks: several blocks per row (online-softmax rescaling), causal rows
  // whose reach ends inside or at the edge of a block, cache alignment (Tk > Tq), padding.
  const Shape long_shapes[] = {
      {1, 300, 300, 4, 2, 8, true, true, false, 0.f},
      {1, 300, 300, 2, 2, 8, false, false, true, 1.0f},
      {2, 7, 600, 2, 1, 8, false, true, true, 0.f},
      {1, 65, 513, 2, 2, 16, true, false, false, 0.f},
      {1, 256, 256, 2, 2, 64, true, false, false, 0.f},
      {1, 40, 257, 2, 2, 8, true, true, true, 0.f},
  };
  for (const Shape& s : long_shapes) compare_with_reference(s, 3000 + idx++);
}

TEST(attention_backward_matches_finite_differences) {
  set_num_threads(2);
  const Shape shapes[] = {
      {2, 5, 6, 4, 2, 4, false, true, true, 0.f},   // cross attention, GQA, mask, bias
      {2, 3, 5, 4, 1, 4, true, false, true, 1.0f},  // causal with cache (Tk > Tq), T5 scale
      {1, 6, 6, 2, 2, 3, true, true, false, 0.f},   // causal self-attention with padding
  };
  for (const Shape& s : shapes) {
    Problem p(s, 77);
    std::vector<float> out, lse;
    p.forward(out, lse);
    for_each_plan([&](const char* plan) {
      Problem::Grads g = p.zero_grads();
      p.backward(g, out, lse);
      // L = sum(out * dout), in double, through the fast forward.
      auto loss = [&]() {
        std::vector<float> o, l;
        p.forward(o, l);
        double acc = 0;
        for (size_t n = 0; n < o.size(); ++n) acc += double(o[n]) * double(p.dout[n]);
        return acc;
      };
      const std::string what = describe(s) + plan;
      CHECK_ERR(s2s_test::gradient_check(p.q, g.dq, loss), 2e-3, "fd dq " + what);
      CHECK_ERR(s2s_test::gradient_check(p.k, g.dk, loss), 2e-3, "fd dk " + what);
      CHECK_ERR(s2s_test::gradient_check(p.v, g.dv, loss), 2e-3, "fd dv " + what);
      if (s.bias) CHECK_ERR(s2s_test::gradient_check(p.bias, g.dbias, loss), 2e-3, "fd dbias " + what);
    });
  }
}

TEST(attention_backward_accumulates_and_skips_null_gradients) {
  set_num_threads(2);
  for_each_plan([](const char*) {
  Shape s{2, 9, 11, 4, 2, 8, false, true, true, 0.f};
  Problem p(s, 5);
  std::vector<float> out, lse;
  p.forward(out, lse);
  Problem::Grads once = p.zero_grads();
  p.backward(once, out, lse);
  Problem::Grads twice = p.zero_grads();
  for (auto* vec : {&twice.dq, &twice.dk, &twice.dv, &twice.dbias})
    for (float& x : *vec) x = 0.5f;
  p.backward(twice, out, lse);
  p.backward(twice, out, lse);
  auto check_acc = [&](const std::vector<float>& a, const std::vector<float>& b, const char* n) {
    double worst = 0;
    for (size_t i = 0; i < a.size(); ++i)
      worst = std::fmax(worst, std::fabs(double(b[i]) - (0.5 + 2.0 * a[i])));
    CHECK_ERR(worst, 1e-5, std::string("accumulate ") + n);
  };
  check_acc(once.dq, twice.dq, "dq");
  check_acc(once.dk, twice.dk, "dk");
  check_acc(once.dv, twice.dv, "dv");
  check_acc(once.dbias, twice.dbias, "dbias");
  // Each gradient alone (the others null) gives the same bits as all together.
  for (int which = 0; which < 4; ++which) {
    Problem::Grads one = p.zero_grads();
    Tensor none{};
    attention_backward(which == 0 ? p.gq(one) : none, which == 1 ? p.gk(one) : none,
                       which == 2 ? p.gv(one) : none, which == 3 ? p.gb(one) : none, p.tdout(),
                       p.tq(), p.tk(), p.tv(),
                       Tensor::contiguous(out.data(), DType::F32, {s.B, s.Tq, s.Hq, s.D}),
                       Tensor::contiguous(lse.data(), DType::F32, {s.B, s.Hq, s.Tq}), p.tbias(),
                       p.mp(), p.msize(), p.opt);
    const std::vector<float>* got[] = {&one.dq, &one.dk, &one.dv, &one.dbias};
    const std::vector<float>* want[] = {&once.dq, &once.dk, &once.dv, &once.dbias};
    for (int j = 0; j < 4; ++j) {
      if (j == which) CHECK(std::memcmp(got[j]->data(), want[j]->data(), got[j]->size() * 4) == 0);
      else {
        bool zero = true;
        for (float x : *got[j]) zero = zero && x == 0.f;
        CHECK_MSG(zero, "gradient " + std::to_string(j) + " touched when null");
      }
    }
  }
  });
}

// overwrite: dq, dk and dv start as NaN (fresh gradients) and come out as the values that
// accumulating into zeros gives, under both plans (each task zeroes its own rows); dbias still
// accumulates, to the same bits.
TEST(attention_backward_overwrites_fresh_gradients) {
  set_num_threads(2);
  const Shape shapes[] = {
      {2, 9, 11, 4, 2, 8, false, true, true, 0.f},    // GQA, padding mask, bias
      {1, 70, 70, 2, 1, 16, true, false, false, 0.f},  // causal over several tiles
      {2, 5, 37, 2, 2, 8, true, true, false, 0.f},     // causal with a cached prefix
  };
  for (const Shape& s : shapes) {
    for_each_plan([&](const char* plan) {
      Problem p(s, 17);
      std::vector<float> out, lse;
      p.forward(out, lse);
      Problem::Grads zeroed = p.zero_grads(), fresh = p.zero_grads();
      for (auto* vec : {&fresh.dq, &fresh.dk, &fresh.dv}) *vec = opt::garbage(vec->size());
      for (auto* g : {&zeroed, &fresh}) g->dbias.assign(g->dbias.size(), 0.25f);
      p.backward(zeroed, out, lse, false);
      p.backward(fresh, out, lse, true);
      CHECK_MSG(opt::same_values(fresh.dq, zeroed.dq) && opt::same_values(fresh.dk, zeroed.dk) &&
                    opt::same_values(fresh.dv, zeroed.dv) &&
                    opt::bit_equal(fresh.dbias, zeroed.dbias),
                describe(s) + plan);
    });
  }
  // No keys: nothing to add, and the overwritten gradient is zeros.
  Shape s{1, 3, 0, 2, 2, 8, false, false, false, 0.f};
  Problem p(s, 3);
  std::vector<float> out(p.nout(), 0.f), lse(s.B * s.Hq * s.Tq, 0.f);
  Problem::Grads g = p.zero_grads();
  g.dq = opt::garbage(g.dq.size());
  p.backward(g, out, lse, true);
  CHECK(opt::same_values(g.dq, std::vector<float>(g.dq.size(), 0.f)));
}

TEST(attention_is_deterministic_at_1_and_2_threads) {
  for_each_plan([](const char*) {
  Shape s{2, 300, 300, 4, 2, 16, true, true, true, 0.f};
  Problem p(s, 9);
  std::vector<std::vector<float>> results;
  for (int threads : {1, 2, 1, 2}) {
    set_num_threads(threads);
    std::vector<float> out, lse;
    p.forward(out, lse);
    Problem::Grads g = p.zero_grads();
    p.backward(g, out, lse);
    std::vector<float> all = out;
    for (auto* vec : {&lse, &g.dq, &g.dk, &g.dv, &g.dbias}) all.insert(all.end(), vec->begin(), vec->end());
    results.push_back(all);
  }
  const size_t bytes = results[0].size() * 4;
  CHECK(std::memcmp(results[0].data(), results[2].data(), bytes) == 0);  // 1 thread twice
  CHECK(std::memcmp(results[1].data(), results[3].data(), bytes) == 0);  // 2 threads twice
  // Tasks own their outputs and never depend on the split, so 1 and 2 threads agree too
  // (as long as the GEMM's own results do not depend on its thread count).
  CHECK_ERR(s2s_test::max_normalized_error(results[0].data(), results[1].data(), results[0].size()),
            1e-6, "1 vs 2 threads");
  set_num_threads(2);
  });
}

TEST(attention_fully_masked_rows_give_zeros_not_nan) {
  set_num_threads(2);
  for_each_plan([](const char*) {
  // Batch 1 has every key masked; causal with Tq > Tk leaves the first query rows no key.
  Shape s{2, 70, 66, 4, 2, 8, true, true, true, 0.f};
  Problem p(s, 13);
  for (int64_t j = 0; j < s.Tk; ++j) p.mask[s.Tk + j] = 0;
  std::vector<float> out, lse;
  p.forward(out, lse);
  Problem::Grads g = p.zero_grads();
  p.backward(g, out, lse);
  CHECK(!has_nan(out) && !has_nan(g.dq) && !has_nan(g.dk) && !has_nan(g.dv) && !has_nan(g.dbias));
  bool zeros = true;
  for (int64_t i = 0; i < s.Tq; ++i)
    for (int64_t x = 0; x < s.Hq * s.D; ++x) {
      const int64_t n1 = ((1 * s.Tq + i) * s.Hq) * s.D + x;  // batch 1: all masked
      zeros = zeros && out[n1] == 0.f && g.dq[n1] == 0.f;
      if (i < s.Tq - s.Tk) {  // rows before the first key under end-aligned causal
        const int64_t n0 = (i * s.Hq) * s.D + x;
        zeros = zeros && out[n0] == 0.f && g.dq[n0] == 0.f;
      }
    }
  CHECK(zeros);
  bool lse_inf = true;
  for (int64_t h = 0; h < s.Hq; ++h)
    for (int64_t i = 0; i < s.Tq; ++i) lse_inf = lse_inf && std::isinf(lse[(1 * s.Hq + h) * s.Tq + i]);
  CHECK(lse_inf);
  bool dkv_zero = true;
  for (int64_t x = s.Tk * s.Hkv * s.D; x < 2 * s.Tk * s.Hkv * s.D; ++x)
    dkv_zero = dkv_zero && g.dk[x] == 0.f && g.dv[x] == 0.f;
  CHECK(dkv_zero);
  // The reference agrees, everywhere.
  compare_problem_with_reference(p);
  // Tk = 0: every row empty.
  Shape e{1, 3, 0, 2, 2, 4, false, false, false, 0.f};
  Problem pe(e, 1);
  pe.forward(out, lse);
  bool ez = true;
  for (float x : out) ez = ez && x == 0.f;
  CHECK(ez);
  });
}

TEST(attention_propagates_nan) {
  Shape s{1, 7, 9, 2, 2, 8, false, false, false, 0.f};
  Problem p(s, 3);
  p.q[0] = NAN;  // batch 0, row 0, head 0
  std::vector<float> out, lse;
  p.forward(out, lse);
  CHECK(std::isnan(out[0]) && std::isnan(lse[0]));
  CHECK(!std::isnan(out[s.D]));  // head 1 of the same row is untouched
  for_each_plan([&](const char*) {
    Problem::Grads g = p.zero_grads();
    p.backward(g, out, lse);
    CHECK(std::isnan(g.dk[0]) || std::isnan(g.dv[0]));
  });
  // A NaN score among masked (-inf) ones only: the row max is -inf, the NaN must still win.
  Shape sm{1, 3, 5, 1, 1, 4, false, true, false, 0.f};
  Problem pm(sm, 4);
  for (int64_t j = 0; j < sm.Tk; ++j) pm.mask[j] = j == 0 ? 1 : 0;
  pm.q[0] = NAN;  // row 0's only allowed score is NaN
  pm.forward(out, lse);
  CHECK(std::isnan(out[0]) && std::isnan(lse[0]) && !std::isnan(out[sm.D]));
}

TEST(attention_rejects_bad_arguments) {
  Shape s{1, 6, 5, 4, 2, 8, false, false, true, 0.f};
  Problem p(s, 2);
  std::vector<float> out(p.nout()), lse(s.B * s.Hq * s.Tq);
  Tensor tout = Tensor::contiguous(out.data(), DType::F32, {s.B, s.Tq, s.Hq, s.D});
  Tensor tlse = Tensor::contiguous(lse.data(), DType::F32, {s.B, s.Hq, s.Tq});
  // Hq not a multiple of Hkv.
  Tensor k3 = Tensor::contiguous(p.k.data(), DType::F32, {1, 5, 3, 8});
  CHECK_THROWS_CODE(attention_forward(tout, tlse, p.tq(), k3, k3, p.tbias(), nullptr, 0, p.opt), code::kShape);
  // Head dims disagree.
  Tensor k4 = Tensor::contiguous(p.k.data(), DType::F32, {1, 5, 4, 4});
  CHECK_THROWS_CODE(attention_forward(tout, tlse, p.tq(), k4, p.tv(), p.tbias(), nullptr, 0, p.opt), code::kShape);
  // Bias of the wrong shape, out of the wrong shape, lse of the wrong shape.
  Tensor badb = Tensor::contiguous(p.bias.data(), DType::F32, {4, 5, 6});
  CHECK_THROWS_CODE(attention_forward(tout, tlse, p.tq(), p.tk(), p.tv(), badb, nullptr, 0, p.opt), code::kShape);
  Tensor lse2 = Tensor::contiguous(lse.data(), DType::F32, {s.B, s.Tq, s.Hq});
  CHECK_THROWS_CODE(attention_forward(tout, lse2, p.tq(), p.tk(), p.tv(), p.tbias(), nullptr, 0, p.opt), code::kShape);
  // Wrong dtype.
  Tensor qbf = p.tq();
  qbf.dtype = DType::BF16;
  CHECK_THROWS_CODE(attention_forward(tout, tlse, qbf, p.tk(), p.tv(), p.tbias(), nullptr, 0, p.opt), code::kDType);
  // Mask values other than 0/1, naming the element.
  std::vector<uint8_t> mask(5, 1);
  mask[3] = 2;
  try {
    attention_forward(tout, tlse, p.tq(), p.tk(), p.tv(), p.tbias(), mask.data(), 5, p.opt);
    CHECK_MSG(false, "bad mask accepted");
  } catch (const Error& e) {
    CHECK(e.code() == code::kArgument);
    CHECK(std::string(e.what()).find("key_mask[0, 3]") != std::string::npos);
  }
  mask[3] = 1;
  CHECK_THROWS_CODE(attention_forward(tout, tlse, p.tq(), p.tk(), p.tv(), p.tbias(), mask.data(), 4, p.opt), code::kShape);
  // Non-finite scale; dbias without bias.
  AttentionOptions bad;
  bad.scale = NAN;
  CHECK_THROWS_CODE(attention_forward(tout, tlse, p.tq(), p.tk(), p.tv(), p.tbias(), nullptr, 0, bad), code::kArgument);
  std::vector<float> db(s.Hq * s.Tq * s.Tk);
  Tensor tdb = Tensor::contiguous(db.data(), DType::F32, {s.Hq, s.Tq, s.Tk});
  CHECK_THROWS_CODE(attention_backward(Tensor{}, Tensor{}, Tensor{}, tdb, p.tdout(), p.tq(), p.tk(),
                                       p.tv(), tout, tlse, Tensor{}, nullptr, 0, p.opt),
                    code::kArgument);
  // Gradient of the wrong shape.
  std::vector<float> dk(p.nkv());
  Tensor tdk = Tensor::contiguous(dk.data(), DType::F32, {1, 5, 4, 4});
  CHECK_THROWS_CODE(attention_backward(Tensor{}, tdk, Tensor{}, Tensor{}, p.tdout(), p.tq(), p.tk(),
                                       p.tv(), tout, tlse, p.tbias(), nullptr, 0, p.opt),
                    code::kShape);
}

// ---- dropout on the probabilities -------------------------------------------------------------

TEST(attention_dropout_matches_reference) {
  set_num_threads(2);
  // Both backward plans inside compare_problem_with_reference. Causal and not, key mask, T5 bias
  // (dbias) with scale 1, GQA, Tq != Tk both ways, several 256-key blocks, D = 64.
  const Shape shapes[] = {
      {2, 70, 67, 4, 2, 8, false, true, true, 0.f},
      {2, 65, 130, 4, 1, 16, true, false, true, 1.0f},
      {1, 300, 300, 4, 2, 8, true, true, false, 0.f},
      {2, 7, 600, 2, 1, 8, false, true, true, 0.f},
      {1, 50, 20, 2, 2, 8, true, false, false, 0.f},  // Tq > Tk causal: empty rows
      {1, 130, 130, 2, 2, 64, false, false, false, 0.f},
  };
  int idx = 0;
  for (const Shape& s : shapes) {
    for (float dp : {0.1f, 0.5f}) compare_with_reference(s, 4000 + idx++, dp);
  }
}

TEST(attention_dropout_backward_matches_finite_differences) {
  set_num_threads(2);
  // The mask depends on (seed, offset, indices) only, so with them fixed the op is a smooth
  // function of q, k, v and bias.
  const Shape shapes[] = {
      {2, 5, 6, 4, 2, 4, false, true, true, 0.f},
      {2, 3, 5, 4, 1, 4, true, false, true, 1.0f},
      {1, 6, 6, 2, 2, 3, true, true, false, 0.f},
  };
  int idx = 0;
  for (const Shape& s : shapes) {
    Problem p = dropout_problem(s, 78 + idx++, 0.3f);
    std::vector<float> out, lse;
    p.forward(out, lse);
    int dropped = 0;  // the mask is not empty (else this would test nothing new)
    for (int64_t b = 0; b < s.B; ++b)
      for (int64_t h = 0; h < s.Hq; ++h)
        for (int64_t i = 0; i < s.Tq; ++i)
          for (int64_t j = 0; j < s.Tk; ++j) {
            const uint64_t c = p.opt.dropout_offset + uint64_t(((b * s.Hq + h) * s.Tq + i) * s.Tk + j);
            std::vector<float> one{1.f}, kept{0.f};
            dropout_forward(Tensor::contiguous(kept.data(), DType::F32, {1}),
                            Tensor::contiguous(one.data(), DType::F32, {1}), p.opt.dropout_p,
                            p.opt.dropout_seed, c);
            dropped += kept[0] == 0.f;
          }
    CHECK(dropped > 0);
    for_each_plan([&](const char* plan) {
      Problem::Grads g = p.zero_grads();
      p.backward(g, out, lse);
      auto loss = [&]() {
        std::vector<float> o, l;
        p.forward(o, l);
        double acc = 0;
        for (size_t n = 0; n < o.size(); ++n) acc += double(o[n]) * double(p.dout[n]);
        return acc;
      };
      const std::string what = describe(s) + " dropout" + plan;
      CHECK_ERR(s2s_test::gradient_check(p.q, g.dq, loss), 2e-3, "fd dq " + what);
      CHECK_ERR(s2s_test::gradient_check(p.k, g.dk, loss), 2e-3, "fd dk " + what);
      CHECK_ERR(s2s_test::gradient_check(p.v, g.dv, loss), 2e-3, "fd dv " + what);
      if (s.bias) CHECK_ERR(s2s_test::gradient_check(p.bias, g.dbias, loss), 2e-3, "fd dbias " + what);
    });
  }
}

namespace {

// A problem whose v is the identity over keys (Tk == D, v[b,j,g,d] = (j == d)), so out[b,i,h,:]
// is row i of head h's (dropped) probability matrix.
Problem identity_v_problem(const Shape& s, uint64_t seed) {
  Problem p(s, seed);
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t j = 0; j < s.Tk; ++j)
      for (int64_t g = 0; g < s.Hkv; ++g)
        for (int64_t d = 0; d < s.D; ++d) p.v[((b * s.Tk + j) * s.Hkv + g) * s.D + d] = j == d;
  return p;
}

// The undropped probabilities (B,Hq,Tq,Tk) of a problem without bias, mask or causality,
// computed explicitly (softmax in double, rounded to float).
std::vector<float> explicit_probs(const Problem& p) {
  const Shape& s = p.s;
  const double scale = 1.0 / std::sqrt(double(s.D));
  std::vector<float> probs(s.B * s.Hq * s.Tq * s.Tk);
  std::vector<double> row(s.Tk);
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t h = 0; h < s.Hq; ++h)
      for (int64_t i = 0; i < s.Tq; ++i) {
        double mx = -INFINITY, sum = 0;
        for (int64_t j = 0; j < s.Tk; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < s.D; ++d)
            dot += double(p.q[((b * s.Tq + i) * s.Hq + h) * s.D + d]) *
                   double(p.k[((b * s.Tk + j) * s.Hkv + h / (s.Hq / s.Hkv)) * s.D + d]);
          row[j] = scale * dot;
          mx = std::fmax(mx, row[j]);
        }
        for (int64_t j = 0; j < s.Tk; ++j) sum += std::exp(row[j] - mx);
        for (int64_t j = 0; j < s.Tk; ++j)
          probs[((b * s.Hq + h) * s.Tq + i) * s.Tk + j] = float(std::exp(row[j] - mx) / sum);
      }
  return probs;
}

}  // namespace

TEST(attention_dropout_mask_is_the_dropout_ops_mask) {
  set_num_threads(2);
  // GQA, Tq != Tk; the probability tensor (B,Hq,Tq,Tk) is dropped by dropout_forward with the
  // same seed and offset, and the op's out (= its dropped probabilities, v being the identity)
  // must be zero exactly where dropout_forward's is, and equal elsewhere.
  const Shape s{2, 30, 40, 4, 2, 40, false, false, false, 0.f};
  Problem p = identity_v_problem(s, 21);
  const std::vector<float> probs = explicit_probs(p);
  const int64_t n = int64_t(probs.size());
  for (uint64_t offset : {uint64_t(0), uint64_t(7), uint64_t(7 + n)}) {  // next call's offset too
    const uint64_t seed = 0xABCDEF0123ull;
    p.opt.dropout_p = 0.25f;
    p.opt.dropout_seed = seed;
    if (offset == 7) {  // the seed by address (DropoutSeed::on_device), a wrong value beside it
      p.opt.dropout_seed = DropoutSeed(~seed);
      p.opt.dropout_seed.on_device = &seed;
    }
    p.opt.dropout_offset = offset;
    std::vector<float> out, lse, dropped(n);
    p.forward(out, lse);
    dropout_forward(Tensor::contiguous(dropped.data(), DType::F32, {n}),
                    Tensor::contiguous(const_cast<float*>(probs.data()), DType::F32, {n}),
                    p.opt.dropout_p, seed, offset);
    bool same_zeros = true;
    double worst = 0;
    int64_t zeros = 0;
    for (int64_t b = 0; b < s.B; ++b)
      for (int64_t h = 0; h < s.Hq; ++h)
        for (int64_t i = 0; i < s.Tq; ++i)
          for (int64_t j = 0; j < s.Tk; ++j) {
            const float want = dropped[((b * s.Hq + h) * s.Tq + i) * s.Tk + j];
            const float got = out[((b * s.Tq + i) * s.Hq + h) * s.D + j];
            same_zeros = same_zeros && ((want == 0.f) == (got == 0.f));
            worst = std::fmax(worst, std::fabs(double(got) - double(want)));
            zeros += want == 0.f;
          }
    const std::string what = "offset " + std::to_string(offset);
    CHECK_MSG(same_zeros, "dropped positions differ from dropout_forward's, " + what);
    CHECK_ERR(worst, 1e-6, "kept probabilities, " + what);
    CHECK_MSG(zeros > n / 8 && zeros < n / 2, "dropped count " + std::to_string(zeros) + ", " + what);
  }
}

TEST(attention_dropout_keeps_the_expected_fraction) {
  set_num_threads(2);
  // 262144 probabilities; the dropped fraction is binomial(n, p) / n, sigma = sqrt(p(1-p)/n).
  const Shape s{1, 256, 256, 4, 2, 256, false, false, false, 0.f};
  Problem p = identity_v_problem(s, 31);
  for (float dp : {0.1f, 0.5f}) {
    p.opt.dropout_p = dp;
    p.opt.dropout_seed = 2024;
    p.opt.dropout_offset = 0;
    std::vector<float> out, lse;
    p.forward(out, lse);
    const double n = double(out.size());
    int64_t zeros = 0;
    double mean_row_sum = 0;  // E[sum_j p'_ij] = 1: the 1/(1-p) scaling keeps rows unbiased
    for (int64_t row = 0; row < s.B * s.Tq * s.Hq; ++row) {
      double sum = 0;
      for (int64_t d = 0; d < s.D; ++d) {
        zeros += out[row * s.D + d] == 0.f;
        sum += out[row * s.D + d];
      }
      mean_row_sum += sum / double(s.B * s.Tq * s.Hq);
    }
    const double frac = double(zeros) / n, sigma = std::sqrt(dp * (1.0 - dp) / n);
    CHECK_ERR(std::fabs(frac - dp) / sigma, 5.0, "dropped fraction in sigmas, p = " + std::to_string(dp));
    CHECK_ERR(std::fabs(mean_row_sum - 1.0), 0.02, "mean row sum, p = " + std::to_string(dp));
  }
}

TEST(attention_dropout_is_bit_identical_at_1_and_2_threads) {
  for_each_plan([](const char* plan) {
    Shape s{2, 300, 300, 4, 2, 16, true, true, true, 0.f};
    Problem p = dropout_problem(s, 9, 0.2f);
    std::vector<std::vector<float>> results;
    for (int threads : {1, 2}) {
      set_num_threads(threads);
      std::vector<float> out, lse;
      p.forward(out, lse);
      Problem::Grads g = p.zero_grads();
      p.backward(g, out, lse);
      std::vector<float> all = out;
      for (auto* vec : {&lse, &g.dq, &g.dk, &g.dv, &g.dbias}) all.insert(all.end(), vec->begin(), vec->end());
      results.push_back(all);
    }
    CHECK_MSG(std::memcmp(results[0].data(), results[1].data(), results[0].size() * 4) == 0,
              std::string("1 vs 2 threads with dropout") + plan);
    set_num_threads(2);
  });
}

TEST(attention_dropout_zero_is_the_plain_op_bit_for_bit) {
  set_num_threads(2);
  for_each_plan([](const char* plan) {
    Shape s{2, 70, 300, 4, 2, 8, true, true, true, 0.f};
    Problem plain(s, 17);
    Problem zero(s, 17);
    zero.opt.dropout_p = 0.f;  // seed and offset set but unused
    zero.opt.dropout_seed = 99;
    zero.opt.dropout_offset = 12345;
    std::vector<float> out0, lse0, out1, lse1;
    plain.forward(out0, lse0);
    zero.forward(out1, lse1);
    Problem::Grads g0 = plain.zero_grads(), g1 = zero.zero_grads();
    plain.backward(g0, out0, lse0);
    zero.backward(g1, out1, lse1);
    bool same = true;
    for (auto [a, b] : {std::pair{&out0, &out1}, {&lse0, &lse1}, {&g0.dq, &g1.dq}, {&g0.dk, &g1.dk},
                        {&g0.dv, &g1.dv}, {&g0.dbias, &g1.dbias}})
      same = same && std::memcmp(a->data(), b->data(), a->size() * 4) == 0;
    CHECK_MSG(same, std::string("dropout_p = 0 differs from no dropout") + plan);
  });
}

TEST(attention_dropout_fully_masked_rows_stay_zero) {
  set_num_threads(2);
  for_each_plan([](const char*) {
    Shape s{2, 70, 66, 4, 2, 8, true, true, true, 0.f};
    Problem p = dropout_problem(s, 14, 0.4f);
    for (int64_t j = 0; j < s.Tk; ++j) p.mask[s.Tk + j] = 0;  // batch 1: every key masked
    std::vector<float> out, lse;
    p.forward(out, lse);
    Problem::Grads g = p.zero_grads();
    p.backward(g, out, lse);
    CHECK(!has_nan(out) && !has_nan(g.dq) && !has_nan(g.dk) && !has_nan(g.dv) && !has_nan(g.dbias));
    bool zeros = true;
    for (int64_t i = 0; i < s.Tq; ++i)
      for (int64_t x = 0; x < s.Hq * s.D; ++x) {
        const int64_t n1 = ((1 * s.Tq + i) * s.Hq) * s.D + x;
        zeros = zeros && out[n1] == 0.f && g.dq[n1] == 0.f;
        if (i < s.Tq - s.Tk) zeros = zeros && out[(i * s.Hq) * s.D + x] == 0.f;
      }
    CHECK(zeros);
    compare_problem_with_reference(p);
  });
}

TEST(attention_dropout_rejects_p_outside_0_1) {
  Shape s{1, 6, 5, 4, 2, 8, false, false, true, 0.f};
  Problem p(s, 2);
  std::vector<float> out(p.nout()), lse(s.B * s.Hq * s.Tq), dq(p.nout());
  Tensor tout = Tensor::contiguous(out.data(), DType::F32, {s.B, s.Tq, s.Hq, s.D});
  Tensor tlse = Tensor::contiguous(lse.data(), DType::F32, {s.B, s.Hq, s.Tq});
  Tensor tdq = Tensor::contiguous(dq.data(), DType::F32, {s.B, s.Tq, s.Hq, s.D});
  for (float bad : {1.0f, 1.5f, -0.1f, NAN, INFINITY}) {
    AttentionOptions o = p.opt;
    o.dropout_p = bad;
    try {
      attention_forward(tout, tlse, p.tq(), p.tk(), p.tv(), p.tbias(), nullptr, 0, o);
      CHECK_MSG(false, "dropout_p " + std::to_string(bad) + " accepted");
    } catch (const Error& e) {
      CHECK(e.code() == code::kArgument);
      CHECK(std::string(e.what()).find("dropout_p") != std::string::npos);
    }
    CHECK_THROWS_CODE(attention_backward(tdq, Tensor{}, Tensor{}, Tensor{}, p.tdout(), p.tq(), p.tk(),
                                         p.tv(), tout, tlse, p.tbias(), nullptr, 0, o),
                      code::kArgument);
    CHECK_THROWS_CODE(attention_forward_reference(tout, tlse, p.tq(), p.tk(), p.tv(), p.tbias(),
                                                  nullptr, 0, o),
                      code::kArgument);
    CHECK_THROWS_CODE(attention_backward_reference(tdq, Tensor{}, Tensor{}, Tensor{}, p.tdout(),
                                                   p.tq(), p.tk(), p.tv(), p.tbias(), nullptr, 0, o),
                      code::kArgument);
  }
}
