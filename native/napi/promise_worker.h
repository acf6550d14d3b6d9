// PromiseWorker: runs a C++ job on a libuv worker thread and settles a Promise on the JS thread.
// The job never touches N-API; it may throw s2s::Error, whose code reaches the rejected Error.
// Arguments are checked and converted on the JS thread before the worker is queued (sharp's
// baton pattern); KeepAlive holds the JS objects whose memory the job uses.
#pragma once
#include <napi.h>

#include <functional>
#include <string>

#include "errors.h"
#include "tensor_args.h"

namespace s2s_napi {

class PromiseWorker : public Napi::AsyncWorker {
 public:
  using Job = std::function<void()>;
  using Result = std::function<Napi::Value(Napi::Env)>;
  using Settle = std::function<void()>;

  // Queues job; returns the Promise. `result` builds the resolved value (default: undefined);
  // `settle` runs on the JS thread when the job has finished, before the Promise settles either
  // way (e.g. to clear a busy flag).
  static Napi::Promise Run(Napi::Env env, const char* name, KeepAlive keep, Job job,
                           Result result = nullptr, Settle settle = nullptr);

 protected:
  void Execute() override;
  void OnOK() override;
  void OnError(const Napi::Error& e) override;

 private:
  PromiseWorker(Napi::Env env, const char* name, KeepAlive keep, Job job, Result result,
                Settle settle);
  Napi::Promise::Deferred deferred_;
  KeepAlive keep_;
  Job job_;
  Result result_;
  Settle settle_;
  std::string code_ = s2s::code::kInternal;
};

}  // namespace s2s_napi
