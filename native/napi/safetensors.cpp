// JS family "safetensors": openSafetensors (synchronous: maps the file and parses its header;
// no tensor data is read) returns TypedArray views over the mapping; saveSafetensors writes a
// file atomically off the JS thread and settles a Promise.
#include <napi.h>

#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "promise_worker.h"
#include "s2s/io/safetensors.h"

namespace s2s_napi {

namespace {

// How each safetensors dtype travels in JS. bf16/f16 are raw bits, F8_* raw bytes.
struct ArrayKind {
  const char* dtype;
  napi_typedarray_type type;
  const char* array_name;
};
constexpr ArrayKind kKinds[] = {
    {"F64", napi_float64_array, "Float64Array"},   {"F32", napi_float32_array, "Float32Array"},
    {"F16", napi_uint16_array, "Uint16Array"},     {"BF16", napi_uint16_array, "Uint16Array"},
    {"I64", napi_bigint64_array, "BigInt64Array"}, {"I32", napi_int32_array, "Int32Array"},
    {"I16", napi_int16_array, "Int16Array"},       {"I8", napi_int8_array, "Int8Array"},
    {"U64", napi_biguint64_array, "BigUint64Array"}, {"U32", napi_uint32_array, "Uint32Array"},
    {"U16", napi_uint16_array, "Uint16Array"},     {"U8", napi_uint8_array, "Uint8Array"},
    {"BOOL", napi_uint8_array, "Uint8Array"},      {"F8_E4M3", napi_uint8_array, "Uint8Array"},
    {"F8_E5M2", napi_uint8_array, "Uint8Array"},   {"F8_E8M0", napi_uint8_array, "Uint8Array"},
};

const ArrayKind* kind_of(const std::string& dtype) {
  for (const ArrayKind& k : kKinds) {
    if (dtype == k.dtype) return &k;
  }
  return nullptr;
}

const char* array_name(napi_typedarray_type t) {
  for (const ArrayKind& k : kKinds) {
    if (k.type == t) return k.array_name;
  }
  return t == napi_uint8_clamped_array ? "Uint8ClampedArray" : "TypedArray";
}

Napi::Value typed_array(Napi::Env env, napi_typedarray_type type, size_t length,
                        Napi::ArrayBuffer buffer, size_t byte_offset) {
  napi_value out;
  NAPI_THROW_IF_FAILED(env, napi_create_typedarray(env, type, length, buffer, byte_offset, &out),
                       Napi::Value());
  return Napi::Value(env, out);
}

void drop_file(napi_env, void*, void* hint) {
  delete static_cast<std::shared_ptr<s2s::SafetensorsFile>*>(hint);
}

// The whole file as one ArrayBuffer: external over the mapping, its finalizer dropping the last
// JS reference to the file. One buffer per file rather than per tensor, because V8 refuses two
// external buffers over the same address (two empty tensors share one). Returns whether the
// buffer is the mapping itself (false: a copy, see below).
bool file_buffer(Napi::Env env, const std::shared_ptr<s2s::SafetensorsFile>& file,
                 Napi::ArrayBuffer& out) {
  uint8_t* start = const_cast<uint8_t*>(file->data_begin() - file->data_offset());
  const size_t size = file->data_offset() + file->data_size();
  auto* holder = new std::shared_ptr<s2s::SafetensorsFile>(file);
  napi_value ab;
  const napi_status status = napi_create_external_arraybuffer(env, start, size, drop_file, holder, &ab);
  if (status == napi_ok) {
    out = Napi::ArrayBuffer(env, ab);
    return true;
  }
  delete holder;
  // With the V8 sandbox on (Electron; not Node 20) external buffers are refused: copy the file
  // into a JS-owned buffer. The views are then copies, with the same offsets and values.
  if (env.IsExceptionPending()) env.GetAndClearPendingException();
  out = Napi::ArrayBuffer::New(env, size);
  std::memcpy(out.Data(), start, size);
  return false;
}

// Own enumerable string keys (not inherited, no symbols), as JS's Object.keys gives them.
std::vector<std::string> own_keys(Napi::Env env, const Napi::Object& obj) {
  napi_value names;
  NAPI_THROW_IF_FAILED(env,
                       napi_get_all_property_names(env, obj, napi_key_own_only,
                                                   static_cast<napi_key_filter>(napi_key_enumerable | napi_key_skip_symbols),
                                                   napi_key_numbers_to_strings, &names),
                       {});
  Napi::Array a(env, names);
  std::vector<std::string> keys;
  keys.reserve(a.Length());
  for (uint32_t i = 0; i < a.Length(); ++i) keys.push_back(a.Get(i).As<Napi::String>().Utf8Value());
  return keys;
}

// Sets obj[key] = value as an own data property, so a tensor named "__proto__" stays a tensor.
void define(Napi::Object& obj, const std::string& key, Napi::Value value) {
  obj.DefineProperty(Napi::PropertyDescriptor::Value(key, value, napi_default_jsproperty));
}

}  // namespace

// openSafetensors(path) -> { metadata, tensors: { name: { dtype, shape, data } } }
static Napi::Value open_safetensors(const Napi::CallbackInfo& cb) {
  return guarded(cb, [](const Napi::CallbackInfo& info) -> Napi::Value {
    const char* fn = "openSafetensors";
    if (info.Length() < 1 || !info[0].IsString()) throw_argument(fn, "expected a file path string");
    Napi::Env env = info.Env();
    std::shared_ptr<s2s::SafetensorsFile> file =
        s2s::SafetensorsFile::open(info[0].As<Napi::String>().Utf8Value());

    Napi::ArrayBuffer buffer;
    file_buffer(env, file, buffer);
    const uint8_t* file_start = file->data_begin() - file->data_offset();

    Napi::Object tensors = Napi::Object::New(env);
    for (const s2s::SafetensorsTensor& t : file->tensors()) {
      const ArrayKind* kind = kind_of(t.dtype);
      if (kind == nullptr) s2s::fail(s2s::code::kInternal, fn, "no JS array type for ", t.dtype);
      const size_t elem = s2s::safetensors_dtype_size(t.dtype);
      const size_t length = t.nbytes / elem;
      const uint8_t* p = static_cast<const uint8_t*>(t.data);
      Napi::Value data;
      if (t.nbytes == 0) {
        data = typed_array(env, kind->type, 0, Napi::ArrayBuffer::New(env, 0), 0);
      } else if (p >= file->data_begin() && p < file->data_begin() + file->data_size()) {
        data = typed_array(env, kind->type, length, buffer, static_cast<size_t>(p - file_start));
      } else {
        // Stored misaligned in the file, so the core holds an aligned copy; copy that once more
        // into JS memory (an external buffer here would need its own lifetime bookkeeping).
        Napi::ArrayBuffer own = Napi::ArrayBuffer::New(env, t.nbytes);
        std::memcpy(own.Data(), t.data, t.nbytes);
        data = typed_array(env, kind->type, length, own, 0);
      }
      Napi::Array shape = Napi::Array::New(env, t.shape.size());
      for (size_t i = 0; i < t.shape.size(); ++i) {
        shape.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(t.shape[i])));
      }
      Napi::Object entry = Napi::Object::New(env);
      entry.Set("dtype", t.dtype);
      entry.Set("shape", shape);
      entry.Set("data", data);
      define(tensors, t.name, entry);
    }

    Napi::Object metadata = Napi::Object::New(env);
    for (const auto& [key, value] : file->metadata()) define(metadata, key, Napi::String::New(env, value));

    Napi::Object out = Napi::Object::New(env);
    out.Set("metadata", metadata);
    out.Set("tensors", tensors);
    return out;
  });
}

