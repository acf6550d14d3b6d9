// fp16 compute (Model::set_compute_dtype(F16)) with a loss scale, against PyTorch:
// scripts/fixtures/make_f16_compute_fixtures.py runs the fixture models with every linear layer
// in fp16 operands / fp32 accumulation (torch.autocast(float16)'s linear) and the backward from
// loss * 2^16, and writes fixture_f16.safetensors (logits, loss, unscaled gradients). The
// distance from that to the fp32 fixture is fp16's own rounding (printed). Ours differs from the
// fp16 reference only where an fp32-sized difference (another summation order, another exp)
// tips a value across an fp16 rounding boundary, which then moves everything downstream; the
// fixture holds the reference's own sensitivity to that (floor.*: its change under 1e-7 relative
// noise before each rounding) and ours must stay within twice it, and much closer to the fp16
// reference than to the fp32 one.
// Also: the f16 copies equal cast(master) after every step; a gradient that overflows fp16
// skips the step, changes no value, moment or copy, and halves the scale (DynamicLossScaler);
// a 10-step fine-tune with the default scale tracks the fp32 fixture's losses.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "fixture_model.h"
#include "harness.h"
#include "s2s/io/safetensors.h"
#include "s2s/models/model.h"
#include "s2s/thread_pool.h"
#include "s2s/train/loss_scaler.h"
#include "s2s/train/optimizer.h"

using s2s_test::fixture_dir;
using s2s_test::load_fixture_model;

using namespace s2s;

