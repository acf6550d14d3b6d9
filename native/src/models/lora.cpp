// LoRA (PEFT semantics) on a Model: config parsing/writing, targeting, creation with PEFT's
// initialisation, PEFT-layout save/load, merge and merged-model export. Maths lives in
// nn::linear (the adapted forward/backward) and ops/lora_merge (the merge).
#include "s2s/models/lora.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "core/philox.h"
#include "io/json.h"
#include "s2s/io/atomic_file.h"
#include "s2s/io/safetensors.h"

namespace s2s {

namespace fs = std::filesystem;

namespace {

constexpr const char* kOp = "lora";
constexpr const char* kConfigName = "adapter_config.json";
constexpr const char* kWeightsName = "adapter_model.safetensors";
constexpr const char* kPrefix = "base_model.model.";

// ---- adapter_config.json: reading ----------------------------------------------------------

struct ConfigReader {
  const std::string& source;

  [[noreturn]] void bad(const std::string& field, const std::string& expected,
                        const json::Value& got) const {
    fail(code::kConfig, "lora_config", source, ": field '", field, "': expected ", expected,
         ", got ", describe(got));
  }
  static std::string describe(const json::Value& v) {
    switch (v.kind) {
      case json::Kind::Bool: return v.boolean ? "true" : "false";
      case json::Kind::Int: return std::to_string(v.integer);
      case json::Kind::Double: {
        std::ostringstream os;
        os << v.number;
        return os.str();
      }
      case json::Kind::String: return "\"" + v.string + "\"";
      default: return json::kind_name(v.kind);
    }
  }
  bool boolean(const json::Value& v, const std::string& field) const {
    if (!v.is(json::Kind::Bool)) bad(field, "true or false", v);
    return v.boolean;
  }
  double number(const json::Value& v, const std::string& field) const {
    if (!v.is(json::Kind::Int) && !v.is(json::Kind::Double)) bad(field, "a number", v);
    return v.number;
  }
  int64_t integer(const json::Value& v, const std::string& field) const {
    if (v.is(json::Kind::Int)) return v.integer;
    // Python writes 8.0 for a float that holds an integer; accept it.
    if (v.is(json::Kind::Double) && v.number == std::floor(v.number) && std::fabs(v.number) < 1e15)
      return static_cast<int64_t>(v.number);
    bad(field, "an integer", v);
  }
  std::string string_or_null(const json::Value& v, const std::string& field) const {
    if (v.is(json::Kind::Null)) return "";
    if (!v.is(json::Kind::String)) bad(field, "a string or null", v);
    return v.string;
  }
  // null | "regex" | ["name", ...]
  void names(const json::Value& v, const std::string& field, std::vector<std::string>* list,
             std::string* regex, bool* is_regex) const {
    list->clear();
    regex->clear();
    *is_regex = false;
    if (v.is(json::Kind::Null)) return;
    if (v.is(json::Kind::String)) {
      *regex = v.string;
      *is_regex = true;
      return;
    }
    if (!v.is(json::Kind::Array)) bad(field, "a list of module names, a regex string or null", v);
    for (const json::Value& e : v.array) {
      if (!e.is(json::Kind::String)) bad(field + "[]", "a module name (string)", e);
      list->push_back(e.string);
    }
  }
};

// Fields PEFT may write whose non-default values ask for something this engine does not do.
bool is_default_off(const json::Value& v) {
  switch (v.kind) {
    case json::Kind::Null: return true;
    case json::Kind::Bool: return !v.boolean;
    case json::Kind::Array: return v.array.empty();
    case json::Kind::Object: return v.object.empty();
    default: return false;
  }
}

const char* const kUnsupportedWhenSet[] = {
    "use_dora", "lora_bias", "use_qalora", "layers_to_transform", "layer_replication",
    "target_parameters", "trainable_token_indices", "alora_invocation_tokens", "use_bdlora",
    "target_modules_bd_a", "target_modules_bd_b", "monteclora_config", "velora_config",
    "ephemeral_gpu_offload"};

// ---- adapter_config.json: writing (json.dumps(indent=2, sort_keys=True)) -------------------

std::string format_number(double x, bool as_int_when_integral) {
  if (std::isfinite(x) && x == std::floor(x) && std::fabs(x) < 1e15) {
    std::ostringstream os;
    os << static_cast<int64_t>(x);
    return as_int_when_integral ? os.str() : os.str() + ".0";
  }
  // Shortest representation that reads back to the same double (Python's repr).
  char buf[64];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, x);
    if (std::strtod(buf, nullptr) == x) break;
  }
  return buf;
}

