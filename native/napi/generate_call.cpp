// generate's request parsing, async run and token streaming (see generate_call.h). Glue only:
// the decoding itself is s2s::generate.
#include "generate_call.h"

#include <cmath>
#include <cstring>
#include <future>
#include <memory>
#include <string>

#include "errors.h"
#include "tensor_args.h"

namespace s2s_napi {

namespace {

// Steps of tokens the generating thread may run ahead of the JS thread before it waits: enough
// to keep decoding going while JS is briefly busy, and a bound on how far an abort from a token
// callback can lag.
constexpr size_t kTokenQueue = 16;

int64_t integer_option(const Napi::Object& o, const char* key, int64_t fallback, const char* fn) {
  const double v = number_option(o, key, double(fallback), fn);
  if (!(std::fabs(v) <= 9007199254740991.0) || v != std::floor(v)) {
    s2s::fail(s2s::code::kArgument, fn, "expected config.", key, " to be an integer, got ", v);
  }
  return int64_t(v);
}

// null / undefined -> -1 ("none").
int32_t token_option(const Napi::Object& o, const char* key, const char* fn) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return -1;
  const int64_t t = integer_option(o, key, -1, fn);
  if (t < 0 || t > INT32_MAX) {
    s2s::fail(s2s::code::kArgument, fn, "expected config.", key, " to be a token id, got ", t);
  }
  return int32_t(t);
}

std::vector<int32_t> token_list(const Napi::Value& v, const std::string& name, const char* fn) {
  if (!v.IsArray()) s2s::fail(s2s::code::kArgument, fn, "expected ", name, " to be an array of token ids");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<int32_t> out;
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value e = a.Get(i);
    const double d = e.IsNumber() ? e.As<Napi::Number>().DoubleValue() : -1.0;
    if (!(d >= 0 && d <= INT32_MAX) || d != std::floor(d)) {
      s2s::fail(s2s::code::kArgument, fn, "expected ", name, "[", i, "] to be a token id");
    }
    out.push_back(int32_t(d));
  }
  return out;
}

Napi::Value result_to_js(Napi::Env env, const s2s::GenerateResult& r) {
  Napi::Object o = Napi::Object::New(env);
  Napi::Array seqs = Napi::Array::New(env, r.sequences.size());
  for (size_t i = 0; i < r.sequences.size(); ++i) {
    const s2s::GeneratedSequence& s = r.sequences[i];
    Napi::Object so = Napi::Object::New(env);
    so.Set("inputIndex", double(s.input_index));
    Napi::Int32Array tokens = Napi::Int32Array::New(env, s.tokens.size());
    if (!s.tokens.empty()) std::memcpy(tokens.Data(), s.tokens.data(), 4 * s.tokens.size());
    so.Set("tokenIds", tokens);
    Napi::Float32Array lps = Napi::Float32Array::New(env, s.token_logprobs.size());
    if (!s.token_logprobs.empty()) {
      std::memcpy(lps.Data(), s.token_logprobs.data(), 4 * s.token_logprobs.size());
    }
    so.Set("tokenLogprobs", lps);
    so.Set("score", s.score);
    so.Set("finishReason", s2s::finish_reason_name(s.finish));
    seqs.Set(uint32_t(i), so);
  }
  o.Set("sequences", seqs);
  o.Set("steps", double(r.steps));
  o.Set("replayedSteps", double(r.replayed_steps));
  o.Set("prefillMs", r.prefill_ms);
  o.Set("decodeMs", r.decode_ms);
  return o;
}

// Shared by the worker thread (work, result, error) and the JS thread (everything else).
struct Call {
  Napi::Promise::Deferred deferred;
  Napi::ObjectReference keep;
  Napi::ThreadSafeFunction tsfn;
  std::atomic<bool>* cancel = nullptr;
  bool streaming = false;
  std::function<s2s::GenerateResult(const s2s::GenerateHooks&)> work;
  std::function<void()> settle;
  s2s::GenerateResult result;
  bool failed = false;
  std::string code, message;
  Napi::Reference<Napi::Value> js_error;  // thrown by the on_tokens or mask_logits callback
  Napi::FunctionReference mask_fn;        // maskLogits, when given
  explicit Call(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
};

class Worker : public Napi::AsyncWorker {
 public:
  Worker(Napi::Env env, std::shared_ptr<Call> call)
      : Napi::AsyncWorker(env, "s2s.model.generate"), call_(std::move(call)) {}

