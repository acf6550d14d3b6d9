// Activation ops: gelu (tanh and erf), relu, silu, swiglu, geglu, softmax, and the vectorised
// exp/tanh/erf they rest on. For each: fast vs reference on odd sizes under every ISA path,
// backward vs central finite differences, accumulation, null-gradient skipping, determinism,
// NaN propagation, known values, bad arguments.
#include <cmath>
#include <limits>

#include "ops/vec_math.h"
#include "ops_test_util.h"
#include "s2s/ops/geglu.h"
#include "s2s/ops/gelu.h"
#include "s2s/ops/relu.h"
#include "s2s/ops/silu.h"
#include "s2s/ops/softmax.h"
#include "s2s/ops/swiglu.h"

using namespace s2s;
using opt::view;
using s2s_test::max_normalized_error;
using s2s_test::random_vector;

namespace {

using Fwd = std::function<void(const Tensor&, const Tensor&)>;
using Bwd = std::function<void(const Tensor&, const Tensor&, const Tensor&, bool overwrite)>;
using BwdRef = std::function<void(const Tensor&, const Tensor&, const Tensor&)>;
struct Unary {
  const char* name;
  Fwd fwd, fwd_ref;
  Bwd bwd;  // the op; overwrite defaults to false below
  BwdRef bwd_ref;
  float lo, hi;  // input range for the tests
};

std::vector<Unary> unaries() {
  return {
      {"gelu_tanh", [](auto& o, auto& i) { gelu_forward(o, i, GeluApprox::Tanh); },
       [](auto& o, auto& i) { gelu_forward_reference(o, i, GeluApprox::Tanh); },
       [](auto& d, auto& g, auto& i, bool w) { gelu_backward(d, g, i, GeluApprox::Tanh, w); },
       [](auto& d, auto& g, auto& i) { gelu_backward_reference(d, g, i, GeluApprox::Tanh); },
       -8.f, 8.f},
      {"gelu_erf", [](auto& o, auto& i) { gelu_forward(o, i, GeluApprox::None); },
       [](auto& o, auto& i) { gelu_forward_reference(o, i, GeluApprox::None); },
       [](auto& d, auto& g, auto& i, bool w) { gelu_backward(d, g, i, GeluApprox::None, w); },
       [](auto& d, auto& g, auto& i) { gelu_backward_reference(d, g, i, GeluApprox::None); },
       -8.f, 8.f},
      {"relu", relu_forward, relu_forward_reference,
       [](auto& d, auto& g, auto& i, bool w) { relu_backward(d, g, i, w); },
       relu_backward_reference, -4.f, 4.f},
      {"silu", silu_forward, silu_forward_reference,
       [](auto& d, auto& g, auto& i, bool w) { silu_backward(d, g, i, w); },
       silu_backward_reference, -20.f, 20.f},
  };
}

// Element counts: odd sizes, and one large enough to run on two threads.
const int64_t kSizes[][2] = {{1, 1}, {7, 5}, {33, 64}, {7, 257}, {33, 257}, {301, 257}};


}  // namespace

// Softmax, attention and cross-entropy feed exp_f with x - max <= 0: within 2 ulp there.
TEST(exp_f_is_within_2_ulp_for_non_positive_arguments) {
  double worst_ulp = 0;
  for (int n = 0; n <= 2000000; ++n) {
    const float x = -87.3f * float(n) / 2000000.f;
    const double exact = std::exp(double(x));
    const double ulp = std::ldexp(1.0, std::ilogb(exact) - 23);
    worst_ulp = std::fmax(worst_ulp, std::fabs(double(vm::exp_f(x)) - exact) / ulp);
  }
  CHECK_ERR(worst_ulp, 2.0, "exp_f ulp error on [-87.3, 0]");
}

