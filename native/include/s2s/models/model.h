// Model: what every architecture (gpt2, llama/qwen2, t5) provides to the trainer, generation and
// the N-API layer. An architecture composes nn/ layers over its ParamStore and declares its
// Hugging Face weight names; it never writes backward code.
// Legend: B batch, T input length (decoder-only) or encoder length (T5), Td decoder length, V vocab.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "s2s/generate/kv_cache.h"
#include "s2s/models/model_config.h"
#include "s2s/nn/backend.h"
#include "s2s/nn/functional.h"
#include "s2s/nn/graph.h"
#include "s2s/nn/param.h"
#include "s2s/ops/cross_entropy.h"

namespace s2s {

// One batch, as int32 arrays that must stay valid until backward has run.
struct Batch {
  int64_t B = 0, T = 0;
  const int32_t* input_ids = nullptr;       // (B,T)
  const int32_t* attention_mask = nullptr;  // (B,T) 1 = token, 0 = padding; null = all ones
  const int32_t* labels = nullptr;          // decoder-only (B,T); T5 (B,Td); -100 = ignored
  // Decoder-only: the position of each token (B,T) (RoPE angle, GPT-2's wpe row); null = 0..T-1
  // in every row, as transformers uses in training. For left-padded batches (generation) fill
  // it with position_ids_from_attention_mask.
  const int32_t* position_ids = nullptr;
  // Encoder-decoder only:
  int64_t Td = 0;
  const int32_t* decoder_input_ids = nullptr;  // (B,Td); null = labels shifted right
  const int32_t* decoder_attention_mask = nullptr;  // (B,Td) or null
};

struct ForwardResult {
  // (B*T, V) decoder-only, (B*Td, V) T5; the unshifted logits. Null when the batch has labels
  // and the model's loss is chunked (Model::set_chunked_loss) or the pass's caller reads the
  // loss only on a backend that pads the logits' rows (Graph::loss_only).
  Var* logits = nullptr;
  Var* loss = nullptr;    // (1,) or null when the batch has no labels
  int64_t count = 0;      // tokens counted by the loss
};

// A linear layer LoRA may target, by its Hugging Face module path
// ("transformer.h.0.attn.c_attn", "model.layers.3.self_attn.q_proj", "encoder.block.0.layer.0.SelfAttention.q").
struct LinearModule {
  std::string path;
  nn::LinearWeights* weights;
};

// The dtype of the linear layers' matmuls. Master weights, gradients, optimizer state,
// activations, norms, softmax, attention (its QK^T / PV products included) and losses are fp32
// in both; accumulation is always fp32.
//   F32:  every matmul in fp32.
//   BF16: each linear layer's weight has a bf16 copy (Param::compute, refreshed after every
//         optimizer step) and its forward, dinp and dweight GEMMs round the activation /
//         gradient to bf16 and run gemm_bf16 (AVX-512 BF16 / AMX where present; elsewhere the
//         GEMM widens bf16 to fp32 exactly: same numbers, slower). LoRA A/B stay fp32.
//   F16:  the same with fp16 copies and fp16-rounded activations / gradients (torch.autocast's
//         float16 recipe for linear layers): tensor cores on a GPU; on the CPU the GEMM widens
//         the fp16 operands to fp32 exactly (fp32 speed, fp16 numbers). fp16's range is small,
//         so training scales the loss (DynamicLossScaler, s2s/train/loss_scaler.h).
enum class ComputeDType : uint8_t { F32 = 0, BF16 = 1, F16 = 2 };

const char* compute_dtype_name(ComputeDType dtype);  // "float32" | "bfloat16" | "float16"

class Model {
 public:
  virtual ~Model() = default;

  const ModelConfig& config() const { return config_; }
  ParamStore& params() { return params_; }

