// PromiseWorker implementation (see promise_worker.h).
#include "promise_worker.h"

namespace s2s_napi {

PromiseWorker::PromiseWorker(Napi::Env env, const char* name, KeepAlive keep, Job job,
                             Result result, Settle settle)
    : Napi::AsyncWorker(env, name),
      deferred_(Napi::Promise::Deferred::New(env)),
      keep_(std::move(keep)),
      job_(std::move(job)),
      result_(std::move(result)),
      settle_(std::move(settle)) {}

Napi::Promise PromiseWorker::Run(Napi::Env env, const char* name, KeepAlive keep, Job job,
                                 Result result, Settle settle) {
  auto* worker = new PromiseWorker(env, name, std::move(keep), std::move(job), std::move(result),
                                   std::move(settle));
  Napi::Promise promise = worker->deferred_.Promise();
  worker->Queue();  // the worker deletes itself after OnOK / OnError
  return promise;
}

void PromiseWorker::Execute() {
  try {
    job_();
  } catch (const s2s::Error& e) {
    code_ = e.code();
    SetError(e.what());
  } catch (const std::bad_alloc&) {
    code_ = s2s::code::kOutOfMemory;
    SetError("out of memory");
  } catch (const std::exception& e) {
    code_ = s2s::code::kInternal;
    SetError(e.what());
  }
}

void PromiseWorker::OnOK() {
  Napi::Env env = Env();
  if (settle_) settle_();
  try {
    deferred_.Resolve(result_ ? result_(env) : env.Undefined());
  } catch (const Napi::Error& e) {
    deferred_.Reject(e.Value());
  }
}

void PromiseWorker::OnError(const Napi::Error& e) {
  if (settle_) settle_();
  Napi::Error err = make_error(Env(), code_, e.Message());
  deferred_.Reject(err.Value());
}

}  // namespace s2s_napi
