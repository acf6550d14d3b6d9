// safetensors read/write and the strict JSON parser under it: round trips of every dtype, a
// hand-built golden file that pins the byte layout, each kind of malformed file, atomic writes.
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>
#include <string>
#include <vector>

#include "harness.h"
#include "tmp_dir.h"
#include "io/json.h"
#include "s2s/io/safetensors.h"

using s2s_test::TmpDir;

using namespace s2s;
namespace fs = std::filesystem;

namespace {


void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i, n >>= 8) s[i] = static_cast<char>(n & 0xff);
  return s;
}

// A file from a header (as given, no padding added) and a data buffer.
std::string st_file(const std::string& header, const std::string& data) {
  return le64(header.size()) + header + data;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Opens `path`, expecting S2S_FORMAT whose message names the file and each of `parts`.
void expect_format_error(const std::string& path, std::vector<std::string> parts, int line) {
  parts.push_back(path);
  try {
    SafetensorsFile::open(path);
    s2s_test::record_failure(__FILE__, line, "expected S2S_FORMAT opening " + path);
  } catch (const Error& e) {
    if (e.code() != code::kFormat) {
      s2s_test::record_failure(__FILE__, line, "expected S2S_FORMAT, got " + e.code() + ": " + e.what());
    }
    for (const std::string& p : parts) {
      if (!contains(e.what(), p)) {
        s2s_test::record_failure(__FILE__, line, "message \"" + std::string(e.what()) + "\" lacks \"" + p + "\"");
      }
    }
  }
}
#define EXPECT_FORMAT_ERROR(path, ...) expect_format_error(path, {__VA_ARGS__}, __LINE__)

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.code() + ": " + e.what();
  }
  return "no error";
}

template <typename T>
std::vector<uint8_t> bytes_of(const std::vector<T>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(T));
  if (!b.empty()) std::memcpy(b.data(), v.data(), b.size());
  return b;
}

}  // namespace

// ---- JSON -----------------------------------------------------------------------------------

TEST(json_parses_values_escapes_and_numbers) {
  json::Value v = json::parse(
      " {\"s\": \"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\", \"i\": -42, \"big\": 9223372036854775807,"
      " \"over\": 9223372036854775808, \"d\": 1.5e2, \"z\": -0, \"t\": true, \"f\": false, \"n\": null,"
      " \"a\": [1, [], {}], \"raw\": \"\xc3\xa9\xf0\x9f\x98\x80\"} ");
  CHECK(v.is(json::Kind::Object) && v.object.size() == 11);
  CHECK(v.object[0].first == "s");  // document order
  CHECK(v.find("s")->string == "a\"b\\c/d\b\f\n\r\t\xc3\xa9\xf0\x9f\x98\x80");
  CHECK(v.find("i")->is(json::Kind::Int) && v.find("i")->integer == -42);
  CHECK(v.find("big")->is(json::Kind::Int) && v.find("big")->integer == INT64_MAX);
  CHECK(v.find("over")->is(json::Kind::Double));  // does not fit int64: kept as a double
  CHECK(v.find("d")->is(json::Kind::Double) && v.find("d")->number == 150.0);
  CHECK(v.find("z")->is(json::Kind::Int) && v.find("z")->integer == 0);
  CHECK(v.find("t")->boolean && !v.find("f")->boolean && v.find("n")->is(json::Kind::Null));
  CHECK(v.find("a")->array.size() == 3 && v.find("a")->array[2].is(json::Kind::Object));
  CHECK(v.find("raw")->string == "\xc3\xa9\xf0\x9f\x98\x80");
  CHECK(v.find("i")->offset == std::string(" {\"s\": \"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\", \"i\": ").size());
}