  void Execute() override {
    Call* c = call_.get();
    s2s::GenerateHooks hooks;
    hooks.cancel = c->cancel;
    if (c->streaming) {
      hooks.on_tokens = [c](const int32_t* pairs, int64_t n) {
        auto* data = new std::vector<int32_t>(pairs, pairs + 2 * n);
        const napi_status st = c->tsfn.BlockingCall(
            data, [c](Napi::Env env, Napi::Function cb, std::vector<int32_t>* d) {
              std::unique_ptr<std::vector<int32_t>> owned(d);
              if (env == nullptr || !c->js_error.IsEmpty()) return;
              Napi::Int32Array a = Napi::Int32Array::New(env, owned->size());
              std::memcpy(a.Data(), owned->data(), 4 * owned->size());
              try {
                cb.Call({a});
              } catch (const Napi::Error& e) {
                c->js_error = Napi::Persistent(Napi::Value(e.Value()));
                c->cancel->store(true);
              }
            });
        if (st != napi_ok) {  // the environment is closing: nobody is listening any more
          delete data;
          c->cancel->store(true);
        }
      };
    }
    if (!c->mask_fn.IsEmpty()) hooks.mask_logits = mask_hook(c);
    try {
      c->result = c->work(hooks);
    } catch (const s2s::Error& e) {
      c->failed = true;
      c->code = e.code();
      c->message = e.what();
    } catch (const std::bad_alloc&) {
      c->failed = true;
      c->code = s2s::code::kOutOfMemory;
      c->message = "out of memory";
    } catch (const std::exception& e) {
      c->failed = true;
      c->code = s2s::code::kInternal;
      c->message = e.what();
    }
    c->tsfn.Release();  // the finalizer settles the Promise once queued tokens are delivered
  }
  void OnOK() override {}
  void OnError(const Napi::Error&) override {}

  // The generating thread hands the scores to maskLogits on the JS thread and waits for it (a
  // blocking call through the same queue as the tokens, so the tokens before it arrive first).
  static std::function<void(float*, int64_t, int64_t, const int32_t*)> mask_hook(Call* c) {
    return [c](float* scores, int64_t R, int64_t V, const int32_t* last) {
      struct Job {
        float* scores;
        int64_t R, V;
        const int32_t* last;
        std::promise<bool> done;  // false: the callback threw or nobody ran it
      } job{scores, R, V, last, {}};
      std::future<bool> done = job.done.get_future();
      const napi_status st = c->tsfn.BlockingCall(
          &job, [c](Napi::Env env, Napi::Function, Job* j) {
            if (env == nullptr || !c->js_error.IsEmpty()) {
              j->done.set_value(false);
              return;
            }
            const size_t n = size_t(j->R * j->V);
            Napi::Float32Array s = Napi::Float32Array::New(env, n);
            std::memcpy(s.Data(), j->scores, sizeof(float) * n);
            Napi::Int32Array l = Napi::Int32Array::New(env, size_t(j->R));
            std::memcpy(l.Data(), j->last, sizeof(int32_t) * size_t(j->R));
            try {
              c->mask_fn.Call({s, l});
            } catch (const Napi::Error& e) {
              c->js_error = Napi::Persistent(Napi::Value(e.Value()));
              c->cancel->store(true);
              j->done.set_value(false);
              return;
            }
            std::memcpy(j->scores, s.Data(), sizeof(float) * n);
            j->done.set_value(true);
          });
      if (st != napi_ok) {  // the environment is closing
        c->cancel->store(true);
        s2s::fail(s2s::code::kInternal, "generate", "the JS environment closed during generation");
      }
      if (!done.get()) {
        // The JS error (kept in js_error) is what the Promise rejects with.
        s2s::fail(s2s::code::kInternal, "generate", "maskLogits failed");
      }
    };
  }

 private:
  std::shared_ptr<Call> call_;
};

}  // namespace

