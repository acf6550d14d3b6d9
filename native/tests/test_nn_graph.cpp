// The graph (tape) and nn layers: whole-network gradients against finite differences, frozen
// params, gradient accumulation, views, LoRA at step 0, and memory reuse across steps.
#include <cmath>
#include <cstring>

#include "harness.h"
#include "s2s/nn/functional.h"
#include "s2s/ops/elementwise.h"
#include "s2s/thread_pool.h"

using namespace s2s;

namespace {

// A small network touching most layers: embedding (+positions) -> layernorm -> linear (+bias,
// optional LoRA) -> split -> swiglu -> linear (Conv1D layout) -> add residual -> rmsnorm ->
// linear head -> cross-entropy.
struct TinyNet {
  static constexpr int64_t V = 11, C = 8, Hd = 6, B = 2, T = 5;
  ParamStore params;
  Param *wte, *wpe, *ln_w, *ln_b, *up_w, *up_b, *down_w, *rms_w, *head_w;
  Param *lora_a = nullptr, *lora_b = nullptr;
  nn::Lora lora;
  std::vector<int32_t> ids, labels;

  explicit TinyNet(uint64_t seed) {
    wte = &params.create("wte", {V, C});
    wpe = &params.create("wpe", {T, C});
    ln_w = &params.create("ln.weight", {C}, false);
    ln_b = &params.create("ln.bias", {C}, false);
    up_w = &params.create("up.weight", {2 * Hd, C});
    up_b = &params.create("up.bias", {2 * Hd}, false);
    down_w = &params.create("down.weight", {Hd, C});  // Conv1D layout (in, out)
    rms_w = &params.create("rms.weight", {C}, false);
    head_w = &params.create("head.weight", {V, C});
    uint64_t s = seed;
    for (Param* p : params.all()) {
      auto v = s2s_test::random_vector(p->value.numel(), ++s, -0.8f, 0.8f);
      if (p == ln_w || p == rms_w) for (auto& x : v) x += 1.0f;
      params.load(*p, Tensor::contiguous(v.data(), DType::F32, p->value.ndim, p->value.shape));
      params.set_trainable(*p, true);
    }
    s2s_test::Rng rng(seed + 100);
    for (int i = 0; i < B * T; ++i) {
      ids.push_back(static_cast<int32_t>(rng.next() % V));
      labels.push_back(i % 4 == 0 ? -100 : static_cast<int32_t>(rng.next() % V));
    }
  }

  void add_lora(float b_scale) {
    lora_a = &params.create("lora_A", {3, C});
    lora_b = &params.create("lora_B", {2 * Hd, 3});
    auto a = s2s_test::random_vector(lora_a->value.numel(), 7, -0.5f, 0.5f);
    auto b = s2s_test::random_vector(lora_b->value.numel(), 8, -b_scale, b_scale);
    params.load(*lora_a, Tensor::contiguous(a.data(), DType::F32, {3, C}));
    params.load(*lora_b, Tensor::contiguous(b.data(), DType::F32, {2 * Hd, 3}));
    for (Param* p : params.all()) params.set_trainable(*p, p == lora_a || p == lora_b);
    lora = nn::Lora{lora_a, lora_b, 2.0f, 0.0f};
  }

  Var* forward(Graph& g, Var** logits_out = nullptr) {
    Var* x = nn::embedding(g, ids.data(), B, T, wte, wpe, nullptr);
    Var* h = nn::layernorm(g, x, ln_w, ln_b, 1e-5f);
    nn::LinearWeights up{up_w, up_b, WeightLayout::OutIn, lora_a ? &lora : nullptr};
    auto parts = nn::split_last(g, nn::linear(g, h, up), {Hd, Hd});
    Var* act = nn::swiglu(g, parts[0], parts[1]);
    Var* down = nn::linear(g, act, {down_w, nullptr, WeightLayout::InOut, nullptr});
    Var* r = nn::rmsnorm(g, nn::add(g, x, down), rms_w, 1e-6f);
    Var* logits = nn::linear(g, g.view(r, {B * T, C}), {head_w, nullptr, WeightLayout::OutIn, nullptr});
    if (logits_out) *logits_out = logits;
    CrossEntropyOptions o;
    return nn::cross_entropy(g, logits, labels.data(), B * T, o, nullptr);
  }

