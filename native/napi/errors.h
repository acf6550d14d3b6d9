// How C++ failures become JS errors: every entry point runs inside `guarded`, which turns an
// s2s::Error into a JS Error with its `code`, and anything else into S2S_INTERNAL. Nothing here
// lets an exception escape into N-API (which would abort the process).
#pragma once
#include <napi.h>

#include <string>

#include "s2s/error.h"

namespace s2s_napi {

Napi::Error make_error(Napi::Env env, const std::string& code, const std::string& message);

// Throws a JS TypeError-like error with S2S_ARGUMENT for bad JS-side arguments.
[[noreturn]] void throw_argument(const char* fn, const std::string& message);

template <typename Fn>
Napi::Value guarded(const Napi::CallbackInfo& info, Fn&& fn) {
  Napi::Env env = info.Env();
  try {
    return fn(info);
  } catch (const Napi::Error& e) {
    throw;  // already a JS error
  } catch (const s2s::Error& e) {
    throw make_error(env, e.code(), e.what());
  } catch (const std::bad_alloc&) {
    throw make_error(env, s2s::code::kOutOfMemory, "out of memory");
  } catch (const std::exception& e) {
    throw make_error(env, s2s::code::kInternal, e.what());
  }
}

}  // namespace s2s_napi