TEST(json_errors_carry_byte_offsets) {
  struct Case {
    const char* text;
    size_t offset;
    const char* says;
  };
  const Case cases[] = {
      {"{\"a\": 1,}", 8, "object key"},
      {"{\"a\" 1}", 5, "expected ':'"},
      {"[1, 2", 5, "end of the text"},
      {"01", 1, "leading zeros"},
      {"1.", 2, "after '.'"},
      {"{} x", 3, "after the JSON value"},
      {"\"\\ud800\"", 1, "lone high surrogate"},
      {"\"\\udc00\"", 1, "lone low surrogate"},
      {"\"\\ud800\\u0041\"", 1, "not followed by a low surrogate"},
      {"\"\\x\"", 1, "invalid escape"},
      {"\"\\u12g4\"", 5, "hex digit"},
      {"\"a\nb\"", 2, "control character"},
      {"\"\xc3\x28\"", 1, "invalid UTF-8"},
      {"\"\xed\xa0\x80\"", 1, "invalid UTF-8"},  // a surrogate encoded directly
      {"\"\xc0\xaf\"", 1, "invalid UTF-8"},      // overlong '/'
      {"\"abc", 0, "unterminated"},
      {"{\"k\": 1, \"k\": 2}", 9, "duplicate object key \"k\""},
      {"tru", 0, "expected a value"},
      {"", 0, "end of the text"},
      {"1e999", 0, "out of range"},
  };
  for (const Case& c : cases) {
    try {
      json::parse(c.text);
      CHECK_MSG(false, std::string("expected a parse error for ") + c.text);
    } catch (const json::ParseError& e) {
      CHECK_MSG(e.offset() == c.offset, std::string(c.text) + ": offset " + std::to_string(e.offset()) +
                                            " (" + e.what() + "), expected " + std::to_string(c.offset));
      CHECK_MSG(contains(e.what(), c.says), std::string(c.text) + ": message \"" + e.what() + "\"");
    }
  }
  // Depth is bounded, so a hostile header cannot exhaust the stack.
  std::string deep(100000, '[');
  try {
    json::parse(deep);
    CHECK(false);
  } catch (const json::ParseError& e) {
    CHECK(contains(e.what(), "nesting deeper than 64"));
  }
}

TEST(json_quotes_like_serde_and_round_trips) {
  std::string out;
  json::append_quoted(out, "q\"b\\n\n\t\x01\x1f/\xc3\xa9");
  CHECK(out == "\"q\\\"b\\\\n\\n\\t\\u0001\\u001f/\xc3\xa9\"");
  CHECK(json::parse(out).string == "q\"b\\n\n\t\x01\x1f/\xc3\xa9");
  CHECK(json::valid_utf8("plain \xf0\x9f\x98\x80"));
  CHECK(!json::valid_utf8("\xff"));
  CHECK(!json::valid_utf8("\xf4\x90\x80\x80"));  // above U+10FFFF
}

// ---- round trips ----------------------------------------------------------------------------

TEST(round_trip_every_dtype_scalar_empty_and_metadata) {
  TmpDir tmp;
  const std::string path = tmp.file("all.safetensors");
  struct Owned {
    std::string name, dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
  };
  std::vector<Owned> owned;
  s2s_test::Rng rng(7);
  auto add = [&](const std::string& name, const std::string& dtype, std::vector<int64_t> shape) {
    size_t n = safetensors_dtype_size(dtype);
    for (int64_t d : shape) n *= static_cast<size_t>(d);
    std::vector<uint8_t> b(n);
    for (auto& x : b) x = static_cast<uint8_t>(rng.next());
    owned.push_back({name, dtype, std::move(shape), std::move(b)});
  };
  // Odd sizes on purpose: the writer's ordering must keep every tensor aligned anyway.
  add("f64", "F64", {3});
  add("f32", "F32", {2, 3});
  add("f16", "F16", {5});
  add("bf16", "BF16", {1, 3, 1});
  add("i64", "I64", {2});
  add("i32", "I32", {3});
  add("i16", "I16", {3});
  add("i8", "I8", {7});
  add("u64", "U64", {1});
  add("u32", "U32", {2});
  add("u16", "U16", {3});
  add("u8", "U8", {5});
  add("bool", "BOOL", {3});
  add("f8a", "F8_E4M3", {3});
  add("f8b", "F8_E5M2", {2});
  add("f8c", "F8_E8M0", {1});
  add("scalar", "F32", {});       // 0-d: one element, shape []
  add("empty", "F32", {0, 4});    // no bytes
  add("empty_i64", "I64", {0});
  add("name with \"quotes\", \\ and \xc3\xa9", "BF16", {2});

  std::vector<SafetensorsWriteEntry> entries;
  for (const Owned& o : owned) entries.push_back({o.name, o.dtype, o.shape, o.bytes.data(), o.bytes.size()});
  const std::map<std::string, std::string> metadata = {
      {"format", "pt"},
      {"quote\"key", "line\nbreak\ttab\\ \x01 \xc3\xa9 \xf0\x9f\x98\x80"},
  };
  write_safetensors(path, entries, metadata);

  auto file = SafetensorsFile::open(path);
  CHECK(file->metadata() == metadata);
  CHECK(file->tensors().size() == owned.size());
  for (const Owned& o : owned) {
    const SafetensorsTensor* t = file->find(o.name);
    CHECK_MSG(t != nullptr, "missing " + o.name);
    if (t == nullptr) continue;
    CHECK_MSG(t->dtype == o.dtype && t->shape == o.shape && t->nbytes == o.bytes.size(), o.name);
    CHECK_MSG(t->nbytes == 0 || std::memcmp(t->data, o.bytes.data(), t->nbytes) == 0, o.name + " bytes");
    const size_t elem = safetensors_dtype_size(o.dtype);
    CHECK_MSG(reinterpret_cast<uintptr_t>(t->data) % elem == 0, o.name + " aligned");
    // Written sorted, so every tensor is inside the mapping (no alignment copies were needed).
    CHECK_MSG(t->nbytes == 0 || (static_cast<const uint8_t*>(t->data) >= file->data_begin() &&
                                 static_cast<const uint8_t*>(t->data) + t->nbytes <=
                                     file->data_begin() + file->data_size()),
              o.name + " in the mapping");
  }
  // tensors() is in data order.
  for (size_t i = 1; i < file->tensors().size(); ++i) {
    CHECK(file->tensors()[i - 1].offset <= file->tensors()[i].offset);
  }
  CHECK(file->find("nope") == nullptr);

  // Data starts 8-aligned: 8 + header length is a multiple of 8.
  const std::string raw = read_bytes(path);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<uint8_t>(raw[i]);
  CHECK((8 + header_len) % 8 == 0);
  CHECK(file->data_offset() == 8 + header_len && file->data_begin() - file->data_offset() != nullptr);

  // An empty file set round-trips too.
  write_safetensors(tmp.file("none.safetensors"), {}, {});
  auto none = SafetensorsFile::open(tmp.file("none.safetensors"));
  CHECK(none->tensors().empty() && none->metadata().empty() && none->data_size() == 0);
  CHECK(read_bytes(tmp.file("none.safetensors")) == le64(8) + "{}      ");
}