TEST(vec_math_matches_libm) {
  double e_exp = 0, e_tanh = 0, e_erf = 0;
  for (int i = -200000; i <= 200000; ++i) {
    const float x = float(i) * (87.0f / 200000.0f);  // below -87.34 exp_f flushes to 0 by design
    const double ref = std::exp(double(x));
    e_exp = std::fmax(e_exp, std::fabs(vm::exp_f(x) - ref) / ref);
    const float t = float(i) * (10.0f / 200000.0f);
    e_tanh = std::fmax(e_tanh, std::fabs(vm::tanh_f(t) - std::tanh(double(t))) /
                                   std::fmax(std::fabs(std::tanh(double(t))), 1e-30));
    e_erf = std::fmax(e_erf, std::fabs(vm::erf_f(t) - std::erf(double(t))));
  }
  CHECK_ERR(e_exp, 3e-7, "exp_f relative error");
  CHECK_ERR(e_tanh, 6e-7, "tanh_f relative error");
  CHECK_ERR(e_erf, 5e-7, "erf_f absolute error");
  const float inf = std::numeric_limits<float>::infinity(), nan = std::nanf("");
  CHECK(vm::exp_f(-inf) == 0.0f && vm::exp_f(-100.f) == 0.0f);
  CHECK(vm::exp_f(inf) == inf && vm::exp_f(100.f) == inf);
  CHECK(vm::exp_f(0.0f) == 1.0f);
  CHECK(vm::tanh_f(inf) == 1.0f && vm::tanh_f(-inf) == -1.0f && vm::tanh_f(1e-6f) == 1e-6f);
  CHECK(std::isnan(vm::exp_f(nan)) && std::isnan(vm::tanh_f(nan)) && std::isnan(vm::erf_f(nan)));
  CHECK(std::isnan(vm::sigmoid_f(nan)) && vm::sigmoid_f(-inf) == 0.0f && vm::sigmoid_f(inf) == 1.0f);
}

// Golden values from python3 (math.tanh / math.erf / math.exp in double):
//   0.5*x*(1+tanh(sqrt(2/pi)*(x+0.044715*x**3))), 0.5*x*(1+erf(x/sqrt(2))), x/(1+exp(-x))
TEST(activations_known_values) {
  std::vector<float> x = {-3.0f, -1.0f, -0.5f, 0.0f, 0.5f, 1.0f, 3.0f};
  const double tanh_ref[] = {-0.00363739208, -0.158808009, -0.15428599, 0,
                             0.34571401,     0.841191991,  2.99636261};
  const double erf_ref[] = {-0.00404969409, -0.158655254, -0.154268769, 0,
                            0.345731231,    0.841344746,  2.99595031};
  const double silu_ref[] = {-0.14227762, -0.268941421, -0.188770334, 0,
                             0.311229666, 0.731058579,  2.85772238};
  opt::for_each_isa([&](Isa isa) {
    std::vector<float> y(x.size());
    double e1 = 0, e2 = 0, e3 = 0;
    gelu_forward(view(y, {7}), view(x, {7}), GeluApprox::Tanh);
    for (int i = 0; i < 7; ++i) e1 = std::fmax(e1, std::fabs(y[i] - tanh_ref[i]));
    gelu_forward(view(y, {7}), view(x, {7}), GeluApprox::None);
    for (int i = 0; i < 7; ++i) e2 = std::fmax(e2, std::fabs(y[i] - erf_ref[i]));
    silu_forward(view(y, {7}), view(x, {7}));
    for (int i = 0; i < 7; ++i) e3 = std::fmax(e3, std::fabs(y[i] - silu_ref[i]));
    CHECK_ERR(e1, 1e-6, opt::where(isa, "gelu tanh known values"));
    CHECK_ERR(e2, 1.5e-6, opt::where(isa, "gelu erf known values"));
    CHECK_ERR(e3, 1e-6, opt::where(isa, "silu known values"));
  });
}

