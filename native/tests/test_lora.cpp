// LoRA (PEFT semantics): the lora_merge op against its reference, targeting by PEFT's rules,
// PEFT's initialisation (step 0 = base; Kaiming bound), scaling (incl. rsLoRA), merge parity in
// both weight layouts, adapter save/load round trips and PEFT's file layout, and the merged
// model export. Runs on a small fake Model; whole-model parity with PyTorch lives in
// test_lora_parity.cpp.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "harness.h"
#include "tmp_dir.h"
#include "s2s/dtype.h"
#include "s2s/io/safetensors.h"
#include "s2s/models/lora.h"
#include "s2s/ops/lora_merge.h"
#include "s2s/train/optimizer.h"
#include "fixture_files.h"

using s2s_test::read_text;

using s2s_test::TmpDir;

using namespace s2s;
namespace fs = std::filesystem;

namespace {


void fill(ParamStore& store, Param& p, uint64_t seed, float lo, float hi) {
  auto v = s2s_test::random_vector(p.value.numel(), seed, lo, hi);
  store.load(p, Tensor::contiguous(v.data(), DType::F32, p.value.ndim, p.value.shape));
}

// A fake decoder with linear layers in both layouts, named like HF modules:
//   wte (V,C) -> q_proj (OutIn, bias) -> silu -> c_attn (InOut, GPT-2 Conv1D) -> + residual
//   -> xq_proj (OutIn; "q_proj" must NOT match it) -> lm_head (OutIn) -> cross-entropy.
class FakeModel : public Model {
 public:
  static constexpr int64_t V = 13, C = 12, H = 20;
  static ModelConfig make_config() {
    ModelConfig c;
    c.model_type = "llama";
    c.arch = Architecture::Llama;
    c.vocab_size = V;
    c.hidden_size = C;
    return c;
  }

  explicit FakeModel(uint64_t seed) : Model(make_config()) {
    Param& wte = params_.create("model.embed_tokens.weight", {V, C});
    Param& q_w = params_.create("model.layers.0.self_attn.q_proj.weight", {H, C});
    Param& q_b = params_.create("model.layers.0.self_attn.q_proj.bias", {H}, false);
    Param& c_w = params_.create("model.layers.0.attn.c_attn.weight", {H, C});  // (in, out)
    Param& c_b = params_.create("model.layers.0.attn.c_attn.bias", {C}, false);
    Param& x_w = params_.create("model.layers.0.mlp.xq_proj.weight", {C, C});
    Param& head = params_.create("lm_head.weight", {V, C});
    uint64_t s = seed;
    for (Param* p : params_.all()) {
      fill(params_, *p, ++s, -0.5f, 0.5f);
      params_.set_trainable(*p, true);
    }
    wte_ = &wte;
    q_ = {&q_w, &q_b, WeightLayout::OutIn, nullptr};
    c_attn_ = {&c_w, &c_b, WeightLayout::InOut, nullptr};
    xq_ = {&x_w, nullptr, WeightLayout::OutIn, nullptr};
    head_ = {&head, nullptr, WeightLayout::OutIn, nullptr};
  }

  ForwardResult forward(Graph& g, const Batch& batch, LossReduction reduction) override {
    Var* x = nn::embedding(g, batch.input_ids, batch.B, batch.T, wte_, nullptr, nullptr);
    Var* h = nn::silu(g, nn::linear(g, x, q_));
    Var* r = nn::add(g, x, nn::linear(g, h, c_attn_));
    Var* y = nn::linear(g, r, xq_);
    ForwardResult out;
    out.logits = nn::linear(g, g.view(y, {batch.B * batch.T, C}), head_);
    if (batch.labels != nullptr) {
      CrossEntropyOptions o;
      o.reduction = reduction;
      out.loss = nn::cross_entropy(g, out.logits, batch.labels, batch.B * batch.T, o, &out.count);
    }
    return out;
  }

  std::vector<LinearModule> linear_modules() override {
    return {{"model.layers.0.self_attn.q_proj", &q_},
            {"model.layers.0.attn.c_attn", &c_attn_},
            {"model.layers.0.mlp.xq_proj", &xq_},
            {"lm_head", &head_}};
  }
  std::vector<std::pair<std::string, std::string>> tied_aliases() const override { return {}; }