GenerateRequest generate_request_arg(const Napi::Value& inputs, const Napi::Value& config,
                                     const char* fn) {
  GenerateRequest req;
  if (!inputs.IsArray()) s2s::fail(s2s::code::kArgument, fn, "expected inputs: an array of Int32Array");
  Napi::Array in = inputs.As<Napi::Array>();
  for (uint32_t i = 0; i < in.Length(); ++i) {
    const std::string name = "inputs[" + std::to_string(i) + "]";
    Int32Span span = int32_arg(in.Get(i), fn, name.c_str());
    req.inputs.emplace_back(span.data, span.data + span.size);
  }
  if (!config.IsObject()) s2s::fail(s2s::code::kArgument, fn, "expected a config object");
  const Napi::Object o = config.As<Napi::Object>();
  s2s::GenerationConfig& c = req.config;
  c.max_new_tokens = integer_option(o, "maxNewTokens", -1, fn);
  c.max_length = integer_option(o, "maxLength", 20, fn);
  c.default_length = bool_option(o, "defaultLength", false, fn);
  c.min_new_tokens = integer_option(o, "minNewTokens", -1, fn);
  c.min_length = integer_option(o, "minLength", 0, fn);
  c.do_sample = bool_option(o, "doSample", false, fn);
  c.temperature = float(number_option(o, "temperature", 1.0, fn));
  c.top_k = integer_option(o, "topK", 50, fn);
  c.top_p = float(number_option(o, "topP", 1.0, fn));
  const int64_t seed = integer_option(o, "seed", 0, fn);
  if (seed < 0) s2s::fail(s2s::code::kArgument, fn, "expected config.seed >= 0, got ", seed);
  c.seed = uint64_t(seed);
  c.num_beams = integer_option(o, "numBeams", 1, fn);
  c.num_return_sequences = integer_option(o, "numReturnSequences", 1, fn);
  c.length_penalty = number_option(o, "lengthPenalty", 1.0, fn);
  Napi::Value es = o.Get("earlyStopping");
  if (es.IsBoolean()) {
    c.early_stopping = es.As<Napi::Boolean>().Value() ? s2s::EarlyStopping::True
                                                      : s2s::EarlyStopping::False;
  } else if (es.IsString() && es.As<Napi::String>().Utf8Value() == "never") {
    c.early_stopping = s2s::EarlyStopping::Never;
  } else if (!es.IsUndefined()) {
    s2s::fail(s2s::code::kArgument, fn, "expected config.earlyStopping true, false or 'never'");
  }
  c.repetition_penalty = float(number_option(o, "repetitionPenalty", 1.0, fn));
  c.no_repeat_ngram_size = integer_option(o, "noRepeatNgramSize", 0, fn);
  Napi::Value bad = o.Get("badWordsIds");
  if (!bad.IsUndefined() && !bad.IsNull()) {
    if (!bad.IsArray()) s2s::fail(s2s::code::kArgument, fn, "expected config.badWordsIds: arrays of token ids");
    Napi::Array ba = bad.As<Napi::Array>();
    for (uint32_t i = 0; i < ba.Length(); ++i) {
      c.bad_words_ids.push_back(
          token_list(ba.Get(i), "config.badWordsIds[" + std::to_string(i) + "]", fn));
    }
  }
  Napi::Value eos = o.Get("eosTokenIds");
  if (!eos.IsUndefined() && !eos.IsNull()) c.eos_token_ids = token_list(eos, "config.eosTokenIds", fn);
  c.pad_token_id = token_option(o, "padTokenId", fn);
  c.bos_token_id = token_option(o, "bosTokenId", fn);
  c.decoder_start_token_id = token_option(o, "decoderStartTokenId", fn);
  return req;
}

Napi::Promise run_generate(Napi::Env env, Napi::Object keep, Napi::Value on_tokens,
                           std::atomic<bool>* cancel,
                           std::function<s2s::GenerateResult(const s2s::GenerateHooks&)> work,
                           std::function<void()> settle, Napi::Value mask_logits) {
  auto call = std::make_shared<Call>(env);
  if (!mask_logits.IsEmpty() && mask_logits.IsFunction()) {
    call->mask_fn = Napi::Persistent(mask_logits.As<Napi::Function>());
  } else if (!mask_logits.IsEmpty() && !mask_logits.IsUndefined()) {
    if (settle) settle();  // nothing was queued: release the model now
    s2s::fail(s2s::code::kArgument, "generate", "expected maskLogits to be a function or undefined");
  }
  call->keep = Napi::Persistent(keep);
  call->cancel = cancel;
  call->work = std::move(work);
  call->settle = std::move(settle);
  call->streaming = on_tokens.IsFunction();
  Napi::Function cb = call->streaming ? on_tokens.As<Napi::Function>()
                                      : Napi::Function::New(env, [](const Napi::CallbackInfo&) {});
  call->tsfn = Napi::ThreadSafeFunction::New(env, cb, "s2s.model.generate.tokens", kTokenQueue, 1,
                                             [call](Napi::Env e) {
                                               if (call->settle) call->settle();
                                               if (!call->js_error.IsEmpty()) {
                                                 call->deferred.Reject(call->js_error.Value());
                                               } else if (call->failed) {
                                                 call->deferred.Reject(
                                                     make_error(e, call->code, call->message).Value());
                                               } else {
                                                 call->deferred.Resolve(result_to_js(e, call->result));
                                               }
                                               call->js_error.Reset();
                                               call->mask_fn.Reset();
                                               call->keep.Reset();
                                             });
  Napi::Promise promise = call->deferred.Promise();
  (new Worker(env, call))->Queue();
  return promise;
}

}  // namespace s2s_napi
