// The N-API side of model.generate (the method itself lives on NativeModel in model.cpp): the
// request copied out of JS on the JS thread, and the async run that streams tokens back through
// a ThreadSafeFunction and settles its Promise only after the last token was delivered.
#pragma once
#include <napi.h>

#include <functional>
#include <vector>

#include "s2s/generate/generate.h"

namespace s2s_napi {

struct GenerateRequest {
  std::vector<std::vector<int32_t>> inputs;
  s2s::GenerationConfig config;
};

// inputs: an array of Int32Array (one per input, unpadded); config: the camelCase fields of
// NativeGenerationConfig (bindings/native.ts). Errors name fn and the field.
GenerateRequest generate_request_arg(const Napi::Value& inputs, const Napi::Value& config,
                                     const char* fn);

// Runs work(hooks) on a libuv worker thread. on_tokens (a JS function, or undefined) receives an
// Int32Array of (sequence, token) pairs after each step (the generating thread waits when it is
// more than a few steps ahead of the JS thread); if it throws, `cancel` is set,
// generation stops and the Promise rejects with that error. `keep` stays referenced until the
// Promise settles; `settle` runs on the JS thread just before it does. mask_logits (a JS
// function, or undefined) becomes GenerateHooks::mask_logits: the generating thread blocks while
// it runs on the JS thread as maskLogits(scores: Float32Array (R*V), last: Int32Array (R)) and
// changes `scores` in place; if it throws, generation stops and the Promise rejects with that.
Napi::Promise run_generate(Napi::Env env, Napi::Object keep, Napi::Value on_tokens,
                           std::atomic<bool>* cancel,
                           std::function<s2s::GenerateResult(const s2s::GenerateHooks&)> work,
                           std::function<void()> settle,
                           Napi::Value mask_logits = Napi::Value());

}  // namespace s2s_napi