  double loss_only() {
    Graph g;
    return forward(g)->value.f32()[0];
  }
};

// Every param of `params` trainable, with values in [-0.6, 0.6) from seeds seed + 1, + 2, ...
void randomize_trainable(ParamStore& params, uint64_t seed) {
  for (Param* p : params.all()) {
    auto v = s2s_test::random_vector(p->value.numel(), ++seed, -0.6f, 0.6f);
    params.load(*p, Tensor::contiguous(v.data(), DType::F32, p->value.ndim, p->value.shape));
    params.set_trainable(*p, true);
  }
}

}  // namespace

TEST(graph_gradients_match_finite_differences) {
  set_num_threads(2);
  TinyNet net(1);
  Graph g;
  g.backward(net.forward(g));
  double worst = 0;
  for (Param* p : net.params.all()) {
    std::vector<float> analytic(p->grad.f32(), p->grad.f32() + p->grad.numel());
    std::vector<float> value(p->value.f32(), p->value.f32() + p->value.numel());
    const double err = s2s_test::gradient_check(value, analytic, [&] {
      std::memcpy(p->value.f32(), value.data(), sizeof(float) * value.size());
      return net.loss_only();
    });
    std::memcpy(p->value.f32(), value.data(), sizeof(float) * value.size());
    CHECK_ERR(err, 3e-3, "gradient of " + p->name);
    worst = std::fmax(worst, err);
  }
  std::printf("    worst finite-difference error %.2e\n", worst);
}

TEST(graph_accumulates_param_grads_and_reuses_memory) {
  TinyNet net(2);
  Graph g;
  g.backward(net.forward(g));
  std::vector<float> once(net.up_w->grad.f32(), net.up_w->grad.f32() + net.up_w->grad.numel());
  const size_t reserved = g.arena().bytes_reserved();
  for (int step = 0; step < 5; ++step) {
    g.reset();
    g.backward(net.forward(g));
  }
  CHECK(g.arena().bytes_reserved() == reserved);  // no growth from step to step
  double worst = 0;
  for (size_t i = 0; i < once.size(); ++i) {
    worst = std::fmax(worst, std::fabs(net.up_w->grad.f32()[i] - 6 * once[i]));
  }
  CHECK_ERR(worst, 1e-4, "six accumulated passes");
  net.params.zero_grads();
  CHECK(net.up_w->grad.f32()[0] == 0.0f);
}

TEST(lora_with_zero_b_equals_base_and_trains_only_the_adapter) {
  TinyNet base(3);
  Graph g0;
  Var* base_logits = nullptr;
  base.forward(g0, &base_logits);
  TinyNet net(3);
  net.add_lora(0.0f);  // B = 0: the adapter adds nothing
  Graph g;
  Var* logits = nullptr;
  Var* loss = net.forward(g, &logits);
  CHECK(std::memcmp(logits->value.data, base_logits->value.data,
                    sizeof(float) * logits->value.numel()) == 0);
  g.backward(loss);
  CHECK(net.up_w->grad.data == nullptr && net.wte->grad.data == nullptr);  // frozen: no memory
  CHECK(net.params.trainable().size() == 2);
  // With B = 0, dA = 0 and dB != 0 (PEFT's known start).
  double a_norm = 0, b_norm = 0;
  for (int64_t i = 0; i < net.lora_a->grad.numel(); ++i) a_norm += std::fabs(net.lora_a->grad.f32()[i]);
  for (int64_t i = 0; i < net.lora_b->grad.numel(); ++i) b_norm += std::fabs(net.lora_b->grad.f32()[i]);
  CHECK(a_norm == 0 && b_norm > 0);
}

TEST(lora_gradients_match_finite_differences) {
  TinyNet net(4);
  net.add_lora(0.5f);
  Graph g;
  g.backward(net.forward(g));
  for (Param* p : {net.lora_a, net.lora_b}) {
    std::vector<float> analytic(p->grad.f32(), p->grad.f32() + p->grad.numel());
    std::vector<float> value(p->value.f32(), p->value.f32() + p->value.numel());
    const double err = s2s_test::gradient_check(value, analytic, [&] {
      std::memcpy(p->value.f32(), value.data(), sizeof(float) * value.size());
      return net.loss_only();
    });
    std::memcpy(p->value.f32(), value.data(), sizeof(float) * value.size());
    CHECK_ERR(err, 3e-3, "gradient of " + p->name);
  }
}

