// JS family "model": a loaded model as a JS object (ObjectWrap) whose slow methods run off the JS
// thread. One call at a time per model (S2S_BUSY otherwise): the model and its graph are not
// thread-safe, and the trainer drives them one step after another anyway. Batch arrays are
// copied into the job (they are small), so JS may reuse them as soon as a call returns.
#include <napi.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "generate_call.h"
#include "promise_worker.h"
#include "s2s/device.h"
#include "s2s/io/atomic_file.h"
#include "s2s/models/init_weights.h"
#include "s2s/models/lora.h"
#include "s2s/models/model.h"
#include "s2s/models/weights.h"
#include "s2s/nn/graph.h"
#include "s2s/nn/pass_replay.h"
#include "s2s/train/optimizer.h"
#include "s2s/train/optimizer_state.h"

namespace s2s_napi {

namespace {

// Everything a loaded model needs kept together; owned by the JS object.
struct LoadedModel {
  std::unique_ptr<s2s::Model> model;
  std::vector<std::shared_ptr<s2s::SafetensorsFile>> files;  // bound weights may view them
  s2s::Graph graph;
  // Training micro-steps recorded and replayed on a GPU (declared after graph and model: its
  // recordings go first).
  s2s::PassReplay replay;
  s2s::LoadReport report;
  std::string config_text;                    // config.json as read, written back by saveModel
  std::unique_ptr<s2s::LoraAdapter> adapter;  // attached LoRA, if any (the model points into it)
  s2s::KVCache cache;                         // generation's, kept between calls (memory only grows)
  std::atomic<bool> cancel{false};            // abortGenerate() sets it; generate clears it
  // fp16 compute trains with a dynamic loss scale (torch GradScaler's defaults until
  // configureLossScaler); disabled (scale 1, never skips) in fp32 and bf16. set_compute_dtype
  // keeps it in step with the dtype.
  s2s::DynamicLossScaler scaler{disabled_scaler()};
  // trainStep's micro-batch losses, kept on the device until its one wait (train_step).
  s2s::Buffer step_losses;
  s2s::Backend* step_losses_on = nullptr;  // the backend step_losses belongs to

  static s2s::LossScalerOptions disabled_scaler() {
    s2s::LossScalerOptions o;
    o.enabled = false;
    return o;
  }
  void set_compute_dtype(s2s::ComputeDType dtype) {
    model->set_compute_dtype(dtype);
    s2s::LossScalerOptions o;
    o.enabled = dtype == s2s::ComputeDType::F16;
    scaler = s2s::DynamicLossScaler(o);
  }
};

// A batch copied out of JS.
struct BatchCopy {
  int64_t B = 0, T = 0, Td = 0;
  std::vector<int32_t> input_ids, attention_mask, labels, position_ids, decoder_input_ids,
      decoder_attention_mask;

  s2s::Batch view() const {
    s2s::Batch b;
    b.B = B;
    b.T = T;
    b.Td = Td;
    auto ptr = [](const std::vector<int32_t>& v) { return v.empty() ? nullptr : v.data(); };
    b.input_ids = ptr(input_ids);
    b.attention_mask = ptr(attention_mask);
    b.labels = ptr(labels);
    b.position_ids = ptr(position_ids);
    b.decoder_input_ids = ptr(decoder_input_ids);
    b.decoder_attention_mask = ptr(decoder_attention_mask);
    return b;
  }
};

int64_t size_field(const Napi::Object& o, const char* key, const char* fn, bool required) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() && !required) return 0;
  const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
  if (!(d >= 1) || d != static_cast<double>(static_cast<int64_t>(d))) {
    s2s::fail(s2s::code::kArgument, fn, "expected batch.", key, " to be a positive integer");
  }
  return static_cast<int64_t>(d);
}

std::vector<int32_t> ids_field(const Napi::Object& o, const char* key, size_t expected,
                               const char* fn, bool required) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) {
    if (required) s2s::fail(s2s::code::kArgument, fn, "expected batch.", key, " (an Int32Array)");
    return {};
  }
  const std::string name = std::string("batch.") + key;
  Int32Span span = int32_arg(v, fn, name.c_str());
  if (span.size != expected) {
    s2s::fail(s2s::code::kShape, fn, "expected ", name, " to hold ", expected, " ids, got ",
              span.size);
  }
  return std::vector<int32_t>(span.data, span.data + span.size);
}

BatchCopy batch_arg(const Napi::Value& value, const char* fn, bool encoder_decoder) {
  if (!value.IsObject()) s2s::fail(s2s::code::kArgument, fn, "expected a batch object");
  Napi::Object o = value.As<Napi::Object>();
  BatchCopy b;
  b.B = size_field(o, "batchSize", fn, true);
  b.T = size_field(o, "seqLen", fn, true);
  const size_t n = static_cast<size_t>(b.B * b.T);
  b.input_ids = ids_field(o, "inputIds", n, fn, true);
  b.attention_mask = ids_field(o, "attentionMask", n, fn, false);
  if (encoder_decoder) {
    b.Td = size_field(o, "decoderLen", fn, true);
    const size_t nd = static_cast<size_t>(b.B * b.Td);
    b.labels = ids_field(o, "labels", nd, fn, false);
    b.decoder_input_ids = ids_field(o, "decoderInputIds", nd, fn, false);
    b.decoder_attention_mask = ids_field(o, "decoderAttentionMask", nd, fn, false);
    if (b.labels.empty() && b.decoder_input_ids.empty()) {
      s2s::fail(s2s::code::kArgument, fn, "expected batch.labels or batch.decoderInputIds");
    }
  } else {
    b.labels = ids_field(o, "labels", n, fn, false);
    b.position_ids = ids_field(o, "positionIds", n, fn, false);
  }
  return b;
}

s2s::LossReduction reduction_option(const Napi::Object& opts, const char* fn) {
  Napi::Value r = opts.Get("reduction");
  if (r.IsUndefined()) return s2s::LossReduction::Mean;
  const std::string v = r.IsString() ? r.As<Napi::String>().Utf8Value() : "";
  if (v == "mean") return s2s::LossReduction::Mean;
  if (v == "sum") return s2s::LossReduction::Sum;
  s2s::fail(s2s::code::kArgument, fn, "expected options.reduction 'mean' or 'sum', got '", v, "'");
}

Napi::Object options_at(const Napi::CallbackInfo& info, size_t i) {
  return i < info.Length() && info[i].IsObject() ? info[i].As<Napi::Object>()
                                                 : Napi::Object::New(info.Env());
}

struct OptimizerArgs {
  s2s::OptimizerConfig config;
  int64_t step = 0;
  double lr = 0;
  float grad_scale = 1.0f;
};