 private:
  Param* wte_;
  nn::LinearWeights q_, c_attn_, xq_, head_;
};

struct Data {
  static constexpr int64_t B = 2, T = 5;
  std::vector<int32_t> ids, labels;
  Data() {
    s2s_test::Rng rng(77);
    for (int i = 0; i < B * T; ++i) {
      ids.push_back(static_cast<int32_t>(rng.next() % FakeModel::V));
      labels.push_back(i % 5 == 0 ? -100 : static_cast<int32_t>(rng.next() % FakeModel::V));
    }
  }
  Batch batch() const {
    Batch b;
    b.B = B;
    b.T = T;
    b.input_ids = ids.data();
    b.labels = labels.data();
    return b;
  }
};

std::vector<float> logits_of(Model& m, const Data& d, float* loss = nullptr) {
  Graph g;
  ForwardResult r = m.forward(g, d.batch(), LossReduction::Mean);
  if (loss) *loss = r.loss->value.f32()[0];
  return std::vector<float>(r.logits->value.f32(), r.logits->value.f32() + r.logits->value.numel());
}

LoraConfig config_for(std::vector<std::string> targets, int64_t r = 4, double alpha = 8) {
  LoraConfig c;
  c.r = r;
  c.lora_alpha = alpha;
  c.target_modules = std::move(targets);
  return c;
}

// Pretend training happened: give every B (and A) new random values.
void perturb(Model& m, const LoraAdapter& a, uint64_t seed) {
  for (const LoraLayer& l : a.layers) {
    fill(m.params(), *l.lora->B, seed++, -0.3f, 0.3f);
    fill(m.params(), *l.lora->A, seed++, -0.3f, 0.3f);
  }
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.numel() == b.numel() && a.dtype == b.dtype &&
         std::memcmp(a.data, b.data, size_t(a.numel()) * (a.dtype == DType::F32 ? 4 : 2)) == 0;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

std::string error_of(const std::function<void()>& fn, std::string* code = nullptr) {
  try {
    fn();
  } catch (const Error& e) {
    if (code) *code = e.code();
    return e.what();
  }
  return "";
}

}  // namespace

// ---- the op -----------------------------------------------------------------------------------

TEST(lora_merge_matches_reference_in_both_layouts) {
  const int64_t OC = 37, IC = 53, R = 6;
  auto a = s2s_test::random_vector(R * IC, 1);
  auto b = s2s_test::random_vector(OC * R, 2);
  for (WeightLayout layout : {WeightLayout::OutIn, WeightLayout::InOut}) {
    auto w_fast = s2s_test::random_vector(OC * IC, 3);
    auto w_ref = w_fast;
    const bool oi = layout == WeightLayout::OutIn;
    Tensor A = Tensor::contiguous(a.data(), DType::F32, {R, IC});
    Tensor B = Tensor::contiguous(b.data(), DType::F32, {OC, R});
    Tensor Wf = Tensor::contiguous(w_fast.data(), DType::F32, {oi ? OC : IC, oi ? IC : OC});
    Tensor Wr = Tensor::contiguous(w_ref.data(), DType::F32, {oi ? OC : IC, oi ? IC : OC});
    lora_merge_forward(Wf, A, B, 0.75f, layout);
    lora_merge_reference(Wr, A, B, 0.75f, layout);
    const double err = s2s_test::max_normalized_error(w_fast.data(), w_ref.data(), w_fast.size());
    std::printf("    lora_merge %s: max error vs reference %.2e\n", oi ? "OutIn" : "InOut", err);
    CHECK_ERR(err, 1e-6, "lora_merge vs reference");
    // InOut's delta is the transpose of OutIn's: spot-check one element by hand.
    double d = 0;
    for (int64_t k = 0; k < R; ++k) d += double(b[3 * R + k]) * a[k * IC + 5];
    auto w0 = s2s_test::random_vector(OC * IC, 3);
    const float got = oi ? w_fast[3 * IC + 5] : w_fast[5 * OC + 3];
    const float base = oi ? w0[3 * IC + 5] : w0[5 * OC + 3];
    CHECK_ERR(std::fabs(got - (base + 0.75 * d)), 1e-5, "element (3, 5)");
  }
  std::vector<float> w(OC * IC);
  Tensor A = Tensor::contiguous(a.data(), DType::F32, {R, IC});
  Tensor B = Tensor::contiguous(b.data(), DType::F32, {OC, R});
  CHECK_THROWS_CODE(lora_merge_forward(Tensor::contiguous(w.data(), DType::F32, {OC, IC}), A, B,
                                       1.0f, WeightLayout::InOut),
                    code::kShape);
}

// ---- config and targeting --------------------------------------------------------------------

TEST(lora_targets_follow_peft_suffix_and_regex_rules) {
  LoraConfig c = config_for({"q_proj"});
  CHECK(lora_targets(c, "model.layers.0.self_attn.q_proj"));
  CHECK(lora_targets(c, "q_proj"));
  CHECK(!lora_targets(c, "model.layers.0.mlp.xq_proj"));  // suffix of the name, not of a segment
  CHECK(!lora_targets(c, "model.layers.0.self_attn.q_proj.base"));
  c.target_modules = {"self_attn.q_proj"};
  CHECK(lora_targets(c, "model.layers.0.self_attn.q_proj"));
  c.target_modules_is_regex = true;
  c.target_modules_regex = R"(.*\.(q_proj|c_attn))";
  CHECK(lora_targets(c, "model.layers.0.self_attn.q_proj"));
  CHECK(lora_targets(c, "model.layers.0.attn.c_attn"));
  CHECK(!lora_targets(c, "model.layers.0.attn.c_attn.x"));  // full match, not search
  CHECK(!lora_targets(c, "lm_head"));
  c.exclude_modules = {"attn.c_attn"};
  CHECK(!lora_targets(c, "model.layers.0.attn.c_attn"));

  FakeModel m(1);
  std::string code;
  const std::string msg = error_of([&] { apply_lora(m, config_for({"q_proj", "k_proj"}), 1); }, &code);
  CHECK(code == code::kConfig);
  CHECK_MSG(contains(msg, "'k_proj' matches no linear module") &&
                contains(msg, "model.layers.0.attn.c_attn") && contains(msg, "lm_head"),
            "no-match error should name the target and list the modules: " + msg);
  // all-linear: every linear layer but the output head.
  LoraConfig all;
  all.target_modules_is_regex = true;
  all.target_modules_regex = "all-linear";
  FakeModel m2(1);
  LoraAdapter a = apply_lora(m2, all, 1);
  CHECK(a.layers.size() == 3);
  for (const LoraLayer& l : a.layers) CHECK(l.path != "lm_head");
}

TEST(lora_apply_names_params_like_peft_and_trains_only_the_adapter) {
  FakeModel m(2);
  LoraAdapter a = apply_lora(m, config_for({"q_proj", "c_attn"}, 4, 16), 42);
  CHECK(a.layers.size() == 2);
  Param* qa = m.params().find("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
  Param* qb = m.params().find("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight");
  Param* ca = m.params().find("base_model.model.model.layers.0.attn.c_attn.lora_A.weight");
  Param* cb = m.params().find("base_model.model.model.layers.0.attn.c_attn.lora_B.weight");
  CHECK(qa && qb && ca && cb);
  // A (r, in), B (out, r) whatever the layout: q_proj (20,12) OutIn, c_attn (20,12) InOut = 20 -> 12.
  CHECK(qa->value.shape[0] == 4 && qa->value.shape[1] == FakeModel::C);
  CHECK(qb->value.shape[0] == FakeModel::H && qb->value.shape[1] == 4);
  CHECK(ca->value.shape[0] == 4 && ca->value.shape[1] == FakeModel::H);
  CHECK(cb->value.shape[0] == FakeModel::C && cb->value.shape[1] == 4);
  CHECK(a.config.fan_in_fan_out);  // a Conv1D layer is targeted
  std::vector<Param*> trainable = m.params().trainable();
  CHECK(trainable.size() == 4);
  for (Param* p : trainable) CHECK(p == qa || p == qb || p == ca || p == cb);
  CHECK(m.params().get("lm_head.weight").grad.data == nullptr);
  CHECK(a.layers[0].lora->scaling == 4.0f);  // 16 / 4

  std::string code;
  error_of([&] { apply_lora(m, config_for({"q_proj"}), 1); }, &code);
  CHECK(code == code::kConfig);  // one adapter per layer
}

TEST(lora_step_zero_is_the_base_model_bit_for_bit) {
  Data d;
  FakeModel base(3);
  float base_loss = 0, lora_loss = 0;
  const std::vector<float> want = logits_of(base, d, &base_loss);
  FakeModel m(3);
  LoraAdapter a = apply_lora(m, config_for({"q_proj", "c_attn", "xq_proj"}), 7);
  const std::vector<float> got = logits_of(m, d, &lora_loss);
  CHECK(std::memcmp(got.data(), want.data(), sizeof(float) * want.size()) == 0);
  CHECK(base_loss == lora_loss);
  // B is zero and A is not.
  double a_abs = 0;
  for (const LoraLayer& l : a.layers) {
    for (int64_t i = 0; i < l.lora->B->value.numel(); ++i) CHECK(l.lora->B->value.f32()[i] == 0.0f);
    for (int64_t i = 0; i < l.lora->A->value.numel(); ++i) a_abs += std::fabs(l.lora->A->value.f32()[i]);
  }
  CHECK(a_abs > 0);
}

TEST(lora_a_init_is_kaiming_uniform_and_seeded) {
  // fan_in 400: bound = 1/sqrt(400) = 0.05 (torch kaiming_uniform_ with a = sqrt(5)).
  const int64_t in = 400, out = 64, r = 64;
  struct Big : public Model {
    nn::LinearWeights w;
    Big() : Model(FakeModel::make_config()) {
      w = {&params_.create("proj.weight", {out, in}), nullptr, WeightLayout::OutIn, nullptr};
    }
    ForwardResult forward(Graph&, const Batch&, LossReduction) override { return {}; }
    std::vector<LinearModule> linear_modules() override { return {{"proj", &w}}; }
    std::vector<std::pair<std::string, std::string>> tied_aliases() const override { return {}; }
  };
  Big m1, m2, m3;
  LoraAdapter a1 = apply_lora(m1, config_for({"proj"}, r), 123);
  LoraAdapter a2 = apply_lora(m2, config_for({"proj"}, r), 123);
  LoraAdapter a3 = apply_lora(m3, config_for({"proj"}, r), 124);
  const Tensor& A = a1.layers[0].lora->A->value;
  const double bound = 1.0 / std::sqrt(double(in));
  double max_abs = 0, sum = 0, sum_sq = 0;
  for (int64_t i = 0; i < A.numel(); ++i) {
    const double v = A.f32()[i];
    max_abs = std::fmax(max_abs, std::fabs(v));
    sum += v;
    sum_sq += v * v;
  }
  const double n = double(A.numel());
  const double mean = sum / n, var = sum_sq / n - mean * mean;
  std::printf("    A: max |a| %.5f (bound %.5f), mean %.2e, var %.3e (U(-b,b): %.3e)\n", max_abs,
              bound, mean, var, bound * bound / 3);
  CHECK(max_abs <= bound && max_abs > 0.999 * bound);
  CHECK(std::fabs(mean) < 0.01 * bound);
  CHECK(std::fabs(var / (bound * bound / 3) - 1) < 0.02);
  CHECK(same_bits(A, a2.layers[0].lora->A->value));
  CHECK(!same_bits(A, a3.layers[0].lora->A->value));
}

TEST(lora_scaling_plain_rslora_and_rank_pattern) {
  FakeModel m1(5), m2(5), m3(5);
  LoraConfig c = config_for({"q_proj", "c_attn"}, 16, 32);
  LoraAdapter plain = apply_lora(m1, c, 1);
  CHECK(plain.layers[0].lora->scaling == 2.0f);  // alpha / r
  c.use_rslora = true;
  LoraAdapter rs = apply_lora(m2, c, 1);
  CHECK(rs.layers[0].lora->scaling == 8.0f);  // alpha / sqrt(r) = 32 / 4
  c.use_rslora = false;
  c.rank_pattern = {{"c_attn", 2}};
  c.alpha_pattern = {{"layers.0.self_attn.q_proj", 4.0}};
  LoraAdapter pat = apply_lora(m3, c, 1);
  CHECK(pat.layers[0].r == 16 && pat.layers[0].lora->scaling == 0.25f);  // 4 / 16
  CHECK(pat.layers[1].r == 2 && pat.layers[1].lora->scaling == 16.0f);   // 32 / 2
  CHECK(pat.layers[1].lora->A->value.shape[0] == 2);
}

// ---- merge -------------------------------------------------------------------------------------

TEST(lora_merged_model_matches_the_adapted_model) {
  Data d;
  for (int variant = 0; variant < 3; ++variant) {
    // 0: OutIn only, 1: InOut only (GPT-2 Conv1D), 2: both + rsLoRA
    std::vector<std::string> targets = variant == 0   ? std::vector<std::string>{"q_proj", "xq_proj"}
                                       : variant == 1 ? std::vector<std::string>{"c_attn"}
                                                      : std::vector<std::string>{"q_proj", "c_attn", "lm_head"};
    FakeModel m(6);
    LoraConfig c = config_for(targets, 3, 5);
    c.use_rslora = variant == 2;
    LoraAdapter a = apply_lora(m, c, 9);
    perturb(m, a, 100);
    const std::vector<float> adapted = logits_of(m, d);
    merge_lora(m, a);
    for (const LinearModule& mod : m.linear_modules()) CHECK(mod.weights->lora == nullptr);
    CHECK(m.params().trainable().empty());
    const std::vector<float> merged = logits_of(m, d);
    const double err = s2s_test::max_abs_error(merged.data(), adapted.data(), merged.size());
    std::printf("    merged vs adapted logits (variant %d): max abs error %.2e\n", variant, err);
    CHECK_ERR(err, 1e-5, "merged logits");
  }
}

TEST(lora_merge_converts_a_bf16_base_to_owned_fp32) {
  FakeModel m(7);
  Param& w = m.params().get("model.layers.0.attn.c_attn.weight");
  std::vector<uint16_t> bf16(size_t(w.value.numel()));
  for (size_t i = 0; i < bf16.size(); ++i) bf16[i] = f32_to_bf16(w.value.f32()[i]);
  m.params().bind(w, Tensor::contiguous(bf16.data(), DType::BF16, w.value.ndim, w.value.shape));
  LoraAdapter a = apply_lora(m, config_for({"c_attn"}), 1);
  perturb(m, a, 5);
  std::vector<float> want(bf16.size());
  for (size_t i = 0; i < bf16.size(); ++i) want[i] = bf16_to_f32(bf16[i]);
  Tensor W = Tensor::contiguous(want.data(), DType::F32, w.value.ndim, w.value.shape);
  lora_merge_reference(W, a.layers[0].lora->A->value, a.layers[0].lora->B->value,
                       a.layers[0].lora->scaling, WeightLayout::InOut);
  merge_lora(m, a);
  CHECK(w.value.dtype == DType::F32 && w.owned_value && !w.trainable);
  CHECK(w.value.data != static_cast<void*>(bf16.data()));
  CHECK_ERR(s2s_test::max_normalized_error(w.value.f32(), want.data(), want.size()), 1e-6,
            "bf16 base merged");
}

// ParamStore::memory_use: every role's bytes, and a bound (memory-mapped) base apart.
TEST(param_memory_use_counts_each_role) {
  FakeModel m(7);
  ParamStore& ps = m.params();
  const int64_t all = ps.count_elements(false);
  ParamStore::MemoryUse u = ps.memory_use();
  CHECK(u.values == 4 * all && u.mapped_values == 0 && u.moments == 0 && u.compute == 0);
  Param& w = ps.get("model.layers.0.attn.c_attn.weight");
  const int64_t wn = w.value.numel();
  std::vector<uint16_t> bf16(size_t(wn), 0);
  ps.bind(w, Tensor::contiguous(bf16.data(), DType::BF16, w.value.ndim, w.value.shape));
  LoraAdapter a = apply_lora(m, config_for({"c_attn"}), 1);
  const int64_t trainable = ps.count_elements(true);
  const int64_t adapters = ps.count_elements(false) - all;
  CHECK(adapters > 0 && trainable == adapters);
  u = ps.memory_use();
  CHECK(u.values == 4 * (all - wn + adapters));
  CHECK(u.mapped_values == 2 * wn);
  CHECK(u.grads == 4 * trainable);
  CHECK(u.moments == 0);
  m.set_compute_dtype(ComputeDType::BF16);
  u = ps.memory_use();
  CHECK(u.compute > 0 && u.compute == ps.compute_bytes());
  OptimizerConfig oc;
  optimizer_step(ps, oc, 1, 1e-3, 1.0f);
  CHECK(ps.memory_use().moments == 8 * trainable);
}

// ---- adapter files ----------------------------------------------------------------------------

TEST(lora_adapter_save_load_round_trip_is_bitwise) {
  TmpDir tmp;
  Data d;
  FakeModel m(8);
  LoraConfig c = config_for({"q_proj", "c_attn"}, 4, 16);
  c.lora_dropout = 0.05;
  c.base_model_name_or_path = "tiny/fake";
  LoraAdapter a = apply_lora(m, c, 3);
  perturb(m, a, 11);
  const std::vector<float> want = logits_of(m, d);
  const std::string dir = tmp.file("adapter");
  save_adapter(dir, m, a, c);
  CHECK(tmp.listing() == std::vector<std::string>{"adapter"});  // no temporary folder left
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir)) files.push_back(e.path().filename().string());
  std::sort(files.begin(), files.end());
  CHECK((files == std::vector<std::string>{"adapter_config.json", "adapter_model.safetensors"}));