std::string json_string(const std::string& s) {
  std::string out;
  json::append_quoted(out, s);
  return out;
}

std::string string_list(const std::vector<std::string>& list, const std::string& indent) {
  if (list.empty()) return "[]";
  std::string out = "[\n";
  for (size_t i = 0; i < list.size(); ++i) {
    out += indent + "  " + json_string(list[i]) + (i + 1 < list.size() ? ",\n" : "\n");
  }
  return out + indent + "]";
}

template <typename T, typename Fmt>
std::string pattern_object(const std::vector<std::pair<std::string, T>>& kv, Fmt fmt) {
  if (kv.empty()) return "{}";
  std::vector<std::pair<std::string, T>> sorted = kv;
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::string out = "{\n";
  for (size_t i = 0; i < sorted.size(); ++i) {
    out += "    " + json_string(sorted[i].first) + ": " + fmt(sorted[i].second) +
           (i + 1 < sorted.size() ? ",\n" : "\n");
  }
  return out + "  }";
}

// ---- targeting --------------------------------------------------------------------------------

bool full_match(const std::string& pattern, const std::string& text, const char* field) {
  try {
    return std::regex_match(text, std::regex(pattern, std::regex::ECMAScript));
  } catch (const std::regex_error& e) {
    fail(code::kConfig, kOp, field, ": '", pattern, "' is not a valid regular expression (",
         e.what(), ")");
  }
}

bool name_matches(const std::string& name, const std::string& path) {
  return path == name ||
         (path.size() > name.size() + 1 && path.compare(path.size() - name.size(), name.size(), name) == 0 &&
          path[path.size() - name.size() - 1] == '.');
}

// PEFT's get_pattern_key: the first key k for which re.match(rf"(.*\.)?({k})$", path).
template <typename T>
const T* pattern_value(const std::vector<std::pair<std::string, T>>& kv, const std::string& path,
                       const char* field) {
  for (const auto& [k, v] : kv) {
    if (full_match("(.*\\.)?(" + k + ")", path, field)) return &v;
  }
  return nullptr;
}

// PEFT's default targets by model_type (TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING).
std::vector<std::string> default_targets(const ModelConfig& mc) {
  switch (mc.arch) {
    case Architecture::Gpt2: return {"c_attn"};
    case Architecture::Llama:
    case Architecture::Qwen2: return {"q_proj", "v_proj"};
    case Architecture::T5: return {"q", "v"};
  }
  return {};
}

std::string list_paths(const std::vector<LinearModule>& modules) {
  std::string out;
  for (size_t i = 0; i < modules.size(); ++i) {
    if (i) out += ", ";
    out += modules[i].path;
  }
  return out.empty() ? "(none)" : out;
}

void check_supported(const LoraConfig& c, const char* op) {
  S2S_REQUIRE(c.r > 0, code::kConfig, op, "r: expected a positive rank, got ", c.r);
  S2S_REQUIRE(c.lora_dropout >= 0 && c.lora_dropout < 1, code::kConfig, op,
              "lora_dropout: expected a value in [0, 1), got ", c.lora_dropout);
  S2S_REQUIRE(c.bias == "none", code::kConfig, op, "bias: only \"none\" is supported, got \"",
              c.bias, "\"");
  S2S_REQUIRE(c.modules_to_save.empty(), code::kConfig, op,
              "modules_to_save: not supported yet, expected null or [], got ",
              c.modules_to_save.size(), " module(s) starting with '",
              c.modules_to_save.empty() ? "" : c.modules_to_save[0], "'");
  for (const auto& [k, r] : c.rank_pattern) {
    S2S_REQUIRE(r > 0, code::kConfig, op, "rank_pattern['", k, "']: expected a positive rank, got ", r);
  }
}