// {step, lr, beta1, beta2, eps, weightDecay, maxGradNorm, gradScale}
OptimizerArgs optimizer_args(const Napi::Object& opts, const char* fn) {
  OptimizerArgs a;
  a.config.adamw.beta1 = number_option(opts, "beta1", 0.9, fn);
  a.config.adamw.beta2 = number_option(opts, "beta2", 0.999, fn);
  a.config.adamw.eps = number_option(opts, "eps", 1e-8, fn);
  a.config.adamw.weight_decay = number_option(opts, "weightDecay", 0.0, fn);
  a.config.max_grad_norm = number_option(opts, "maxGradNorm", 1.0, fn);
  const double step = number_option(opts, "step", 0, fn);
  a.lr = number_option(opts, "lr", -1, fn);
  a.grad_scale = static_cast<float>(number_option(opts, "gradScale", 1.0, fn));
  S2S_REQUIRE(step >= 1 && step == static_cast<double>(static_cast<int64_t>(step)),
              s2s::code::kArgument, fn, "expected options.step to be an integer >= 1, got ", step);
  S2S_REQUIRE(a.lr >= 0, s2s::code::kArgument, fn, "expected options.lr >= 0, got ", a.lr);
  a.step = static_cast<int64_t>(step);
  return a;
}

// One micro-batch: forward with the summed loss, then backward into the params' gradients.
// fp16 compute: the backward starts from scale / step_tokens instead of 1, so the gradients are
// those of the step's MEAN loss times the scale, what torch's GradScaler scales (step_tokens:
// the counted tokens of every micro-batch of the optimizer step; <= 0: this batch's count,
// Model::counted_labels, checked against the forward's), and
// the optimizer step then only unscales. A summed loss times the scale would make every
// per-token gradient `count` times larger than torch's and overflow fp16 at torch's scales.
// queue_batch queues that work and waits for nothing: the loss stays on the device (r.loss);
// accumulate_batch then reads it.
struct QueuedBatch {
  s2s::ForwardResult r;
  bool replayed = false;  // the forward and backward ran as a recording (s2s::PassReplay)
};
QueuedBatch queue_batch(LoadedModel& lm, const BatchCopy& batch, bool training,
                        uint64_t dropout_seed, double step_tokens) {
  s2s::Graph& g = lm.graph;
  const bool fp16 = lm.scaler.options().enabled;
  auto seed = [&lm, fp16](double tokens) {
    return fp16 ? lm.scaler.scale() / static_cast<float>(tokens) : 1.0f;
  };
  const double tokens =
      step_tokens > 0 ? step_tokens : double(lm.model->counted_labels(batch.view()));
  s2s::ForwardResult r;
  // The pass, which a GPU may record and replay (s2s::PassReplay): it sets its own settings
  // after the graph's reset, and may run more than once.
  auto pass = [&] {
    g.training = training;
    g.dropout_seed = dropout_seed;
    // The seed is known before the forward (fp16's from the batch's count when the step's is
    // not given): the chunked loss then makes the head's gradients without a second GEMM
    // (Graph::known_dloss).
    if (tokens > 0) g.known_dloss = seed(tokens);
    // The loss is read after the backward is queued: a GPU then runs the pass without a wait in
    // the middle (Graph::loss_on_device), and the pass can be recorded.
    g.loss_on_device = true;
    g.loss_only = true;  // a GPU pads the logits' rows for its GEMMs (Graph::loss_only)
    r = lm.model->forward(g, batch.view(), s2s::LossReduction::Sum);
    if (r.count > 0) {
      S2S_REQUIRE(step_tokens > 0 || r.count == static_cast<int64_t>(tokens),
                  s2s::code::kInternal, "accumulate", "the model counted ", r.count,
                  " labels, counted_labels ", tokens);
      g.backward(r.loss, seed(tokens));
    }
  };
  const bool replayed = lm.replay.run(g, pass);
  return QueuedBatch{r, replayed};
}

struct AccumulateOut {
  double loss_sum = 0;
  int64_t count = 0;
  bool replayed = false;
};
AccumulateOut accumulate_batch(LoadedModel& lm, const BatchCopy& batch, bool training,
                               uint64_t dropout_seed, double step_tokens) {
  const QueuedBatch q = queue_batch(lm, batch, training, dropout_seed, step_tokens);
  AccumulateOut out{lm.graph.read_scalar(q.r.loss), q.r.count, q.replayed};
  lm.graph.ops().synchronize();  // a GPU reports bad inputs here (the CPU has thrown already)
  return out;
}

// One optimizer step over micro-batches (trainStep): every forward and backward queued, each
// loss copied to its slot (LoadedModel::step_losses: the next pass reuses the activations), the
// update queued, then one wait that raises a bad batch (no weight changed then) and reads the
// norm and the losses. The same bits as accumulate for each batch and then optimizerStep with
// gradScale 1 / count (float16: 1, and stepTokens the batches' counted tokens).
struct StepOut {
  double loss_sum = 0;  // the micro-batches' summed losses, added in order
  int64_t count = 0;
  int64_t replayed = 0;
  size_t micro_steps = 0;
  s2s::OptimizerStepStats stats;
};
StepOut queue_and_finish_step(LoadedModel& lm, const std::vector<BatchCopy>& batches,
                              const std::vector<uint64_t>& seeds, bool training,
                              const OptimizerArgs& args) {
  const bool fp16 = lm.scaler.options().enabled;
  s2s::Backend& ops = lm.graph.ops();
  // float16 with micro-batches: each backward's seed is scale / (the step's counted tokens).
  double step_tokens = 0;
  if (batches.size() > 1) {
    for (const BatchCopy& b : batches) step_tokens += double(lm.model->counted_labels(b.view()));
  }
  const size_t n = batches.size();
  if (lm.step_losses_on != &ops || lm.step_losses.bytes() < n * sizeof(float)) {
    lm.step_losses = ops.allocate(n * sizeof(float));
    lm.step_losses_on = &ops;
  }
  float* slots = lm.step_losses.f32();
  std::vector<float> losses(n, 0.0f);
  std::vector<bool> on_host(n, false);
  StepOut out;
  out.micro_steps = n;
  for (size_t m = 0; m < n; ++m) {
    const QueuedBatch q = queue_batch(lm, batches[m], training, seeds[m], step_tokens);
    out.count += q.r.count;
    out.replayed += q.replayed ? 1 : 0;
    if (q.r.loss->host_known) {
      losses[m] = q.r.loss->host_value;
      on_host[m] = true;
    } else {
      ops.copy_values(s2s::Tensor::contiguous(slots + m, s2s::DType::F32, {1}), q.r.loss->value);
    }
  }
  S2S_REQUIRE(step_tokens == 0 || double(out.count) == step_tokens, s2s::code::kInternal,
              "trainStep", "the model counted ", out.count, " labels, counted_labels ",
              step_tokens);
  // fp16: the backward already divided by the count (queue_batch).
  const float scale =
      out.count > 0 && !fp16 ? 1.0f / static_cast<float>(out.count) : 1.0f;
  s2s::ParamStore& params = lm.model->params();
  s2s::queue_optimizer_step(params, args.config, args.step, args.lr, scale * args.grad_scale,
                            &lm.scaler);
  out.stats = s2s::finish_optimizer_step(params, &lm.scaler);  // raises a bad batch
  std::vector<float> device(n);
  ops.download(device.data(), slots, n * sizeof(float));
  for (size_t m = 0; m < n; ++m) out.loss_sum += on_host[m] ? losses[m] : device[m];
  return out;
}

