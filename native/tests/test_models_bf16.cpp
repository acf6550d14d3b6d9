// bf16 compute (Model::set_compute_dtype): on the PyTorch fixtures (test/fixtures/models/*,
// computed in fp32) bf16 matmuls with fp32 accumulation give logits, loss and a 10-step
// fine-tune (full and LoRA) within bf16-sized tolerances of the fp32 reference; the masters stay
// fp32 and the bf16 copies equal cast(master) bit for bit after every step; the copies exist only
// for linear weights (trainable or frozen fp32 base; not LoRA A/B, not bf16-bound views) and
// only in bf16 compute. Tolerances are stated at each check; the errors measured are printed.
// scripts/fixtures/emulate_bf16_compute.py applies the same rounding recipe in PyTorch and gets
// the same distance from the fp32 fixtures to 3 digits (max |logit diff|: gpt2 6.07e-2,
// llama-gqa 1.32e-1, t5-gated 3.40e-1, t5-relu-tied 4.01e-2), so these are the errors of bf16
// compute itself, not of our kernels.
#include <cmath>
#include <cstdio>
#include <deque>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "harness.h"
#include "s2s/io/safetensors.h"
#include "s2s/models/lora.h"
#include "s2s/models/model.h"
#include "s2s/models/weights.h"
#include "s2s/ops/cast.h"
#include "s2s/thread_pool.h"
#include "s2s/train/optimizer.h"
#include "fixture_model.h"

using s2s_test::fixture_dir;
using s2s_test::load_fixture_model;
using s2s_test::read_text;

using namespace s2s;

