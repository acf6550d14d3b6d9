// The optimizer's state on disk (save_optimizer_state / load_optimizer_state): a store stepped,
// saved, loaded into a fresh copy and stepped again takes the same bits as one never stopped;
// params not stepped yet save zeros; every malformed file is refused without changing anything.
#include <cstring>
#include <vector>

#include "harness.h"
#include "s2s/io/safetensors.h"
#include "s2s/train/optimizer.h"
#include "s2s/train/optimizer_state.h"
#include "tmp_dir.h"

using namespace s2s;

namespace {

// Two trainable params and one frozen one, filled from `seed`.
struct Store {
  ParamStore params;
  Param *w, *b, *frozen;
  explicit Store(uint64_t seed) {
    w = &params.create("layer.weight", {3, 4});
    b = &params.create("layer.bias", {3}, false);
    frozen = &params.create("embed.weight", {5, 4});
    uint64_t s = seed;
    for (Param* p : params.all()) {
      auto v = s2s_test::random_vector(p->value.numel(), ++s);
      params.load(*p, Tensor::contiguous(v.data(), DType::F32, p->value.ndim, p->value.shape));
    }
    params.set_trainable(*w, true);
    params.set_trainable(*b, true);
  }
  // Fills the gradients as a backward pass would (deterministic in `step`).
  void fake_backward(int64_t step) {
    uint64_t s = 1000 + static_cast<uint64_t>(step) * 7;
    for (Param* p : params.trainable()) {
      auto g = s2s_test::random_vector(p->grad.numel(), ++s);
      std::memcpy(p->grad.f32(), g.data(), sizeof(float) * g.size());
    }
  }
  void train(int64_t from, int64_t to) {
    OptimizerConfig oc;
    oc.adamw.weight_decay = 0.01;
    for (int64_t step = from; step <= to; ++step) {
      fake_backward(step);
      optimizer_step(params, oc, step, 1e-2, 1.0f);
    }
  }
  std::vector<float> values() {
    std::vector<float> out;
    for (Param* p : params.trainable()) out.insert(out.end(), p->value.f32(), p->value.f32() + p->value.numel());
    return out;
  }
};

}  // namespace

TEST(optimizer_state_round_trip_resumes_bit_identically) {
  s2s_test::TmpDir tmp;
  Store straight(1);
  straight.train(1, 6);

  Store first(1);
  first.train(1, 3);
  save_optimizer_state(tmp.file("optimizer.safetensors"), first.params, 3);
  // A fresh store with the weights at step 3 (as the checkpoint's weights file would give).
  Store resumed(99);
  for (Param* p : first.params.trainable()) {
    resumed.params.load(resumed.params.get(p->name), p->value);
  }
  CHECK(load_optimizer_state(tmp.file("optimizer.safetensors"), resumed.params) == 3);
  resumed.train(4, 6);
  const auto a = straight.values(), b = resumed.values();
  CHECK(a.size() == b.size() && std::memcmp(a.data(), b.data(), sizeof(float) * a.size()) == 0);
  CHECK(tmp.listing().size() == 1);  // no temporary file left behind
}

TEST(optimizer_state_of_params_not_stepped_is_zero) {
  s2s_test::TmpDir tmp;
  Store s(2);
  save_optimizer_state(tmp.file("o.safetensors"), s.params, 0);
  auto file = SafetensorsFile::open(tmp.file("o.safetensors"));
  CHECK(file->tensors().size() == 4);  // two moments of each trainable param, none of the frozen
  CHECK(file->find("embed.weight.exp_avg") == nullptr);
  const SafetensorsTensor* m = file->find("layer.weight.exp_avg_sq");
  CHECK(m != nullptr && m->dtype == "F32" && m->shape == std::vector<int64_t>({3, 4}));
  bool zero = true;
  for (int i = 0; i < 12; ++i) zero = zero && static_cast<const float*>(m->data)[i] == 0.0f;
  CHECK(zero);
  CHECK(file->metadata().at("step") == "0");
}

TEST(optimizer_state_refuses_files_that_do_not_match) {
  s2s_test::TmpDir tmp;
  Store s(3);
  s.train(1, 2);
  const std::vector<float> before = [&] {
    std::vector<float> m(s.w->exp_avg.f32(), s.w->exp_avg.f32() + 12);
    return m;
  }();
  std::vector<float> twelve(12, 1.0f), three(3, 1.0f), four(4, 1.0f);
  auto entry = [](const char* name, std::vector<int64_t> shape, const std::vector<float>& v) {
    return SafetensorsWriteEntry{name, "F32", std::move(shape), v.data(), v.size() * sizeof(float)};
  };
  const std::map<std::string, std::string> meta = {{"format", "s2s-train/adamw"}, {"step", "2"}};
  // A moment missing.
  write_safetensors(tmp.file("missing.safetensors"),
                    {entry("layer.weight.exp_avg", {3, 4}, twelve), entry("layer.weight.exp_avg_sq", {3, 4}, twelve),
                     entry("layer.bias.exp_avg", {3}, three)}, meta);
  CHECK_THROWS_CODE(load_optimizer_state(tmp.file("missing.safetensors"), s.params), code::kFormat);
  // A wrong shape.
  write_safetensors(tmp.file("shape.safetensors"),
                    {entry("layer.weight.exp_avg", {3, 4}, twelve), entry("layer.weight.exp_avg_sq", {3, 4}, twelve),
                     entry("layer.bias.exp_avg", {4}, four), entry("layer.bias.exp_avg_sq", {3}, three)}, meta);
  CHECK_THROWS_CODE(load_optimizer_state(tmp.file("shape.safetensors"), s.params), code::kShape);
  // A tensor for a param that is not trainable.
  write_safetensors(tmp.file("extra.safetensors"),
                    {entry("layer.weight.exp_avg", {3, 4}, twelve), entry("layer.weight.exp_avg_sq", {3, 4}, twelve),
                     entry("layer.bias.exp_avg", {3}, three), entry("layer.bias.exp_avg_sq", {3}, three),
                     entry("embed.weight.exp_avg", {3}, three)}, meta);
  CHECK_THROWS_CODE(load_optimizer_state(tmp.file("extra.safetensors"), s.params), code::kFormat);
  // No step, or not ours.
  write_safetensors(tmp.file("nostep.safetensors"), {entry("layer.weight.exp_avg", {3, 4}, twelve)},
                    {{"format", "s2s-train/adamw"}});
  CHECK_THROWS_CODE(load_optimizer_state(tmp.file("nostep.safetensors"), s.params), code::kFormat);
  write_safetensors(tmp.file("other.safetensors"), {entry("layer.weight.exp_avg", {3, 4}, twelve)},
                    {{"format", "pt"}, {"step", "2"}});
  CHECK_THROWS_CODE(load_optimizer_state(tmp.file("other.safetensors"), s.params), code::kFormat);
  CHECK_THROWS_CODE(load_optimizer_state(tmp.file("absent.safetensors"), s.params), code::kIO);
  // Nothing changed.
  CHECK(std::memcmp(before.data(), s.w->exp_avg.f32(), sizeof(float) * 12) == 0);
}