  // ---- device ----
  // The backend the params live on (s2s/nn/backend.h): the CPU until to_backend.
  Backend& backend() const { return params_.backend(); }
  Device device() const {
    return Device{params_.backend().kind(), params_.backend().device_index()};
  }
  // Moves every param (values, gradients, moments, compute copies) into `backend`'s memory
  // (ParamStore::move_to); create, load weights and set the compute dtype first. From then on
  // forward() needs a graph on the same backend (Graph::set_backend; S2S_ARGUMENT otherwise),
  // LoRA, training and saving work as on the CPU, and generation is CPU-only (S2S_DEVICE).
  void to_backend(std::shared_ptr<Backend> backend);

  // Logits and (with labels) the loss: mean over counted tokens or, for gradient accumulation,
  // the sum (the trainer divides by the total count before the optimizer step). Causal models
  // shift labels inside; T5 does not.
  virtual ForwardResult forward(Graph& g, const Batch& batch, LossReduction reduction) = 0;

  // Every linear layer by module path, for LoRA targeting.
  virtual std::vector<LinearModule> linear_modules() = 0;

  // Switches the compute dtype (above). BF16 / F16 mark the weight of every linear_modules()
  // entry (the tied head's embedding table included, whose lookup stays fp32) for a copy of its
  // value in that dtype, trainable or frozen; weights already bound as views of that dtype are
  // used as they are.
  // Costs 2 bytes per marked element; F32 frees the copies. May be called before or after
  // load_weights / set_trainable / LoRA: the store keeps the copies in step.
  void set_compute_dtype(ComputeDType dtype);
  ComputeDType compute_dtype() const { return compute_dtype_; }
  // AttentionOptions::products for this compute dtype: attention's products in bf16 / f16 where
  // the backend has tensor cores for them (torch.autocast runs SDPA on bf16/f16 q, k, v).
  DType attention_products() const {
    return compute_dtype_ == ComputeDType::BF16 ? DType::BF16
           : compute_dtype_ == ComputeDType::F16 ? DType::F16
                                                 : DType::F32;
  }

  // Gradient checkpointing (transformers' gradient_checkpointing_enable()): forward() runs each
  // transformer block (T5: of both stacks) as a checkpointed segment (Graph::checkpoint), so a
  // training pass keeps one activation per block instead of all of them and backward recomputes
  // each block once. Same gradients to the bit, about one more forward of the blocks in time.
  // Off by default; no effect under g.no_grad (generation).
  void set_gradient_checkpointing(bool on) { gradient_checkpointing_ = on; }
  bool gradient_checkpointing() const { return gradient_checkpointing_; }

  // Chunked loss (nn::linear_cross_entropy): forward() with labels runs the LM head and the
  // loss a chunk of rows at a time (64 MiB of logits, at least Backend::min_loss_chunk_rows:
  // 4096 rows on a GPU; nn::loss_chunk_rows), so the (N,V) logits
  // and their gradient never exist whole, and returns no logits (ForwardResult::logits null).
  // The same loss and gradients up to the order dW's chunks are summed in; one more forward
  // GEMM of the head unless the pass sets Graph::known_dloss. Off by default; a head with LoRA
  // keeps the plain path. chunk_rows > 0 sets the rows per chunk instead (tests, benches).
  void set_chunked_loss(bool on, int64_t chunk_rows = 0) {
    chunked_loss_ = on;
    loss_chunk_rows_ = chunk_rows;
  }
  bool chunked_loss() const { return chunked_loss_; }
  // The labels forward() will count (ForwardResult::count) for this batch, known before it runs:
  // a decoder's shifted labels (positions 1..T-1 of each row), T5's as they are. fp16's backward
  // seed (scale / count) is then known ahead too (Graph::known_dloss).
  int64_t counted_labels(const Batch& batch) const;

  // Names under which a tied parameter may also appear in a checkpoint (e.g. "lm_head.weight"
  // for GPT-2's "transformer.wte.weight"); Hugging Face usually omits them.
  virtual std::vector<std::pair<std::string, std::string>> tied_aliases() const = 0;

