// save_optimizer_state / load_optimizer_state: the AdamW moments of the trainable params as one
// safetensors file, so a resumed run takes the very same steps as one never stopped.
#include "s2s/train/optimizer_state.h"

#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include "s2s/error.h"
#include "s2s/io/safetensors.h"
#include "s2s/train/optimizer.h"

namespace s2s {

namespace {

constexpr const char* kFormat = "s2s-train/adamw";
const char* const kMomentSuffixes[] = {".exp_avg", ".exp_avg_sq"};

std::vector<int64_t> shape_of(const Tensor& t) { return std::vector<int64_t>(t.shape, t.shape + t.ndim); }

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + ")";
}

}  // namespace

void save_optimizer_state(const std::string& path, ParamStore& params, int64_t step) {
  S2S_REQUIRE(step >= 0, code::kArgument, "save_optimizer_state", "expected step >= 0, got ", step);
  std::vector<SafetensorsWriteEntry> entries;
  std::vector<std::unique_ptr<float[]>> zeros;  // for params not stepped yet
  std::deque<std::vector<uint8_t>> host;        // moments downloaded from a device backend
  for (Param* p : params.trainable()) {
    const size_t n = static_cast<size_t>(p->value.numel());
    const float* m = nullptr;
    const float* v = nullptr;
    if (p->owned_moments) {
      host.emplace_back();
      m = host_tensor(params.backend(), p->exp_avg, host.back()).f32();
      host.emplace_back();
      v = host_tensor(params.backend(), p->exp_avg_sq, host.back()).f32();
    } else {
      zeros.emplace_back(new float[n]());
      m = v = zeros.back().get();
    }
    entries.push_back({p->name + kMomentSuffixes[0], "F32", shape_of(p->value), m, n * sizeof(float)});
    entries.push_back({p->name + kMomentSuffixes[1], "F32", shape_of(p->value), v, n * sizeof(float)});
  }
  write_safetensors(path, entries, {{"format", kFormat}, {"step", std::to_string(step)}});
}

int64_t load_optimizer_state(const std::string& path, ParamStore& params) {
  const char* op = "load_optimizer_state";
  std::shared_ptr<SafetensorsFile> file = SafetensorsFile::open(path);
  const auto& meta = file->metadata();
  auto format = meta.find("format");
  S2S_REQUIRE(format != meta.end() && format->second == kFormat, code::kFormat, op, path,
              ": expected metadata format '", kFormat, "', got '",
              format == meta.end() ? std::string("(none)") : format->second, "'");
  auto step_text = meta.find("step");
  S2S_REQUIRE(step_text != meta.end(), code::kFormat, op, path, ": expected metadata 'step'");
  int64_t step = -1;
  try {
    size_t used = 0;
    step = std::stoll(step_text->second, &used);
    if (used != step_text->second.size()) step = -1;
  } catch (const std::exception&) {
    step = -1;
  }
  S2S_REQUIRE(step >= 0, code::kFormat, op, path, ": expected metadata 'step' to be an integer >= 0, got '",
              step_text->second, "'");

  // Check everything before changing anything.
  std::vector<Param*> trainable = params.trainable();
  std::set<std::string> expected;
  for (Param* p : trainable) {
    for (const char* suffix : kMomentSuffixes) {
      const std::string name = p->name + suffix;
      expected.insert(name);
      const SafetensorsTensor* t = file->find(name);
      S2S_REQUIRE(t != nullptr, code::kFormat, op, path, ": tensor '", name,
                  "' is missing (the file must hold both moments of every trainable parameter; "
                  "was it saved with a different LoRA or full fine-tuning setup?)");
      S2S_REQUIRE(t->dtype == "F32", code::kDType, op, path, ": expected tensor '", name,
                  "' to be F32, got ", t->dtype);
      S2S_REQUIRE(t->shape == shape_of(p->value), code::kShape, op, path, ": expected tensor '",
                  name, "' to have the shape of parameter '", p->name, "' ",
                  p->value.shape_string(), ", got ", shape_text(t->shape));
    }
  }
  for (const SafetensorsTensor& t : file->tensors()) {
    S2S_REQUIRE(expected.count(t.name) == 1, code::kFormat, op, path, ": unexpected tensor '",
                t.name, "' (no trainable parameter of that name)");
  }

  for (Param* p : trainable) {
    params.ensure_moments(*p);
    const size_t bytes = sizeof(float) * static_cast<size_t>(p->value.numel());
    Backend& backend = params.backend();
    backend.upload(p->exp_avg.f32(), file->find(p->name + kMomentSuffixes[0])->data, bytes);
    backend.upload(p->exp_avg_sq.f32(), file->find(p->name + kMomentSuffixes[1])->data, bytes);
  }
  return step;
}

}  // namespace s2s