// A step that fails (a bad batch) leaves no gradient behind for the next one to add to.
StepOut train_step(LoadedModel& lm, const std::vector<BatchCopy>& batches,
                   const std::vector<uint64_t>& seeds, bool training, const OptimizerArgs& args) {
  try {
    return queue_and_finish_step(lm, batches, seeds, training, args);
  } catch (...) {
    try {
      lm.model->params().zero_grads();
      lm.graph.ops().synchronize();
    } catch (...) {  // a device that fails again: the first error is the one to report
    }
    throw;
  }
}

// The plain LM head and loss (the logits made whole) while in scope, for a forward that must
// return the logits; the model's chunked-loss setting is restored after.
class PlainLoss {
 public:
  explicit PlainLoss(s2s::Model& m) : m_(m), chunked_(m.chunked_loss()) {
    m_.set_chunked_loss(false);
  }
  ~PlainLoss() { m_.set_chunked_loss(chunked_); }
  PlainLoss(const PlainLoss&) = delete;
  PlainLoss& operator=(const PlainLoss&) = delete;

 private:
  s2s::Model& m_;
  bool chunked_;
};

}  // namespace

class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeModel",
                       {InstanceMethod("info", &ModelWrap::Info),
                        InstanceMethod("memory", &ModelWrap::Memory),
                        InstanceMethod("setTrainable", &ModelWrap::SetTrainable),
                        InstanceMethod("setGradientCheckpointing",
                                       &ModelWrap::SetGradientCheckpointing),
                        InstanceMethod("setChunkedLoss", &ModelWrap::SetChunkedLoss),
                        InstanceMethod("forward", &ModelWrap::Forward),
                        InstanceMethod("accumulate", &ModelWrap::Accumulate),
                        InstanceMethod("optimizerStep", &ModelWrap::OptimizerStep),
                        InstanceMethod("trainStep", &ModelWrap::TrainStep),
                        InstanceMethod("lossScaler", &ModelWrap::LossScaler),
                        InstanceMethod("setLossScaler", &ModelWrap::SetLossScaler),
                        InstanceMethod("configureLossScaler", &ModelWrap::ConfigureLossScaler),
                        InstanceMethod("saveOptimizerState", &ModelWrap::SaveOptimizerState),
                        InstanceMethod("loadOptimizerState", &ModelWrap::LoadOptimizerState),
                        InstanceMethod("applyLora", &ModelWrap::ApplyLora),
                        InstanceMethod("loadAdapter", &ModelWrap::LoadAdapter),
                        InstanceMethod("saveAdapter", &ModelWrap::SaveAdapter),
                        InstanceMethod("mergeLora", &ModelWrap::MergeLora),
                        InstanceMethod("detachLora", &ModelWrap::DetachLora),
                        InstanceMethod("saveModel", &ModelWrap::SaveModel),
                        InstanceMethod("generate", &ModelWrap::Generate),
                        InstanceMethod("abortGenerate", &ModelWrap::AbortGenerate)});
  }

  explicit ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {
    // Only loadModel constructs these, passing the loaded model as an External.
    if (info.Length() != 1 || !info[0].IsExternal()) {
      throw Napi::TypeError::New(info.Env(), "NativeModel is created by loadModel()");
    }
    loaded_.reset(info[0].As<Napi::External<LoadedModel>>().Data());
  }

 private:
  bool encoder_decoder() const {
    return loaded_->model->config().arch == s2s::Architecture::T5;
  }

  // Marks the model busy for the duration of an async call; the returned closure clears it.
  PromiseWorker::Settle claim(const char* fn) {
    if (busy_) {
      s2s::fail(s2s::code::kBusy, fn, "expected the model to be idle, but a ",
                busy_with_, " call is still running; await it first");
    }
    busy_ = true;
    busy_with_ = fn;
    return [this] { busy_ = false; };
  }

  KeepAlive keep_this(const Napi::CallbackInfo& info) {
    KeepAlive keep;
    keep.hold(info.This());  // the model cannot be collected while a job uses it
    return keep;
  }

  Napi::Value Info(const Napi::CallbackInfo& cb) {
    return guarded(cb, [this](const Napi::CallbackInfo& info) -> Napi::Value {
      Napi::Env env = info.Env();
      s2s::Model& m = *loaded_->model;
      Napi::Object out = Napi::Object::New(env);
      out.Set("modelType", m.config().model_type);
      out.Set("computeDtype", s2s::compute_dtype_name(m.compute_dtype()));
      out.Set("device", m.device().name());
      out.Set("computeCopyBytes", static_cast<double>(m.params().compute_bytes()));
      out.Set("parameters", static_cast<double>(m.params().count_elements(false)));
      out.Set("trainableParameters", static_cast<double>(m.params().count_elements(true)));
      out.Set("gradientCheckpointing", m.gradient_checkpointing());
      out.Set("chunkedLoss", m.chunked_loss());
      Napi::Array params = Napi::Array::New(env);
      uint32_t i = 0;
      for (s2s::Param* p : m.params().all()) {
        Napi::Object po = Napi::Object::New(env);
        po.Set("name", p->name);
        Napi::Array shape = Napi::Array::New(env, p->value.ndim);
        for (int d = 0; d < p->value.ndim; ++d) {
          shape.Set(static_cast<uint32_t>(d), static_cast<double>(p->value.shape[d]));
        }
        po.Set("shape", shape);
        po.Set("dtype", s2s::dtype_name(p->value.dtype));
        po.Set("trainable", p->trainable);
        params.Set(i++, po);
      }
      out.Set("params", params);
      Napi::Array unused = Napi::Array::New(env, loaded_->report.unused.size());
      for (size_t u = 0; u < loaded_->report.unused.size(); ++u) {
        unused.Set(static_cast<uint32_t>(u), loaded_->report.unused[u]);
      }
      out.Set("unusedTensors", unused);
      return out;
    });
  }

  // memory({resetPeak}) -> bytes behind the params by role, the activations' high-water mark
  // since the last reset (every pass this model ran: training, evaluation, generation) and what
  // their arenas hold reserved, and on a GPU the device's total and free memory. resetPeak
  // starts the next high-water mark from what is in use now.
  Napi::Value Memory(const Napi::CallbackInfo& cb) {
    return guarded(cb, [this](const Napi::CallbackInfo& info) -> Napi::Value {
      const char* fn = "memory";
      const bool reset = bool_option(options_at(info, 0), "resetPeak", false, fn);
      if (busy_) s2s::fail(s2s::code::kBusy, fn, "expected the model to be idle");
      Napi::Env env = info.Env();
      s2s::Model& m = *loaded_->model;
      const s2s::ParamStore::MemoryUse p = m.params().memory_use();
      const s2s::Graph::ActivationMemory a = loaded_->graph.activation_memory();
      Napi::Object out = Napi::Object::New(env);
      out.Set("device", m.device().name());
      out.Set("parameterBytes", static_cast<double>(p.values));
      out.Set("mappedParameterBytes", static_cast<double>(p.mapped_values));
      out.Set("gradientBytes", static_cast<double>(p.grads));
      out.Set("optimizerStateBytes", static_cast<double>(p.moments));
      out.Set("computeCopyBytes", static_cast<double>(p.compute));
      out.Set("activationPeakBytes", static_cast<double>(a.peak));
      out.Set("activationReservedBytes", static_cast<double>(a.reserved));
      const s2s::Backend::DeviceMemory d = m.params().backend().device_memory();
      if (d.known && d.device_total > 0) {
        out.Set("deviceTotalBytes", static_cast<double>(d.device_total));
        out.Set("deviceFreeBytes", static_cast<double>(d.device_free));
      } else {
        out.Set("deviceTotalBytes", env.Null());
        out.Set("deviceFreeBytes", env.Null());
      }
      if (reset) loaded_->graph.reset_peaks();
      return out;
    });
  }

  // setTrainable(true | false): every parameter (full fine-tuning) or none.
  Napi::Value SetTrainable(const Napi::CallbackInfo& cb) {
    return guarded(cb, [this](const Napi::CallbackInfo& info) -> Napi::Value {
      if (info.Length() < 1 || !info[0].IsBoolean()) {
        throw_argument("setTrainable", "expected true (train every parameter) or false");
      }
      if (busy_) s2s::fail(s2s::code::kBusy, "setTrainable", "expected the model to be idle");
      const bool on = info[0].As<Napi::Boolean>().Value();
      s2s::ParamStore& ps = loaded_->model->params();
      for (s2s::Param* p : ps.all()) ps.set_trainable(*p, on);
      return info.Env().Undefined();
    });
  }

  // setGradientCheckpointing(true | false): Model::set_gradient_checkpointing.
  Napi::Value SetGradientCheckpointing(const Napi::CallbackInfo& cb) {
    return guarded(cb, [this](const Napi::CallbackInfo& info) -> Napi::Value {
      if (info.Length() < 1 || !info[0].IsBoolean()) {
        throw_argument("setGradientCheckpointing", "expected true (recompute each block in "
                                                   "backward) or false");
      }
      if (busy_) {
        s2s::fail(s2s::code::kBusy, "setGradientCheckpointing", "expected the model to be idle");
      }
      loaded_->model->set_gradient_checkpointing(info[0].As<Napi::Boolean>().Value());
      return info.Env().Undefined();
    });
  }

  // setChunkedLoss(true | false): Model::set_chunked_loss.
  Napi::Value SetChunkedLoss(const Napi::CallbackInfo& cb) {
    return guarded(cb, [this](const Napi::CallbackInfo& info) -> Napi::Value {
      if (info.Length() < 1 || !info[0].IsBoolean()) {
        throw_argument("setChunkedLoss", "expected true (the LM head and the loss a chunk of "
                                         "rows at a time) or false");
      }
      if (busy_) s2s::fail(s2s::code::kBusy, "setChunkedLoss", "expected the model to be idle");
      loaded_->model->set_chunked_loss(info[0].As<Napi::Boolean>().Value());
      return info.Env().Undefined();
    });
  }

  // forward(batch, {reduction, logits: boolean}) -> Promise<{loss, count, logits?}>; asked for
  // logits, a model with a chunked loss takes the plain path for this call.
  Napi::Value Forward(const Napi::CallbackInfo& cb) {
    return guarded(cb, [this](const Napi::CallbackInfo& info) -> Napi::Value {
      const char* fn = "forward";
      BatchCopy batch = batch_arg(info[0], fn, encoder_decoder());
      Napi::Object opts = options_at(info, 1);
      const s2s::LossReduction reduction = reduction_option(opts, fn);
      const bool want_logits = bool_option(opts, "logits", false, fn);
      struct Out { double loss = NAN; int64_t count = 0; std::vector<float> logits; int64_t V = 0; };
      auto out = std::make_shared<Out>();
      LoadedModel* lm = loaded_.get();
      auto settle = claim(fn);
      return PromiseWorker::Run(
          info.Env(), "s2s.model.forward", keep_this(info),
          [lm, batch = std::move(batch), reduction, want_logits, out] {
            lm->graph.reset();
            lm->graph.training = false;
            lm->graph.loss_only = !want_logits;
            std::optional<PlainLoss> plain;
            if (want_logits) plain.emplace(*lm->model);
            s2s::ForwardResult r = lm->model->forward(lm->graph, batch.view(), reduction);
            if (r.loss) out->loss = lm->graph.read_scalar(r.loss);
            out->count = r.count;
            if (want_logits) {
              const s2s::Tensor& l = r.logits->value;
              out->V = l.shape[l.ndim - 1];
              out->logits.resize(static_cast<size_t>(l.numel()));
              lm->graph.ops().download(out->logits.data(), l.data,
                                       sizeof(float) * out->logits.size());
            }
            lm->graph.ops().synchronize();
          },
          [out](Napi::Env env) -> Napi::Value {
            Napi::Object o = Napi::Object::New(env);
            o.Set("loss", std::isnan(out->loss) ? env.Null() : Napi::Number::New(env, out->loss));
            o.Set("count", static_cast<double>(out->count));
            if (!out->logits.empty()) {
              Napi::Float32Array a = Napi::Float32Array::New(env, out->logits.size());
              std::memcpy(a.Data(), out->logits.data(), sizeof(float) * out->logits.size());
              o.Set("logits", a);
              o.Set("vocabSize", static_cast<double>(out->V));
            }
            return o;
          },
          settle);
    });
  }

  // accumulate(batch, {training, dropoutSeed, stepTokens}) -> Promise<{lossSum, count, replayed}>:
  // forward
  // with the summed loss and backward, adding into the trainable params' gradients (one
  // micro-batch). float16: the gradients are of scale * loss / stepTokens (see accumulate_batch),
  // so optimizerStep's gradScale must then be 1, not 1 / count.
  Napi::Value Accumulate(const Napi::CallbackInfo& cb) {
    return guarded(cb, [this](const Napi::CallbackInfo& info) -> Napi::Value {
      const char* fn = "accumulate";
      BatchCopy batch = batch_arg(info[0], fn, encoder_decoder());
      if (batch.labels.empty()) s2s::fail(s2s::code::kArgument, fn, "expected batch.labels");
      Napi::Object opts = options_at(info, 1);
      const bool training = bool_option(opts, "training", true, fn);
      const double seed = number_option(opts, "dropoutSeed", 0, fn);
      const double step_tokens = number_option(opts, "stepTokens", 0, fn);
      S2S_REQUIRE(loaded_->model->params().count_elements(true) > 0, s2s::code::kArgument, fn,
                  "expected trainable parameters (call setTrainable(true) or attach LoRA)");
      auto out = std::make_shared<AccumulateOut>();
      LoadedModel* lm = loaded_.get();
      auto settle = claim(fn);
      return PromiseWorker::Run(
          info.Env(), "s2s.model.accumulate", keep_this(info),
          [lm, batch = std::move(batch), training, seed, step_tokens, out] {
            *out = accumulate_batch(*lm, batch, training, static_cast<uint64_t>(seed), step_tokens);
          },
          [out](Napi::Env env) -> Napi::Value {
            Napi::Object o = Napi::Object::New(env);
            o.Set("lossSum", out->loss_sum);
            o.Set("count", static_cast<double>(out->count));
            o.Set("replayed", out->replayed);
            return o;
          },
          settle);
    });
  }

  // optimizerStep({step, lr, beta1, beta2, eps, weightDecay, maxGradNorm, gradScale})
  //   -> Promise<{gradNorm, finite}>. In fp16 compute a non-finite gradient is a loss-scale
  //   overflow: the step is skipped and the scale backed off (lossScaler() tells the new one).
  Napi::Value OptimizerStep(const Napi::CallbackInfo& cb) {
    return guarded(cb, [this](const Napi::CallbackInfo& info) -> Napi::Value {
      const char* fn = "optimizerStep";
      const OptimizerArgs args = optimizer_args(options_at(info, 0), fn);
      struct Out { s2s::OptimizerStepStats stats; };
      auto out = std::make_shared<Out>();
      LoadedModel* lm = loaded_.get();
      auto settle = claim(fn);
      return PromiseWorker::Run(
          info.Env(), "s2s.model.optimizer_step", keep_this(info),
          [lm, args, out] {
            out->stats = s2s::optimizer_step(lm->model->params(), args.config, args.step, args.lr,
                                             args.grad_scale, &lm->scaler);
          },
          [out](Napi::Env env) -> Napi::Value {
            Napi::Object o = Napi::Object::New(env);
            o.Set("gradNorm", out->stats.grad_norm);
            o.Set("finite", out->stats.finite);
            return o;
          },
          settle);
    });
  }

  // lossScaler() -> {enabled, scale, growthTracker, skippedSteps}: the dynamic loss scale of
  // fp16 compute (enabled false, scale 1 otherwise). skippedSteps counts since the model was
  // loaded or its scaler last restored.
  Napi::Value LossScaler(const Napi::CallbackInfo& cb) {
    return guarded(cb, [this](const Napi::CallbackInfo& info) -> Napi::Value {
      const s2s::DynamicLossScaler& sc = loaded_->scaler;
      Napi::Object o = Napi::Object::New(info.Env());
      o.Set("enabled", sc.options().enabled);
      o.Set("scale", static_cast<double>(sc.scale()));
      o.Set("growthTracker", static_cast<double>(sc.state().growth_tracker));
      o.Set("skippedSteps", static_cast<double>(sc.skipped_steps()));
      return o;
    });
  }

  // configureLossScaler({initScale, growthFactor, backoffFactor, growthInterval}): a new loss
  // scaler with GradScaler's arguments (defaults as torch's) in place of the current one.
  Napi::Value ConfigureLossScaler(const Napi::CallbackInfo& cb) {
    return guarded(cb, [this](const Napi::CallbackInfo& info) -> Napi::Value {
      const char* fn = "configureLossScaler";
      if (busy_) s2s::fail(s2s::code::kBusy, fn, "expected the model to be idle");
      S2S_REQUIRE(loaded_->scaler.options().enabled, s2s::code::kArgument, fn,
                  "expected a model in float16 compute (only fp16 training scales the loss)");
      Napi::Object opts = options_at(info, 0);
      s2s::LossScalerOptions o;
      o.init_scale = static_cast<float>(number_option(opts, "initScale", o.init_scale, fn));
      o.growth_factor = static_cast<float>(number_option(opts, "growthFactor", o.growth_factor, fn));
      o.backoff_factor =
          static_cast<float>(number_option(opts, "backoffFactor", o.backoff_factor, fn));
      const double interval =
          number_option(opts, "growthInterval", static_cast<double>(o.growth_interval), fn);
      S2S_REQUIRE(interval == std::floor(interval) && interval >= 1, s2s::code::kArgument, fn,
                  "expected options.growthInterval to be an integer >= 1, got ", interval);
      o.growth_interval = static_cast<int64_t>(interval);
      loaded_->scaler = s2s::DynamicLossScaler(o);  // S2S_ARGUMENT naming a bad option
      return info.Env().Undefined();
    });
  }

  // setLossScaler({scale, growthTracker}): restores a checkpointed loss scale (exact resume).
  Napi::Value SetLossScaler(const Napi::CallbackInfo& cb) {
    return guarded(cb, [this](const Napi::CallbackInfo& info) -> Napi::Value {
      const char* fn = "setLossScaler";
      if (busy_) s2s::fail(s2s::code::kBusy, fn, "expected the model to be idle");
      S2S_REQUIRE(loaded_->scaler.options().enabled, s2s::code::kArgument, fn,
                  "expected a model in float16 compute (only fp16 training scales the loss)");
      Napi::Object opts = options_at(info, 0);
      s2s::LossScalerState st;
      st.scale = static_cast<float>(number_option(opts, "scale", -1, fn));
      const double tracker = number_option(opts, "growthTracker", 0, fn);
      S2S_REQUIRE(tracker == std::floor(tracker), s2s::code::kArgument, fn,
                  "expected options.growthTracker to be an integer, got ", tracker);
      st.growth_tracker = static_cast<int64_t>(tracker);
      s2s::LossScalerOptions o = loaded_->scaler.options();
      s2s::DynamicLossScaler restored(o);
      restored.load_state(st);  // S2S_ARGUMENT naming the bad field
      loaded_->scaler = restored;
      return info.Env().Undefined();
    });
  }

  // saveOptimizerState(path, step) -> Promise: the trainable params' AdamW moments and the last
  // step taken, as one safetensors file written atomically.
  Napi::Value SaveOptimizerState(const Napi::CallbackInfo& cb) {
    return guarded(cb, [this](const Napi::CallbackInfo& info) -> Napi::Value {
      const char* fn = "saveOptimizerState";
      const std::string file = string_arg(info, 0, fn, "a file path");
      const double step = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : -1;
      S2S_REQUIRE(step >= 0 && step == static_cast<double>(static_cast<int64_t>(step)), s2s::code::kArgument,
                  fn, "expected the step (an integer >= 0), got ", step);
      LoadedModel* lm = loaded_.get();
      auto settle = claim(fn);
      return PromiseWorker::Run(info.Env(), "s2s.model.save_optimizer_state", keep_this(info),
                                [lm, file, step] {
                                  s2s::save_optimizer_state(file, lm->model->params(),
                                                            static_cast<int64_t>(step));
                                },
                                nullptr, settle);
    });
  }

  // loadOptimizerState(path) -> Promise<{step}>: moments for exactly the trainable params.
  Napi::Value LoadOptimizerState(const Napi::CallbackInfo& cb) {
    return guarded(cb, [this](const Napi::CallbackInfo& info) -> Napi::Value {
      const char* fn = "loadOptimizerState";
      const std::string file = string_arg(info, 0, fn, "a file path");
      auto step = std::make_shared<int64_t>(0);
      LoadedModel* lm = loaded_.get();
      auto settle = claim(fn);
      return PromiseWorker::Run(
          info.Env(), "s2s.model.load_optimizer_state", keep_this(info),
          [lm, file, step] { *step = s2s::load_optimizer_state(file, lm->model->params()); },
          [step](Napi::Env env) -> Napi::Value {
            Napi::Object o = Napi::Object::New(env);
            o.Set("step", static_cast<double>(*step));
            return o;
          },
          settle);
    });
  }

  std::string string_arg(const Napi::CallbackInfo& info, size_t i, const char* fn,
                         const char* what) {
    if (i >= info.Length() || !info[i].IsString()) {
      s2s::fail(s2s::code::kArgument, fn, "expected ", what, " (a string)");
    }
    return info[i].As<Napi::String>().Utf8Value();
  }

  void expect_no_adapter(const char* fn) {
    if (loaded_->adapter && !loaded_->adapter->merged) {
      s2s::fail(s2s::code::kArgument, fn,
                "expected no LoRA adapter attached; merge or detach the current one first");
    }
  }

  // trainStep(batch | batches, {step, lr, ..., training, dropoutSeed}) -> Promise<{loss, count,
  // gradNorm, finite, replayed, replayedMicroSteps}>: the forward and backward of one batch, or
  // of each micro-batch of an optimizer step in turn (gradients adding up), then clip and AdamW,
  // in one native call that waits for the device once, at its end: a GPU runs one micro-batch
  // while the host queues the next. The loss is the mean over the counted tokens of all the
  // batches (gradients scaled by 1 / count; float16: the backward's seed is scale / count, see
  // accumulate_batch). batches: dropoutSeed is an array with a seed for each. replayed: every
  // micro-batch's pass ran as a recording.
  Napi::Value TrainStep(const Napi::CallbackInfo& cb) {
    return guarded(cb, [this](const Napi::CallbackInfo& info) -> Napi::Value {
      const char* fn = "trainStep";
      Napi::Object opts = options_at(info, 1);
      std::vector<BatchCopy> batches;
      std::vector<uint64_t> seeds;
      if (info[0].IsArray()) {
        Napi::Array list = info[0].As<Napi::Array>();
        S2S_REQUIRE(list.Length() > 0, s2s::code::kArgument, fn, "expected at least one batch");
        Napi::Value given = opts.Get("dropoutSeed");
        S2S_REQUIRE(given.IsUndefined() || (given.IsArray() && given.As<Napi::Array>().Length() ==
                                                                   list.Length()),
                    s2s::code::kArgument, fn, "expected options.dropoutSeed to be an array of ",
                    list.Length(), " numbers (one per batch)");
        for (uint32_t i = 0; i < list.Length(); ++i) {
          batches.push_back(batch_arg(list.Get(i), fn, encoder_decoder()));
          double seed = 0;
          if (given.IsArray()) {
            Napi::Value v = given.As<Napi::Array>().Get(i);
            S2S_REQUIRE(v.IsNumber(), s2s::code::kArgument, fn, "expected options.dropoutSeed[",
                        i, "] to be a number");
            seed = v.As<Napi::Number>().DoubleValue();
          }
          seeds.push_back(static_cast<uint64_t>(seed));
        }
      } else {
        batches.push_back(batch_arg(info[0], fn, encoder_decoder()));
        seeds.push_back(static_cast<uint64_t>(number_option(opts, "dropoutSeed", 0, fn)));
      }
      for (size_t i = 0; i < batches.size(); ++i) {
        S2S_REQUIRE(!batches[i].labels.empty(), s2s::code::kArgument, fn, "expected batch",
                    batches.size() > 1 ? "es[" + std::to_string(i) + "]" : std::string(),
                    ".labels");
      }
      const OptimizerArgs args = optimizer_args(opts, fn);
      const bool training = bool_option(opts, "training", true, fn);
      S2S_REQUIRE(loaded_->model->params().count_elements(true) > 0, s2s::code::kArgument, fn,
                  "expected trainable parameters (setTrainable(true) or a LoRA adapter)");
      auto out = std::make_shared<StepOut>();
      LoadedModel* lm = loaded_.get();
      auto settle = claim(fn);
      return PromiseWorker::Run(
          info.Env(), "s2s.model.train_step", keep_this(info),
          [lm, batches = std::move(batches), seeds = std::move(seeds), args, training, out] {
            *out = train_step(*lm, batches, seeds, training, args);
          },
          [out](Napi::Env env) -> Napi::Value {
            Napi::Object o = Napi::Object::New(env);
            const double n = static_cast<double>(out->count);
            o.Set("loss", n > 0 ? Napi::Number::New(env, out->loss_sum / n) : env.Null());
            o.Set("count", n);
            o.Set("gradNorm", out->stats.grad_norm);
            o.Set("finite", out->stats.finite);
            o.Set("replayed", out->replayed == static_cast<int64_t>(out->micro_steps));
            o.Set("replayedMicroSteps", static_cast<double>(out->replayed));
            return o;
          },
          settle);
    });
  }

  // applyLora(adapterConfigJson, seed): attaches new adapters (A Kaiming-uniform, B zero, so the
  // model is unchanged until trained) and freezes everything else.
  Napi::Value ApplyLora(const Napi::CallbackInfo& cb) {
    return guarded(cb, [this](const Napi::CallbackInfo& info) -> Napi::Value {
      const char* fn = "applyLora";
      if (busy_) s2s::fail(s2s::code::kBusy, fn, "expected the model to be idle");
      expect_no_adapter(fn);
      const std::string json = string_arg(info, 0, fn, "the LoRA config as JSON");
      const double seed = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : 0;
      const s2s::LoraConfig config = s2s::parse_lora_config(json, "LoRA options");
      loaded_->adapter = std::make_unique<s2s::LoraAdapter>(
          s2s::apply_lora(*loaded_->model, config, static_cast<uint64_t>(seed)));
      return info.Env().Undefined();
    });
  }

  // loadAdapter(dir) -> Promise: a PEFT adapter folder (adapter_config.json +
  // adapter_model.safetensors), attached and trainable.
  Napi::Value LoadAdapter(const Napi::CallbackInfo& cb) {
    return guarded(cb, [this](const Napi::CallbackInfo& info) -> Napi::Value {
      const char* fn = "loadAdapter";
      const std::string dir = string_arg(info, 0, fn, "an adapter folder");
      expect_no_adapter(fn);
      LoadedModel* lm = loaded_.get();
      auto settle = claim(fn);
      return PromiseWorker::Run(info.Env(), "s2s.model.load_adapter", keep_this(info), [lm, dir] {
        lm->adapter = std::make_unique<s2s::LoraAdapter>(s2s::load_adapter(dir, *lm->model));
      }, nullptr, settle);
    });
  }

  // saveAdapter(dir) -> Promise: PEFT layout, written atomically.
  Napi::Value SaveAdapter(const Napi::CallbackInfo& cb) {
    return guarded(cb, [this](const Napi::CallbackInfo& info) -> Napi::Value {
      const char* fn = "saveAdapter";
      const std::string dir = string_arg(info, 0, fn, "an adapter folder");
      if (!loaded_->adapter || loaded_->adapter->merged) {
        s2s::fail(s2s::code::kArgument, fn, "expected a LoRA adapter attached (applyLora or loadAdapter)");
      }
      LoadedModel* lm = loaded_.get();
      auto settle = claim(fn);
      return PromiseWorker::Run(info.Env(), "s2s.model.save_adapter", keep_this(info), [lm, dir] {
        s2s::save_adapter(dir, *lm->model, *lm->adapter, lm->adapter->config);
      }, nullptr, settle);
    });
  }

  // mergeLora() -> Promise: W += scaling * B A into the base weights; adapters detached.
  Napi::Value MergeLora(const Napi::CallbackInfo& cb) {
    return guarded(cb, [this](const Napi::CallbackInfo& info) -> Napi::Value {
      const char* fn = "mergeLora";
      if (!loaded_->adapter || loaded_->adapter->merged) {
        s2s::fail(s2s::code::kArgument, fn, "expected a LoRA adapter attached to merge");
      }
      LoadedModel* lm = loaded_.get();
      auto settle = claim(fn);
      return PromiseWorker::Run(info.Env(), "s2s.model.merge_lora", keep_this(info), [lm] {
        s2s::merge_lora(*lm->model, *lm->adapter);
      }, nullptr, settle);
    });
  }

  // detachLora(): back to the base model (adapter weights are kept in the param store, frozen).
  Napi::Value DetachLora(const Napi::CallbackInfo& cb) {
    return guarded(cb, [this](const Napi::CallbackInfo& info) -> Napi::Value {
      if (busy_) s2s::fail(s2s::code::kBusy, "detachLora", "expected the model to be idle");
      if (loaded_->adapter && !loaded_->adapter->merged) {
        s2s::detach_lora(*loaded_->model, *loaded_->adapter);
      }
      loaded_->adapter.reset();
      return info.Env().Undefined();
    });
  }

  // saveModel(dir) -> Promise: model.safetensors (HF names, tied copies omitted) + config.json,
  // a folder transformers loads; refused while an unmerged adapter is attached.
  Napi::Value SaveModel(const Napi::CallbackInfo& cb) {
    return guarded(cb, [this](const Napi::CallbackInfo& info) -> Napi::Value {
      const char* fn = "saveModel";
      const std::string dir = string_arg(info, 0, fn, "a folder");
      expect_no_adapter(fn);
      LoadedModel* lm = loaded_.get();
      auto settle = claim(fn);
      return PromiseWorker::Run(info.Env(), "s2s.model.save", keep_this(info), [lm, dir] {
        s2s::save_model(dir, *lm->model, lm->config_text);
      }, nullptr, settle);
    });
  }

  // generate(inputs: Int32Array[], config, onTokens?, maskLogits?) -> Promise<{sequences, steps,
  // prefillMs, decodeMs}>: s2s::generate off the JS thread; onTokens(Int32Array of (sequence,
  // token) pairs) after each step (greedy / sampling); maskLogits (see run_generate). The settings are checked before anything is queued.
  Napi::Value Generate(const Napi::CallbackInfo& cb) {
    return guarded(cb, [this](const Napi::CallbackInfo& info) -> Napi::Value {
      const char* fn = "generate";
      GenerateRequest req = generate_request_arg(info[0], info[1], fn);
      const s2s::Model& m = *loaded_->model;
      s2s::validate_generation_config(req.config, m.config().vocab_size, m.is_encoder_decoder());
      LoadedModel* lm = loaded_.get();
      auto settle = claim(fn);
      lm->cancel = false;
      return run_generate(
          info.Env(), info.This().As<Napi::Object>(),
          info.Length() > 2 ? info[2] : info.Env().Undefined(), &lm->cancel,
          [lm, req = std::move(req)](const s2s::GenerateHooks& hooks) {
            // The model decodes where it is (on a GPU: KV cache and forward there).
            return s2s::generate(*lm->model, lm->graph, lm->cache, req.inputs, req.config, hooks);
          },
          settle, info.Length() > 3 ? info[3] : info.Env().Undefined());
    });
  }

  // abortGenerate(): the running generate stops after its current step (no-op when idle).
  Napi::Value AbortGenerate(const Napi::CallbackInfo& cb) {
    return guarded(cb, [this](const Napi::CallbackInfo& info) -> Napi::Value {
      if (busy_ && std::string(busy_with_) == "generate") loaded_->cancel = true;
      return info.Env().Undefined();
    });
  }

  std::unique_ptr<LoadedModel> loaded_;
  bool busy_ = false;
  const char* busy_with_ = "";
};

