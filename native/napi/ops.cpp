// JS family "ops": single ops of the core, run off the JS thread, writing into output tensors
// the caller allocated. The trainer will not call these one by one (a model's step is one native
// call); they exist for tests, experiments and tools that need one op.
#include <napi.h>

#include <string>
#include <vector>

#include "promise_worker.h"
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

}  // namespace

void register_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("layerNormForward", Napi::Function::New(env, layernorm_forward, "layerNormForward"));
  exports.Set("layerNormBackward", Napi::Function::New(env, layernorm_backward, "layerNormBackward"));
  exports.Set("softmaxForward", Napi::Function::New(env, softmax_forward, "softmaxForward"));
  exports.Set("geluForward", Napi::Function::New(env, gelu_forward, "geluForward"));
}

}  // namespace s2s_napi
