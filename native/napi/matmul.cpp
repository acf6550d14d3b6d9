// JS family "matmul": c = alpha * op(a) * op(b) + beta * c on the thread pool, off the JS thread.
#include <napi.h>

#include "promise_worker.h"
#include "s2s/gemm.h"

namespace s2s_napi {

// matmul(c, a, b, {transA, transB, alpha, beta}) -> Promise<void>; c is written in place.
static Napi::Value matmul(const Napi::CallbackInfo& cb) {
  return guarded(cb, [](const Napi::CallbackInfo& info) -> Napi::Value {
    const char* fn = "matmul";
    if (info.Length() < 3) throw_argument(fn, "expected (c, a, b, options?)");
    s2s::Tensor c = tensor_arg(info[0], fn, "c");
    s2s::Tensor a = tensor_arg(info[1], fn, "a");
    s2s::Tensor b = tensor_arg(info[2], fn, "b");
    Napi::Object opts = info.Length() > 3 && info[3].IsObject() ? info[3].As<Napi::Object>()
                                                                : Napi::Object::New(info.Env());
    const bool trans_a = bool_option(opts, "transA", false, fn);
    const bool trans_b = bool_option(opts, "transB", false, fn);
    const float alpha = static_cast<float>(number_option(opts, "alpha", 1.0, fn));
    const float beta = static_cast<float>(number_option(opts, "beta", 0.0, fn));
    // Shape and dtype errors are thrown here, on the JS thread, so they carry the caller's stack.
    s2s::matmul_check(c, a, b, trans_a, trans_b);
    KeepAlive keep;
    keep.hold(info[0]);
    keep.hold(info[1]);
    keep.hold(info[2]);
    return PromiseWorker::Run(info.Env(), "s2s.matmul", std::move(keep), [=] {
      s2s::matmul(c, a, b, trans_a, trans_b, alpha, beta);
    });
  });
}

void register_matmul(Napi::Env env, Napi::Object exports) {
  exports.Set("matmul", Napi::Function::New(env, matmul, "matmul"));
}

}  // namespace s2s_napi