static s2s::ComputeDType compute_dtype_option(const Napi::Object& opts, const char* fn) {
  Napi::Value cd = opts.Get("computeDtype");
  if (cd.IsUndefined()) return s2s::ComputeDType::F32;
  const std::string v = cd.IsString() ? cd.As<Napi::String>().Utf8Value() : "";
  if (v == "bfloat16") return s2s::ComputeDType::BF16;
  if (v == "float16") return s2s::ComputeDType::F16;
  if (v != "float32") {
    s2s::fail(s2s::code::kArgument, fn,
              "expected options.computeDtype 'float32', 'bfloat16' or 'float16', got '", v, "'");
  }
  return s2s::ComputeDType::F32;
}

// options.device: "auto" | "cpu" | "cuda" | "cuda:N" (default auto) -> where the model runs
// (s2s/device.h: auto is GPU 0 when built in and usable; cuda without a usable GPU fails with
// S2S_DEVICE saying why).
static s2s::Device device_option(const Napi::Object& opts, const char* fn) {
  Napi::Value dev = opts.Get("device");
  if (dev.IsUndefined()) return s2s::resolve_model_device(s2s::DeviceSpec{}, fn);
  if (!dev.IsString()) {
    throw_argument(fn, "expected options.device 'auto', 'cpu', 'cuda' or 'cuda:N'");
  }
  return s2s::resolve_model_device(s2s::parse_device(dev.As<Napi::String>().Utf8Value(), fn),
                                   fn);
}