  // ---- generation (s2s/generate/): inference over a KV cache ----
  // Run with g.no_grad set: no tape, no gradient memory. The defaults refuse (an architecture
  // without a generation forward).
  bool is_encoder_decoder() const { return config_.arch == Architecture::T5; }
  // The decoder self-attention cache this model needs.
  virtual KVCacheShape self_cache_shape() const;
  // Encoder-decoder: the cross-attention cache (layers = 0 for decoder-only models).
  virtual KVCacheShape cross_cache_shape() const { return {}; }
  // `rows` x T new tokens (rows, T) at the cache's current length -> logits (rows, V) of each
  // row's last new token. Writes the new keys/values into the cache; the caller advances it.
  // positions (rows, T): decoder-only position ids (GPT-2's wpe row, RoPE angle); the T5
  // decoder ignores them (its relative bias comes from the cache length). tokens and positions
  // are tensor memory, as the ops take them (Graph::indices: the host arrays themselves on the
  // CPU), so a caller can keep them at fixed device addresses.
  virtual Var* forward_cached(Graph& g, const int32_t* tokens, const int32_t* positions,
                              int64_t rows, int64_t T, KVCache& cache);
  // Whether forward_cached with T = 1 queues the same device work at every decoding step for the
  // same rows, its only per-step values being the contents of tokens, positions and the cache's
  // index arrays: then generation records one step and replays it (Backend::record). Every
  // family here (T5's position bias reads the length from the cache's key_end on the device).
  virtual bool decoding_step_replayable() const { return false; }
  // Encoder-decoder: runs the encoder over batch (input_ids, attention_mask; B = the cache's
  // cross items) and stores every decoder layer's cross-attention keys/values in the cache.
  virtual void encode_to_cache(Graph& g, const Batch& batch, KVCache& cache);

 protected:
  explicit Model(ModelConfig config) : config_(std::move(config)) {}
  // forward() starts with this: S2S_ARGUMENT when g runs on another backend than the params.
  void expect_graph_backend(const Graph& g, const char* model) const;
  // One transformer block of forward(): block(g) through g.checkpoint when gradient
  // checkpointing is on, else through g.transient (which releases the block's intermediates
  // in a no-grad pass and otherwise just runs it). block must capture by value (it runs again
  // in backward).
  Var* run_block(Graph& g, std::function<Var*(Graph&)> block) const {
    return gradient_checkpointing_ ? g.checkpoint(std::move(block)) : g.transient(block);
  }
  // One block of forward_cached over T new positions per row: a prefill (T > 1) through
  // g.transient, so a long prompt holds one block's activations at a time; a decoding step
  // (T = 1) runs it in place (a few rows' activations, and no copy per block in the step that
  // is recorded and replayed).
  static Var* run_cached_block(Graph& g, int64_t T, const std::function<Var*(Graph&)>& block) {
    return T > 1 ? g.transient(block) : block(g);
  }
  // x (N,C), the final hidden states -> the head's logits and, with labels (N,) on the host,
  // the loss: nn::linear then nn::cross_entropy, or nn::linear_cross_entropy (no logits) when
  // the loss is chunked. Every architecture's forward() ends here.
  ForwardResult head_and_loss(Graph& g, Var* x, const nn::LinearWeights& head,
                              const int32_t* labels, int64_t N, LossReduction reduction) const;
  ModelConfig config_;
  ParamStore params_;
  ComputeDType compute_dtype_ = ComputeDType::F32;
  bool gradient_checkpointing_ = false;
  bool chunked_loss_ = false;
  int64_t loss_chunk_rows_ = 0;  // 0: nn::loss_chunk_rows
};

// transformers' generation positions for a left-padded batch: cumsum(attention_mask) - 1 along
// each row, with padding positions set to 1 (its masked_fill_(attention_mask == 0, 1)).
// mask (B,T) int32 of 0/1, out (B,T).
void position_ids_from_attention_mask(const int32_t* attention_mask, int64_t B, int64_t T,
                                      int32_t* out);

// S2S_DEVICE unless the model's params are on a host backend: generation (KV cache, sampling)
// runs on the CPU only for now. `what` prefixes the message.
void expect_host_model(const Model& model, const char* what);

// Builds the architecture named by config.model_type, params zero-filled (load weights next).
std::unique_ptr<Model> create_model(const ModelConfig& config);

}  // namespace s2s