// The exact bytes of a small file, built by hand: pins header order (__metadata__ first, then
// tensors by element size, then name), compact JSON, space padding and little-endian data.
TEST(golden_bytes_are_exact) {
  TmpDir tmp;
  const std::string header =
      "{\"__metadata__\":{\"format\":\"pt\"},"
      "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
      "\"b\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[8,11]}}      ";
  CHECK(header.size() == 144);
  const std::string data("\x00\x00\x80\x3f\x00\x00\x00\xc0\x01\x02\x03", 11);  // 1.0f, -2.0f, 1, 2, 3
  const std::string golden = std::string("\x90\0\0\0\0\0\0\0", 8) + header + data;

  const float a[2] = {1.0f, -2.0f};
  const uint8_t b[3] = {1, 2, 3};
  const std::string path = tmp.file("golden.safetensors");
  write_safetensors(path, {{"b", "U8", {3}, b, 3}, {"a", "F32", {2}, a, 8}}, {{"format", "pt"}});
  CHECK(read_bytes(path) == golden);

  const std::string hand = tmp.file("hand.safetensors");
  write_bytes(hand, golden);
  auto file = SafetensorsFile::open(hand);
  CHECK(file->tensors().size() == 2 && file->tensors()[0].name == "a" && file->tensors()[1].name == "b");
  Tensor va = file->view("a");
  CHECK(va.ndim == 1 && va.shape[0] == 2 && va.f32()[0] == 1.0f && va.f32()[1] == -2.0f);
  CHECK(static_cast<const uint8_t*>(file->find("b")->data)[2] == 3);
  CHECK(file->metadata().at("format") == "pt");
}

