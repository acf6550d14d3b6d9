// JS family "ops": single ops of the core, run off the JS thread, writing into output tensors
// the caller allocated. The trainer will not call these one by one (a model's step is one native
// call); they exist for tests, experiments and tools that need one op.
#include <napi.h>

#include <memory>
#include <string>
#include <vector>

#include "promise_worker.h"
#include "s2s/ops/adamw.h"
#include "s2s/ops/attention.h"
#include "s2s/ops/cross_entropy.h"
#include "s2s/ops/gelu.h"
#include "s2s/ops/layernorm.h"
#include "s2s/ops/softmax.h"

namespace s2s_napi {

namespace {

// Positional tensor arguments: names[i] (a trailing '?' marks an optional one, null allowed).
struct TensorArgs {
  std::vector<s2s::Tensor> t;
  KeepAlive keep;
};

TensorArgs tensors(const Napi::CallbackInfo& info, const char* fn,
                   std::initializer_list<const char*> names) {
  TensorArgs out;
  size_t i = 0;
  for (const char* raw : names) {
    std::string name(raw);
    const bool optional = !name.empty() && name.back() == '?';
    if (optional) name.pop_back();
    Napi::Value v = i < info.Length() ? info[i] : info.Env().Undefined();
    out.t.push_back(optional ? optional_tensor_arg(v, fn, name.c_str())
                             : tensor_arg(v, fn, name.c_str()));
    out.keep.hold(v);
    ++i;
  }
  return out;
}

float float_arg(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name) {
  if (i >= info.Length() || !info[i].IsNumber()) {
    s2s::fail(s2s::code::kArgument, fn, "expected ", name, " to be a number");
  }
  return info[i].As<Napi::Number>().FloatValue();
}

s2s::GeluApprox gelu_approx_arg(const Napi::CallbackInfo& info, size_t i, const char* fn) {
  const std::string v = i < info.Length() && info[i].IsString()
                            ? info[i].As<Napi::String>().Utf8Value() : "";
  if (v == "tanh") return s2s::GeluApprox::Tanh;
  if (v == "none") return s2s::GeluApprox::None;
  s2s::fail(s2s::code::kArgument, fn, "expected approximate to be 'tanh' or 'none', got '", v, "'");
}

// layerNormForward(out, mean?, rstd?, inp, weight, bias?, eps)
Napi::Value layernorm_forward(const Napi::CallbackInfo& cb) {
  return guarded(cb, [](const Napi::CallbackInfo& info) -> Napi::Value {
    const char* fn = "layerNormForward";
    TensorArgs a = tensors(info, fn, {"out", "mean?", "rstd?", "inp", "weight", "bias?"});
    const float eps = float_arg(info, 6, fn, "eps");
    auto t = a.t;
    return PromiseWorker::Run(info.Env(), "s2s.layernorm", std::move(a.keep), [t, eps] {
      s2s::layernorm_forward(t[0], t[1], t[2], t[3], t[4], t[5], eps);
    });
  });
}

// layerNormBackward(dinp?, dweight?, dbias?, dout, inp, weight, mean, rstd)
Napi::Value layernorm_backward(const Napi::CallbackInfo& cb) {
  return guarded(cb, [](const Napi::CallbackInfo& info) -> Napi::Value {
    TensorArgs a = tensors(info, "layerNormBackward",
                           {"dinp?", "dweight?", "dbias?", "dout", "inp", "weight", "mean", "rstd"});
    auto t = a.t;
    return PromiseWorker::Run(info.Env(), "s2s.layernorm_backward", std::move(a.keep), [t] {
      s2s::layernorm_backward(t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7]);
    });
  });
}

// softmaxForward(out, inp)
Napi::Value softmax_forward(const Napi::CallbackInfo& cb) {
  return guarded(cb, [](const Napi::CallbackInfo& info) -> Napi::Value {
    TensorArgs a = tensors(info, "softmaxForward", {"out", "inp"});
    auto t = a.t;
    return PromiseWorker::Run(info.Env(), "s2s.softmax", std::move(a.keep),
                              [t] { s2s::softmax_forward(t[0], t[1]); });
  });
}

// geluForward(out, inp, approximate: "tanh" | "none")
Napi::Value gelu_forward(const Napi::CallbackInfo& cb) {
  return guarded(cb, [](const Napi::CallbackInfo& info) -> Napi::Value {
    const char* fn = "geluForward";
    TensorArgs a = tensors(info, fn, {"out", "inp"});
    const s2s::GeluApprox approx = gelu_approx_arg(info, 2, fn);
    auto t = a.t;
    return PromiseWorker::Run(info.Env(), "s2s.gelu", std::move(a.keep),
                              [t, approx] { s2s::gelu_forward(t[0], t[1], approx); });
  });
}

Napi::Object options_arg(const Napi::CallbackInfo& info, size_t i) {
  return i < info.Length() && info[i].IsObject() ? info[i].As<Napi::Object>()
                                                 : Napi::Object::New(info.Env());
}

// attentionForward(out, lse, q, k, v, bias?, keyMask?: Uint8Array, {causal, scale})
Napi::Value attention_forward(const Napi::CallbackInfo& cb) {
  return guarded(cb, [](const Napi::CallbackInfo& info) -> Napi::Value {
    const char* fn = "attentionForward";
    TensorArgs a = tensors(info, fn, {"out", "lse", "q", "k", "v", "bias?"});
    const Uint8Span mask = optional_uint8_arg(info[6], fn, "keyMask");
    a.keep.hold(info[6]);
    Napi::Object opts = options_arg(info, 7);
    s2s::AttentionOptions o;
    o.causal = bool_option(opts, "causal", false, fn);
    if (!opts.Get("scale").IsUndefined()) o.scale = float(number_option(opts, "scale", 1.0, fn));
    auto t = a.t;
    return PromiseWorker::Run(info.Env(), "s2s.attention", std::move(a.keep), [t, mask, o] {
      s2s::attention_forward(t[0], t[1], t[2], t[3], t[4], t[5], mask.data,
                             static_cast<int64_t>(mask.size), o);
    });
  });
}

s2s::CrossEntropyOptions cross_entropy_options(const Napi::Object& opts, const char* fn) {
  s2s::CrossEntropyOptions o;
  o.ignore_index = static_cast<int32_t>(number_option(opts, "ignoreIndex", -100, fn));
  Napi::Value r = opts.Get("reduction");
  if (!r.IsUndefined()) {
    const std::string v = r.IsString() ? r.As<Napi::String>().Utf8Value() : "";
    if (v == "mean") o.reduction = s2s::LossReduction::Mean;
    else if (v == "sum") o.reduction = s2s::LossReduction::Sum;
    else s2s::fail(s2s::code::kArgument, fn, "expected options.reduction 'mean' or 'sum', got '", v, "'");
  }
  return o;
}

// crossEntropyForward(lse, logits, labels: Int32Array, {ignoreIndex, reduction})
//   -> Promise<{loss, count}>
Napi::Value cross_entropy_forward(const Napi::CallbackInfo& cb) {
  return guarded(cb, [](const Napi::CallbackInfo& info) -> Napi::Value {
    const char* fn = "crossEntropyForward";
    TensorArgs a = tensors(info, fn, {"lse", "logits"});
    const Int32Span labels = int32_arg(info[2], fn, "labels");
    a.keep.hold(info[2]);
    const s2s::CrossEntropyOptions o = cross_entropy_options(options_arg(info, 3), fn);
    auto t = a.t;
    auto result = std::make_shared<s2s::CrossEntropyResult>();
    return PromiseWorker::Run(
        info.Env(), "s2s.cross_entropy", std::move(a.keep),
        [t, labels, o, result] {
          *result = s2s::cross_entropy_forward(t[0], t[1], labels.data,
                                               static_cast<int64_t>(labels.size), o);
        },
        [result](Napi::Env env) -> Napi::Value {
          Napi::Object r = Napi::Object::New(env);
          r.Set("loss", result->loss);
          r.Set("count", static_cast<double>(result->count));
          return r;
        });
  });
}

// crossEntropyBackward(dlogits, logits, lse, labels, dloss, {ignoreIndex, reduction})
Napi::Value cross_entropy_backward(const Napi::CallbackInfo& cb) {
  return guarded(cb, [](const Napi::CallbackInfo& info) -> Napi::Value {
    const char* fn = "crossEntropyBackward";
    TensorArgs a = tensors(info, fn, {"dlogits", "logits", "lse"});
    const Int32Span labels = int32_arg(info[3], fn, "labels");
    a.keep.hold(info[3]);
    const float dloss = float_arg(info, 4, fn, "dloss");
    const s2s::CrossEntropyOptions o = cross_entropy_options(options_arg(info, 5), fn);
    auto t = a.t;
    return PromiseWorker::Run(info.Env(), "s2s.cross_entropy_backward", std::move(a.keep),
                              [t, labels, dloss, o] {
      s2s::cross_entropy_backward(t[0], t[1], t[2], labels.data,
                                  static_cast<int64_t>(labels.size), dloss, o);
    });
  });
}

// adamwUpdate(param, grad, expAvg, expAvgSq, step, {lr, beta1, beta2, eps, weightDecay})
Napi::Value adamw_update(const Napi::CallbackInfo& cb) {
  return guarded(cb, [](const Napi::CallbackInfo& info) -> Napi::Value {
    const char* fn = "adamwUpdate";
    TensorArgs a = tensors(info, fn, {"param", "grad", "expAvg", "expAvgSq"});
    const double step = float_arg(info, 4, fn, "step");
    if (step < 1 || step != static_cast<double>(static_cast<int64_t>(step))) {
      s2s::fail(s2s::code::kArgument, fn, "expected step to be an integer >= 1, got ", step);
    }
    Napi::Object opts = options_arg(info, 5);
    s2s::AdamWOptions o;
    o.lr = number_option(opts, "lr", o.lr, fn);
    o.beta1 = number_option(opts, "beta1", o.beta1, fn);
    o.beta2 = number_option(opts, "beta2", o.beta2, fn);
    o.eps = number_option(opts, "eps", o.eps, fn);
    o.weight_decay = number_option(opts, "weightDecay", o.weight_decay, fn);
    auto t = a.t;
    const int64_t s = static_cast<int64_t>(step);
    return PromiseWorker::Run(info.Env(), "s2s.adamw", std::move(a.keep), [t, s, o] {
      s2s::adamw_update(t[0], t[1], t[2], t[3], s, o);
    });
  });
}

}  // namespace

void register_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("layerNormForward", Napi::Function::New(env, layernorm_forward, "layerNormForward"));
  exports.Set("layerNormBackward", Napi::Function::New(env, layernorm_backward, "layerNormBackward"));
  exports.Set("softmaxForward", Napi::Function::New(env, softmax_forward, "softmaxForward"));
  exports.Set("geluForward", Napi::Function::New(env, gelu_forward, "geluForward"));
  exports.Set("attentionForward", Napi::Function::New(env, attention_forward, "attentionForward"));
  exports.Set("crossEntropyForward",
              Napi::Function::New(env, cross_entropy_forward, "crossEntropyForward"));
  exports.Set("crossEntropyBackward",
              Napi::Function::New(env, cross_entropy_backward, "crossEntropyBackward"));
  exports.Set("adamwUpdate", Napi::Function::New(env, adamw_update, "adamwUpdate"));
}

}  // namespace s2s_napi
