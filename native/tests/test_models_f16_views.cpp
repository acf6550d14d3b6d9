// fp16 checkpoints kept as fp16 (LoadOptions::keep_frozen_in_file_dtype + f16_linear_views, what
// float16 compute loads with): a copy of a fixture
// model folder with its linear weights stored as F16 (written here with write_safetensors) loads
// with those weights bound as F16 views of the file, not widened; the same folder loaded widened
// (fp32 copies of the same fp16 values) is the reference. With F16 views linear rounds its input
// to fp16 (and, in backward, dout): the two models differ by that rounding only, so logits (the
// batch through the GEMM, four rows through gemv_f16), LoRA training losses and gradients agree
// within fp16-rounding tolerances (stated at each check; measured errors are printed). Then:
// merge_lora takes owned fp32 copies of the adapted F16 views, save_model writes untouched
// weights as F16 and merged ones as F32, the export reloads to the same logits, and the compute
// dtypes: no copy of an F16 view in fp32 / fp16 compute, a bf16 copy in bf16 compute.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "fixture_model.h"
#include "harness.h"
#include "s2s/io/atomic_file.h"
#include "s2s/io/safetensors.h"
#include "s2s/models/lora.h"
#include "s2s/models/model.h"
#include "s2s/models/weights.h"
#include "s2s/ops/cast.h"
#include "s2s/ops/lora_merge.h"
#include "s2s/thread_pool.h"
#include "s2s/train/optimizer.h"
#include "tmp_dir.h"

using s2s_test::fixture_dir;
using s2s_test::read_text;
using s2s_test::TmpDir;

using namespace s2s;