TEST(unary_fast_matches_reference) {
  for (const Unary& op : unaries()) {
    opt::for_each_isa([&](Isa isa) {
      for (auto& s : kSizes) {
        const int64_t N = s[0], C = s[1];
        std::vector<float> x = random_vector(N * C, 11 + N * C, op.lo, op.hi);
        std::vector<float> dy = random_vector(N * C, 12, -1, 1);
        std::vector<float> y(N * C), y_ref(N * C);
        op.fwd(view(y, {N, C}), view(x, {N, C}));
        op.fwd_ref(view(y_ref, {N, C}), view(x, {N, C}));
        CHECK_ERR(max_normalized_error(y.data(), y_ref.data(), y.size()), 3e-6,
                  opt::where(isa, (std::string(op.name) + " forward").c_str(), N, C));
        // Backward onto a non-zero gradient (it accumulates).
        std::vector<float> dx = random_vector(N * C, 13), dx_ref = dx;
        op.bwd(view(dx, {N, C}), view(dy, {N, C}), view(x, {N, C}), false);
        op.bwd_ref(view(dx_ref, {N, C}), view(dy, {N, C}), view(x, {N, C}));
        CHECK_ERR(max_normalized_error(dx.data(), dx_ref.data(), dx.size()), 5e-6,
                  opt::where(isa, (std::string(op.name) + " backward").c_str(), N, C));
        // Overwriting a fresh (garbage) gradient gives what accumulating into zeros gives.
        std::vector<float> fresh = opt::garbage(N * C), zeroed(N * C, 0.0f);
        op.bwd(view(fresh, {N, C}), view(dy, {N, C}), view(x, {N, C}), true);
        op.bwd(view(zeroed, {N, C}), view(dy, {N, C}), view(x, {N, C}), false);
        CHECK_MSG(opt::same_values(fresh, zeroed),
                  opt::where(isa, (std::string(op.name) + " overwrite").c_str(), N, C));
      }
    });
  }
}

TEST(unary_gradient_check_accumulate_skip_nan) {
  for (const Unary& op : unaries()) {
    const int64_t n = 24;
    std::vector<float> x = random_vector(n, 21, -3, 3);
    if (std::string(op.name) == "relu") {
      for (auto& v : x) v = v < 0 ? v - 0.1f : v + 0.1f;  // keep away from the kink at 0
    }
    std::vector<float> g = random_vector(n, 22), y(n);
    std::vector<float> dx(n, 0.0f);
    op.bwd(view(dx, {n}), view(g, {n}), view(x, {n}), false);
    const double err = s2s_test::gradient_check(x, dx, [&] {
      op.fwd(view(y, {n}), view(x, {n}));
      return opt::dot(y, g);
    });
    CHECK_ERR(err, 2e-3, std::string(op.name) + " gradient check");
    // Accumulation: a second call doubles the gradient exactly.
    op.bwd(view(dx, {n}), view(g, {n}), view(x, {n}), false);
    std::vector<float> once(n, 0.0f);
    op.bwd(view(once, {n}), view(g, {n}), view(x, {n}), false);
    CHECK(opt::bit_equal(dx, opt::scaled(once, 2.0f)));
    // A null gradient is skipped without complaint.
    op.bwd(opt::none(), view(g, {n}), view(x, {n}), true);
    // NaN in -> NaN out, in place.
    std::vector<float> z = {1.0f, std::nanf(""), -1.0f};
    op.fwd(view(z, {3}), view(z, {3}));
    CHECK_MSG(std::isnan(z[1]) && !std::isnan(z[0]) && !std::isnan(z[2]),
              std::string(op.name) + ": NaN must propagate and stay in its element");
  }
}

TEST(unary_bad_arguments) {
  std::vector<float> a(6), b(6);
  std::vector<uint16_t> h(6);
  for (const Unary& op : unaries()) {
    CHECK_THROWS_CODE(op.fwd(view(a, {2, 3}), view(b, {3, 2})), code::kShape);
    CHECK_THROWS_CODE(op.fwd(opt::view16(h, DType::BF16, {2, 3}), view(b, {2, 3})), code::kDType);
    CHECK_THROWS_CODE(op.bwd(view(a, {6}), view(b, {2, 3}), view(b, {6}), false), code::kShape);
  }
  CHECK_THROWS_CODE(gelu_forward(view(a, {6}), view(b, {6}), static_cast<GeluApprox>(7)),
                    code::kArgument);
}