const char* safetensors_dtype(DType d) {
  switch (d) {
    case DType::F32: return "F32";
    case DType::BF16: return "BF16";
    case DType::F16: return "F16";
  }
  return "?";
}

size_t dtype_bytes(DType d) { return d == DType::F32 ? 4 : 2; }

SafetensorsWriteEntry entry_for(const std::string& name, const Tensor& t) {
  SafetensorsWriteEntry e;
  e.name = name;
  e.dtype = safetensors_dtype(t.dtype);
  e.shape.assign(t.shape, t.shape + t.ndim);
  e.data = t.data;
  e.nbytes = static_cast<size_t>(t.numel()) * dtype_bytes(t.dtype);
  return e;
}

// Torch's kaiming_uniform_(w, a=sqrt(5)) on an (fan_out, fan_in) weight (nn.Linear's default,
// PEFT's lora_A init): gain = calculate_gain("leaky_relu", a) = sqrt(2 / (1 + a^2)) = sqrt(1/3),
// std = gain / sqrt(fan_in), bound = sqrt(3) * std = 1 / sqrt(fan_in); w ~ U(-bound, bound).
// Values come from the Philox stream keyed by seed at words [offset, offset + numel), so one
// seed gives the same adapters on every machine (torch's own generator is not reproduced).
// Drawn on the host, then loaded into the param (an upload on a device backend).
void kaiming_uniform(ParamStore& store, Param& p, uint64_t seed, uint64_t offset) {
  const int64_t fan_in = p.value.shape[1];
  const double a = std::sqrt(5.0);
  const double gain = std::sqrt(2.0 / (1.0 + a * a));
  const float bound = static_cast<float>(std::sqrt(3.0) * gain / std::sqrt(double(fan_in)));
  std::vector<float> w(static_cast<size_t>(p.value.numel()));
  for (int64_t i = 0; i < p.value.numel(); ++i) {
    const float u = philox_uniform(philox_word(seed, offset + static_cast<uint64_t>(i)));
    w[static_cast<size_t>(i)] = (2.0f * u - 1.0f) * bound;  // [-bound, bound)
  }
  store.load(p, Tensor::contiguous(w.data(), DType::F32, p.value.ndim, p.value.shape));
}

// Creates (or reuses, after a merge/detach) a zeroed fp32 param of this shape.
Param& lora_param(ParamStore& store, const std::string& name, int64_t rows, int64_t cols) {
  Param* p = store.find(name);
  if (p == nullptr) return store.create(name, {rows, cols});
  S2S_REQUIRE(p->value.ndim == 2 && p->value.shape[0] == rows && p->value.shape[1] == cols,
              code::kConfig, kOp, "param '", name, "' exists with shape ", p->value.shape_string(),
              ", expected (", rows, ", ", cols, ")");
  const std::vector<float> zeros(static_cast<size_t>(rows * cols), 0.0f);
  store.load(*p, Tensor::contiguous(const_cast<float*>(zeros.data()), DType::F32, {rows, cols}));
  return *p;
}

bool is_all_linear(const LoraConfig& c) {
  if (!c.target_modules_is_regex) return false;
  std::string lower = c.target_modules_regex;
  for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return lower == "all-linear";
}

// PEFT's check_target_module_exists for our two forms (+ "all-linear": every linear layer but
// the output head). Records in `matched` the list names that matched (before exclusion).
bool targeted(const LoraConfig& c, const std::string& path, std::set<std::string>* matched) {
  bool hit = false;
  if (is_all_linear(c)) {
    hit = path != "lm_head";  // PEFT skips the output embedding
  } else if (c.target_modules_is_regex) {
    hit = full_match(c.target_modules_regex, path, "target_modules");
  } else {
    for (const std::string& name : c.target_modules) {
      if (name_matches(name, path)) {
        hit = true;
        if (matched) matched->insert(name);
      }
    }
  }
  if (!hit) return false;
  if (c.exclude_modules_is_regex) return !full_match(c.exclude_modules_regex, path, "exclude_modules");
  for (const std::string& name : c.exclude_modules) {
    if (name_matches(name, path)) return false;
  }
  return true;
}