  auto st = SafetensorsFile::open(dir + "/adapter_model.safetensors");
  CHECK(st->tensors().size() == 4);
  CHECK(st->metadata().at("format") == "pt");
  const SafetensorsTensor* t = st->find("base_model.model.model.layers.0.attn.c_attn.lora_B.weight");
  CHECK(t && t->dtype == "F32" && t->shape == (std::vector<int64_t>{FakeModel::C, 4}));

  FakeModel m2(8);
  LoraAdapter b = load_adapter(dir, m2);
  CHECK(b.layers.size() == 2);
  for (size_t i = 0; i < a.layers.size(); ++i) {
    CHECK(same_bits(a.layers[i].lora->A->value, b.layers[i].lora->A->value));
    CHECK(same_bits(a.layers[i].lora->B->value, b.layers[i].lora->B->value));
    CHECK(a.layers[i].lora->scaling == b.layers[i].lora->scaling);
    CHECK(b.layers[i].lora->dropout == 0.05f);
  }
  CHECK(m2.params().trainable().size() == 4);
  const std::vector<float> got = logits_of(m2, d);
  CHECK(std::memcmp(got.data(), want.data(), sizeof(float) * want.size()) == 0);

  // Saving over an existing folder replaces the files in place (others stay).
  std::ofstream(dir + "/optimizer.safetensors") << "x";
  perturb(m, a, 99);
  save_adapter(dir, m, a, c);
  FakeModel m3(8);
  LoraAdapter e = load_adapter(dir, m3);
  CHECK(same_bits(a.layers[1].lora->B->value, e.layers[1].lora->B->value));
  CHECK(fs::exists(dir + "/optimizer.safetensors"));
  size_t n = 0;
  for (const auto& ent : fs::directory_iterator(dir)) (void)ent, ++n;
  CHECK(n == 3);
}