TEST(views_and_lifetime) {
  TmpDir tmp;
  const std::string path = tmp.file("v.safetensors");
  std::vector<float> w = {1, 2, 3, 4, 5, 6};
  std::vector<uint16_t> h = {f32_to_bf16(1.5f), f32_to_bf16(-3.0f)};
  std::vector<int32_t> ids = {7, 8};
  std::vector<float> big(7 * 1 * 1 * 1 * 1 * 1 * 1, 0.5f);
  write_safetensors(path,
                    {{"w", "F32", {2, 3}, w.data(), 24},
                     {"h", "BF16", {2}, h.data(), 4},
                     {"f16", "F16", {0}, nullptr, 0},
                     {"ids", "I32", {2}, ids.data(), 8},
                     {"seven_dims", "F32", {7, 1, 1, 1, 1, 1, 1}, big.data(), 28}},
                    {});
  Tensor tw;
  {
    auto file = SafetensorsFile::open(path);
    tw = file->view("w");
    CHECK(tw.dtype == DType::F32 && tw.ndim == 2 && tw.shape[1] == 3 && tw.is_contiguous());
    CHECK(tw.f32()[5] == 6.0f);
    Tensor th = file->view("h");
    CHECK(th.dtype == DType::BF16 && bf16_to_f32(th.u16()[1]) == -3.0f);
    CHECK(file->view("f16").dtype == DType::F16 && file->view("f16").numel() == 0);
    CHECK_THROWS_CODE(file->view("ids"), code::kDType);
    CHECK_THROWS_CODE(file->view("missing"), code::kArgument);
    CHECK_THROWS_CODE(file->view("seven_dims"), code::kShape);
    CHECK(contains(error_of([&] { file->view("ids"); }), "tensor 'ids' is I32"));
    // The mapping lives as long as any shared_ptr to it.
    std::shared_ptr<SafetensorsFile> keep = file;
    file.reset();
    CHECK(keep->view("w").f32()[0] == 1.0f);
  }
}

// A file whose header was not padded stores F32 data at an odd address; it is copied, aligned.
TEST(misaligned_tensors_are_copied_aligned) {
  TmpDir tmp;
  const std::string header = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";  // 55 bytes
  CHECK((8 + header.size()) % 4 != 0);
  const std::string data("\x00\x00\x80\x3f\x00\x00\x00\x40", 8);  // 1.0f, 2.0f
  write_bytes(tmp.file("odd.safetensors"), st_file(header, data));
  auto file = SafetensorsFile::open(tmp.file("odd.safetensors"));
  const SafetensorsTensor* t = file->find("w");
  CHECK(reinterpret_cast<uintptr_t>(t->data) % 4 == 0);
  CHECK(file->view("w").f32()[1] == 2.0f);
}

// ---- malformed files ------------------------------------------------------------------------