namespace {

// The fixture's batch and fp32 references, and fixture_f16.safetensors next to them.
struct Fixture : s2s_test::FixtureBatch {
  std::shared_ptr<SafetensorsFile> f16;
  explicit Fixture(const std::string& dir) : FixtureBatch(dir) {
    f16 = SafetensorsFile::open(dir + "/fixture_f16.safetensors");
  }
};

double max_abs(const Tensor& t) {
  double m = 0;
  for (int64_t i = 0; i < t.numel(); ++i) m = std::fmax(m, std::fabs(t.f32()[i]));
  return m;
}

double max_diff(const float* a, const Tensor& ref, float a_scale = 1.0f) {
  double m = 0;
  for (int64_t i = 0; i < ref.numel(); ++i) {
    m = std::fmax(m, std::fabs(double(a[i]) * a_scale - ref.f32()[i]));
  }
  return m;
}

// Every linear weight has an f16 copy equal to cast(value) bit for bit; nothing else has one.
int check_f16_copies(Model& m, const std::string& what) {
  std::set<Param*> lin;
  for (const LinearModule& mod : m.linear_modules()) lin.insert(mod.weights->weight);
  int copies = 0;
  for (Param* p : m.params().all()) {
    const bool want = lin.count(p) != 0 && p->value.dtype == DType::F32;
    CHECK_MSG((p->compute.data != nullptr) == want, what + ": copy presence of " + p->name);
    if (p->compute.data == nullptr) continue;
    ++copies;
    CHECK_MSG(p->compute.dtype == DType::F16, what + ": copy of " + p->name + " is f16");
    bool same = true;
    for (int64_t i = 0; i < p->value.numel(); ++i) {
      same = same && p->compute.u16()[i] == f32_to_f16(p->value.f32()[i]);
    }
    CHECK_MSG(same, what + ": copy of " + p->name + " != cast(master)");
  }
  return copies;
}

OptimizerConfig fixture_adamw() {
  OptimizerConfig oc;  // the fixture's torch AdamW: betas (0.9, 0.999), eps 1e-8, wd 0.01; clip 1
  oc.adamw.weight_decay = 0.01;
  oc.max_grad_norm = 1.0;
  return oc;
}

std::unique_ptr<Model> f16_model(const std::string& dir) {
  std::unique_ptr<Model> m = load_fixture_model(dir);
  for (Param* p : m->params().all()) {
    m->params().set_trainable(*p, true);
    p->decay = true;  // the fixture's AdamW decays every tensor
  }
  m->set_compute_dtype(ComputeDType::F16);
  return m;
}

// Logits, loss and scaled-then-unscaled gradients against the PyTorch fp16 recipe: within
// max(2 x floor, `near` x fp16's effect) for the logits and each gradient (relative to its max).
void check_f16_against_torch(const std::string& name, double near) {
  set_num_threads(2);
  const std::string dir = fixture_dir(name);
  std::unique_ptr<Model> m = f16_model(dir);
  CHECK(m->compute_dtype() == ComputeDType::F16);
  const int copies = check_f16_copies(*m, name + " after set_compute_dtype");
  CHECK(copies > 0);
  Fixture fx(dir);
  const float scale = fx.f16->view("loss_scale").f32()[0];

  Graph g;
  ForwardResult r = m->forward(g, fx.batch, LossReduction::Mean);
  const Tensor ref16 = fx.f16->view("logits"), ref32 = fx.file->view("logits");
  const double to16 = max_diff(r.logits->value.f32(), ref16);
  const double to32 = max_diff(r.logits->value.f32(), ref32);
  const double rounding = max_diff(ref16.f32(), ref32);  // fp16's own effect
  const double floor = fx.f16->view("floor.logits").f32()[0];
  CHECK_ERR(to16, std::fmax(2 * floor, near * rounding), name + " f16 logits vs the PyTorch fp16 recipe");
  CHECK_ERR(to16, 0.5 * to32, name + " f16 logits: nearer the fp32 ones than the fp16 ones (no f16 rounding?)");
  const double loss16 = fx.f16->view("loss").f32()[0];
  const double loss_err = std::fabs(r.loss->value.f32()[0] - loss16);
  CHECK_ERR(loss_err, 2e-5 + 1e-5 * std::fabs(loss16), name + " f16 loss");

  g.backward(r.loss, scale);
  double worst = 0, worst_rounding = 0;
  std::string worst_name;
  for (Param* p : m->params().all()) {
    const Tensor want = fx.f16->view("grad." + p->name);
    const Tensor want32 = fx.file->view("grad." + p->name);
    const double denom = std::fmax(1e-6, max_abs(want));
    const double rel = max_diff(p->grad.f32(), want, 1.0f / scale) / denom;
    const double rel_rounding = max_diff(want.f32(), want32) / denom;
    const double grad_floor = fx.f16->view("floor.grad." + p->name).f32()[0];
    CHECK_ERR(rel, std::fmax(2 * grad_floor, std::fmax(near * rel_rounding, 1e-5)),
              name + " f16 grad." + p->name + " (unscaled, relative to its max)");
    if (rel > worst) {
      worst = rel;
      worst_name = p->name;
      worst_rounding = rel_rounding;
    }
  }
  std::printf("    %s f16: logits %.2e from PyTorch's fp16 recipe (flip floor %.2e; its distance to fp32: "
              "%.2e), loss %.1e; worst grad %.2e of max (%s; fp16 rounding there %.2e); %d f16 "
              "copies\n",
              name.c_str(), to16, floor, rounding, loss_err, worst, worst_name.c_str(),
              worst_rounding, copies);
}

// A scale so large that the scaled gradients overflow fp16: the optimizer step is skipped and
// leaves every value, moment and copy as it was; the scale halves; the gradients are zeroed.
// The next step at a sane scale applies.
void check_overflow_skips(const std::string& name) {
  set_num_threads(2);
  const std::string dir = fixture_dir(name);
  std::unique_ptr<Model> m = f16_model(dir);
  Fixture fx(dir);
  LossScalerOptions so;
  so.init_scale = 0x1p40f;  // dlogits ~1e-2 * 2^40 >> 65504
  DynamicLossScaler scaler(so);
  const OptimizerConfig oc = fixture_adamw();

  // One good step first, so there are moments to keep unchanged.
  Graph g;
  {
    DynamicLossScaler sane;
    ForwardResult r = m->forward(g, fx.batch, LossReduction::Mean);
    g.backward(r.loss, sane.scale());
    CHECK(optimizer_step(m->params(), oc, 1, 1e-2, 1.0f, &sane).finite);
    CHECK(sane.scale() == 65536.0f && sane.skipped_steps() == 0);
  }
  struct Saved { std::vector<float> value, m, v; std::vector<uint16_t> copy; };
  std::vector<Saved> before;
  for (Param* p : m->params().all()) {
    Saved s;
    s.value.assign(p->value.f32(), p->value.f32() + p->value.numel());
    s.m.assign(p->exp_avg.f32(), p->exp_avg.f32() + p->value.numel());
    s.v.assign(p->exp_avg_sq.f32(), p->exp_avg_sq.f32() + p->value.numel());
    if (p->compute.data) s.copy.assign(p->compute.u16(), p->compute.u16() + p->value.numel());
    before.push_back(std::move(s));
  }
  g.reset();
  ForwardResult r = m->forward(g, fx.batch, LossReduction::Mean);
  g.backward(r.loss, scaler.scale());
  bool some_inf = false;
  for (Param* p : m->params().all())
    for (int64_t i = 0; i < p->grad.numel() && !some_inf; ++i) some_inf = !std::isfinite(p->grad.f32()[i]);
  CHECK_MSG(some_inf, name + ": 2^40 x dloss did not overflow fp16 anywhere");
  const OptimizerStepStats st = optimizer_step(m->params(), oc, 2, 1e-2, 1.0f, &scaler);
  CHECK(!st.finite);
  CHECK(scaler.scale() == 0x1p39f && scaler.skipped_steps() == 1 && scaler.state().growth_tracker == 0);
  size_t i = 0;
  bool same = true, zeroed = true;
  for (Param* p : m->params().all()) {
    const Saved& s = before[i++];
    const size_t bytes = sizeof(float) * static_cast<size_t>(p->value.numel());
    same = same && std::memcmp(s.value.data(), p->value.f32(), bytes) == 0 &&
           std::memcmp(s.m.data(), p->exp_avg.f32(), bytes) == 0 &&
           std::memcmp(s.v.data(), p->exp_avg_sq.f32(), bytes) == 0 &&
           (s.copy.empty() || std::memcmp(s.copy.data(), p->compute.u16(), bytes / 2) == 0);
    for (int64_t k = 0; k < p->grad.numel(); ++k) zeroed = zeroed && p->grad.f32()[k] == 0.0f;
  }
  CHECK_MSG(same, name + ": a skipped step changed a value, a moment or an f16 copy");
  CHECK_MSG(zeroed, name + ": a skipped step left gradients behind");
  // Step 2 again (AdamW's count did not advance) at the default scale: applied.
  DynamicLossScaler sane;
  g.reset();
  r = m->forward(g, fx.batch, LossReduction::Mean);
  g.backward(r.loss, sane.scale());
  CHECK(optimizer_step(m->params(), oc, 2, 1e-2, 1.0f, &sane).finite);
  check_f16_copies(*m, name + " after the step following a skip");
}

// 10 steps from the default scale (2^16) track the fp32 fixture's training losses within fp16's
// effect, and the copies follow the masters.
void check_f16_training(const std::string& name, double loss_tol) {
  set_num_threads(2);
  const std::string dir = fixture_dir(name);
  std::unique_ptr<Model> m = f16_model(dir);
  Fixture fx(dir);
  DynamicLossScaler scaler;
  const OptimizerConfig oc = fixture_adamw();
  const Tensor ref_losses = fx.file->view("train.losses");
  Graph g;
  double worst = 0;
  int64_t applied = 0;
  std::vector<double> losses;
  for (int64_t step = 1; step <= ref_losses.numel(); ++step) {
    g.reset();
    ForwardResult s = m->forward(g, fx.batch, LossReduction::Mean);
    losses.push_back(s.loss->value.f32()[0]);
    worst = std::fmax(worst, std::fabs(losses.back() - ref_losses.f32()[step - 1]));
    g.backward(s.loss, scaler.scale());
    if (optimizer_step(m->params(), oc, applied + 1, 1e-2, 1.0f, &scaler).finite) ++applied;
  }
  CHECK_MSG(applied == ref_losses.numel(), name + ": the default loss scale overflowed");
  CHECK_ERR(worst, loss_tol, name + " f16 train losses vs the fp32 fixture");
  CHECK_MSG(losses.back() < losses.front() - 0.5, name + ": f16 training loss did not decrease");
  check_f16_copies(*m, name + " after training");
  std::printf("    %s f16 training: worst loss diff %.2e from fp32 over %zu steps (%.2f -> %.2f)\n",
              name.c_str(), worst, losses.size(), losses.front(), losses.back());
}

}  // namespace