TEST(lora_load_accepts_peft_adapter_names_and_names_bad_tensors) {
  TmpDir tmp;
  const std::string dir = tmp.file("peft");
  fs::create_directories(dir);
  // What PEFT writes (keys sorted, indent 2), with a named-adapter key form in the file.
  std::ofstream(dir + "/adapter_config.json") << R"({
  "alpha_pattern": {},
  "auto_mapping": null,
  "base_model_name_or_path": "fake",
  "bias": "none",
  "eva_config": null,
  "exclude_modules": null,
  "fan_in_fan_out": false,
  "inference_mode": true,
  "init_lora_weights": true,
  "layer_replication": null,
  "layers_pattern": null,
  "layers_to_transform": null,
  "loftq_config": {},
  "lora_alpha": 16,
  "lora_bias": false,
  "lora_dropout": 0.1,
  "megatron_config": null,
  "megatron_core": "megatron.core",
  "modules_to_save": null,
  "peft_type": "LORA",
  "r": 2,
  "rank_pattern": {},
  "revision": null,
  "target_modules": [
    "not_in_this_model",
    "q_proj"
  ],
  "task_type": "CAUSAL_LM",
  "use_dora": false,
  "use_rslora": false
})";
  std::vector<float> A(2 * FakeModel::C, 0.25f), B(FakeModel::H * 2, -0.5f);
  write_safetensors(dir + "/adapter_model.safetensors",
                    {{"base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight", "F32",
                      {2, FakeModel::C}, A.data(), A.size() * 4},
                     {"base_model.model.model.layers.0.self_attn.q_proj.lora_B.default.weight", "F32",
                      {FakeModel::H, 2}, B.data(), B.size() * 4}},
                    {{"format", "pt"}});
  FakeModel m(9);
  LoraAdapter a = load_adapter(dir, m);
  CHECK(a.layers.size() == 1 && a.layers[0].lora->scaling == 8.0f);
  CHECK(a.layers[0].lora->A->value.f32()[5] == 0.25f && a.layers[0].lora->B->value.f32()[7] == -0.5f);
  detach_lora(m, a);

  // Wrong shape: the error names the tensor and both shapes.
  write_safetensors(dir + "/adapter_model.safetensors",
                    {{"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", "F32",
                      {2, FakeModel::C}, A.data(), A.size() * 4},
                     {"base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", "F32",
                      {2, FakeModel::H}, B.data(), B.size() * 4}},
                    {{"format", "pt"}});
  FakeModel m2(9);
  std::string code;
  std::string msg = error_of([&] { load_adapter(dir, m2); }, &code);
  CHECK(code == code::kShape);
  CHECK_MSG(contains(msg, "q_proj.lora_B.weight") && contains(msg, "(20, 2)") && contains(msg, "(2, 20)"),
            "shape error: " + msg);
  for (const LinearModule& mod : m2.linear_modules()) CHECK(mod.weights->lora == nullptr);  // rolled back

  // Missing tensor.
  write_safetensors(dir + "/adapter_model.safetensors",
                    {{"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", "F32",
                      {2, FakeModel::C}, A.data(), A.size() * 4}},
                    {{"format", "pt"}});
  FakeModel m3(9);
  msg = error_of([&] { load_adapter(dir, m3); }, &code);
  CHECK(code == code::kConfig && contains(msg, "q_proj.lora_B.weight"));
}

