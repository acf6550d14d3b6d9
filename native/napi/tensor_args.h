// Tensors crossing the JS boundary: a plain object { data, shape, dtype } where data is a
// Float32Array (float32) or Uint16Array (bfloat16/float16 bits). The view points straight into
// the TypedArray's memory; nothing is copied. For async work a TensorArg keeps a reference to the
// JS object so the garbage collector cannot free the memory while a worker thread reads it.
#pragma once
#include <napi.h>

#include <vector>

#include "s2s/tensor.h"

namespace s2s_napi {

// Checks the object and returns a view of it; errors name fn and the argument.
s2s::Tensor tensor_arg(const Napi::Value& value, const char* fn, const char* name);

// Int32Array argument (token ids, labels, positions): pointer + length, no copy.
struct Int32Span {
  const int32_t* data = nullptr;
  size_t size = 0;
};
Int32Span int32_arg(const Napi::Value& value, const char* fn, const char* name);

// Owns references to the JS objects an async job reads or writes.
class KeepAlive {
 public:
  void hold(const Napi::Value& value);

 private:
  std::vector<Napi::Reference<Napi::Value>> refs_;
};

// Optional numeric and boolean fields of an options object.
double number_option(const Napi::Object& options, const char* key, double fallback,
                     const char* fn);
bool bool_option(const Napi::Object& options, const char* key, bool fallback, const char* fn);

}  // namespace s2s_napi

namespace s2s_napi {
// Like tensor_arg, but null/undefined gives an empty view (data == nullptr): "not given".
s2s::Tensor optional_tensor_arg(const Napi::Value& value, const char* fn, const char* name);
}  // namespace s2s_napi

namespace s2s_napi {
// Uint8Array argument (masks): pointer + length; null/undefined gives {nullptr, 0}.
struct Uint8Span {
  const uint8_t* data = nullptr;
  size_t size = 0;
};
Uint8Span optional_uint8_arg(const Napi::Value& value, const char* fn, const char* name);
}  // namespace s2s_napi