// Targets, creates, zero-fills and attaches; freezes the base. Init is the caller's.
// strict_names: every name in a target_modules list must match some module (apply_lora); PEFT
// itself only fails when nothing at all is targeted, which is what loading follows.
LoraAdapter attach(Model& model, const LoraConfig& config, const char* op, bool strict_names) {
  check_supported(config, op);
  LoraAdapter adapter;
  adapter.config = config;
  LoraConfig& c = adapter.config;
  std::vector<LinearModule> modules = model.linear_modules();
  if (!c.target_modules_is_regex && c.target_modules.empty()) {
    c.target_modules = default_targets(model.config());
  }
  std::set<std::string> matched_names;
  for (LinearModule& m : modules) {
    const bool hit = targeted(c, m.path, &matched_names);
    if (!hit) continue;
    S2S_REQUIRE(m.weights->lora == nullptr, code::kConfig, op, "module '", m.path,
                "' already has a LoRA adapter attached (one adapter per model)");
    LoraLayer layer;
    layer.path = m.path;
    layer.weights = m.weights;
    const int64_t* r = pattern_value(c.rank_pattern, m.path, "rank_pattern");
    const double* alpha = pattern_value(c.alpha_pattern, m.path, "alpha_pattern");
    layer.r = r ? *r : c.r;
    layer.alpha = alpha ? *alpha : c.lora_alpha;
    adapter.layers.push_back(std::move(layer));
  }
  if (strict_names && !c.target_modules_is_regex) {
    for (const std::string& name : c.target_modules) {
      S2S_REQUIRE(matched_names.count(name) != 0, code::kConfig, op, "target_modules: '", name,
                  "' matches no linear module; the model has: ", list_paths(modules));
    }
  }
  S2S_REQUIRE(!adapter.layers.empty(), code::kConfig, op,
              "target_modules: nothing targeted (", c.target_modules_is_regex ?
              "regex '" + c.target_modules_regex + "'" : std::string("after exclude_modules"),
              "); the model has: ", list_paths(modules));

  ParamStore& store = model.params();
  for (Param* p : store.all()) store.set_trainable(*p, false);
  bool any_conv1d = false, any_linear = false;
  for (LoraLayer& layer : adapter.layers) {
    const Tensor& w = layer.weights->weight->value;
    const bool in_out = layer.weights->layout == WeightLayout::InOut;
    (in_out ? any_conv1d : any_linear) = true;
    const int64_t out_f = in_out ? w.shape[1] : w.shape[0];
    const int64_t in_f = in_out ? w.shape[0] : w.shape[1];
    Param& A = lora_param(store, lora_param_name(layer.path, 'A'), layer.r, in_f);
    Param& B = lora_param(store, lora_param_name(layer.path, 'B'), out_f, layer.r);
    store.set_trainable(A, true);
    store.set_trainable(B, true);
    layer.lora = std::make_unique<nn::Lora>();
    layer.lora->A = &A;
    layer.lora->B = &B;
    layer.lora->scaling = static_cast<float>(
        c.use_rslora ? layer.alpha / std::sqrt(double(layer.r)) : layer.alpha / double(layer.r));
    layer.lora->dropout = static_cast<float>(c.lora_dropout);
    layer.weights->lora = layer.lora.get();
  }
  // Like PEFT (which warns and flips it per layer type): Conv1D layers mean fan_in_fan_out.
  // (A model mixing both layouts in one adapter records true, the layout of its Conv1D layers.)
  c.fan_in_fan_out = any_conv1d;
  (void)any_linear;
  return adapter;
}

}  // namespace

// ---- public -----------------------------------------------------------------------------------