// options.tf32 (default false): a GPU model's fp32 GEMMs on TF32 tensor cores (ignored on the CPU).
static s2s::BackendOptions backend_options(const Napi::Object& opts, const char* fn) {
  s2s::BackendOptions o;
  o.allow_tf32 = bool_option(opts, "tf32", false, fn);
  return o;
}

// A GPU model: its params move to a new backend (its own CUDA context), and its graph runs there.
static void place_model(LoadedModel& lm, const s2s::Device& device,
                        const s2s::BackendOptions& backend_opts, const char* fn) {
  if (device.kind == s2s::DeviceKind::Cpu) return;
  std::shared_ptr<s2s::Backend> backend = s2s::make_backend(device, fn, backend_opts);
  lm.model->to_backend(backend);
  lm.graph.set_backend(backend);
}

// loadModel(folder, {keepFrozenInFileDtype, computeDtype: "float32" | "bfloat16" | "float16",
//                    device: "auto" | "cpu" | "cuda" | "cuda:N", tf32})
//   -> Promise<NativeModel>
static Napi::Value load_model(const Napi::CallbackInfo& cb) {
  return guarded(cb, [](const Napi::CallbackInfo& info) -> Napi::Value {
    const char* fn = "loadModel";
    if (info.Length() < 1 || !info[0].IsString()) throw_argument(fn, "expected a model folder path");
    const std::string folder = info[0].As<Napi::String>().Utf8Value();
    Napi::Object opts = options_at(info, 1);
    s2s::LoadOptions load_options;
    load_options.keep_frozen_in_file_dtype = bool_option(opts, "keepFrozenInFileDtype", false, fn);
    const s2s::ComputeDType compute = compute_dtype_option(opts, fn);
    load_options.f16_linear_views = compute == s2s::ComputeDType::F16;  // see LoadOptions
    const s2s::Device device = device_option(opts, fn);
    const s2s::BackendOptions backend_opts = backend_options(opts, fn);
    auto slot = std::make_shared<std::unique_ptr<LoadedModel>>();
    auto* ctor = info.Env().GetInstanceData<Napi::FunctionReference>();
    return PromiseWorker::Run(
        info.Env(), "s2s.load_model", KeepAlive{},
        [folder, load_options, compute, device, backend_opts, slot, fn] {
          auto lm = std::make_unique<LoadedModel>();
          const std::string config_path = folder + "/config.json";
          lm->config_text = s2s::read_text_file(config_path, "loadModel");
          const s2s::ModelConfig config = s2s::parse_model_config(lm->config_text, config_path);
          lm->model = s2s::create_model(config);
          lm->files = s2s::open_weight_files(folder);
          lm->report = s2s::load_weights(*lm->model, lm->files, load_options);
          if (!load_options.keep_frozen_in_file_dtype) lm->files.clear();  // all copied
          lm->set_compute_dtype(compute);
          place_model(*lm, device, backend_opts, fn);
          // The views were copied to the device.
          if (device.kind != s2s::DeviceKind::Cpu) lm->files.clear();
          *slot = std::move(lm);
        },
        [slot, ctor](Napi::Env env) -> Napi::Value {
          return ctor->New({Napi::External<LoadedModel>::New(env, slot->release())});
        });
  });
}