TEST(malformed_files_are_format_errors_naming_file_and_tensor) {
  TmpDir tmp;
  const std::string p = tmp.file("bad.safetensors");
  auto entry = [](const std::string& name, const std::string& dtype, const std::string& shape,
                  const std::string& offsets) {
    return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":" + offsets + "}";
  };

  write_bytes(p, "abc");
  EXPECT_FORMAT_ERROR(p, "3 bytes, too short");

  write_bytes(p, le64(1000) + "{}");
  EXPECT_FORMAT_ERROR(p, "header length 1000 runs past the end of the file (10 bytes)");

  write_bytes(p, le64(200'000'000) + "{}");
  EXPECT_FORMAT_ERROR(p, "exceeds the limit");

  write_bytes(p, st_file("{\"w\":{\"dtype\":\"F32\",}", ""));
  EXPECT_FORMAT_ERROR(p, "header is not valid JSON", "object key", "header byte 20", "file byte 28");

  write_bytes(p, st_file("[1]", ""));
  EXPECT_FORMAT_ERROR(p, "header is a JSON array");

  write_bytes(p, st_file("{" + entry("w", "F12", "[2]", "[0,8]") + "}", std::string(8, '\0')));
  EXPECT_FORMAT_ERROR(p, "tensor 'w'", "unknown or unsupported dtype 'F12'");

  write_bytes(p, st_file("{" + entry("w", "F32", "[-2]", "[0,8]") + "}", std::string(8, '\0')));
  EXPECT_FORMAT_ERROR(p, "tensor 'w'", "shape[0]");

  write_bytes(p, st_file("{" + entry("w", "F32", "[2]", "[0,-8]") + "}", std::string(8, '\0')));
  EXPECT_FORMAT_ERROR(p, "tensor 'w'", "data_offsets");

  write_bytes(p, st_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", std::string(8, '\0')));
  EXPECT_FORMAT_ERROR(p, "tensor 'w'", "no data_offsets");

  // Truncated data: the header promises more bytes than the file has.
  write_bytes(p, st_file("{" + entry("w", "F32", "[3,4]", "[0,48]") + "}", std::string(20, '\0')));
  EXPECT_FORMAT_ERROR(p, "tensor 'w' has data_offsets [0, 48] outside the data buffer of 20 bytes");

  write_bytes(p, st_file("{" + entry("w", "F32", "[2]", "[8,4]") + "}", std::string(8, '\0')));
  EXPECT_FORMAT_ERROR(p, "tensor 'w' has data_offsets [8, 4]");

  // Size mismatch: the exact message.
  write_bytes(p, st_file("{" + entry("h.0.attn.c_attn.weight", "F32", "[3,4]", "[0,100]") + "}",
                         std::string(100, '\0')));
  CHECK(error_of([&] { SafetensorsFile::open(p); }) ==
        "S2S_FORMAT: [safetensors] " + p +
            ": tensor 'h.0.attn.c_attn.weight' has data_offsets [0, 100] but shape (3, 4) of F32 needs 48 bytes");

  write_bytes(p, st_file("{" + entry("a", "F32", "[2]", "[0,8]") + "," + entry("b", "F32", "[2]", "[4,12]") + "}",
                         std::string(12, '\0')));
  EXPECT_FORMAT_ERROR(p, "tensor 'b' at data_offsets [4, 12] overlaps tensor 'a' at [0, 8]");

  write_bytes(p, st_file("{" + entry("a", "F32", "[1]", "[0,4]") + "," + entry("b", "F32", "[1]", "[8,12]") + "}",
                         std::string(12, '\0')));
  EXPECT_FORMAT_ERROR(p, "tensor 'b' begins at byte 8", "ends at 4");

  write_bytes(p, st_file("{" + entry("a", "F32", "[1]", "[0,4]") + "}", std::string(6, '\0')));
  EXPECT_FORMAT_ERROR(p, "data buffer is 6 bytes", "cover only 4");

  write_bytes(p, st_file("{\"__metadata__\":{\"k\":1}}", ""));
  EXPECT_FORMAT_ERROR(p, "__metadata__ value for key 'k' is a JSON integer");

  write_bytes(p, st_file("{" + entry("w", "F32", "[1]", "[0,4]") + "," + entry("w", "F32", "[1]", "[4,8]") + "}",
                         std::string(8, '\0')));
  EXPECT_FORMAT_ERROR(p, "duplicate object key \"w\"");

  write_bytes(p, st_file("{\"w\":5}", ""));
  EXPECT_FORMAT_ERROR(p, "tensor 'w' is a JSON integer");

  // Padded with spaces (as writers do) is fine, and so are zero-size tensors between others.
  write_bytes(p, st_file("{" + entry("a", "F32", "[1]", "[0,4]") + "," + entry("e", "F32", "[0]", "[4,4]") + "," +
                             entry("b", "U8", "[2]", "[4,6]") + "}   ",
                         std::string(6, '\0')));
  CHECK(SafetensorsFile::open(p)->tensors().size() == 3);
}

TEST(open_failures_are_io_errors) {
  TmpDir tmp;
  const std::string missing = tmp.file("missing.safetensors");
  const std::string msg = error_of([&] { SafetensorsFile::open(missing); });
  CHECK_MSG(contains(msg, "S2S_IO") && contains(msg, missing) && contains(msg, "cannot open"), msg);
  CHECK(contains(error_of([&] { SafetensorsFile::open(tmp.dir.string()); }), "not a regular file"));
}

// ---- writing --------------------------------------------------------------------------------

TEST(writer_rejects_bad_input_before_writing) {
  TmpDir tmp;
  const std::string p = tmp.file("w.safetensors");
  const float x[2] = {1, 2};
  CHECK_THROWS_CODE(write_safetensors(p, {{"a", "F32", {2}, x, 8}, {"a", "F32", {2}, x, 8}}, {}), code::kArgument);
  CHECK(contains(error_of([&] { write_safetensors(p, {{"a", "F32", {2}, x, 8}, {"a", "F32", {2}, x, 8}}, {}); }),
                 "tensor 'a' is given twice"));
  CHECK_THROWS_CODE(write_safetensors(p, {{"a", "F32", {3}, x, 8}}, {}), code::kShape);
  CHECK_THROWS_CODE(write_safetensors(p, {{"a", "F32", {-1}, x, 8}}, {}), code::kShape);
  CHECK_THROWS_CODE(write_safetensors(p, {{"a", "Q4", {2}, x, 8}}, {}), code::kDType);
  CHECK_THROWS_CODE(write_safetensors(p, {{"__metadata__", "F32", {2}, x, 8}}, {}), code::kArgument);
  CHECK_THROWS_CODE(write_safetensors(p, {{"a", "F32", {2}, nullptr, 8}}, {}), code::kArgument);
  CHECK_THROWS_CODE(write_safetensors(p, {{"\xff", "F32", {2}, x, 8}}, {}), code::kArgument);
  CHECK_THROWS_CODE(write_safetensors(p, {}, {{"k", "\xc3"}}), code::kArgument);
  CHECK(tmp.listing().empty());
}

TEST(atomic_write_replaces_whole_and_leaves_no_temp_on_failure) {
  TmpDir tmp;
  const float x[2] = {1, 2};

  // A folder that does not exist: S2S_IO, and nothing is created anywhere near it.
  const std::string nowhere = tmp.file("no/such/dir/m.safetensors");
  const std::string msg = error_of([&] { write_safetensors(nowhere, {{"a", "F32", {2}, x, 8}}, {}); });
  CHECK_MSG(contains(msg, "S2S_IO") && contains(msg, nowhere), msg);
  CHECK(tmp.listing().empty());

  // An existing bigger file is replaced whole (no stale tail), with no temp file left over.
  const std::string p = tmp.file("m.safetensors");
  std::vector<float> big(1 << 18, 3.0f);
  write_safetensors(p, {{"big", "F32", {1 << 18}, big.data(), big.size() * 4}}, {{"v", "1"}});
  const size_t big_size = fs::file_size(p);
  write_safetensors(p, {{"a", "F32", {2}, x, 8}}, {{"v", "2"}});
  CHECK(fs::file_size(p) < big_size);
  auto file = SafetensorsFile::open(p);
  CHECK(file->tensors().size() == 1 && file->metadata().at("v") == "2" && file->view("a").f32()[1] == 2.0f);
  CHECK(tmp.listing() == std::vector<std::string>{"m.safetensors"});

  // The rename fails (the target is a non-empty folder): the folder is untouched and the
  // temporary file, already written and synced by then, is removed.
  const std::string folder = tmp.file("taken");
  fs::create_directories(folder + "/inside");
  const std::string msg2 = error_of([&] { write_safetensors(folder, {{"a", "F32", {2}, x, 8}}, {}); });
  CHECK_MSG(contains(msg2, "S2S_IO") && contains(msg2, "cannot rename"), msg2);
  CHECK(fs::is_directory(folder + "/inside"));
  std::vector<std::string> names = tmp.listing();
  std::sort(names.begin(), names.end());
  CHECK((names == std::vector<std::string>{"m.safetensors", "taken"}));

  // The file we still hold open keeps its mapping even after the path was replaced.
  write_safetensors(p, {{"b", "F32", {1}, x, 4}}, {});
  CHECK(file->view("a").f32()[0] == 1.0f);
  CHECK(SafetensorsFile::open(p)->find("b") != nullptr);
}

// Every truncation and many random corruptions of a valid file either open or throw S2S_FORMAT:
// never a crash, never another exception (run under ASan to make "never a crash" strict).
TEST(corrupted_files_never_crash) {
  TmpDir tmp;
  const std::string good_path = tmp.file("good.safetensors");
  const float w[6] = {1, 2, 3, 4, 5, 6};
  const uint16_t h[3] = {1, 2, 3};
  write_safetensors(good_path, {{"w", "F32", {2, 3}, w, 24}, {"h\xc3\xa9", "BF16", {3}, h, 6}},
                    {{"k", "v\"\\"}});
  const std::string good = read_bytes(good_path);
  const std::string p = tmp.file("c.safetensors");
  int opened = 0, rejected = 0;
  auto attempt = [&](const std::string& bytes) {
    write_bytes(p, bytes);
    try {
      auto f = SafetensorsFile::open(p);
      for (const SafetensorsTensor& t : f->tensors()) {
        volatile uint8_t sink = 0;
        for (size_t i = 0; i < t.nbytes; ++i) sink = sink ^ static_cast<const uint8_t*>(t.data)[i];
      }
      ++opened;
    } catch (const Error& e) {
      CHECK_MSG(e.code() == code::kFormat, e.code() + ": " + e.what());
      ++rejected;
    }
  };
  for (size_t n = 0; n < good.size(); ++n) attempt(good.substr(0, n));
  s2s_test::Rng rng(11);
  for (int i = 0; i < 2000; ++i) {
    std::string bad = good;
    const int flips = 1 + static_cast<int>(rng.next() % 3);
    for (int k = 0; k < flips; ++k) {
      // Mostly inside the header, where the parser lives.
      const size_t at = rng.next() % std::min<size_t>(bad.size(), 8 + 160);
      bad[at] = static_cast<char>(rng.next());
    }
    attempt(bad);
  }
  CHECK(rejected > 0 && opened > 0);  // some flips land in padding or values and stay valid
}