LoraConfig parse_lora_config(const std::string& json_text, const std::string& source) {
  json::Value root;
  try {
    root = json::parse(json_text);
  } catch (const json::ParseError& e) {
    fail(code::kConfig, "lora_config", source, ": not valid JSON at byte ", e.offset(), ": ",
         e.what());
  }
  ConfigReader rd{source};
  if (!root.is(json::Kind::Object)) rd.bad("(top level)", "an object", root);
  LoraConfig c;
  c.peft_version.clear();
  for (const auto& [key, v] : root.object) {
    if (key == "peft_type") {
      if (!v.is(json::Kind::String) || v.string != "LORA") rd.bad(key, "\"LORA\"", v);
    } else if (key == "task_type") {
      c.task_type = rd.string_or_null(v, key);
    } else if (key == "r") {
      c.r = rd.integer(v, key);
      if (c.r <= 0) rd.bad(key, "a positive rank", v);
    } else if (key == "lora_alpha") {
      c.lora_alpha = rd.number(v, key);
    } else if (key == "lora_dropout") {
      c.lora_dropout = rd.number(v, key);
      if (c.lora_dropout < 0 || c.lora_dropout >= 1) rd.bad(key, "a probability in [0, 1)", v);
    } else if (key == "target_modules") {
      rd.names(v, key, &c.target_modules, &c.target_modules_regex, &c.target_modules_is_regex);
    } else if (key == "exclude_modules") {
      rd.names(v, key, &c.exclude_modules, &c.exclude_modules_regex, &c.exclude_modules_is_regex);
    } else if (key == "rank_pattern" || key == "alpha_pattern") {
      if (v.is(json::Kind::Null)) continue;
      if (!v.is(json::Kind::Object)) rd.bad(key, "an object of module pattern -> number", v);
      for (const auto& [k, x] : v.object) {
        if (key == "rank_pattern") {
          c.rank_pattern.emplace_back(k, rd.integer(x, key + "['" + k + "']"));
        } else {
          c.alpha_pattern.emplace_back(k, rd.number(x, key + "['" + k + "']"));
        }
      }
    } else if (key == "fan_in_fan_out") {
      c.fan_in_fan_out = rd.boolean(v, key);
    } else if (key == "use_rslora") {
      c.use_rslora = rd.boolean(v, key);
    } else if (key == "inference_mode") {
      c.inference_mode = rd.boolean(v, key);
    } else if (key == "bias") {
      if (!v.is(json::Kind::String)) rd.bad(key, "\"none\"", v);
      c.bias = v.string;
      if (c.bias != "none") rd.bad(key, "\"none\" (bias training is not supported)", v);
    } else if (key == "modules_to_save") {
      if (v.is(json::Kind::Null)) continue;
      if (!v.is(json::Kind::Array)) rd.bad(key, "null or a list", v);
      if (!v.array.empty()) rd.bad(key, "null or [] (modules_to_save is not supported yet)", v);
    } else if (key == "init_lora_weights") {
      if (v.is(json::Kind::Bool)) {
        c.init_lora_weights = v.boolean ? "true" : "false";
      } else if (v.is(json::Kind::String)) {
        c.init_lora_weights = v.string;
      } else {
        rd.bad(key, "true, false or a method name", v);
      }
    } else if (key == "base_model_name_or_path") {
      c.base_model_name_or_path = rd.string_or_null(v, key);
    } else if (key == "revision") {
      c.revision = rd.string_or_null(v, key);
    } else if (key == "peft_version") {
      c.peft_version = rd.string_or_null(v, key);
    } else {
      for (const char* unsupported : kUnsupportedWhenSet) {
        if (key == unsupported && !is_default_off(v)) {
          rd.bad(key, "false, null or empty (not supported)", v);
        }
      }
      // Anything else PEFT writes (megatron_*, loftq_config, layers_pattern, auto_mapping,
      // runtime_config, ...) does not change a plain LoRA adapter: ignored, as PEFT ignores
      // keys it does not know.
    }
  }
  if (c.use_rslora && (!c.rank_pattern.empty() || !c.alpha_pattern.empty())) {
    // PEFT warns here; the per-module alpha / sqrt(r) it then computes is what we compute too.
  }
  return c;
}