namespace {

using Fixture = s2s_test::FixtureBatch;

std::set<Param*> linear_weights(Model& m) {
  std::set<Param*> out;
  for (const LinearModule& mod : m.linear_modules()) out.insert(mod.weights->weight);
  return out;
}

// In bf16 compute every linear weight with an f32 value has a bf16 copy equal to cast(value)
// bit for bit, and nothing else has one; in fp32 compute nothing has one. Returns the count.
int check_copies(Model& m, const std::string& what) {
  const std::set<Param*> lin = linear_weights(m);
  int copies = 0;
  for (Param* p : m.params().all()) {
    const bool want = m.compute_dtype() == ComputeDType::BF16 && lin.count(p) != 0 &&
                      p->value.dtype == DType::F32;
    CHECK_MSG((p->compute.data != nullptr) == want, what + ": copy presence of " + p->name);
    if (p->compute.data == nullptr) continue;
    ++copies;
    CHECK_MSG(p->compute.dtype == DType::BF16 && p->compute.numel() == p->value.numel(),
              what + ": copy of " + p->name + " is bf16 of the value's shape");
    std::vector<uint16_t> expect(static_cast<size_t>(p->value.numel()));
    cast_f32_to_bf16(expect.data(), p->value.f32(), p->value.numel());
    bool same = true;
    for (int64_t i = 0; i < p->value.numel(); ++i) same = same && p->compute.u16()[i] == expect[i];
    CHECK_MSG(same, what + ": copy of " + p->name + " != cast(master)");
  }
  return copies;
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (int64_t i = 0; i < t.numel(); ++i) m = std::fmax(m, std::fabs(t.f32()[i]));
  return m;
}

OptimizerConfig fixture_adamw() {
  OptimizerConfig oc;  // torch AdamW(lr per call, betas (0.9, 0.999), eps 1e-8, wd 0.01), clip 1
  oc.adamw.beta1 = 0.9;
  oc.adamw.beta2 = 0.999;
  oc.adamw.eps = 1e-8;
  oc.adamw.weight_decay = 0.01;
  oc.max_grad_norm = 1.0;
  return oc;
}

// Full fine-tuning in bf16 compute against the fp32 fixture.
//   logits_tol: max |logit - fixture logit| / max |fixture logit| (max |logit| ~12.5 here)
//   grad_tol:   max |grad - fixture grad| / max |fixture grad| per tensor
//   loss_tol:   max |loss_k - train.losses[k]| over the 10 steps
void check_bf16_training(const std::string& name, double logits_tol, double grad_tol,
                         double loss_tol) {
  set_num_threads(2);
  const std::string dir = fixture_dir(name);
  std::unique_ptr<Model> m = load_fixture_model(dir);
  for (Param* p : m->params().all()) {
    m->params().set_trainable(*p, true);
    p->decay = true;  // the fixture's AdamW decays every tensor
  }
  CHECK(m->params().compute_bytes() == 0);  // fp32 compute: no copies
  m->set_compute_dtype(ComputeDType::BF16);
  CHECK(m->compute_dtype() == ComputeDType::BF16);
  const int copies = check_copies(*m, name + " after set_compute_dtype");
  int64_t lin_elems = 0;
  for (Param* p : linear_weights(*m)) lin_elems += p->value.numel();
  CHECK(copies == static_cast<int>(linear_weights(*m).size()));
  CHECK(m->params().compute_bytes() == 2 * lin_elems);
  Fixture fx(dir);

  Graph g;
  ForwardResult r = m->forward(g, fx.batch, LossReduction::Mean);
  const Tensor ref_logits = fx.file->view("logits");
  const double logits_err =
      s2s_test::max_abs_error(r.logits->value.f32(), ref_logits.f32(), ref_logits.numel());
  CHECK_ERR(logits_err, logits_tol * max_abs(ref_logits), name + " bf16 logits vs fp32 fixture");
  CHECK_MSG(logits_err > 0, name + ": bf16 logits equal the fp32 ones exactly (no bf16 path?)");
  const double loss_err = std::fabs(double(r.loss->value.f32()[0]) - fx.file->view("loss").f32()[0]);
  CHECK_ERR(loss_err, loss_tol, name + " bf16 loss vs fp32 fixture");
  g.backward(r.loss);
  double worst_grad = 0;
  std::string worst_name;
  for (Param* p : m->params().all()) {
    const Tensor ref = fx.file->view("grad." + p->name);
    const double rel = s2s_test::max_abs_error(p->grad.f32(), ref.f32(), ref.numel()) /
                       std::fmax(1e-6, max_abs(ref));
    CHECK_ERR(rel, grad_tol, name + " bf16 grad." + p->name + " (relative to its max)");
    if (rel > worst_grad) {
      worst_grad = rel;
      worst_name = p->name;
    }
  }

  m->params().zero_grads();
  const OptimizerConfig oc = fixture_adamw();
  const Tensor ref_losses = fx.file->view("train.losses");
  std::vector<double> losses;
  double train_err = 0;
  for (int64_t step = 1; step <= ref_losses.numel(); ++step) {
    g.reset();
    ForwardResult s = m->forward(g, fx.batch, LossReduction::Mean);
    losses.push_back(s.loss->value.f32()[0]);
    const double err = std::fabs(losses.back() - ref_losses.f32()[step - 1]);
    CHECK_ERR(err, loss_tol, name + " bf16 train.losses[" + std::to_string(step - 1) + "]");
    train_err = std::fmax(train_err, err);
    g.backward(s.loss);
    CHECK(optimizer_step(m->params(), oc, step, 1e-2, 1.0f).finite);
    check_copies(*m, name + " after step " + std::to_string(step));
  }
  CHECK_MSG(losses.back() < losses.front() - 0.5,
            name + ": bf16 training loss did not decrease");
  // The masters stay fp32: after training they hold values bf16 cannot represent.
  int64_t off_grid = 0, total = 0;
  for (Param* p : linear_weights(*m)) {
    CHECK(p->value.dtype == DType::F32 && p->grad.dtype == DType::F32 &&
          p->exp_avg.dtype == DType::F32 && p->exp_avg_sq.dtype == DType::F32);
    for (int64_t i = 0; i < p->value.numel(); ++i) {
      const float v = p->value.f32()[i];
      off_grid += bf16_to_f32(f32_to_bf16(v)) != v;
      ++total;
    }
  }
  CHECK_MSG(off_grid > total / 2, name + ": masters look rounded to bf16");

  // Back to fp32: copies freed, logits equal a model that never had them.
  m->set_compute_dtype(ComputeDType::F32);
  CHECK(m->params().compute_bytes() == 0 && check_copies(*m, name + " fp32 again") == 0);
  std::printf("    %s bf16: logits %.2e (max |logit| %.1f, tol %.0e of it), loss %.2e, worst grad %.2e of max (%s, tol "
              "%.0e), train losses %.2e (tol %.0e), %.2f -> %.2f; %d copies, %lld bytes\n",
              name.c_str(), logits_err, max_abs(ref_logits), logits_tol, loss_err, worst_grad, worst_name.c_str(),
              grad_tol, train_err, loss_tol, losses.front(), losses.back(), copies,
              static_cast<long long>(2 * lin_elems));
}

// LoRA with the fixture's adapters on a frozen base (fp32 copies, or fp32 views of the files):
// the base weights get bf16 copies that never change, A/B none; 10 adapter-only steps track
// lora.train.losses.
void check_bf16_lora(const std::string& name, const std::vector<std::string>& targets,
                     bool bind_views, double loss_tol) {
  set_num_threads(2);
  const std::string dir = fixture_dir(name);
  LoadOptions lo;
  lo.keep_frozen_in_file_dtype = bind_views;
  std::vector<std::shared_ptr<SafetensorsFile>> files = open_weight_files(dir);
  std::unique_ptr<Model> m =
      create_model(parse_model_config(read_text(dir + "/config.json"), dir + "/config.json"));
  m->set_compute_dtype(ComputeDType::BF16);  // before loading: the store keeps up
  const LoadReport report = load_weights(*m, files, lo);
  CHECK(bind_views == (report.bound > 0));
  Fixture fx(dir);
  s2s_test::FixtureLora lora;
  s2s_test::attach_fixture_lora(*m, *fx.file, targets, lora);
  const std::vector<Param*>& adapters = lora.adapters;
  const std::vector<Param*>& bases = lora.bases;
  for (Param* p : m->params().all()) m->params().set_trainable(*p, false);
  for (Param* p : adapters) m->params().set_trainable(*p, true);
  check_copies(*m, name + " LoRA");
  for (Param* p : bases) {
    CHECK_MSG(!p->trainable && p->compute.data != nullptr,
              name + ": frozen fp32 base " + p->name + " has a bf16 copy");
  }
  for (Param* p : adapters) CHECK(p->compute.data == nullptr);
  std::vector<uint16_t> before(static_cast<size_t>(bases[0]->compute.numel()));
  std::copy(bases[0]->compute.u16(), bases[0]->compute.u16() + before.size(), before.begin());

  OptimizerConfig oc;  // AdamW defaults (wd 0.01), clip 1.0, as the fixture
  oc.max_grad_norm = 1.0;
  const Tensor ref_losses = fx.file->view("lora.train.losses");
  Graph g;
  double train_err = 0, first = 0, last = 0;
  for (int64_t step = 1; step <= ref_losses.numel(); ++step) {
    g.reset();
    ForwardResult s = m->forward(g, fx.batch, LossReduction::Mean);
    const double loss = s.loss->value.f32()[0];
    if (step == 1) first = loss;
    last = loss;
    const double err = std::fabs(loss - ref_losses.f32()[step - 1]);
    CHECK_ERR(err, loss_tol, name + " bf16 lora.train.losses[" + std::to_string(step - 1) + "]");
    train_err = std::fmax(train_err, err);
    g.backward(s.loss);
    optimizer_step(m->params(), oc, step, 1e-2, 1.0f);
  }
  CHECK(last < first);
  bool unchanged = true;
  for (size_t i = 0; i < before.size(); ++i) unchanged = unchanged && bases[0]->compute.u16()[i] == before[i];
  CHECK_MSG(unchanged, name + ": a frozen base's bf16 copy changed during LoRA training");
  std::printf("    %s bf16 LoRA (%s base): train losses %.2e (tol %.0e), %.3f -> %.3f\n",
              name.c_str(), bind_views ? "file-view" : "copied", train_err, loss_tol, first, last);
}

const std::vector<std::string> kLlamaTargets{"q_proj", "k_proj", "v_proj", "o_proj",
                                             "gate_proj", "up_proj", "down_proj"};

}  // namespace

