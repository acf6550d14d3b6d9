// Argument checks at the N-API boundary: types, shapes and lengths, named in the error.
#include "tensor_args.h"

#include <cmath>
#include <string>

#include "errors.h"

namespace s2s_napi {

static s2s::DType parse_dtype(const std::string& name, const char* fn, const char* arg) {
  if (name == "float32") return s2s::DType::F32;
  if (name == "bfloat16") return s2s::DType::BF16;
  if (name == "float16") return s2s::DType::F16;
  s2s::fail(s2s::code::kDType, fn, "expected ", arg,
            ".dtype to be 'float32', 'bfloat16' or 'float16', got '", name, "'");
}

s2s::Tensor tensor_arg(const Napi::Value& value, const char* fn, const char* name) {
  if (!value.IsObject()) {
    s2s::fail(s2s::code::kArgument, fn, "expected ", name, " to be a tensor {data, shape, dtype}");
  }
  Napi::Object obj = value.As<Napi::Object>();
  Napi::Value dtype_v = obj.Get("dtype");
  if (!dtype_v.IsString()) {
    s2s::fail(s2s::code::kDType, fn, "expected ", name, ".dtype to be a string");
  }
  const s2s::DType dtype = parse_dtype(dtype_v.As<Napi::String>().Utf8Value(), fn, name);

  Napi::Value shape_v = obj.Get("shape");
  if (!shape_v.IsArray()) {
    s2s::fail(s2s::code::kShape, fn, "expected ", name, ".shape to be an array of sizes");
  }
  Napi::Array shape_a = shape_v.As<Napi::Array>();
  const uint32_t ndim = shape_a.Length();
  if (ndim > static_cast<uint32_t>(s2s::kMaxDims)) {
    s2s::fail(s2s::code::kShape, fn, "expected ", name, " to have at most ", s2s::kMaxDims,
              " dimensions, got ", ndim);
  }
  int64_t shape[s2s::kMaxDims] = {};
  double numel = 1;
  for (uint32_t i = 0; i < ndim; ++i) {
    Napi::Value s = shape_a.Get(i);
    const double d = s.IsNumber() ? s.As<Napi::Number>().DoubleValue() : -1;
    if (!(d >= 0) || d != std::floor(d) || d > 9007199254740991.0) {
      s2s::fail(s2s::code::kShape, fn, "expected ", name, ".shape[", i,
                "] to be a non-negative integer");
    }
    shape[i] = static_cast<int64_t>(d);
    numel *= d;
  }

  Napi::Value data_v = obj.Get("data");
  if (!data_v.IsTypedArray()) {
    s2s::fail(s2s::code::kDType, fn, "expected ", name, ".data to be a ",
              dtype == s2s::DType::F32 ? "Float32Array" : "Uint16Array");
  }
  Napi::TypedArray ta = data_v.As<Napi::TypedArray>();
  const napi_typedarray_type want =
      dtype == s2s::DType::F32 ? napi_float32_array : napi_uint16_array;
  if (ta.TypedArrayType() != want) {
    s2s::fail(s2s::code::kDType, fn, "expected ", name, ".data to be a ",
              dtype == s2s::DType::F32 ? "Float32Array" : "Uint16Array", " for dtype ",
              s2s::dtype_name(dtype));
  }
  if (static_cast<double>(ta.ElementLength()) != numel) {
    s2s::fail(s2s::code::kShape, fn, "expected ", name, ".data to hold ",
              static_cast<int64_t>(numel), " elements for its shape, got ", ta.ElementLength());
  }
  uint8_t* base = static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  return s2s::Tensor::contiguous(base, dtype, static_cast<int>(ndim), shape);
}

Int32Span int32_arg(const Napi::Value& value, const char* fn, const char* name) {
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    s2s::fail(s2s::code::kDType, fn, "expected ", name, " to be an Int32Array");
  }
  Napi::Int32Array a = value.As<Napi::Int32Array>();
  return Int32Span{a.Data(), a.ElementLength()};
}

void KeepAlive::hold(const Napi::Value& value) {
  // N-API 8 references only objects; null/undefined own no memory anyway.
  if (!value.IsObject()) return;
  refs_.push_back(Napi::Persistent(value));
}

double number_option(const Napi::Object& options, const char* key, double fallback,
                     const char* fn) {
  Napi::Value v = options.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsNumber()) s2s::fail(s2s::code::kArgument, fn, "expected options.", key, " to be a number");
  return v.As<Napi::Number>().DoubleValue();
}

bool bool_option(const Napi::Object& options, const char* key, bool fallback, const char* fn) {
  Napi::Value v = options.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsBoolean()) s2s::fail(s2s::code::kArgument, fn, "expected options.", key, " to be a boolean");
  return v.As<Napi::Boolean>().Value();
}

}  // namespace s2s_napi

namespace s2s_napi {
s2s::Tensor optional_tensor_arg(const Napi::Value& value, const char* fn, const char* name) {
  if (value.IsNull() || value.IsUndefined()) return s2s::Tensor{};
  return tensor_arg(value, fn, name);
}
}  // namespace s2s_napi

namespace s2s_napi {
Uint8Span optional_uint8_arg(const Napi::Value& value, const char* fn, const char* name) {
  if (value.IsNull() || value.IsUndefined()) return Uint8Span{};
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    s2s::fail(s2s::code::kDType, fn, "expected ", name, " to be a Uint8Array or null");
  }
  Napi::Uint8Array a = value.As<Napi::Uint8Array>();
  return Uint8Span{a.Data(), a.ElementLength()};
}
}  // namespace s2s_napi
