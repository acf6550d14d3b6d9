// A small strict JSON (RFC 8259) parser and string quoter for file headers (safetensors). Not a
// general JSON library: values are plain trees, objects keep document order and reject duplicate
// keys, strings must be valid UTF-8, and every error carries the byte offset where it was found.
// Internal to the core (native/src), not part of the public headers.
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace s2s::json {

enum class Kind : uint8_t { Null, Bool, Int, Double, String, Array, Object };
const char* kind_name(Kind k);  // "null", "boolean", "integer", "number", "string", ...

struct Value {
  Kind kind = Kind::Null;
  bool boolean = false;
  int64_t integer = 0;  // Kind::Int: a number written without fraction or exponent that fits
  double number = 0;    // Kind::Double, and Kind::Int converted (may round above 2^53)
  std::string string;   // Kind::String, unescaped UTF-8
  std::vector<Value> array;
  std::vector<std::pair<std::string, Value>> object;  // in document order; keys are unique
  size_t offset = 0;  // byte offset of the value's first character in the parsed text

  bool is(Kind k) const { return kind == k; }
  // Object member by key, or nullptr (also when this is not an object). Linear: objects in
  // headers are small, and the top-level one is walked in order rather than looked up.
  const Value* find(std::string_view key) const;
};

class ParseError : public std::runtime_error {
 public:
  ParseError(const std::string& message, size_t offset)
      : std::runtime_error(message), offset_(offset) {}
  size_t offset() const { return offset_; }  // byte offset into the parsed text

 private:
  size_t offset_;
};

// Parses exactly one JSON value surrounded by optional whitespace. Nesting deeper than max_depth
// is an error (a hostile header must not be able to exhaust the stack).
Value parse(std::string_view text, int max_depth = 64);

// True when s is well-formed UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF).
bool valid_utf8(std::string_view s);

// Appends s as a JSON string literal: quotes, backslash and control characters escaped the way
// serde_json writes them (\" \\ \n \r \t \b \f, others \u00XX); everything else is copied as is.
void append_quoted(std::string& out, std::string_view s);

}  // namespace s2s::json
