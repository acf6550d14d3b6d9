// Strict JSON parser (recursive descent over a string_view) and the string quoter used by
// writers. See json.h for what "strict" means here.
#include "io/json.h"

#include <limits>
#include <locale>
#include <sstream>

namespace s2s::json {

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::Null: return "null";
    case Kind::Bool: return "boolean";
    case Kind::Int: return "integer";
    case Kind::Double: return "number";
    case Kind::String: return "string";
    case Kind::Array: return "array";
    case Kind::Object: return "object";
  }
  return "?";
}

const Value* Value::find(std::string_view key) const {
  for (const auto& [k, v] : object) {
    if (k == key) return &v;
  }
  return nullptr;
}

// Length of the UTF-8 sequence starting at s[i] if it is well-formed, else 0.
static size_t utf8_sequence(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  if (c < 0x80) return 1;
  size_t n;
  uint32_t cp, min;
  if ((c & 0xE0) == 0xC0) { n = 2; cp = c & 0x1F; min = 0x80; }
  else if ((c & 0xF0) == 0xE0) { n = 3; cp = c & 0x0F; min = 0x800; }
  else if ((c & 0xF8) == 0xF0) { n = 4; cp = c & 0x07; min = 0x10000; }
  else return 0;
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b(i + k) & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

bool valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const size_t n = utf8_sequence(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

static void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

void append_quoted(std::string& out, std::string_view s) {
  static const char* hex = "0123456789abcdef";
  out += '"';
  for (char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 15];
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

namespace {

class Parser {
 public:
  Parser(std::string_view text, int max_depth) : s_(text), max_depth_(max_depth) {}

  Value document() {
    skip_ws();
    Value v = value(0);
    skip_ws();
    if (pos_ != s_.size()) error("unexpected '", printable(s_[pos_]), "' after the JSON value");
    return v;
  }

 private:
  std::string_view s_;
  size_t pos_ = 0;
  int max_depth_;

  template <typename... Parts>
  [[noreturn]] void error_at(size_t at, const Parts&... parts) {
    std::ostringstream os;
    (os << ... << parts);
    throw ParseError(os.str(), at);
  }
  template <typename... Parts>
  [[noreturn]] void error(const Parts&... parts) {
    error_at(pos_, parts...);
  }

  static std::string printable(char c) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f) return std::string(1, c);
    std::ostringstream os;
    os << "\\x" << std::hex << static_cast<int>(u);
    return os.str();
  }

  bool at_end() const { return pos_ >= s_.size(); }
  char peek() const { return s_[pos_]; }

  void skip_ws() {
    while (!at_end() && (peek() == ' ' || peek() == '\t' || peek() == '\n' || peek() == '\r')) ++pos_;
  }

  void expect(char c) {
    if (at_end()) error("expected '", c, "', got the end of the text");
    if (peek() != c) error("expected '", c, "', got '", printable(peek()), "'");
    ++pos_;
  }

  Value value(int depth) {
    if (at_end()) error("expected a value, got the end of the text");
    if (depth >= max_depth_) error("nesting deeper than ", max_depth_, " levels");
    const char c = peek();
    if (c == '{') return object(depth);
    if (c == '[') return array(depth);
    if (c == '"') {
      Value v;
      v.offset = pos_;
      v.kind = Kind::String;
      v.string = string();
      return v;
    }
    if (c == '-' || (c >= '0' && c <= '9')) return number();
    if (literal("true")) return boolean(true);
    if (literal("false")) return boolean(false);
    if (literal("null")) {
      Value v;
      v.offset = pos_ - 4;
      return v;
    }
    error("expected a value, got '", printable(c), "'");
  }

  bool literal(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  Value boolean(bool b) {
    Value v;
    v.kind = Kind::Bool;
    v.boolean = b;
    v.offset = pos_ - (b ? 4 : 5);
    return v;
  }

  Value object(int depth) {
    Value v;
    v.kind = Kind::Object;
    v.offset = pos_;
    expect('{');
    skip_ws();
    if (!at_end() && peek() == '}') {
      ++pos_;
      return v;
    }
    for (;;) {
      skip_ws();
      if (at_end() || peek() != '"') {
        if (at_end()) error("expected an object key, got the end of the text");
        error("expected an object key (a string), got '", printable(peek()), "'");
      }
      const size_t key_at = pos_;
      std::string key = string();
      // Duplicates are rejected: for a safetensors header a repeated name is a malformed file,
      // and silently keeping the first or last would hide it.
      if (v.find(key) != nullptr) error_at(key_at, "duplicate object key \"", key, "\"");
      skip_ws();
      expect(':');
      skip_ws();
      Value member = value(depth + 1);
      v.object.emplace_back(std::move(key), std::move(member));
      skip_ws();
      if (at_end()) error("expected ',' or '}', got the end of the text");
      if (peek() == ',') { ++pos_; continue; }
      if (peek() == '}') { ++pos_; return v; }
      error("expected ',' or '}', got '", printable(peek()), "'");
    }
  }

  Value array(int depth) {
    Value v;
    v.kind = Kind::Array;
    v.offset = pos_;
    expect('[');
    skip_ws();
    if (!at_end() && peek() == ']') {
      ++pos_;
      return v;
    }
    for (;;) {
      skip_ws();
      v.array.push_back(value(depth + 1));
      skip_ws();
      if (at_end()) error("expected ',' or ']', got the end of the text");
      if (peek() == ',') { ++pos_; continue; }
      if (peek() == ']') { ++pos_; return v; }
      error("expected ',' or ']', got '", printable(peek()), "'");
    }
  }

  uint32_t hex4() {
    if (pos_ + 4 > s_.size()) error("expected 4 hex digits after \\u");
    uint32_t cp = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = s_[pos_ + i];
      uint32_t d;
      if (c >= '0' && c <= '9') d = c - '0';
      else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
      else error_at(pos_ + i, "expected a hex digit in \\u escape, got '", printable(c), "'");
      cp = cp * 16 + d;
    }
    pos_ += 4;
    return cp;
  }

  std::string string() {
    const size_t start = pos_;
    expect('"');
    std::string out;
    for (;;) {
      if (at_end()) error_at(start, "unterminated string");
      const unsigned char c = static_cast<unsigned char>(peek());
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (c < 0x20) error("control character ", printable(static_cast<char>(c)), " in a string (must be escaped)");
      if (c == '\\') {
        const size_t esc = pos_;
        ++pos_;
        if (at_end()) error_at(start, "unterminated string");
        const char e = peek();
        ++pos_;
        switch (e) {
          case '"': out += '"'; break;
          case '\\': out += '\\'; break;
          case '/': out += '/'; break;
          case 'b': out += '\b'; break;
          case 'f': out += '\f'; break;
          case 'n': out += '\n'; break;
          case 'r': out += '\r'; break;
          case 't': out += '\t'; break;
          case 'u': {
            uint32_t cp = hex4();
            if (cp >= 0xDC00 && cp <= 0xDFFF) error_at(esc, "lone low surrogate in \\u escape");
            if (cp >= 0xD800 && cp <= 0xDBFF) {
              // A high surrogate must be followed by an escaped low one: together one code point.
              if (s_.substr(pos_, 2) != "\\u") error_at(esc, "lone high surrogate in \\u escape");
              pos_ += 2;
              const uint32_t lo = hex4();
              if (lo < 0xDC00 || lo > 0xDFFF) error_at(esc, "high surrogate not followed by a low surrogate");
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            append_utf8(out, cp);
            break;
          }
          default:
            error_at(esc, "invalid escape '\\", printable(e), "'");
        }
        continue;
      }
      const size_t n = utf8_sequence(s_, pos_);
      if (n == 0) error("invalid UTF-8 in a string");
      out.append(s_.data() + pos_, n);
      pos_ += n;
    }
  }

  static bool digit(char c) { return c >= '0' && c <= '9'; }

  Value number() {
    Value v;
    v.offset = pos_;
    const size_t start = pos_;
    bool integral = true;
    if (peek() == '-') ++pos_;
    if (at_end() || !digit(peek())) error("expected a digit");
    if (peek() == '0') {
      ++pos_;
      if (!at_end() && digit(peek())) error("leading zeros are not allowed");
    } else {
      while (!at_end() && digit(peek())) ++pos_;
    }
    if (!at_end() && peek() == '.') {
      integral = false;
      ++pos_;
      if (at_end() || !digit(peek())) error("expected a digit after '.'");
      while (!at_end() && digit(peek())) ++pos_;
    }
    if (!at_end() && (peek() == 'e' || peek() == 'E')) {
      integral = false;
      ++pos_;
      if (!at_end() && (peek() == '+' || peek() == '-')) ++pos_;
      if (at_end() || !digit(peek())) error("expected a digit in the exponent");
      while (!at_end() && digit(peek())) ++pos_;
    }
    const std::string_view text = s_.substr(start, pos_ - start);
    if (integral && parse_int64(text, v.integer)) {
      v.kind = Kind::Int;
      v.number = static_cast<double>(v.integer);
      return v;
    }
    // Classic locale: strtod would follow the process locale's decimal separator.
    std::istringstream is{std::string(text)};
    is.imbue(std::locale::classic());
    double d = 0;
    is >> d;
    if (is.fail()) {
      // Out of range for a double (e.g. 1e999): a file header has no business holding that.
      error_at(start, "number ", text, " is out of range");
    }
    v.kind = Kind::Double;
    v.number = d;
    return v;
  }

  // Decimal digits with an optional '-' into int64; false on overflow.
  static bool parse_int64(std::string_view t, int64_t& out) {
    const bool neg = !t.empty() && t[0] == '-';
    uint64_t mag = 0;
    const uint64_t limit = neg ? uint64_t{1} << 63 : static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
    for (size_t i = neg ? 1 : 0; i < t.size(); ++i) {
      const uint64_t d = static_cast<uint64_t>(t[i] - '0');
      if (mag > (limit - d) / 10) return false;
      mag = mag * 10 + d;
    }
    out = neg ? static_cast<int64_t>(0 - mag) : static_cast<int64_t>(mag);
    return true;
  }
};

}  // namespace

Value parse(std::string_view text, int max_depth) {
  return Parser(text, max_depth).document();
}

}  // namespace s2s::json