TEST(f16_gpt2_matches_pytorch_fp16_recipe) { check_f16_against_torch("gpt2", 0.1); }
TEST(f16_llama_gqa_matches_pytorch_fp16_recipe) { check_f16_against_torch("llama-gqa", 0.1); }
TEST(f16_t5_relu_tied_matches_pytorch_fp16_recipe) { check_f16_against_torch("t5-relu-tied", 0.1); }

TEST(f16_overflow_skips_step_and_halves_scale) {
  check_overflow_skips("gpt2");
  check_overflow_skips("t5-relu-tied");
}

TEST(f16_training_tracks_fp32_losses) {
  check_f16_training("gpt2", 2e-2);
  check_f16_training("llama-gqa", 2e-2);
}

TEST(f16_compute_dtype_round_trip) {
  // F16 -> BF16 -> F32: the copies change dtype and then go; F16 again: copies again.
  std::unique_ptr<Model> m = f16_model(fixture_dir("gpt2"));
  const int64_t bytes = m->params().compute_bytes();
  CHECK(bytes > 0);
  m->set_compute_dtype(ComputeDType::BF16);
  CHECK(m->params().compute_bytes() == bytes);
  for (const LinearModule& mod : m->linear_modules()) {
    CHECK(mod.weights->weight->compute.dtype == DType::BF16);
  }
  m->set_compute_dtype(ComputeDType::F32);
  CHECK(m->params().compute_bytes() == 0);
  m->set_compute_dtype(ComputeDType::F16);
  CHECK(check_f16_copies(*m, "F16 again") > 0);
  CHECK(std::string(compute_dtype_name(ComputeDType::F16)) == "float16");
}