// createModel(configJson, {seed, computeDtype, device, tf32}) -> Promise<NativeModel>: a new model from
// config.json text with every parameter randomly initialised (init_weights) and trainable.
static Napi::Value create_model_js(const Napi::CallbackInfo& cb) {
  return guarded(cb, [](const Napi::CallbackInfo& info) -> Napi::Value {
    const char* fn = "createModel";
    if (info.Length() < 1 || !info[0].IsString()) throw_argument(fn, "expected config.json text");
    const std::string config_text = info[0].As<Napi::String>().Utf8Value();
    Napi::Object opts = options_at(info, 1);
    const double seed = number_option(opts, "seed", 0, fn);
    S2S_REQUIRE(seed >= 0 && seed <= 9007199254740991.0 && seed == std::floor(seed),
                s2s::code::kArgument, fn, "expected options.seed to be an integer >= 0, got ", seed);
    const s2s::ComputeDType compute = compute_dtype_option(opts, fn);
    const s2s::Device device = device_option(opts, fn);
    const s2s::BackendOptions backend_opts = backend_options(opts, fn);
    auto slot = std::make_shared<std::unique_ptr<LoadedModel>>();
    auto* ctor = info.Env().GetInstanceData<Napi::FunctionReference>();
    return PromiseWorker::Run(
        info.Env(), "s2s.create_model", KeepAlive{},
        [config_text, seed, compute, device, backend_opts, slot, fn] {
          auto lm = std::make_unique<LoadedModel>();
          lm->config_text = config_text;
          lm->model = s2s::create_model(s2s::parse_model_config(config_text, "config.json"));
          s2s::ParamStore& ps = lm->model->params();
          for (s2s::Param* p : ps.all()) ps.set_trainable(*p, true);
          s2s::init_weights(*lm->model, static_cast<uint64_t>(seed));
          lm->set_compute_dtype(compute);
          place_model(*lm, device, backend_opts, fn);
          *slot = std::move(lm);
        },
        [slot, ctor](Napi::Env env) -> Napi::Value {
          return ctor->New({Napi::External<LoadedModel>::New(env, slot->release())});
        });
  });
}

void register_model(Napi::Env env, Napi::Object exports) {
  auto* ctor = new Napi::FunctionReference(Napi::Persistent(ModelWrap::Define(env)));
  env.SetInstanceData<Napi::FunctionReference>(ctor);  // per-environment: worker threads too
  exports.Set("loadModel", Napi::Function::New(env, load_model, "loadModel"));
  exports.Set("createModel", Napi::Function::New(env, create_model_js, "createModel"));
}

}  // namespace s2s_napi
