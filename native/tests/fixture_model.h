// Loading a fixture model folder (test/fixtures/models/<name>) and attaching the LoRA adapters
// its fixture.safetensors was made with (lora.init.<PEFT name>), for the model tests.
#pragma once
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "fixture_files.h"
#include "harness.h"
#include "s2s/io/safetensors.h"
#include "s2s/models/model.h"
#include "s2s/models/weights.h"
#include "s2s/nn/functional.h"

namespace s2s_test {

// A fixture's fixture.safetensors and the batch its tensors hold (input_ids, attention_mask,
// labels; T5's decoder_input_ids when present), viewed in place.
struct FixtureBatch {
  std::shared_ptr<s2s::SafetensorsFile> file;
  s2s::Batch batch;
  explicit FixtureBatch(const std::string& dir) {
    file = s2s::SafetensorsFile::open(dir + "/fixture.safetensors");
    const s2s::SafetensorsTensor* ids = file->find("input_ids");
    batch.B = ids->shape[0];
    batch.T = ids->shape[1];
    batch.input_ids = i32("input_ids");
    batch.attention_mask = i32("attention_mask");
    batch.labels = i32("labels");
    if (const s2s::SafetensorsTensor* d = file->find("decoder_input_ids")) {
      batch.Td = d->shape[1];
      batch.decoder_input_ids = i32("decoder_input_ids");
    }
  }
  const int32_t* i32(const char* name) const {
    const s2s::SafetensorsTensor* t = file->find(name);
    CHECK_MSG(t != nullptr && t->dtype == "I32", std::string("fixture tensor ") + name);
    return t != nullptr ? static_cast<const int32_t*>(t->data) : nullptr;
  }
};

inline std::unique_ptr<s2s::Model> load_fixture_model(const std::string& dir,
                                                      const s2s::LoadOptions& options = {}) {
  std::unique_ptr<s2s::Model> m = s2s::create_model(
      s2s::parse_model_config(read_text(dir + "/config.json"), dir + "/config.json"));
  s2s::load_weights(*m, s2s::open_weight_files(dir), options);
  return m;
}

// `name`'s fixture model with config.json keys set to other values (each key must be there; the
// value is JSON text, e.g. {"resid_pdrop", "0.1"}), weights loaded, every param frozen.
inline std::unique_ptr<s2s::Model> fixture_model_with_config(
    const std::string& name, const std::vector<std::pair<std::string, std::string>>& set) {
  const std::string dir = fixture_dir(name);
  std::string text = read_text(dir + "/config.json");
  for (const auto& [key, value] : set) {
    const std::string quoted = "\"" + key + "\": ";
    const size_t at = text.find(quoted);
    CHECK_MSG(at != std::string::npos, name + " config.json has no " + key);
    if (at == std::string::npos) continue;
    const size_t end = text.find_first_of(",\n}", at + quoted.size());
    text.replace(at + quoted.size(), end - at - quoted.size(), value);
  }
  std::unique_ptr<s2s::Model> m =
      s2s::create_model(s2s::parse_model_config(text, dir + "/config.json"));
  s2s::load_weights(*m, s2s::open_weight_files(dir), {});
  return m;
}

// The fixture's adapters on every linear module whose last path segment is a target, with
// scaling 2 and no dropout (as the fixture script's Lora). The model keeps pointers into
// `loras`, so the struct must outlive its use.
struct FixtureLora {
  std::deque<s2s::nn::Lora> loras;
  std::vector<s2s::Param*> adapters;  // A, B of each module, in module order
  std::vector<s2s::Param*> bases;     // the base weight of each module
};

inline void attach_fixture_lora(s2s::Model& m, const s2s::SafetensorsFile& fixture,
                                const std::vector<std::string>& targets, FixtureLora& out) {
  for (const s2s::LinearModule& mod : m.linear_modules()) {
    const std::string leaf = mod.path.substr(mod.path.find_last_of('.') + 1);
    bool hit = false;
    for (const std::string& t : targets) hit = hit || leaf == t;
    if (!hit) continue;
    const std::string base = "base_model.model." + mod.path;
    const s2s::Tensor a = fixture.view("lora.init." + base + ".lora_A.weight");
    const s2s::Tensor b = fixture.view("lora.init." + base + ".lora_B.weight");
    s2s::Param& pa = m.params().create(base + ".lora_A.weight", {a.shape[0], a.shape[1]});
    s2s::Param& pb = m.params().create(base + ".lora_B.weight", {b.shape[0], b.shape[1]});
    m.params().load(pa, a);
    m.params().load(pb, b);
    out.loras.push_back(s2s::nn::Lora{&pa, &pb, 2.0f, 0.0f});
    mod.weights->lora = &out.loras.back();
    out.adapters.push_back(&pa);
    out.adapters.push_back(&pb);
    out.bases.push_back(mod.weights->weight);
  }
  CHECK_MSG(!out.adapters.empty(), "no LoRA target matched");
}

}  // namespace s2s_test
