// The one exception type the core throws. Every failure that user input can cause is an
// s2s::Error with a stable code (the N-API layer copies it to the JS Error's `code`) and a
// message in the form "[op] expected …, got …". The core never calls exit() or abort().
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace s2s {

// Stable codes; JS sees them as err.code.
namespace code {
inline constexpr const char* kShape = "S2S_SHAPE";        // a tensor has the wrong shape
inline constexpr const char* kDType = "S2S_DTYPE";        // a tensor has the wrong element type
inline constexpr const char* kArgument = "S2S_ARGUMENT";  // a scalar argument is out of range
inline constexpr const char* kLayout = "S2S_LAYOUT";      // a tensor is not laid out as required
inline constexpr const char* kOutOfMemory = "S2S_OUT_OF_MEMORY";
inline constexpr const char* kFormat = "S2S_FORMAT";      // a file's contents are malformed
inline constexpr const char* kIO = "S2S_IO";              // a file cannot be opened, read or written
inline constexpr const char* kInternal = "S2S_INTERNAL";  // a bug in the core, not in the input
inline constexpr const char* kConfig = "S2S_CONFIG";      // a model config.json is invalid or unsupported
inline constexpr const char* kBusy = "S2S_BUSY";          // an object is already running a call
inline constexpr const char* kDevice = "S2S_DEVICE";      // a device was asked for that this build or machine lacks
inline constexpr const char* kCuda = "S2S_CUDA";          // the CUDA runtime or cuBLASLt reported a failure
}  // namespace code

class Error : public std::runtime_error {
 public:
  Error(std::string code, const std::string& message)
      : std::runtime_error(message), code_(std::move(code)) {}
  const std::string& code() const { return code_; }

 private:
  std::string code_;
};

namespace detail {
inline void append(std::ostringstream&) {}
template <typename T, typename... Rest>
void append(std::ostringstream& os, const T& first, const Rest&... rest) {
  os << first;
  append(os, rest...);
}
}  // namespace detail

// Builds "[op] " + the streamed parts and throws it with the given code.
template <typename... Parts>
[[noreturn]] void fail(const char* error_code, const char* op, const Parts&... parts) {
  std::ostringstream os;
  os << "[" << op << "] ";
  detail::append(os, parts...);
  throw Error(error_code, os.str());
}

}  // namespace s2s

// S2S_REQUIRE(cond, code, op, message parts...): throws when cond is false.
#define S2S_REQUIRE(cond, error_code, op, ...) \
  do {                                         \
    if (!(cond)) ::s2s::fail(error_code, op, __VA_ARGS__); \
  } while (0)