namespace {

std::set<std::string> linear_weight_names(Model& m) {
  std::set<std::string> out;
  for (const LinearModule& mod : m.linear_modules()) out.insert(mod.weights->weight->name);
  return out;
}

// The fixture folder `name` copied into `dir` with every linear weight (by the model's linear
// modules' param names) converted to F16; other tensors as they are. Returns the number of
// tensors converted.
int write_f16_copy(const std::string& name, const std::string& dir) {
  const std::string src = fixture_dir(name);
  const std::string config = read_text(src + "/config.json");
  std::unique_ptr<Model> probe = create_model(parse_model_config(config, src + "/config.json"));
  const std::set<std::string> linear = linear_weight_names(*probe);
  std::vector<std::shared_ptr<SafetensorsFile>> files = open_weight_files(src);
  std::deque<std::vector<uint16_t>> halves;
  std::vector<SafetensorsWriteEntry> entries;
  int converted = 0;
  for (const auto& f : files) {
    for (const SafetensorsTensor& t : f->tensors()) {
      SafetensorsWriteEntry e{t.name, t.dtype, t.shape, t.data, t.nbytes};
      // Tied checkpoints may store the head under its own name too: match without the prefix.
      const bool is_linear = linear.count(t.name) || linear.count("transformer." + t.name) ||
                             linear.count("model." + t.name);
      if (is_linear) {
        CHECK_MSG(t.dtype == "F32", name + ": expected an F32 fixture tensor " + t.name);
        const Tensor v = f->view(t.name);
        halves.emplace_back(static_cast<size_t>(v.numel()));
        cast_f32_to_f16(halves.back().data(), v.f32(), v.numel());
        e.dtype = "F16";
        e.data = halves.back().data();
        e.nbytes = halves.back().size() * 2;
        ++converted;
      }
      entries.push_back(e);
    }
  }
  std::filesystem::create_directories(dir);
  write_safetensors(dir + "/model.safetensors", entries, {{"format", "pt"}});
  write_file_atomic(dir + "/config.json", config, "test");
  return converted;
}

double max_abs(const float* p, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::fmax(m, std::fabs(p[i]));
  return m;
}

double logits_error(Model& a, Model& b, const Batch& batch, double* scale) {
  Graph ga, gb;
  ForwardResult ra = a.forward(ga, batch, LossReduction::Mean);
  ForwardResult rb = b.forward(gb, batch, LossReduction::Mean);
  const int64_t n = ra.logits->value.numel();
  CHECK(n == rb.logits->value.numel());
  *scale = max_abs(rb.logits->value.f32(), n);
  return s2s_test::max_abs_error(ra.logits->value.f32(), rb.logits->value.f32(), n);
}

// Widened from fp16 by the loader (default options): every linear weight an owned fp32 copy.
std::unique_ptr<Model> load_widened(const std::string& dir) {
  std::unique_ptr<Model> m = s2s_test::load_fixture_model(dir);
  return m;
}

void check_f16_views(const std::string& name, const std::vector<std::string>& targets) {
  set_num_threads(2);
  TmpDir tmp;
  const std::string dir = (tmp.dir / "f16").string();
  const int converted = write_f16_copy(name, dir);
  const std::string config = read_text(dir + "/config.json");

  std::unique_ptr<Model> wide = load_widened(dir);
  std::unique_ptr<Model> m = create_model(parse_model_config(config, dir + "/config.json"));
  std::vector<std::shared_ptr<SafetensorsFile>> files = open_weight_files(dir);
  LoadOptions lo;
  lo.keep_frozen_in_file_dtype = true;
  lo.f16_linear_views = true;  // as the N-API load does for float16 compute
  const LoadReport report = load_weights(*m, files, lo);

  // Every linear weight is an F16 view of the file; the fp32 tables (embeddings) are bound too.
  const std::set<std::string> linear = linear_weight_names(*m);
  int64_t f16_views = 0, view_bytes = 0;
  for (const std::string& n : linear) {
    Param* p = m->params().find(n);
    CHECK_MSG(p->value.dtype == DType::F16 && !p->owned_value && p->compute.data == nullptr,
              name + ": " + n + " is an F16 view with no copy");
    CHECK(wide->params().find(n)->value.dtype == DType::F32);
    f16_views += p->value.dtype == DType::F16;
    view_bytes += 2 * p->value.numel();
  }
  int64_t bound = 0;
  for (Param* p : m->params().all()) bound += p->owned_value ? 0 : 1;
  CHECK(report.bound == bound && f16_views == int64_t(linear.size()) && report.bound >= f16_views);
  CHECK(converted >= 1 && converted <= int(linear.size()));  // a tied head is one tensor

  // Logits of the fixture batch (GEMM) and of its first four tokens (gemv_f16): the inputs of
  // every linear are rounded to fp16 (relative 2^-11 each), errors stay ~1e-3 of the logits.
  s2s_test::FixtureBatch fx(fixture_dir(name));
  double scale = 0;
  const double err_batch = logits_error(*m, *wide, fx.batch, &scale);
  CHECK_ERR(err_batch, 5e-3 * scale, name + " F16 views vs widened logits (batch)");
  CHECK_MSG(err_batch > 0, name + ": identical logits (F16 path not taken?)");
  std::vector<int32_t> ids(fx.batch.input_ids, fx.batch.input_ids + 4);
  Batch few;
  few.B = 1;
  few.T = 4;
  few.input_ids = ids.data();
  double scale_few = 0;
  const double err_few = logits_error(*m, *wide, few, &scale_few);
  CHECK_ERR(err_few, 5e-3 * scale_few, name + " F16 views vs widened logits (4 rows, gemv)");
  CHECK_MSG(err_few > 0, name + ": identical logits on 4 rows (gemv_f16 not taken?)");

  // LoRA on both (same seed: same A, B = 0), three AdamW steps each, fp32 compute. The F16
  // model's backward rounds dout to fp16 in the frozen linears (unscaled here): the adapters'
  // gradients differ by that rounding, within 2e-2 of their max.
  LoraConfig lc;
  lc.r = 4;
  lc.lora_alpha = 8;
  lc.target_modules = targets;
  LoraAdapter am = apply_lora(*m, lc, 7);
  LoraAdapter aw = apply_lora(*wide, lc, 7);
  OptimizerConfig oc;
  oc.adamw.weight_decay = 0.0;
  std::vector<double> losses;
  double worst_grad = 0, worst_loss = 0;
  for (int64_t step = 1; step <= 3; ++step) {
    Graph gm, gw;
    ForwardResult rm = m->forward(gm, fx.batch, LossReduction::Mean);
    ForwardResult rw = wide->forward(gw, fx.batch, LossReduction::Mean);
    gm.backward(rm.loss);
    gw.backward(rw.loss);
    const double lm = rm.loss->value.f32()[0], lw = rw.loss->value.f32()[0];
    losses.push_back(lm);
    worst_loss = std::fmax(worst_loss, std::fabs(lm - lw));
    CHECK_ERR(std::fabs(lm - lw), 5e-3 * std::fmax(1.0, std::fabs(lw)),
              name + " LoRA loss step " + std::to_string(step));
    for (size_t i = 0; i < am.layers.size(); ++i) {
      for (int which = 0; which < 2; ++which) {
        const Param* pm = which ? am.layers[i].lora->B : am.layers[i].lora->A;
        const Param* pw = which ? aw.layers[i].lora->B : aw.layers[i].lora->A;
        const double gmax = max_abs(pw->grad.f32(), pw->grad.numel());
        if (gmax == 0) continue;  // A's gradient is zero at step 1 (B = 0)
        const double rel =
            s2s_test::max_abs_error(pm->grad.f32(), pw->grad.f32(), pw->grad.numel()) / gmax;
        worst_grad = std::fmax(worst_grad, rel);
        CHECK_ERR(rel, 2e-2, name + " LoRA grad " + pm->name + " step " + std::to_string(step));
      }
    }
    CHECK(optimizer_step(m->params(), oc, step, 1e-2, 1.0f).finite);
    CHECK(optimizer_step(wide->params(), oc, step, 1e-2, 1.0f).finite);
  }
  CHECK_MSG(losses.back() < losses.front(), name + ": LoRA loss on F16 views did not decrease");
  for (const std::string& n : linear) CHECK(m->params().find(n)->value.dtype == DType::F16);

  // merge_lora: each adapted F16 view becomes an owned fp32 weight = widen(W) + scaling B A.
  std::vector<std::vector<float>> expect;
  for (const LoraLayer& l : am.layers) {
    const Tensor& w = l.weights->weight->value;
    expect.emplace_back(static_cast<size_t>(w.numel()));
    cast_f16_to_f32(expect.back().data(), w.u16(), w.numel());
    const Tensor e = Tensor::contiguous(expect.back().data(), DType::F32, w.ndim, w.shape);
    lora_merge_reference(e, l.lora->A->value, l.lora->B->value, l.lora->scaling,
                         l.weights->layout);
  }
  merge_lora(*m, am);
  std::set<std::string> merged;
  double merge_err = 0;
  for (size_t i = 0; i < am.layers.size(); ++i) {
    Param* w = am.layers[i].weights->weight;
    merged.insert(w->name);
    CHECK_MSG(w->value.dtype == DType::F32 && w->owned_value && !w->trainable,
              name + ": merged " + w->name + " is an owned, frozen fp32 weight");
    merge_err = std::fmax(merge_err, s2s_test::max_abs_error(w->value.f32(), expect[i].data(),
                                                              w->value.numel()));
  }
  CHECK_ERR(merge_err, 1e-6, name + " merged F16 views vs widen(W) + scaling B A");

  // save_model: the file's dtype for what was not touched (F16), F32 for the merged weights.
  const std::string out = (tmp.dir / "merged").string();
  save_model(out, *m, config);
  auto st = SafetensorsFile::open(out + "/model.safetensors");
  for (const SafetensorsTensor& t : st->tensors()) {
    Param* p = m->params().find(t.name);
    if (p == nullptr) continue;
    if (linear.count(t.name) != 0) {
      CHECK_MSG(t.dtype == (merged.count(t.name) ? "F32" : "F16"), name + ": export dtype of " + t.name);
    }
  }
  std::unique_ptr<Model> back = create_model(parse_model_config(config, out + "/config.json"));
  std::vector<std::shared_ptr<SafetensorsFile>> back_files = open_weight_files(out);
  load_weights(*back, back_files, lo);
  double s2 = 0;
  CHECK(logits_error(*back, *m, fx.batch, &s2) == 0);  // the same values, the same dtypes

  // Compute dtypes: bf16 compute gives an F16 view a bf16 copy (= cast of the view), fp16
  // compute none, fp32 compute none.
  const std::string frozen = *std::find_if(linear.begin(), linear.end(),
                                           [&](const std::string& n) { return !merged.count(n); });
  Param* v = m->params().find(frozen);
  m->set_compute_dtype(ComputeDType::BF16);
  CHECK(v->compute.data != nullptr && v->compute.dtype == DType::BF16);
  if (v->compute.data != nullptr) {
    std::vector<uint16_t> want(static_cast<size_t>(v->value.numel()));
    const Tensor wt = Tensor::contiguous(want.data(), DType::BF16, v->value.ndim, v->value.shape);
    cast_forward(wt, v->value);
    bool same = true;
    for (size_t i = 0; i < want.size(); ++i) same = same && v->compute.u16()[i] == want[i];
    CHECK_MSG(same, name + ": bf16 copy of an F16 view != cast(view)");
  }
  Graph gb;
  ForwardResult rb = m->forward(gb, fx.batch, LossReduction::Mean);
  CHECK(std::isfinite(rb.loss->value.f32()[0]));
  m->set_compute_dtype(ComputeDType::F16);
  CHECK(v->compute.data == nullptr);
  m->set_compute_dtype(ComputeDType::F32);
  CHECK(v->compute.data == nullptr);

  std::printf("    %s: %lld F16 views (%lld bytes, half a widened copy), logits err %.2e (batch, max "
              "%.1f) %.2e (4 rows); LoRA loss err %.2e, grad err %.2e of max, %.4f -> %.4f; merge "
              "err %.1e\n",
              name.c_str(), static_cast<long long>(f16_views), static_cast<long long>(view_bytes),
              err_batch, scale, err_few, worst_loss, worst_grad, losses.front(), losses.back(),
              merge_err);
}

}  // namespace