TEST(lora_adapter_config_round_trip_and_errors) {
  LoraConfig c;
  c.task_type = "SEQ_2_SEQ_LM";
  c.r = 12;
  c.lora_alpha = 24.5;
  c.lora_dropout = 0.05;
  c.target_modules = {"q", "v"};
  c.exclude_modules_is_regex = true;
  c.exclude_modules_regex = R"(.*decoder.*)";
  c.rank_pattern = {{"v", 4}};
  c.alpha_pattern = {{"q", 3}};
  c.fan_in_fan_out = true;
  c.use_rslora = true;
  c.base_model_name_or_path = "google/flan-t5-small";
  c.inference_mode = true;
  const std::string text = lora_config_to_json(c);
  LoraConfig p = parse_lora_config(text, "x/adapter_config.json");
  CHECK(p.task_type == c.task_type && p.r == 12 && p.lora_alpha == 24.5 && p.lora_dropout == 0.05);
  CHECK(p.target_modules == c.target_modules && !p.target_modules_is_regex);
  CHECK(p.exclude_modules_is_regex && p.exclude_modules_regex == c.exclude_modules_regex);
  CHECK(p.rank_pattern == c.rank_pattern && p.alpha_pattern == c.alpha_pattern);
  CHECK(p.fan_in_fan_out && p.use_rslora && p.inference_mode && p.bias == "none");
  CHECK(p.base_model_name_or_path == c.base_model_name_or_path && p.peft_version == "0.18.0");
  CHECK(p.init_lora_weights == "true" && p.modules_to_save.empty() && p.revision.empty());
  CHECK(lora_config_to_json(p) == text);  // stable
  CHECK(contains(text, "\"lora_dropout\": 0.05,\n") && contains(text, "\"r\": 12,\n"));
  CHECK(contains(text, "\"target_modules\": [\n    \"q\",\n    \"v\"\n  ],"));
  CHECK(contains(text, "\"modules_to_save\": null") && contains(text, "\"peft_type\": \"LORA\""));
  CHECK(text.rfind("{\n  \"alpha_pattern\": {\n    \"q\": 3\n  },\n", 0) == 0);

  const auto err = [](const std::string& json, std::string* code) {
    return error_of([&] { parse_lora_config(json, "dir/adapter_config.json"); }, code);
  };
  std::string code;
  std::string msg = err(R"({"r": "8"})", &code);
  CHECK(code == code::kConfig && contains(msg, "dir/adapter_config.json") && contains(msg, "'r'"));
  msg = err(R"({"r": 8, "modules_to_save": ["lm_head"]})", &code);
  CHECK(code == code::kConfig && contains(msg, "modules_to_save"));
  msg = err(R"({"use_dora": true})", &code);
  CHECK(code == code::kConfig && contains(msg, "use_dora"));
  msg = err(R"({"peft_type": "IA3"})", &code);
  CHECK(code == code::kConfig && contains(msg, "peft_type"));
  msg = err(R"({"r": 8,})", &code);
  CHECK(code == code::kConfig && contains(msg, "not valid JSON"));
  // Unknown keys (a newer PEFT) are ignored; a regex target survives.
  LoraConfig q = parse_lora_config(R"({"target_modules": ".*q_proj", "some_new_field": 1})", "f");
  CHECK(q.target_modules_is_regex && q.target_modules_regex == ".*q_proj");
}