TEST(elementwise_ops_match_loops_and_check_shapes) {
  auto a = s2s_test::random_vector(1000, 1), b = s2s_test::random_vector(1000, 2);
  std::vector<float> out(1000);
  Tensor ta = Tensor::contiguous(a.data(), DType::F32, {10, 100});
  Tensor tb = Tensor::contiguous(b.data(), DType::F32, {10, 100});
  Tensor to = Tensor::contiguous(out.data(), DType::F32, {10, 100});
  add_forward(to, ta, tb);
  for (int i = 0; i < 1000; ++i) CHECK(out[i] == a[i] + b[i]);
  scale_forward(to, ta, 0.5f);
  for (int i = 0; i < 1000; ++i) CHECK(out[i] == a[i] * 0.5f);
  axpy(to, 2.0f, tb);
  for (int i = 0; i < 1000; ++i) CHECK(out[i] == a[i] * 0.5f + 2.0f * b[i]);
  std::vector<float> cols(10 * 30);
  copy_columns(cols.data(), a.data(), 10, 100, 40, 30);
  CHECK(cols[31] == a[100 + 41]);
  std::vector<float> back(1000, 0.0f);
  add_to_columns(back.data(), cols.data(), 10, 100, 40, 30);
  CHECK(back[100 + 41] == a[100 + 41] && back[100 + 39] == 0.0f);
  Tensor wrong = Tensor::contiguous(b.data(), DType::F32, {999});
  CHECK_THROWS_CODE(add_forward(to, ta, wrong), code::kShape);
}

TEST(backward_requires_a_trainable_scalar_loss) {
  TinyNet net(5);
  for (Param* p : net.params.all()) net.params.set_trainable(*p, false);
  Graph g;
  Var* loss = net.forward(g);
  CHECK_THROWS_CODE(g.backward(loss), code::kArgument);
}

// grad_for_write: only the first writer of an activation gradient may overwrite it (fresh);
// params and already-written buffers (and views of them) accumulate.
TEST(grad_for_write_is_fresh_only_for_the_first_writer) {
  ParamStore params;
  Param& w = params.create("w", {3, 4});
  params.set_trainable(w, true);
  Graph g;
  std::vector<float> in(2 * 4, 0.5f);
  Var* x = nn::linear(g, g.constant(Tensor::contiguous(in.data(), DType::F32, {2, 4})),
                      nn::LinearWeights{&w});
  Var* xv = g.view(x, {6});
  const Graph::GradBuffer first = g.grad_for_write(xv);
  CHECK(first.fresh && first.grad.numel() == 6);
  const Graph::GradBuffer second = g.grad_for_write(x);
  CHECK(!second.fresh && second.grad.data == first.grad.data);
  CHECK(!g.grad_for_write(g.param(w)).fresh);
  CHECK(g.grad_for_write(g.constant(Tensor::contiguous(in.data(), DType::F32, {8}))).grad.data ==
        nullptr);
}