TEST(bf16_gpt2_logits_grads_and_ten_steps_track_the_fp32_fixture) {
  // measured: logits 6.1e-2 = 0.5% of max |logit| 12.6, grads 2.6e-2, train losses 4.4e-3
  check_bf16_training("gpt2", 2e-2, 5e-2, 3e-2);
}

TEST(bf16_llama_gqa_logits_grads_and_ten_steps_track_the_fp32_fixture) {
  // measured: logits 1.3e-1 = 1.1% of max |logit| 12.5, grads 2.6e-2, train losses 1.2e-2
  check_bf16_training("llama-gqa", 2e-2, 5e-2, 3e-2);
}

TEST(bf16_lora_frozen_fp32_base_gets_copies_and_tracks_the_fixture) {
  // measured: 1.7e-3 (gpt2), 4.0e-3 (llama-gqa)
  check_bf16_lora("gpt2", {"c_attn", "c_proj", "c_fc"}, false, 2e-2);
  check_bf16_lora("llama-gqa", kLlamaTargets, true, 2e-2);
}

TEST(bf16_compute_no_copies_in_fp32_and_none_for_bf16_views) {
  set_num_threads(2);
  // fp32 compute (the default): no copies at all, trainable or not.
  std::unique_ptr<Model> m = load_fixture_model(fixture_dir("llama-gqa"));
  for (Param* p : m->params().all()) m->params().set_trainable(*p, true);
  CHECK(m->compute_dtype() == ComputeDType::F32 && m->params().compute_bytes() == 0);
  for (Param* p : m->params().all()) CHECK(p->compute.data == nullptr);
  // A bf16 checkpoint bound frozen (t5-gated's weights are BF16): the views are used as they
  // are, no copy; making them trainable gives an fp32 master and then a copy.
  LoadOptions o;
  o.keep_frozen_in_file_dtype = true;
  const std::string dir = fixture_dir("t5-gated");
  std::vector<std::shared_ptr<SafetensorsFile>> files = open_weight_files(dir);
  std::unique_ptr<Model> t5 =
      create_model(parse_model_config(read_text(dir + "/config.json"), dir + "/config.json"));
  CHECK(load_weights(*t5, files, o).bound > 0);
  t5->set_compute_dtype(ComputeDType::BF16);
  Param& q = t5->params().get("encoder.block.0.layer.0.SelfAttention.q.weight");
  CHECK(q.value.dtype == DType::BF16 && q.compute.data == nullptr);
  check_copies(*t5, "t5-gated bound");
  t5->params().set_trainable(q, true);
  CHECK(q.value.dtype == DType::F32 && q.compute.data != nullptr);
  check_copies(*t5, "t5-gated one trainable");
  // merge_lora writes the base weight directly: its copy follows.
  LoraConfig lc;
  lc.target_modules = {"q"};
  lc.init_lora_weights = "false";  // B non-zero, so the merge changes W
  LoraAdapter ad = apply_lora(*t5, lc, 3);
  merge_lora(*t5, ad);
  check_copies(*t5, "t5-gated after merge_lora");
}