std::string lora_config_to_json(const LoraConfig& c) {
  const auto b = [](bool x) { return std::string(x ? "true" : "false"); };
  const auto str_or_null = [](const std::string& s) { return s.empty() ? std::string("null") : json_string(s); };
  const auto names = [](const std::vector<std::string>& list, const std::string& regex,
                        bool is_regex, bool null_when_empty) {
    if (is_regex) return json_string(regex);
    if (list.empty() && null_when_empty) return std::string("null");
    return string_list(list, "  ");
  };
  std::string init;
  if (c.init_lora_weights == "true" || c.init_lora_weights == "false") {
    init = c.init_lora_weights;
  } else {
    init = json_string(c.init_lora_weights);
  }
  std::map<std::string, std::string> fields = {
      {"alpha_pattern", pattern_object(c.alpha_pattern, [](double x) { return format_number(x, true); })},
      {"auto_mapping", "null"},
      {"base_model_name_or_path", str_or_null(c.base_model_name_or_path)},
      {"bias", json_string(c.bias)},
      {"exclude_modules", names(c.exclude_modules, c.exclude_modules_regex, c.exclude_modules_is_regex, true)},
      {"fan_in_fan_out", b(c.fan_in_fan_out)},
      {"inference_mode", b(c.inference_mode)},
      {"init_lora_weights", init},
      {"layer_replication", "null"},
      {"layers_pattern", "null"},
      {"layers_to_transform", "null"},
      {"lora_alpha", format_number(c.lora_alpha, true)},
      {"lora_bias", "false"},
      {"lora_dropout", format_number(c.lora_dropout, false)},
      {"megatron_config", "null"},
      {"megatron_core", json_string("megatron.core")},
      {"modules_to_save", "null"},
      {"peft_type", json_string("LORA")},
      {"peft_version", str_or_null(c.peft_version)},
      {"r", std::to_string(c.r)},
      {"rank_pattern", pattern_object(c.rank_pattern, [](int64_t x) { return std::to_string(x); })},
      {"revision", str_or_null(c.revision)},
      {"target_modules", names(c.target_modules, c.target_modules_regex, c.target_modules_is_regex, true)},
      {"task_type", str_or_null(c.task_type)},
      {"use_dora", "false"},
      {"use_rslora", b(c.use_rslora)},
  };
  std::string out = "{\n";
  size_t i = 0;
  for (const auto& [k, v] : fields) {
    out += "  " + json_string(k) + ": " + v + (++i < fields.size() ? ",\n" : "\n");
  }
  return out + "}";
}

bool lora_targets(const LoraConfig& c, const std::string& path) {
  return targeted(c, path, nullptr);
}

std::string lora_param_name(const std::string& path, char which) {
  return std::string(kPrefix) + path + (which == 'A' ? ".lora_A.weight" : ".lora_B.weight");
}

LoraAdapter apply_lora(Model& model, const LoraConfig& config, uint64_t seed) {
  S2S_REQUIRE(config.init_lora_weights == "true" || config.init_lora_weights == "false",
              code::kConfig, "apply_lora", "init_lora_weights: expected true or false, got \"",
              config.init_lora_weights, "\" (other initialisations are not supported)");
  LoraAdapter adapter = attach(model, config, "apply_lora", true);
  // One Philox stream for the whole adapter, consumed layer by layer in module order.
  uint64_t offset = 0;
  for (LoraLayer& layer : adapter.layers) {
    kaiming_uniform(model.params(), *layer.lora->A, seed, offset);
    offset += static_cast<uint64_t>(layer.lora->A->value.numel());
    if (config.init_lora_weights == "false") {
      // PEFT leaves both at torch.nn.Linear's default (Kaiming-uniform, a = sqrt(5)).
      kaiming_uniform(model.params(), *layer.lora->B, seed, offset);
      offset += static_cast<uint64_t>(layer.lora->B->value.numel());
    }  // else B stays zero: the adapted model starts as the base model
  }
  return adapter;
}