TEST(f16_views_llama_gqa) { check_f16_views("llama-gqa", {"q_proj", "v_proj"}); }
TEST(f16_views_gpt2_conv1d_tied_head) { check_f16_views("gpt2", {"c_attn"}); }

// Without f16_linear_views (fp32 / bf16 compute) F16 linear weights are widened to owned fp32
// copies even with keep_frozen_in_file_dtype: an F16 weight would round the output gradient to
// fp16 with no loss scaler to keep small gradients. Embedding tables stay views.
TEST(f16_linear_weights_widen_without_fp16_compute) {
  TmpDir tmp;
  const std::string dir = (tmp.dir / "f16").string();
  write_f16_copy("llama-gqa", dir);
  std::unique_ptr<Model> m =
      create_model(parse_model_config(read_text(dir + "/config.json"), dir + "/config.json"));
  std::vector<std::shared_ptr<SafetensorsFile>> files = open_weight_files(dir);
  LoadOptions lo;
  lo.keep_frozen_in_file_dtype = true;
  load_weights(*m, files, lo);
  for (const std::string& n : linear_weight_names(*m)) {
    Param* p = m->params().find(n);
    CHECK_MSG(p->value.dtype == DType::F32 && p->owned_value, n + " widened to an owned fp32 copy");
  }
}