TEST(bf16_t5_forward_is_close_to_fp32) {
  set_num_threads(2);
  // T5 through the same switch (tied head with rescale, relative bias, gated FFN).
  for (const char* name : {"t5-gated", "t5-relu-tied"}) {
    const std::string dir = fixture_dir(name);
    std::unique_ptr<Model> m = load_fixture_model(dir);
    Fixture fx(dir);
    Batch b = fx.batch;
    b.Td = fx.file->find("labels")->shape[1];
    b.decoder_input_ids = static_cast<const int32_t*>(fx.file->find("decoder_input_ids")->data);
    m->set_compute_dtype(ComputeDType::BF16);
    Graph g;
    ForwardResult r = m->forward(g, b, LossReduction::Mean);
    const Tensor ref = fx.file->view("logits");
    const double err = s2s_test::max_abs_error(r.logits->value.f32(), ref.f32(), ref.numel());
    // measured: t5-gated 3.4e-1 = 2.9% of max |logit| 11.6 (PyTorch emulation: the same),
    // t5-relu-tied 4.0e-2 = 1.0% of 3.9
    CHECK_ERR(err, 5e-2 * max_abs(ref), std::string(name) + " bf16 logits");
    std::printf("    %s bf16 logits: max abs error %.2e (max |logit| %.1f)\n", name, err,
                max_abs(ref));
  }
}