TEST(gated_fast_matches_reference_and_gradients) {
  struct Gated {
    const char* name;
    std::function<void(const Tensor&, const Tensor&, const Tensor&, bool)> fwd;
    // mode: kFast accumulates, kRef is the reference (accumulates), kOverwrite writes.
    std::function<void(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                       const Tensor&, int mode)>
        bwd;
  };
  enum { kFast = 0, kRef = 1, kOverwrite = 2 };
  const std::vector<Gated> ops = {
      {"swiglu",
       [](auto& o, auto& g, auto& u, bool ref) {
         ref ? swiglu_forward_reference(o, g, u) : swiglu_forward(o, g, u);
       },
       [](auto& dg, auto& du, auto& dy, auto& g, auto& u, int mode) {
         mode == kRef ? swiglu_backward_reference(dg, du, dy, g, u)
                      : swiglu_backward(dg, du, dy, g, u, mode == kOverwrite);
       }},
      {"geglu_tanh",
       [](auto& o, auto& g, auto& u, bool ref) {
         ref ? geglu_forward_reference(o, g, u) : geglu_forward(o, g, u);
       },
       [](auto& dg, auto& du, auto& dy, auto& g, auto& u, int mode) {
         mode == kRef ? geglu_backward_reference(dg, du, dy, g, u)
                      : geglu_backward(dg, du, dy, g, u, GeluApprox::Tanh, mode == kOverwrite);
       }},
      {"geglu_erf",
       [](auto& o, auto& g, auto& u, bool ref) {
         ref ? geglu_forward_reference(o, g, u, GeluApprox::None)
             : geglu_forward(o, g, u, GeluApprox::None);
       },
       [](auto& dg, auto& du, auto& dy, auto& g, auto& u, int mode) {
         mode == kRef ? geglu_backward_reference(dg, du, dy, g, u, GeluApprox::None)
                      : geglu_backward(dg, du, dy, g, u, GeluApprox::None, mode == kOverwrite);
       }},
  };
  for (const Gated& op : ops) {
    const std::string name = op.name;
    opt::for_each_isa([&](Isa isa) {
      for (auto& s : kSizes) {
        const int64_t N = s[0], H = s[1];
        std::vector<float> g = random_vector(N * H, 31, -8, 8), u = random_vector(N * H, 32, -2, 2);
        std::vector<float> dy = random_vector(N * H, 33), y(N * H), y_ref(N * H);
        op.fwd(view(y, {N, H}), view(g, {N, H}), view(u, {N, H}), false);
        op.fwd(view(y_ref, {N, H}), view(g, {N, H}), view(u, {N, H}), true);
        CHECK_ERR(max_normalized_error(y.data(), y_ref.data(), y.size()), 5e-6,
                  opt::where(isa, (name + " forward").c_str(), N, H));
        std::vector<float> dg = random_vector(N * H, 34), du = random_vector(N * H, 35);
        std::vector<float> dg_ref = dg, du_ref = du;
        op.bwd(view(dg, {N, H}), view(du, {N, H}), view(dy, {N, H}), view(g, {N, H}),
               view(u, {N, H}), kFast);
        op.bwd(view(dg_ref, {N, H}), view(du_ref, {N, H}), view(dy, {N, H}), view(g, {N, H}),
               view(u, {N, H}), kRef);
        CHECK_ERR(max_normalized_error(dg.data(), dg_ref.data(), dg.size()), 1e-5,
                  opt::where(isa, (name + " dgate").c_str(), N, H));
        CHECK_ERR(max_normalized_error(du.data(), du_ref.data(), du.size()), 5e-6,
                  opt::where(isa, (name + " dup").c_str(), N, H));
        // Overwriting fresh (garbage) gradients gives what accumulating into zeros gives.
        std::vector<float> dg_w = opt::garbage(N * H), du_w = opt::garbage(N * H);
        std::vector<float> dg_0(N * H, 0.0f), du_0(N * H, 0.0f);
        op.bwd(view(dg_w, {N, H}), view(du_w, {N, H}), view(dy, {N, H}), view(g, {N, H}),
               view(u, {N, H}), kOverwrite);
        op.bwd(view(dg_0, {N, H}), view(du_0, {N, H}), view(dy, {N, H}), view(g, {N, H}),
               view(u, {N, H}), kFast);
        CHECK_MSG(opt::same_values(dg_w, dg_0) && opt::same_values(du_w, du_0),
                  opt::where(isa, (name + " overwrite").c_str(), N, H));
      }
    });
    // Finite differences for both inputs.
    const int64_t N = 3, H = 5;
    std::vector<float> g = random_vector(N * H, 41, -3, 3), u = random_vector(N * H, 42);
    std::vector<float> w = random_vector(N * H, 43), y(N * H);
    std::vector<float> dg(N * H, 0.0f), du(N * H, 0.0f);
    op.bwd(view(dg, {N, H}), view(du, {N, H}), view(w, {N, H}), view(g, {N, H}), view(u, {N, H}),
           kFast);
    auto loss = [&] {
      op.fwd(view(y, {N, H}), view(g, {N, H}), view(u, {N, H}), false);
      return opt::dot(y, w);
    };
    CHECK_ERR(s2s_test::gradient_check(g, dg, loss), 2e-3, name + " dgate gradient check");
    CHECK_ERR(s2s_test::gradient_check(u, du, loss), 2e-3, name + " dup gradient check");
    // Accumulation and skipping one gradient: dup alone equals the dup of a full call.
    std::vector<float> dg2 = dg, du_only(N * H, 0.0f);
    op.bwd(view(dg2, {N, H}), opt::none(), view(w, {N, H}), view(g, {N, H}), view(u, {N, H}),
           kFast);
    CHECK(opt::bit_equal(dg2, opt::scaled(dg, 2.0f)));
    op.bwd(opt::none(), view(du_only, {N, H}), view(w, {N, H}), view(g, {N, H}), view(u, {N, H}),
           kFast);
    CHECK(opt::bit_equal(du_only, du));
    op.bwd(opt::none(), opt::none(), view(w, {N, H}), view(g, {N, H}), view(u, {N, H}), kFast);
    // Shapes must agree.
    std::vector<float> bad(N * H + 1);
    CHECK_THROWS_CODE(op.fwd(view(y, {N, H}), view(g, {N, H}), view(bad, {N, H + 1}), false),
                      code::kShape);
    CHECK_THROWS_CODE(op.bwd(view(bad, {N * H + 1}), opt::none(), view(w, {N, H}),
                             view(g, {N, H}), view(u, {N, H}), kFast),
                      code::kShape);
  }
}

