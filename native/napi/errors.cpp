// JS error construction for the addon.
#include "errors.h"

namespace s2s_napi {

Napi::Error make_error(Napi::Env env, const std::string& code, const std::string& message) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Value().Set("code", Napi::String::New(env, code));
  return err;
}

void throw_argument(const char* fn, const std::string& message) {
  s2s::fail(s2s::code::kArgument, fn, message);
}

}  // namespace s2s_napi