// saveSafetensors(path, tensors, metadata?) -> Promise<void>
static Napi::Value save_safetensors(const Napi::CallbackInfo& cb) {
  return guarded(cb, [](const Napi::CallbackInfo& info) -> Napi::Value {
    const char* fn = "saveSafetensors";
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsString() || !info[1].IsObject()) {
      throw_argument(fn, "expected (path, tensors, metadata?)");
    }
    const std::string path = info[0].As<Napi::String>().Utf8Value();
    Napi::Object tensors = info[1].As<Napi::Object>();
    KeepAlive keep;
    std::vector<s2s::SafetensorsWriteEntry> entries;
    for (const std::string& name : own_keys(env, tensors)) {
      const std::string arg = "tensors['" + name + "']";
      Napi::Value v = tensors.Get(name);
      if (!v.IsObject()) s2s::fail(s2s::code::kArgument, fn, "expected ", arg, " to be {dtype, shape, data}");
      Napi::Object obj = v.As<Napi::Object>();
      Napi::Value dtype_v = obj.Get("dtype");
      const std::string dtype = dtype_v.IsString() ? dtype_v.As<Napi::String>().Utf8Value() : "";
      const ArrayKind* kind = kind_of(dtype);
      if (kind == nullptr) {
        s2s::fail(s2s::code::kDType, fn, "expected ", arg,
                  ".dtype to be a safetensors dtype (F32, BF16, F16, F64, I64, I32, I16, I8, U64, "
                  "U32, U16, U8, BOOL, F8_E4M3, F8_E5M2, F8_E8M0), got '", dtype, "'");
      }
      Napi::Value shape_v = obj.Get("shape");
      if (!shape_v.IsArray()) s2s::fail(s2s::code::kShape, fn, "expected ", arg, ".shape to be an array");
      Napi::Array shape_a = shape_v.As<Napi::Array>();
      std::vector<int64_t> shape;
      double numel = 1;
      for (uint32_t i = 0; i < shape_a.Length(); ++i) {
        Napi::Value s = shape_a.Get(i);
        const double d = s.IsNumber() ? s.As<Napi::Number>().DoubleValue() : -1;
        if (!(d >= 0) || d > 9007199254740991.0 || d != std::floor(d)) {
          s2s::fail(s2s::code::kShape, fn, "expected ", arg, ".shape[", i, "] to be a non-negative integer");
        }
        shape.push_back(static_cast<int64_t>(d));
        numel *= d;
      }
      Napi::Value data_v = obj.Get("data");
      if (!data_v.IsTypedArray()) {
        s2s::fail(s2s::code::kDType, fn, "expected ", arg, ".data to be a ", kind->array_name);
      }
      napi_typedarray_type type;
      size_t length;
      void* data;
      NAPI_THROW_IF_FAILED(env, napi_get_typedarray_info(env, data_v, &type, &length, &data, nullptr, nullptr),
                           Napi::Value());
      if (type != kind->type) {
        s2s::fail(s2s::code::kDType, fn, "expected ", arg, ".data to be a ", kind->array_name,
                  " for dtype ", dtype, ", got a ", array_name(type));
      }
      if (static_cast<double>(length) != numel) {
        s2s::fail(s2s::code::kShape, fn, "expected ", arg, ".data to hold ", static_cast<int64_t>(numel),
                  " elements for its shape, got ", length);
      }
      keep.hold(data_v);  // the array (and so its buffer) outlives the write
      entries.push_back({name, dtype, std::move(shape), data, length * s2s::safetensors_dtype_size(dtype)});
    }

    std::map<std::string, std::string> metadata;
    if (info.Length() > 2 && !info[2].IsUndefined() && !info[2].IsNull()) {
      if (!info[2].IsObject()) throw_argument(fn, "expected metadata to be an object of strings");
      Napi::Object m = info[2].As<Napi::Object>();
      for (const std::string& key : own_keys(env, m)) {
        Napi::Value v = m.Get(key);
        if (!v.IsString()) {
          s2s::fail(s2s::code::kArgument, fn, "expected metadata['", key, "'] to be a string");
        }
        metadata.emplace(key, v.As<Napi::String>().Utf8Value());
      }
    }

    // The core re-validates (duplicates, sizes) on the worker; its errors reject the Promise.
    return PromiseWorker::Run(env, "s2s.saveSafetensors", std::move(keep),
                              [path, entries = std::move(entries), metadata = std::move(metadata)] {
                                s2s::write_safetensors(path, entries, metadata);
                              });
  });
}

void register_safetensors(Napi::Env env, Napi::Object exports) {
  exports.Set("openSafetensors", Napi::Function::New(env, open_safetensors, "openSafetensors"));
  exports.Set("saveSafetensors", Napi::Function::New(env, save_safetensors, "saveSafetensors"));
}

}  // namespace s2s_napi