// Overwritten gated gradients may be bf16: the f32 overwrite's values rounded to nearest even,
// bit for bit (what a bf16 linear's backward would round them to); bf16 only when overwriting,
// and both gradients in one dtype.
TEST(gated_bf16_gradients_are_the_f32_values_rounded) {
  const int64_t n = 3 * 700 + 5;  // more than one rounding block, odd tail, two threads
  std::vector<float> g = random_vector(n, 71, -6, 6), u = random_vector(n, 72, -2, 2);
  std::vector<float> dy = random_vector(n, 73);
  for (int op = 0; op < 3; ++op) {
    auto run = [&](const Tensor& dg, const Tensor& du, bool overwrite) {
      if (op == 0) swiglu_backward(dg, du, view(dy, {n}), view(g, {n}), view(u, {n}), overwrite);
      else
        geglu_backward(dg, du, view(dy, {n}), view(g, {n}), view(u, {n}),
                       op == 1 ? GeluApprox::Tanh : GeluApprox::None, overwrite);
    };
    std::vector<float> dg32(n), du32(n);
    run(view(dg32, {n}), view(du32, {n}), true);
    std::vector<uint16_t> dg16(n, 0xFFFF), du16(n, 0xFFFF), du_only(n, 0xFFFF);
    run(opt::view16(dg16, DType::BF16, {n}), opt::view16(du16, DType::BF16, {n}), true);
    run(Tensor{}, opt::view16(du_only, DType::BF16, {n}), true);
    bool same = true;
    for (int64_t i = 0; i < n; ++i) {
      same = same && dg16[i] == f32_to_bf16(dg32[i]) && du16[i] == f32_to_bf16(du32[i]) &&
             du_only[i] == du16[i];
    }
    CHECK_MSG(same, "gated op " + std::to_string(op) + ": bf16 gradients");
    CHECK_THROWS_CODE(run(opt::view16(dg16, DType::BF16, {n}), Tensor{}, false), code::kDType);
    CHECK_THROWS_CODE(run(opt::view16(dg16, DType::BF16, {n}), view(du32, {n}), true),
                      code::kDType);
  }
}