// The logits gradient stored as bf16 (cross_entropy writes it rounded for a bf16-compute head,
// Graph::grad_for_write_bf16), and the gradients of bias-less bf16 projections' outputs
// likewise (swiglu / geglu's dgate and dup, relu's for T5's wi, rope's for Llama's q_proj and
// k_proj, written rounded by those ops), give every parameter
// gradient bit for bit what the fp32 gradients rounded inside the GEMMs give
// (Graph::bf16_gradients off), on tied and untied heads, full fine-tuning and LoRA, Mean and Sum.
TEST(bf16_logits_gradient_in_bf16_changes_no_bit_of_any_gradient) {
  set_num_threads(2);
  for (const char* name : {"gpt2", "llama-gqa", "qwen2", "t5-gated", "t5-relu-tied"}) {
    for (bool lora : {false, true}) {
      for (LossReduction reduction : {LossReduction::Mean, LossReduction::Sum}) {
        const std::string dir = fixture_dir(name);
        std::unique_ptr<Model> m = load_fixture_model(dir);
        m->set_compute_dtype(ComputeDType::BF16);
        LoraAdapter adapter;  // owns the LoRA parameters: must outlive the model's use of them
        if (lora) {
          LoraConfig lc;
          lc.r = 4;
          lc.lora_alpha = 8;
          // target_modules empty: PEFT's default for the model type (gpt2 c_attn; llama q_proj, v_proj)
          adapter = apply_lora(*m, lc, 7);
          // B = 0 at init would make every LoRA gradient but dB trivially equal: perturb it.
          for (Param* p : m->params().all())
            if (p->name.find("lora_B") != std::string::npos)
              for (int64_t i = 0; i < p->value.numel(); ++i) p->value.f32()[i] = 0.01f * float(i % 7 - 3);
        } else {
          for (Param* p : m->params().all()) m->params().set_trainable(*p, true);
        }
        Fixture fx(dir);
        std::vector<std::vector<float>> grads[2];
        for (int pass = 0; pass < 2; ++pass) {
          m->params().zero_grads();
          Graph g;
          g.bf16_gradients = pass == 0;
          ForwardResult r = m->forward(g, fx.batch, reduction);
          g.backward(r.loss);
          for (Param* p : m->params().all())
            if (p->trainable) grads[pass].emplace_back(p->grad.f32(), p->grad.f32() + p->grad.numel());
        }
        bool same = grads[0].size() == grads[1].size() && !grads[0].empty();
        for (size_t i = 0; same && i < grads[0].size(); ++i) same = grads[0][i] == grads[1][i];
        CHECK_MSG(same, std::string(name) + (lora ? " LoRA" : " full") +
                            (reduction == LossReduction::Mean ? " mean" : " sum") +
                            ": gradients differ with the bf16 logits gradient");
      }
    }
  }
}
