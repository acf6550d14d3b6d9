// load_weights and open_weight_files: Hugging Face safetensors checkpoints into a ParamStore.
#include "s2s/models/weights.h"

#include <fstream>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "io/json.h"

namespace s2s {

namespace {

// "[weights] <where>: " names the single file, or the folder of the shards.
std::string where_of(const std::vector<std::shared_ptr<SafetensorsFile>>& files) {
  if (files.empty()) return "(no files)";
  if (files.size() == 1) return files[0]->path();
  const std::string& p = files[0]->path();
  const size_t slash = p.find_last_of("/\\");
  return slash == std::string::npos ? std::string(".") : p.substr(0, slash);
}

std::string file_list(const std::vector<std::shared_ptr<SafetensorsFile>>& files) {
  std::string out;
  for (const auto& f : files) {
    if (!out.empty()) out += ", ";
    const size_t slash = f->path().find_last_of("/\\");
    out += slash == std::string::npos ? f->path() : f->path().substr(slash + 1);
  }
  return out;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::ostringstream os;
  os << "(";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << (shape.size() == 1 ? ",)" : ")");
  return os.str();
}

bool ends_with(const std::string& s, const char* suffix) {
  const std::string x(suffix);
  return s.size() >= x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0;
}

// Token / position tables by their HF names (the embedding layer accepts f32, bf16 and f16).
bool is_embedding_name(const std::string& name) {
  return ends_with(name, "wte.weight") || ends_with(name, "wpe.weight") ||
         ends_with(name, "embed_tokens.weight") || name == "shared.weight";
}

struct Located {
  const SafetensorsFile* file = nullptr;
  const SafetensorsTensor* tensor = nullptr;
};

}  // namespace

LoadReport load_weights(Model& model, const std::vector<std::shared_ptr<SafetensorsFile>>& files,
                        const LoadOptions& options) {
  const std::string where = where_of(files);
  std::unordered_map<std::string, Located> by_name;
  for (const auto& f : files) {
    for (const SafetensorsTensor& t : f->tensors()) {
      auto [it, inserted] = by_name.emplace(t.name, Located{f.get(), &t});
      if (!inserted) {
        fail(code::kFormat, "weights", where, ": tensor '", t.name, "' appears in both ",
             it->second.file->path(), " and ", f->path());
      }
    }
  }
  std::unordered_map<std::string, std::vector<std::string>> aliases;  // param name -> aliases
  for (const auto& [alias, name] : model.tied_aliases()) aliases[name].push_back(alias);
  std::unordered_set<const Param*> linear_weights;
  for (const LinearModule& m : model.linear_modules()) linear_weights.insert(m.weights->weight);

  ParamStore& store = model.params();
  std::unordered_set<std::string> used;
  LoadReport report;
  for (Param* p : store.all()) {
    // Names to try, in order: the HF name, its tied aliases, then both without the base-model
    // prefix (checkpoints saved from GPT2Model / LlamaModel have "h.0..." / "layers.0...").
    std::vector<std::string> names{p->name};
    for (const std::string& a : aliases[p->name]) names.push_back(a);
    for (size_t i = 0, n = names.size(); i < n; ++i) {
      for (const char* prefix : {"transformer.", "model."}) {
        const std::string pre(prefix);
        if (names[i].compare(0, pre.size(), pre) == 0) names.push_back(names[i].substr(pre.size()));
      }
    }
    Located found;
    for (const std::string& n : names) {
      auto it = by_name.find(n);
      if (it == by_name.end()) continue;
      if (found.tensor == nullptr) found = it->second;
      used.insert(n);  // a tied duplicate stored under an alias is not "unused"
    }
    if (found.tensor == nullptr) {
      std::string tried;
      for (size_t i = 1; i < names.size(); ++i) tried += (i > 1 ? "', '" : "") + names[i];
      fail(code::kFormat, "weights", where, ": tensor '", p->name, "' is missing",
           tried.empty() ? "" : " (also tried '", tried, tried.empty() ? "" : "')", " in ",
           file_list(files));
    }
    const SafetensorsTensor& t = *found.tensor;
    const std::string& dt = t.dtype;
    if (dt != "F32" && dt != "BF16" && dt != "F16") {
      fail(code::kDType, "weights", found.file->path(), ": tensor '", t.name, "' has dtype ", dt,
           ", expected F32, BF16 or F16");
    }
    bool same = static_cast<int>(t.shape.size()) == p->value.ndim;
    for (int i = 0; same && i < p->value.ndim; ++i) same = t.shape[i] == p->value.shape[i];
    if (!same) {
      fail(code::kShape, "weights", found.file->path(), ": tensor '", t.name, "' has shape ",
           shape_text(t.shape), ", expected ", p->value.shape_string(), " for '", p->name, "'");
    }
    const Tensor view = found.file->view(t.name);
    const bool is_linear = linear_weights.count(p) != 0;
    const bool is_embedding = is_embedding_name(p->name);
    // Every file dtype can stay as it is: linear takes f32, bf16 and f16 weights (an f16 one
    // through the fp16 GEMM / gemv), the embedding all three; F16 linear weights only when asked
    // (LoadOptions::f16_linear_views: fp16 compute, whose loss scaler protects the gradients).
    const bool f16_linear = dt == "F16" && is_linear;
    if (options.keep_frozen_in_file_dtype && !p->trainable && (is_linear || is_embedding) &&
        (!f16_linear || options.f16_linear_views)) {
      store.bind(*p, view);
      ++report.bound;
    } else {
      store.load(*p, view);
    }
    ++report.loaded;
  }
  for (const auto& f : files) {
    for (const SafetensorsTensor& t : f->tensors()) {
      if (used.count(t.name) == 0) report.unused.push_back(t.name);
    }
  }
  return report;
}

std::vector<std::shared_ptr<SafetensorsFile>> open_weight_files(const std::string& folder) {
  const std::string index_path = folder + "/model.safetensors.index.json";
  std::ifstream index(index_path, std::ios::binary);
  if (!index) {
    std::ifstream single(folder + "/model.safetensors", std::ios::binary);
    if (!single) {
      fail(code::kIO, "weights", folder,
           ": found neither model.safetensors nor model.safetensors.index.json");
    }
    return {SafetensorsFile::open(folder + "/model.safetensors")};
  }
  std::stringstream text;
  text << index.rdbuf();
  json::Value root;
  try {
    root = json::parse(text.str());
  } catch (const json::ParseError& e) {
    fail(code::kFormat, "weights", index_path, ": not valid JSON at byte ", e.offset(), ": ",
         e.what());
  }
  const json::Value* map = root.find("weight_map");
  if (map == nullptr || !map->is(json::Kind::Object)) {
    fail(code::kFormat, "weights", index_path, ": expected an object 'weight_map'");
  }
  std::vector<std::string> shards;
  std::unordered_set<std::string> seen;
  for (const auto& [name, file] : map->object) {
    if (!file.is(json::Kind::String) || file.string.empty() ||
        file.string.find_first_of("/\\") != std::string::npos) {
      fail(code::kFormat, "weights", index_path, ": weight_map['", name,
           "'] expected a file name in the same folder");
    }
    if (seen.insert(file.string).second) shards.push_back(file.string);
  }
  if (shards.empty()) fail(code::kFormat, "weights", index_path, ": weight_map is empty");
  std::vector<std::shared_ptr<SafetensorsFile>> files;
  for (const std::string& s : shards) files.push_back(SafetensorsFile::open(folder + "/" + s));
  return files;
}

}  // namespace s2s
