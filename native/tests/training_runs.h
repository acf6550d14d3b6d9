// Training passes of the fixture models with their dropout sites on, for the tests that compare
// two ways of running the same pass (gradient checkpointing, the chunked loss): a model trainable
// in full or through LoRA (with LoRA dropout), in a compute dtype, on a backend, and one
// micro-batch of training (summed loss, backward into the params' gradients).
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "fixture_model.h"
#include "s2s/models/lora.h"
#include "s2s/models/model.h"

namespace s2s_test {
namespace training {

struct Family {
  std::string name;
  std::vector<std::pair<std::string, std::string>> dropout;  // config.json rates turned on
};

// One fixture of each family: gpt2, llama-gqa (grouped-query heads), t5-relu-tied (tied
// embeddings and the shared T5 position bias).
inline const std::vector<Family>& families() {
  static const std::vector<Family> f = {
      {"gpt2", {{"embd_pdrop", "0.1"}, {"resid_pdrop", "0.1"}, {"attn_pdrop", "0.1"}}},
      {"llama-gqa", {{"attention_dropout", "0.1"}}},
      {"t5-relu-tied", {{"dropout_rate", "0.1"}}},
  };
  return f;
}

enum class Method { Full, Lora };

struct Setup {
  Method method = Method::Full;
  s2s::ComputeDType compute = s2s::ComputeDType::F32;
  bool checkpointing = false;
  std::shared_ptr<s2s::Backend> backend;  // null: the CPU
  int64_t chunk_rows = -1;                // >= 0: the chunked loss with these rows (0: auto)
  std::string lora_targets = "all-linear";  // a regex, or PEFT's "all-linear"
  bool loss_only = false;                   // each pass's Graph::loss_only
};

struct Run {
  std::unique_ptr<s2s::Model> model;
  s2s::LoraAdapter adapter;
  s2s::Graph graph;
  std::vector<float> losses;
  bool loss_only = false;  // Setup::loss_only
};

inline std::unique_ptr<Run> build(const Family& f, const Setup& s) {
  auto r = std::make_unique<Run>();
  r->model = fixture_model_with_config(f.name, f.dropout);
  if (s.method == Method::Full) {
    for (s2s::Param* p : r->model->params().all()) r->model->params().set_trainable(*p, true);
  } else {
    s2s::LoraConfig lc;
    lc.r = 4;
    lc.lora_alpha = 8;
    lc.lora_dropout = 0.1;
    lc.target_modules_is_regex = true;  // PEFT's "all-linear" is a string, not a list
    lc.target_modules_regex = s.lora_targets;
    lc.init_lora_weights = "false";  // B random too, so A's gradient is not zero
    r->adapter = s2s::apply_lora(*r->model, lc, 5);
  }
  r->model->set_compute_dtype(s.compute);
  if (s.backend) {
    r->model->to_backend(s.backend);
    r->graph.set_backend(s.backend);
  }
  r->model->set_gradient_checkpointing(s.checkpointing);
  if (s.chunk_rows >= 0) r->model->set_chunked_loss(true, s.chunk_rows);
  r->loss_only = s.loss_only;
  return r;
}

// One micro-batch in training mode: summed loss, backward from dloss into the gradients.
// seed_known: dloss is promised before the forward (Graph::known_dloss), as a training step does.
inline s2s::ForwardResult micro_batch(Run& r, const s2s::Batch& batch, uint64_t seed,
                                      float dloss = 1.0f, bool seed_known = false) {
  s2s::Graph& g = r.graph;
  g.reset();
  g.training = true;
  g.dropout_seed = seed;
  if (seed_known) g.known_dloss = dloss;
  g.loss_only = r.loss_only;
  s2s::ForwardResult out = r.model->forward(g, batch, s2s::LossReduction::Sum);
  r.losses.push_back(g.read_scalar(out.loss->value));
  g.backward(out.loss, dloss);
  return out;
}

}  // namespace training
}  // namespace s2s_test
