// LoRA as PEFT defines it, on any Model: targeting linear layers by module path, creating and
// attaching the adapters, saving/loading them in PEFT's folder layout (adapter_config.json +
// adapter_model.safetensors), merging them into the base weights, and exporting a merged model
// folder (model.safetensors + config.json) that transformers loads. The maths of the adapted
// layer is nn::linear's; the merge is ops/lora_merge.h. Not here: DoRA, LoRA on embeddings or
// biases, modules_to_save, several adapters on one model (each is rejected with an S2S_CONFIG
// error naming the field).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "s2s/models/model.h"
#include "s2s/nn/functional.h"

namespace s2s {

// The fields of PEFT's LoraConfig this engine uses, with PEFT's names and defaults. Read from and
// written to adapter_config.json; fields PEFT writes that are not listed here are ignored on
// reading when they hold their default and rejected (S2S_CONFIG) when they ask for something
// this engine does not do (use_dora, lora_bias, layers_to_transform, layer_replication, ...).
struct LoraConfig {
  std::string task_type = "CAUSAL_LM";  // "CAUSAL_LM" | "SEQ_2_SEQ_LM" | ... (written as is)
  int64_t r = 8;
  double lora_alpha = 8;   // PEFT types it int, but accepts floats; written as int when integral
  double lora_dropout = 0;
  // Which layers: a list of names, each matching a module path equal to it or ending in
  // "." + name; or (target_modules_regex set) one pattern that must match the whole path
  // (Python's re.fullmatch; here std::regex ECMAScript, which agrees for the usual patterns), or
  // PEFT's "all-linear" (every linear layer but lm_head). An empty list means PEFT's default for
  // the model type (gpt2 c_attn; llama/qwen2 q_proj, v_proj; t5 q, v).
  std::vector<std::string> target_modules;
  std::string target_modules_regex;
  bool target_modules_is_regex = false;
  // Modules never targeted, same two forms.
  std::vector<std::string> exclude_modules;
  std::string exclude_modules_regex;
  bool exclude_modules_is_regex = false;
  // Per-module rank / alpha overrides: key k applies to paths matching "(.*\.)?(k)" (PEFT's
  // get_pattern_key; the first matching key in file order wins).
  std::vector<std::pair<std::string, int64_t>> rank_pattern;
  std::vector<std::pair<std::string, double>> alpha_pattern;
  // True for GPT-2's Conv1D weights (in, out). Like PEFT, apply_lora sets it from the targeted
  // layers' layout (and it must not disagree with them on load).
  bool fan_in_fan_out = false;
  bool use_rslora = false;  // scaling = lora_alpha / sqrt(r) instead of lora_alpha / r
  std::string bias = "none";                 // only "none"
  std::vector<std::string> modules_to_save;  // must be empty (written as null)
  // "true": A Kaiming-uniform, B zero (step 0 is the base model); "false": both Kaiming-uniform
  // (torch nn.Linear's default, as PEFT leaves them). Anything else ("gaussian", "pissa", ...)
  // is accepted when loading (the weights come from the file) and rejected by apply_lora.
  std::string init_lora_weights = "true";
  std::string base_model_name_or_path;  // "" is written as null
  std::string revision;                 // "" is written as null
  bool inference_mode = false;          // PEFT writes true in saved adapters
  // The PEFT release whose file format this follows (PEFT >= 0.18 writes its own version here).
  std::string peft_version = "0.18.0";
};

// Parses adapter_config.json text. `source` (the file path) is named in every error with the
// field and what was expected (S2S_CONFIG).
LoraConfig parse_lora_config(const std::string& json_text, const std::string& source);
// adapter_config.json text as PEFT writes it (2-space indent, keys sorted).
std::string lora_config_to_json(const LoraConfig& config);

// True when `path` is targeted by `config` (target_modules and exclude_modules as above).
bool lora_targets(const LoraConfig& config, const std::string& path);

// One adapted layer.
struct LoraLayer {
  std::string path;                  // HF module path, "transformer.h.0.attn.c_attn"
  nn::LinearWeights* weights = nullptr;
  std::unique_ptr<nn::Lora> lora;    // what weights->lora points at while attached
  int64_t r = 0;
  double alpha = 0;
};

// The adapters attached to one model. It owns the nn::Lora records the model's layers point
// at: keep it alive while the model runs with them (merge_lora or detach_lora first otherwise).
// A and B are Params in the model's ParamStore named as PEFT saves them:
//   "base_model.model.<path>.lora_A.weight" (r, in), "base_model.model.<path>.lora_B.weight"
//   (out, r), fp32, trainable, weight decay on (as HF Trainer does).
struct LoraAdapter {
  LoraConfig config;  // as applied: fan_in_fan_out set from the layers' layout
  std::vector<LoraLayer> layers;  // in Model::linear_modules() order
  bool merged = false;
};

// PEFT's saved name of a LoRA weight: "base_model.model." + path + ".lora_A.weight" (which 'A'/'B').
std::string lora_param_name(const std::string& path, char which);

// Creates A/B for every targeted linear layer (A Kaiming-uniform from a Philox stream keyed by
// `seed`, B zero: the model's output is unchanged), attaches them, freezes every other param and
// makes exactly the adapters trainable. Errors (S2S_CONFIG): a target that matches no module
// (the message lists the module paths there are), nothing targeted, a layer that already has an
// adapter, unsupported config fields.
LoraAdapter apply_lora(Model& model, const LoraConfig& config, uint64_t seed);

// Writes <dir>/adapter_config.json and <dir>/adapter_model.safetensors (F32, metadata
// {"format": "pt"}; names "base_model.model.<path>.lora_{A,B}.weight"). When `dir` does not
// exist, both are written into a temporary sibling folder that is then renamed to `dir`: the
// folder appears whole or not at all. When it exists (other files of a checkpoint may live
// there), each file is replaced atomically (temporary name, fsync, rename), tensors first.
// `config` supplies the fields the adapter does not fix (task_type, base_model_name_or_path,
// ...); r, alpha, targets and fan_in_fan_out are written as applied.
void save_adapter(const std::string& dir, Model& model, const LoraAdapter& adapter,
                  const LoraConfig& config);

// Reads a PEFT adapter folder (as PEFT or save_adapter writes it), creates and attaches the
// adapters like apply_lora (trainable, base frozen) and loads A and B (any float dtype, copied to
// fp32). Accepts "...lora_A.weight" and "...lora_A.<adapter name>.weight" keys. Like PEFT, a
// target name that matches no module is not an error as long as something is targeted. Errors
// name the file and tensor: a missing or unexpected tensor (S2S_CONFIG), a wrong shape
// (S2S_SHAPE); on error the model is left without adapters.
LoraAdapter load_adapter(const std::string& dir, Model& model);

// W += scaling * (B @ A) (transposed for Conv1D layers) into every adapted layer's base weight,
// then detaches the adapters and freezes A/B. A base weight bound as bf16/f16 (or any view) is
// first converted to an owned fp32 copy. The model then computes what it computed with the
// adapters attached (to fp32 rounding).
void merge_lora(Model& model, LoraAdapter& adapter);

// Detaches the adapters without merging (the model is the base model again); A/B stay in the
// store, frozen.
void detach_lora(Model& model, LoraAdapter& adapter);

// Exports <dir>/model.safetensors (every param under its HF name in its own dtype; LoRA params
// and tied duplicates omitted, as transformers' save_pretrained does; metadata {"format": "pt"})
// and <dir>/config.json (config_json as given), with save_adapter's atomicity. Refuses a model
// that still has adapters attached (merge_lora first).
void save_model(const std::string& dir, Model& model, const std::string& config_json);

}  // namespace s2s