// x used twice (two linears; a residual add plus a linear; a view plus a linear): the linear
// that writes x's gradient first overwrites it, every later writer must accumulate. Checked
// against linear_backward_reference on the second pass of one graph (the arena then hands out
// the previous pass's gradients as garbage: a missed element or a wrong overwrite shows).
TEST(linear_overwrites_only_a_fresh_input_gradient) {
  constexpr int64_t N = 6, C = 5, V = 7;
  ParamStore params;
  Param& w0 = params.create("w0", {C, C});
  Param& w1 = params.create("w1", {V, C});
  Param& w2 = params.create("w2", {V, C});
  Param& w3 = params.create("w3", {V, C});  // Conv1D layout (in V, out C)
  uint64_t seed = 40;
  for (Param* p : params.all()) {
    auto v = s2s_test::random_vector(p->value.numel(), ++seed, -0.7f, 0.7f);
    params.load(*p, Tensor::contiguous(v.data(), DType::F32, p->value.ndim, p->value.shape));
    params.set_trainable(*p, true);
  }
  auto in = s2s_test::random_vector(N * C, 50);
  std::vector<int32_t> labels = {1, 0, 6, -100, 3, 2};
  for (int mode = 0; mode < 3; ++mode) {
    Graph g;
    for (int pass = 0; pass < 2; ++pass) {
      g.reset();
      Var* x = nn::linear(g, g.constant(Tensor::contiguous(in.data(), DType::F32, {N, C})),
                          nn::LinearWeights{&w0});
      Var* a = nn::linear(g, x, nn::LinearWeights{&w1});  // (N,V)
      Var* s = nullptr;
      if (mode == 0) {
        s = nn::add(g, a, nn::linear(g, x, nn::LinearWeights{&w2}));
      } else if (mode == 1) {
        // r = x + a W3 (Conv1D, (N,V) -> (N,C)), s = r W2^T
        Var* r = nn::add(g, x, nn::linear(g, a, nn::LinearWeights{&w3, nullptr,
                                                                   WeightLayout::InOut}));
        s = nn::linear(g, r, nn::LinearWeights{&w2});
      } else {
        s = nn::add(g, a, nn::linear(g, g.view(x, {N, C}), nn::LinearWeights{&w2}));
      }
      Var* loss = nn::cross_entropy(g, s, labels.data(), N, CrossEntropyOptions{}, nullptr);
      g.backward(loss);
      // Expected dx from the gradients of x's consumers, accumulated with the reference.
      std::vector<float> dx(N * C, 0.0f);
      const Tensor tdx = Tensor::contiguous(dx.data(), DType::F32, {N, C});
      const Tensor none{};
      if (mode == 0 || mode == 2) {
        const Tensor ds = g.grad_if_present(s);
        linear_backward_reference(tdx, none, none, ds, none, w1.value);
        linear_backward_reference(tdx, none, none, ds, none, w2.value);
      } else {
        // x's writers, last recorded first: the residual add (accumulates dr = ds W2 into a
        // zero-filled buffer), then the w1 linear (must accumulate da W1, not overwrite).
        linear_backward_reference(tdx, none, none, g.grad_if_present(a), none, w1.value);
        std::vector<float> drv(N * C, 0.0f);
        const Tensor tdr = Tensor::contiguous(drv.data(), DType::F32, {N, C});
        linear_backward_reference(tdr, none, none, g.grad_if_present(s), none, w2.value);
        for (int64_t i = 0; i < N * C; ++i) dx[i] += drv[i];
      }
      const Tensor got = g.grad_if_present(x);
      CHECK(got.data != nullptr);
      double err = 0;
      for (int64_t i = 0; i < N * C; ++i) {
        err = std::fmax(err, std::fabs(double(got.f32()[i]) - double(dx[i])));
      }
      CHECK_ERR(err, 1e-5, "mode " + std::to_string(mode) + " pass " + std::to_string(pass) +
                               " dx vs reference");
    }
  }
}