// relu likewise (T5 v1.0's wi has no bias).
TEST(relu_bf16_gradient_is_the_f32_values_rounded) {
  const int64_t n = 40001;
  std::vector<float> x = random_vector(n, 74, -2, 2), dy = random_vector(n, 75), dx32(n);
  std::vector<uint16_t> dx16(n, 0xFFFF);
  relu_backward(view(dx32, {n}), view(dy, {n}), view(x, {n}), true);
  relu_backward(opt::view16(dx16, DType::BF16, {n}), view(dy, {n}), view(x, {n}), true);
  bool same = true;
  for (int64_t i = 0; i < n; ++i) same = same && dx16[i] == f32_to_bf16(dx32[i]);
  CHECK(same);
  CHECK_THROWS_CODE(
      relu_backward(opt::view16(dx16, DType::BF16, {n}), view(dy, {n}), view(x, {n}), false),
      code::kDType);
}

TEST(softmax_known_values_and_edge_rows) {
  opt::for_each_isa([&](Isa isa) {
    // softmax([1, 2, 3]) from python3: exp(x) / sum(exp(x)).
    std::vector<float> x = {1, 2, 3}, y(3);
    softmax_forward(view(y, {1, 3}), view(x, {1, 3}));
    const double ref[] = {0.0900305732, 0.244728471, 0.665240956};
    double e = 0;
    for (int i = 0; i < 3; ++i) e = std::fmax(e, std::fabs(y[i] - ref[i]));
    CHECK_ERR(e, 2e-7, opt::where(isa, "softmax [1,2,3]"));
    // Large logits do not overflow; -inf entries get exactly 0; a NaN row is all NaN.
    const float inf = std::numeric_limits<float>::infinity();
    std::vector<float> z = {1000.f, 999.f, -inf, 998.f, 0.f, std::nanf(""), 1.f, 2.f};
    std::vector<float> w(8);
    softmax_forward(view(w, {2, 4}), view(z, {2, 4}));
    CHECK(w[2] == 0.0f && std::fabs(w[0] + w[1] + w[3] - 1.0f) < 1e-6f && w[0] > w[1]);
    CHECK(std::isnan(w[4]) && std::isnan(w[5]) && std::isnan(w[6]) && std::isnan(w[7]));
  });
}

