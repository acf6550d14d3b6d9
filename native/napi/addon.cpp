// The addon's entry point: each JS-facing family registers its functions on `exports`.
// N-API modules are context-aware: nothing here keeps per-process JS state, so the addon loads
// in worker threads too (the C++ thread pool is shared by all of them).
#include <napi.h>

namespace s2s_napi {
void register_system(Napi::Env env, Napi::Object exports);
void register_matmul(Napi::Env env, Napi::Object exports);
void register_ops(Napi::Env env, Napi::Object exports);
void register_model(Napi::Env env, Napi::Object exports);
void register_safetensors(Napi::Env env, Napi::Object exports);
}  // namespace s2s_napi

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  s2s_napi::register_system(env, exports);
  s2s_napi::register_matmul(env, exports);
  s2s_napi::register_ops(env, exports);
  s2s_napi::register_model(env, exports);
  s2s_napi::register_safetensors(env, exports);
  return exports;
}

NODE_API_MODULE(s2s_train, Init)