void save_adapter(const std::string& dir, Model& model, const LoraAdapter& adapter,
                  const LoraConfig& config) {
  S2S_REQUIRE(!adapter.layers.empty(), code::kArgument, "save_adapter", dir,
              ": the adapter has no layers");
  LoraConfig out = config;
  const LoraConfig& applied = adapter.config;
  out.r = applied.r;
  out.lora_alpha = applied.lora_alpha;
  out.lora_dropout = applied.lora_dropout;
  out.use_rslora = applied.use_rslora;
  out.fan_in_fan_out = applied.fan_in_fan_out;
  out.rank_pattern = applied.rank_pattern;
  out.alpha_pattern = applied.alpha_pattern;
  out.target_modules = applied.target_modules;
  out.target_modules_regex = applied.target_modules_regex;
  out.target_modules_is_regex = applied.target_modules_is_regex;
  out.exclude_modules = applied.exclude_modules;
  out.exclude_modules_regex = applied.exclude_modules_regex;
  out.exclude_modules_is_regex = applied.exclude_modules_is_regex;
  out.inference_mode = true;  // as PEFT's save_pretrained writes it
  if (out.peft_version.empty()) out.peft_version = LoraConfig{}.peft_version;
  std::vector<SafetensorsWriteEntry> entries;
  std::deque<std::vector<uint8_t>> host;  // downloads from a device backend
  Backend& backend = model.params().backend();
  for (const LoraLayer& layer : adapter.layers) {
    host.emplace_back();
    entries.push_back(entry_for(lora_param_name(layer.path, 'A'),
                                host_tensor(backend, layer.lora->A->value, host.back())));
    host.emplace_back();
    entries.push_back(entry_for(lora_param_name(layer.path, 'B'),
                                host_tensor(backend, layer.lora->B->value, host.back())));
  }
  const std::string text = lora_config_to_json(out);
  write_folder_atomic(dir, [&](const std::string& folder) {
    write_safetensors(folder + "/" + kWeightsName, entries, {{"format", "pt"}});
    write_file_atomic(folder + "/" + kConfigName, text, kOp);
  }, kOp);
}

LoraAdapter load_adapter(const std::string& dir, Model& model) {
  const std::string config_path = dir + "/" + kConfigName;
  const std::string weights_path = dir + "/" + kWeightsName;
  std::error_code ec;
  if (!fs::exists(weights_path, ec) && fs::exists(dir + "/adapter_model.bin", ec)) {
    fail(code::kConfig, "load_adapter", dir, ": has adapter_model.bin (a pickle) but no ",
         kWeightsName, "; convert it with PEFT (save_pretrained(safe_serialization=True))");
  }
  const LoraConfig config = parse_lora_config(read_text_file(config_path, kOp), config_path);
  std::shared_ptr<SafetensorsFile> file = SafetensorsFile::open(weights_path);

  // Saved names -> canonical names ("...lora_A.<adapter>.weight" -> "...lora_A.weight").
  std::map<std::string, const SafetensorsTensor*> by_name;
  for (const SafetensorsTensor& t : file->tensors()) {
    std::string name = t.name;
    for (const char* part : {".lora_A.", ".lora_B."}) {
      const size_t at = name.rfind(part);
      if (at == std::string::npos) continue;
      const size_t after = at + std::strlen(part);
      if (name.compare(after, std::string::npos, "weight") != 0 &&
          name.size() > after + 7 && name.compare(name.size() - 7, 7, ".weight") == 0) {
        name = name.substr(0, after) + "weight";
      }
    }
    S2S_REQUIRE(by_name.emplace(name, &t).second, code::kConfig, "load_adapter", weights_path,
                ": tensor '", t.name, "' appears twice (under more than one adapter name?)");
  }

  LoraAdapter adapter = attach(model, config, "load_adapter", false);
  try {
    std::set<std::string> used;
    for (LoraLayer& layer : adapter.layers) {
      for (char which : {'A', 'B'}) {
        const std::string name = lora_param_name(layer.path, which);
        auto it = by_name.find(name);
        S2S_REQUIRE(it != by_name.end(), code::kConfig, "load_adapter", weights_path,
                    ": no tensor '", name, "' for targeted module '", layer.path, "'");
        Param& p = which == 'A' ? *layer.lora->A : *layer.lora->B;
        const Tensor src = file->view(it->second->name);
        bool same = src.ndim == 2 && src.shape[0] == p.value.shape[0] && src.shape[1] == p.value.shape[1];
        S2S_REQUIRE(same, code::kShape, "load_adapter", weights_path, ": tensor '",
                    it->second->name, "' expected shape ", p.value.shape_string(),
                    which == 'A' ? " (r, in)" : " (out, r)", ", got ", src.shape_string());
        model.params().load(p, src);
        used.insert(name);
      }
    }
    for (const auto& [name, t] : by_name) {
      S2S_REQUIRE(used.count(name) != 0, code::kConfig, "load_adapter", weights_path,
                  ": tensor '", t->name, "' belongs to no module targeted by ", config_path,
                  " (unsupported LoRA part, or a different base model?)");
    }
  } catch (...) {
    detach_lora(model, adapter);
    throw;
  }
  return adapter;
}