// nn::add (output gradient handed to one input, copied to the other), nn::scale and
// nn::split_last (a fresh input gradient written, not zero-filled and accumulated) in the
// topologies where fresh / not-fresh / shared storage matter: both inputs fresh, a == b, b a
// view of a, an input consumed again before or after the add, a split part with no gradient,
// a split input used elsewhere. Every param gradient against finite differences, on the second
// pass of one graph (the arena hands out the first pass's gradients as garbage then).
TEST(add_scale_split_write_fresh_gradients_and_accumulate_the_rest) {
  constexpr int64_t N = 4, C = 6, V = 5;
  ParamStore params;
  Param& w0 = params.create("w0", {C, C});
  Param& w1 = params.create("w1", {C, C});
  Param& w2 = params.create("w2", {2 * C, C});
  Param& head = params.create("head", {V, C});
  randomize_trainable(params, 70);
  auto in = s2s_test::random_vector(N * C, 80);
  std::vector<int32_t> labels = {1, 4, -100, 2};
  const int kTopologies = 8;
  for (int topo = 0; topo < kTopologies; ++topo) {
    auto forward = [&](Graph& g) {
      Var* x = g.constant(Tensor::contiguous(in.data(), DType::F32, {N, C}));
      Var* h = nn::linear(g, x, nn::LinearWeights{&w0});
      Var* y = nullptr;
      switch (topo) {
        case 0:  // both inputs fresh
          y = nn::add(g, nn::linear(g, h, nn::LinearWeights{&w1}), h);
          break;
        case 1:  // a == b
          y = nn::add(g, h, h);
          break;
        case 2:  // b a view of a
          y = nn::add(g, h, g.view(h, {N, C}));
          break;
        case 3: {  // b consumed again after the add (its gradient exists when add runs)
          Var* b = nn::linear(g, h, nn::LinearWeights{&w1});
          Var* s = nn::add(g, h, b);
          y = nn::add(g, s, nn::linear(g, b, nn::LinearWeights{&w0}));
          break;
        }
        case 4: {  // b consumed before the add (adopted buffer, accumulated into later)
          Var* b = nn::linear(g, h, nn::LinearWeights{&w1});
          Var* early = nn::scale(g, b, 0.5f);
          y = nn::add(g, nn::linear(g, early, nn::LinearWeights{&w0}), b);
          break;
        }
        case 5: {  // split: both parts used, input fresh; scale of a fresh input
          auto parts = nn::split_last(g, nn::linear(g, h, nn::LinearWeights{&w2}), {C, C});
          y = nn::add(g, nn::scale(g, parts[0], -1.5f), parts[1]);
          break;
        }
        case 6: {  // split: second part unused (its columns of the input gradient are zero)
          auto parts = nn::split_last(g, nn::linear(g, h, nn::LinearWeights{&w2}), {C, C});
          y = parts[0];
          break;
        }
        default: {  // split input also used by a consumer recorded after the split
          Var* z = nn::linear(g, h, nn::LinearWeights{&w2});
          auto parts = nn::split_last(g, z, {C, C});
          Var* zz = nn::scale(g, z, 0.25f);
          auto again = nn::split_last(g, zz, {C, C});
          y = nn::add(g, parts[1], nn::add(g, again[0], again[1]));
          break;
        }
      }
      Var* logits = nn::linear(g, y, nn::LinearWeights{&head});
      return nn::cross_entropy(g, logits, labels.data(), N, CrossEntropyOptions{}, nullptr);
    };
    Graph g;
    for (int pass = 0; pass < 2; ++pass) {
      params.zero_grads();
      g.reset();
      g.backward(forward(g));
    }
    for (Param* p : params.all()) {
      std::vector<float> analytic(p->grad.f32(), p->grad.f32() + p->grad.numel());
      std::vector<float> value(p->value.f32(), p->value.f32() + p->value.numel());
      const double err = s2s_test::gradient_check(value, analytic, [&] {
        std::memcpy(p->value.f32(), value.data(), sizeof(float) * value.size());
        Graph fresh;
        return double(forward(fresh)->value.f32()[0]);
      });
      std::memcpy(p->value.f32(), value.data(), sizeof(float) * value.size());
      CHECK_ERR(err, 3e-3, "topology " + std::to_string(topo) + " gradient of " + p->name);
    }
  }
}