TEST(softmax_fast_matches_reference) {
  opt::for_each_isa([&](Isa isa) {
    for (int64_t N : {1, 7, 33, 130}) {
      for (int64_t C : {1, 5, 64, 257}) {
        std::vector<float> x = random_vector(N * C, 51 + C, -30, 30), y(N * C), y_ref(N * C);
        softmax_forward(view(y, {N, C}), view(x, {N, C}));
        softmax_forward_reference(view(y_ref, {N, C}), view(x, {N, C}));
        CHECK_ERR(s2s_test::max_abs_error(y.data(), y_ref.data(), y.size()), 1e-6,
                  opt::where(isa, "softmax forward", N, C));
        std::vector<float> dy = random_vector(N * C, 52), dx = random_vector(N * C, 53);
        std::vector<float> dx_ref = dx;
        softmax_backward(view(dx, {N, C}), view(dy, {N, C}), view(y_ref, {N, C}));
        softmax_backward_reference(view(dx_ref, {N, C}), view(dy, {N, C}), view(y_ref, {N, C}));
        CHECK_ERR(max_normalized_error(dx.data(), dx_ref.data(), dx.size()), 2e-6,
                  opt::where(isa, "softmax backward", N, C));
      }
    }
  });
  // 3-D input (B, T, V) works row-wise too.
  std::vector<float> x = random_vector(2 * 3 * 5, 54), y(30), y_ref(30);
  softmax_forward(view(y, {2, 3, 5}), view(x, {2, 3, 5}));
  softmax_forward_reference(view(y_ref, {2, 3, 5}), view(x, {2, 3, 5}));
  CHECK_ERR(s2s_test::max_abs_error(y.data(), y_ref.data(), 30), 1e-6, "softmax 3-D");
}

TEST(softmax_gradients_accumulation_errors) {
  const int64_t N = 3, C = 6;
  std::vector<float> x = random_vector(N * C, 61, -2, 2), g = random_vector(N * C, 62);
  std::vector<float> y(N * C), dx(N * C, 0.0f);
  softmax_forward(view(y, {N, C}), view(x, {N, C}));
  softmax_backward(view(dx, {N, C}), view(g, {N, C}), view(y, {N, C}));
  const double err = s2s_test::gradient_check(x, dx, [&] {
    softmax_forward(view(y, {N, C}), view(x, {N, C}));
    return opt::dot(y, g);
  });
  CHECK_ERR(err, 2e-3, "softmax gradient check");
  softmax_forward(view(y, {N, C}), view(x, {N, C}));
  std::vector<float> once = dx;
  softmax_backward(view(dx, {N, C}), view(g, {N, C}), view(y, {N, C}));
  CHECK(opt::bit_equal(dx, opt::scaled(once, 2.0f)));
  softmax_backward(opt::none(), view(g, {N, C}), view(y, {N, C}));
  CHECK_THROWS_CODE(softmax_forward(view(y, {C, N}), view(x, {N, C})), code::kShape);
  CHECK_THROWS_CODE(softmax_backward(view(dx, {N, C}), view(g, {C, N}), view(y, {N, C})),
                    code::kShape);
}

TEST(activations_deterministic_across_threads) {
  const int64_t n = 300 * 257;  // several grains: runs on 2 threads
  std::vector<float> x = random_vector(n, 71, -6, 6), dy = random_vector(n, 72);
  std::vector<std::vector<float>> runs;
  for (int threads : {1, 2, 2}) {
    opt::Threads t(threads);
    std::vector<float> y(n), dx(n, 0.0f), s(n), ds(n, 0.0f);
    gelu_forward(view(y, {n}), view(x, {n}), GeluApprox::Tanh);
    gelu_backward(view(dx, {n}), view(dy, {n}), view(x, {n}), GeluApprox::Tanh);
    softmax_forward(view(s, {300, 257}), view(x, {300, 257}));
    softmax_backward(view(ds, {300, 257}), view(dy, {300, 257}), view(s, {300, 257}));
    y.insert(y.end(), dx.begin(), dx.end());
    y.insert(y.end(), s.begin(), s.end());
    y.insert(y.end(), ds.begin(), ds.end());
    runs.push_back(y);
  }
  CHECK(opt::bit_equal(runs[1], runs[2]));  // same thread count: same bits
  CHECK(opt::bit_equal(runs[0], runs[1]));  // row/element-parallel: thread count does not matter
}