void merge_lora(Model& model, LoraAdapter& adapter) {
  S2S_REQUIRE(!adapter.merged, code::kArgument, "merge_lora", "the adapter is already merged");
  ParamStore& store = model.params();
  for (LoraLayer& layer : adapter.layers) {
    Param& w = *layer.weights->weight;
    if (w.value.dtype != DType::F32 || !w.owned_value) {
      // A bf16/f16 or memory-mapped base weight: take an owned fp32 copy (set_trainable(true)
      // makes it), then freeze it again.
      const bool was_trainable = w.trainable;
      store.set_trainable(w, true);
      store.set_trainable(w, was_trainable);
    }
    store.backend().lora_merge(w.value, layer.lora->A->value, layer.lora->B->value,
                               layer.lora->scaling, layer.weights->layout);
    store.refresh_compute(w);  // bf16 compute copy of the merged weight
  }
  detach_lora(model, adapter);
  adapter.merged = true;
}

void detach_lora(Model& model, LoraAdapter& adapter) {
  for (LoraLayer& layer : adapter.layers) {
    if (layer.weights->lora == layer.lora.get()) layer.weights->lora = nullptr;
    if (layer.lora) {
      model.params().set_trainable(*layer.lora->A, false);
      model.params().set_trainable(*layer.lora->B, false);
    }
  }
}

void save_model(const std::string& dir, Model& model, const std::string& config_json) {
  for (const LinearModule& m : model.linear_modules()) {
    S2S_REQUIRE(m.weights->lora == nullptr, code::kArgument, "save_model", dir, ": module '",
                m.path, "' still has a LoRA adapter attached; merge_lora (or detach_lora) first");
  }
  // Tied names: HF checkpoints carry one tensor; skip an alias when the store holds both names
  // for the same memory.
  std::set<std::string> skip;
  for (const auto& [alias, canonical] : model.tied_aliases()) {
    Param* a = model.params().find(alias);
    Param* c = model.params().find(canonical);
    if (a != nullptr && c != nullptr && a->value.data == c->value.data) skip.insert(alias);
  }
  std::vector<SafetensorsWriteEntry> entries;
  std::deque<std::vector<uint8_t>> host;  // downloads from a device backend
  for (Param* p : model.params().all()) {
    if (p->name.compare(0, std::strlen(kPrefix), kPrefix) == 0) continue;  // LoRA params
    if (skip.count(p->name)) continue;
    host.emplace_back();
    entries.push_back(
        entry_for(p->name, host_tensor(model.params().backend(), p->value, host.back())));
  }
  write_folder_atomic(dir, [&](const std::string& folder) {
    write_safetensors(folder + "/model.safetensors", entries, {{"format", "pt"}});
    write_file_atomic(folder + "/config.json", config_json, kOp);
  }, kOp);
}

}  // namespace s2s