// ---- training and the merged export -----------------------------------------------------------

TEST(lora_training_step_moves_only_the_adapter) {
  Data d;
  FakeModel m(10);
  const std::vector<float> head(m.params().get("lm_head.weight").value.f32(),
                                m.params().get("lm_head.weight").value.f32() + FakeModel::V * FakeModel::C);
  LoraAdapter a = apply_lora(m, config_for({"q_proj", "c_attn"}), 1);
  float loss0 = 0, loss = 0;
  OptimizerConfig oc;
  oc.adamw.weight_decay = 0.0f;
  for (int step = 1; step <= 5; ++step) {
    Graph g;
    ForwardResult r = m.forward(g, d.batch(), LossReduction::Mean);
    if (step == 1) loss0 = r.loss->value.f32()[0];
    g.backward(r.loss);
    optimizer_step(m.params(), oc, step, 1e-2, 1.0f);
  }
  logits_of(m, d, &loss);
  std::printf("    loss %.5f -> %.5f after 5 LoRA steps\n", loss0, loss);
  CHECK(loss < loss0);
  CHECK(std::memcmp(head.data(), m.params().get("lm_head.weight").value.f32(), head.size() * 4) == 0);
}

TEST(lora_save_model_exports_hf_names_without_adapters) {
  TmpDir tmp;
  Data d;
  FakeModel m(11);
  LoraAdapter a = apply_lora(m, config_for({"q_proj", "c_attn"}), 1);
  perturb(m, a, 3);
  std::string code;
  error_of([&] { save_model(tmp.file("early"), m, "{}"); }, &code);
  CHECK(code == code::kArgument);  // adapters still attached
  CHECK(!fs::exists(tmp.file("early")));
  merge_lora(m, a);
  const std::vector<float> want = logits_of(m, d);
  const std::string dir = tmp.file("merged");
  const std::string config = "{\n  \"model_type\": \"llama\"\n}\n";
  save_model(dir, m, config);
  CHECK(read_text(dir + "/config.json") == config);
  auto st = SafetensorsFile::open(dir + "/model.safetensors");
  CHECK(st->metadata().at("format") == "pt");
  CHECK(st->tensors().size() == 7);
  for (const SafetensorsTensor& t : st->tensors()) CHECK_MSG(!contains(t.name, "lora"), t.name);
  // A fresh model loaded from the export computes the merged model's logits exactly.
  FakeModel fresh(99);
  for (Param* p : fresh.params().all()) fresh.params().load(*p, st->view(p->name));
  const std::vector<float> got = logits_of(fresh, d);
  CHECK(std::memcmp(got.data(), want.data(), sizeof(float) * want.size()) == 0);
  CHECK(tmp.listing().size() == 1);
}