// nn::residual_add in a block's shape (x -> norm stand-in -> branch; x + branch): x and the
// branch share the output's gradient buffer (no copy), the parameter gradients are the bits of
// the copying add (Graph::share_residual_gradient off), and they match finite differences.
TEST(residual_add_shares_the_gradient_and_changes_no_bit) {
  constexpr int64_t N = 4, C = 6, V = 5;
  ParamStore params;
  Param& w0 = params.create("w0", {C, C});
  Param& w1 = params.create("w1", {C, C});
  Param& head = params.create("head", {V, C});
  randomize_trainable(params, 90);
  auto in = s2s_test::random_vector(N * C, 91);
  std::vector<int32_t> labels = {1, 4, -100, 2};
  Var* x = nullptr;
  Var* branch = nullptr;
  auto forward = [&](Graph& g) {
    Var* input = g.constant(Tensor::contiguous(in.data(), DType::F32, {N, C}));
    x = nn::linear(g, input, nn::LinearWeights{&w0});
    branch = nn::linear(g, nn::scale(g, x, 0.5f), nn::LinearWeights{&w1});
    Var* y = nn::residual_add(g, x, branch);
    // A second block: y is the next residual, read by its norm before its branch.
    y = nn::residual_add(g, y, nn::linear(g, nn::scale(g, y, -0.25f), nn::LinearWeights{&w1}));
    Var* logits = nn::linear(g, y, nn::LinearWeights{&head});
    return nn::cross_entropy(g, logits, labels.data(), N, CrossEntropyOptions{}, nullptr);
  };
  std::vector<std::vector<float>> grads[2];
  for (const bool share : {true, false}) {
    Graph g;
    g.share_residual_gradient = share;
    params.zero_grads();
    g.backward(forward(g));
    CHECK_MSG((x->grad.data == branch->grad.data) == share,
              std::string("shared gradient buffer: expected ") + (share ? "yes" : "no"));
    for (Param* p : params.all()) {
      grads[share ? 0 : 1].emplace_back(p->grad.f32(), p->grad.f32() + p->grad.numel());
    }
  }
  CHECK_MSG(grads[0] == grads[1], "sharing the residual's gradient changed a parameter gradient");
  std::vector<Param*> all = params.all();
  for (size_t i = 0; i < all.size(); ++i) {
    Param* p = all[i];
    std::vector<float> value(p->value.f32(), p->value.f32() + p->value.numel());
    const double err = s2s_test::gradient_check(value, grads[0][i], [&] {
      std::memcpy(p->value.f32(), value.data(), sizeof(float) * value.size());
      Graph fresh;
      return double(forward(fresh)->value.f32()[0]);
    });
    std::memcpy(p->value.f32(), value.data(), sizeof(float) * value.size());
    CHECK_ERR(err, 3e-3, "residual_add gradient of " + p->name);
  }
}

// A bf16-compute head whose logits feed two losses: the first writer stores the logits gradient
// as bf16, the second finds it and widens it to fp32 before accumulating (Graph::grad_for_write
// on a bf16 gradient). Gradients match the all-fp32-gradient run to bf16 precision.
TEST(bf16_logits_gradient_widens_for_a_second_writer) {
  constexpr int64_t N = 6, C = 16, V = 40;
  ParamStore params;
  Param& w0 = params.create("w0", {C, C});
  Param& head = params.create("head", {V, C});
  uint64_t seed = 90;
  for (Param* p : params.all()) {
    auto v = s2s_test::random_vector(p->value.numel(), ++seed, -0.6f, 0.6f);
    params.load(*p, Tensor::contiguous(v.data(), DType::F32, p->value.ndim, p->value.shape));
    params.set_trainable(*p, true);
    params.set_compute_dtype(*p, DType::BF16);
  }
  auto in = s2s_test::random_vector(N * C, 91);
  std::vector<int32_t> y1 = {1, 4, 39, 2, 0, 7}, y2 = {3, 3, -100, 20, 11, 5};
  std::vector<std::vector<float>> grads[2];
  for (int pass = 0; pass < 2; ++pass) {
    params.zero_grads();
    Graph g;
    g.bf16_gradients = pass == 0;
    Var* x = g.constant(Tensor::contiguous(in.data(), DType::F32, {N, C}));
    Var* logits = nn::linear(g, nn::linear(g, x, nn::LinearWeights{&w0}), nn::LinearWeights{&head});
    CHECK(logits->grad_bf16_ok);
    Var* l1 = nn::cross_entropy(g, logits, y1.data(), N, CrossEntropyOptions{}, nullptr);
    Var* l2 = nn::cross_entropy(g, logits, y2.data(), N, CrossEntropyOptions{}, nullptr);
    g.backward(nn::add(g, l1, l2));
    CHECK(g.grad_if_present(logits).dtype == DType::F32);  // widened by the second writer
    for (Param* p : params.all()) grads[pass].emplace_back(p->grad.f32(), p->grad.f32() + p->grad.numel());
  }
  for (size_t i = 0; i < grads[0].size(); ++i) {
    double scale = 0, err = 0;
    for (size_t j = 0; j < grads[1][i].size(); ++j) {
      scale = std::fmax(scale, std::fabs(grads[1][i][j]));
      err = std::fmax(err, std::fabs(grads[0][i][j] - grads[1][i][j]));
    }
    CHECK(scale > 0);
    CHECK_ERR(err / scale, 1.0 / 128, "param " + std::to_string(i) + " vs all-fp32 gradients");
  }
}
