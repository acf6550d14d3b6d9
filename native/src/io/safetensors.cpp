// safetensors read (map + validate the header) and write (through AtomicFile). The platform part
// (mapping a file) sits in the block marked PLATFORM; a Windows port replaces only that
// (MapViewOfFile) and the one in atomic_file.cpp.
#include "s2s/io/safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <set>
#include <sstream>
#include <string_view>

#include "io/json.h"
#include "s2s/io/atomic_file.h"

#if defined(__unix__) || defined(__APPLE__)
#define S2S_POSIX_IO 1
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#else
#include <cstdio>
#endif

namespace s2s {

namespace {

constexpr const char* kOp = "safetensors";
constexpr uint64_t kMaxHeader = 100'000'000;  // the reference implementation's limit

struct DTypeInfo {
  const char* name;
  size_t size;
};
// Byte-sized element types of the format. F8_* are carried as raw bytes.
constexpr DTypeInfo kDTypes[] = {
    {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2},
    {"I8", 1},  {"U64", 8}, {"U32", 4}, {"U16", 2},  {"U8", 1},  {"BOOL", 1},
    {"F8_E4M3", 1}, {"F8_E5M2", 1}, {"F8_E8M0", 1},
};

std::string shape_string(const std::vector<int64_t>& shape) {
  std::ostringstream os;
  os << "(";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << (shape.size() == 1 ? ",)" : ")");
  return os.str();
}

// numel * elem as bytes, or false when it does not fit in a size_t.
bool byte_size(const std::vector<int64_t>& shape, size_t elem, size_t& out) {
  for (int64_t d : shape) {
    if (d == 0) {
      out = 0;
      return true;
    }
  }
  uint64_t n = elem;
  for (int64_t d : shape) {
    const uint64_t u = static_cast<uint64_t>(d);
    if (n > std::numeric_limits<size_t>::max() / u) return false;
    n *= u;
  }
  out = static_cast<size_t>(n);
  return true;
}

std::string sys_error(int err) { return std::strerror(err); }

}  // namespace

size_t safetensors_dtype_size(const std::string& dtype) {
  for (const DTypeInfo& d : kDTypes) {
    if (dtype == d.name) return d.size;
  }
  return 0;
}

// ---- PLATFORM: read-only view of a whole file ----------------------------------------------
struct SafetensorsFile::Mapping {
  const uint8_t* data = nullptr;
  size_t size = 0;
#ifdef S2S_POSIX_IO
  void* base = nullptr;  // what munmap gets back
  ~Mapping() {
    if (base != nullptr) munmap(base, size);
  }
#else
  std::unique_ptr<uint64_t[]> buffer;  // no mapping: the file read into 8-aligned memory
#endif
};

static std::unique_ptr<SafetensorsFile::Mapping> map_file(const std::string& path) {
  auto m = std::make_unique<SafetensorsFile::Mapping>();
#ifdef S2S_POSIX_IO
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(code::kIO, kOp, path, ": cannot open: ", sys_error(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    fail(code::kIO, kOp, path, ": cannot stat: ", sys_error(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(code::kIO, kOp, path, ": not a regular file");
  }
  m->size = static_cast<size_t>(st.st_size);
  if (m->size > 0) {
    // Private and writable (copy-on-write): a JS TypedArray over these pages that someone writes
    // to changes only this process's copy instead of faulting and killing the process. Under
    // strict overcommit a writable private mapping may be refused; then map read-only.
    void* p = mmap(nullptr, m->size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED && errno == ENOMEM) p = mmap(nullptr, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      fail(code::kIO, kOp, path, ": cannot map ", m->size, " bytes: ", sys_error(err));
    }
    m->base = p;
    m->data = static_cast<const uint8_t*>(p);
  }
  ::close(fd);  // the mapping keeps the file alive
#else
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) fail(code::kIO, kOp, path, ": cannot open: ", sys_error(errno));
  std::fseek(f, 0, SEEK_END);
  const long size = std::ftell(f);
  std::fseek(f, 0, SEEK_SET);
  if (size < 0) {
    std::fclose(f);
    fail(code::kIO, kOp, path, ": cannot determine its size");
  }
  m->size = static_cast<size_t>(size);
  m->buffer.reset(new uint64_t[(m->size + 7) / 8 + 1]);
  m->data = reinterpret_cast<const uint8_t*>(m->buffer.get());
  const size_t got = std::fread(m->buffer.get(), 1, m->size, f);
  std::fclose(f);
  if (got != m->size) fail(code::kIO, kOp, path, ": read ", got, " of ", m->size, " bytes");
#endif
  return m;
}
// ---- end PLATFORM ----------------------------------------------------------------------------

SafetensorsFile::~SafetensorsFile() = default;

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::shared_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->mapping_ = map_file(path);
  const uint8_t* bytes = file->mapping_->data;
  const size_t size = file->mapping_->size;

  if (size < 8) {
    fail(code::kFormat, kOp, path, ": file is ", size,
         " bytes, too short for the 8-byte header length");
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];  // little-endian
  if (header_len > kMaxHeader) {
    fail(code::kFormat, kOp, path, ": header length ", header_len, " exceeds the limit of ",
         kMaxHeader, " bytes (not a safetensors file?)");
  }
  if (header_len > size - 8) {
    fail(code::kFormat, kOp, path, ": header length ", header_len,
         " runs past the end of the file (", size, " bytes)");
  }
  const std::string_view header(reinterpret_cast<const char*>(bytes + 8), header_len);
  file->data_begin_ = bytes + 8 + header_len;
  file->data_size_ = size - 8 - header_len;
  file->data_offset_ = static_cast<size_t>(8 + header_len);

  json::Value root;
  try {
    root = json::parse(header);
  } catch (const json::ParseError& e) {
    fail(code::kFormat, kOp, path, ": header is not valid JSON: ", e.what(), " (at header byte ",
         e.offset(), ", file byte ", e.offset() + 8, ")");
  }
  if (!root.is(json::Kind::Object)) {
    fail(code::kFormat, kOp, path, ": header is a JSON ", json::kind_name(root.kind),
         ", expected an object");
  }

  std::vector<SafetensorsTensor>& tensors = file->tensors_;
  tensors.reserve(root.object.size());
  for (const auto& [name, entry] : root.object) {
    if (name == "__metadata__") {
      if (!entry.is(json::Kind::Object)) {
        fail(code::kFormat, kOp, path, ": __metadata__ is a JSON ", json::kind_name(entry.kind),
             ", expected an object of strings");
      }
      for (const auto& [key, value] : entry.object) {
        if (!value.is(json::Kind::String)) {
          fail(code::kFormat, kOp, path, ": __metadata__ value for key '", key, "' is a JSON ",
               json::kind_name(value.kind), ", expected a string");
        }
        file->metadata_.emplace(key, value.string);
      }
      continue;
    }
    const std::string where = path + ": tensor '" + name + "'";
    if (!entry.is(json::Kind::Object)) {
      fail(code::kFormat, kOp, where, " is a JSON ", json::kind_name(entry.kind),
           ", expected an object {dtype, shape, data_offsets}");
    }
    SafetensorsTensor t;
    t.name = name;

    const json::Value* dtype = entry.find("dtype");
    if (dtype == nullptr || !dtype->is(json::Kind::String)) {
      fail(code::kFormat, kOp, where, " has no dtype string");
    }
    t.dtype = dtype->string;
    const size_t elem = safetensors_dtype_size(t.dtype);
    if (elem == 0) fail(code::kFormat, kOp, where, " has unknown or unsupported dtype '", t.dtype, "'");

    const json::Value* shape = entry.find("shape");
    if (shape == nullptr || !shape->is(json::Kind::Array)) {
      fail(code::kFormat, kOp, where, " has no shape array");
    }
    for (size_t i = 0; i < shape->array.size(); ++i) {
      const json::Value& d = shape->array[i];
      if (!d.is(json::Kind::Int) || d.integer < 0) {
        fail(code::kFormat, kOp, where, " has shape[", i, "] that is not a non-negative integer");
      }
      t.shape.push_back(d.integer);
    }

    const json::Value* offsets = entry.find("data_offsets");
    if (offsets == nullptr || !offsets->is(json::Kind::Array) || offsets->array.size() != 2 ||
        !offsets->array[0].is(json::Kind::Int) || !offsets->array[1].is(json::Kind::Int) ||
        offsets->array[0].integer < 0 || offsets->array[1].integer < 0) {
      fail(code::kFormat, kOp, where, " has no data_offsets [begin, end] of non-negative integers");
    }
    const uint64_t begin = static_cast<uint64_t>(offsets->array[0].integer);
    const uint64_t end = static_cast<uint64_t>(offsets->array[1].integer);
    if (begin > end || end > file->data_size_) {
      fail(code::kFormat, kOp, where, " has data_offsets [", begin, ", ", end,
           "] outside the data buffer of ", file->data_size_, " bytes");
    }
    size_t need = 0;
    if (!byte_size(t.shape, elem, need)) {
      fail(code::kFormat, kOp, where, " has shape ", shape_string(t.shape), " too large to address");
    }
    if (end - begin != need) {
      fail(code::kFormat, kOp, where, " has data_offsets [", begin, ", ", end, "] but shape ",
           shape_string(t.shape), " of ", t.dtype, " needs ", need, " bytes");
    }
    t.offset = static_cast<size_t>(begin);
    t.nbytes = need;
    t.data = need > 0 ? file->data_begin_ + begin : nullptr;
    tensors.push_back(std::move(t));
  }

  // Sorted by offset (zero-byte tensors before a non-empty one at the same offset, header order
  // among equals), the tensors must tile the buffer: each begins where the last ended.
  std::stable_sort(tensors.begin(), tensors.end(), [](const SafetensorsTensor& a, const SafetensorsTensor& b) {
    return a.offset != b.offset ? a.offset < b.offset : a.nbytes < b.nbytes;
  });
  size_t pos = 0;
  const SafetensorsTensor* prev = nullptr;  // the last non-empty tensor
  for (const SafetensorsTensor& t : tensors) {
    if (t.offset < pos) {
      fail(code::kFormat, kOp, path, ": tensor '", t.name, "' at data_offsets [", t.offset, ", ",
           t.offset + t.nbytes, "] overlaps tensor '", prev->name, "' at [", prev->offset, ", ",
           prev->offset + prev->nbytes, "]");
    }
    if (t.offset > pos) {
      fail(code::kFormat, kOp, path, ": tensor '", t.name, "' begins at byte ", t.offset,
           " of the data buffer but the previous tensor ends at ", pos,
           " (tensors must cover the buffer without gaps)");
    }
    if (t.nbytes > 0) {
      pos = t.offset + t.nbytes;
      prev = &t;
    }
  }
  if (pos != file->data_size_) {
    fail(code::kFormat, kOp, path, ": data buffer is ", file->data_size_, " bytes but the tensors ",
         "cover only ", pos, " (trailing bytes or a truncated header?)");
  }

  // Views must be aligned for their element type (a Float32Array cannot start at an odd byte,
  // and kernels assume it). Files whose header was not padded can store tensors misaligned;
  // those few are copied once into 8-aligned memory.
  for (SafetensorsTensor& t : tensors) {
    const size_t elem = safetensors_dtype_size(t.dtype);
    if (t.nbytes == 0 || reinterpret_cast<uintptr_t>(t.data) % elem == 0) continue;
    std::unique_ptr<uint64_t[]> copy(new uint64_t[(t.nbytes + 7) / 8]);
    std::memcpy(copy.get(), t.data, t.nbytes);
    t.data = copy.get();
    file->aligned_copies_.push_back(std::move(copy));
  }

  for (size_t i = 0; i < tensors.size(); ++i) file->index_.emplace(tensors[i].name, i);
  return file;
}

const SafetensorsTensor* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

Tensor SafetensorsFile::view(const std::string& name) const {
  const SafetensorsTensor* t = find(name);
  if (t == nullptr) fail(code::kArgument, kOp, path_, ": no tensor named '", name, "'");
  DType dtype;
  if (t->dtype == "F32") dtype = DType::F32;
  else if (t->dtype == "BF16") dtype = DType::BF16;
  else if (t->dtype == "F16") dtype = DType::F16;
  else fail(code::kDType, kOp, path_, ": tensor '", name, "' is ", t->dtype, ", expected F32, BF16 or F16");
  if (t->shape.size() > static_cast<size_t>(kMaxDims)) {
    fail(code::kShape, kOp, path_, ": tensor '", name, "' has ", t->shape.size(),
         " dimensions, at most ", kMaxDims, " are supported");
  }
  // Tensor views are mutable by type; this one is read-only by contract (see the header).
  return Tensor::contiguous(const_cast<void*>(t->data), dtype, static_cast<int>(t->shape.size()),
                            t->shape.data());
}

// ---- writing ---------------------------------------------------------------------------------

void write_safetensors(const std::string& path, const std::vector<SafetensorsWriteEntry>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  // Validate everything before the first byte is written.
  std::set<std::string_view> names;
  for (const SafetensorsWriteEntry& t : tensors) {
    const std::string where = path + ": tensor '" + t.name + "'";
    if (t.name == "__metadata__") fail(code::kArgument, kOp, path, ": '__metadata__' cannot name a tensor");
    if (!json::valid_utf8(t.name)) fail(code::kArgument, kOp, path, ": a tensor name is not valid UTF-8");
    if (!names.insert(t.name).second) fail(code::kArgument, kOp, where, " is given twice");
    const size_t elem = safetensors_dtype_size(t.dtype);
    if (elem == 0) fail(code::kDType, kOp, where, " has unknown or unsupported dtype '", t.dtype, "'");
    for (size_t i = 0; i < t.shape.size(); ++i) {
      if (t.shape[i] < 0) fail(code::kShape, kOp, where, " has negative shape[", i, "] = ", t.shape[i]);
    }
    size_t need = 0;
    if (!byte_size(t.shape, elem, need)) fail(code::kShape, kOp, where, " has a shape too large to address");
    if (t.nbytes != need) {
      fail(code::kShape, kOp, where, " has ", t.nbytes, " bytes of data but shape ",
           shape_string(t.shape), " of ", t.dtype, " needs ", need);
    }
    if (need > 0 && t.data == nullptr) fail(code::kArgument, kOp, where, " has no data");
  }
  for (const auto& [key, value] : metadata) {
    if (!json::valid_utf8(key) || !json::valid_utf8(value)) {
      fail(code::kArgument, kOp, path, ": metadata key or value is not valid UTF-8");
    }
  }

  // Largest element first, then by name: each tensor then starts at a multiple of its own
  // element size (the data start is 8-aligned), and the bytes do not depend on input order.
  std::vector<const SafetensorsWriteEntry*> order;
  order.reserve(tensors.size());
  for (const SafetensorsWriteEntry& t : tensors) order.push_back(&t);
  std::stable_sort(order.begin(), order.end(), [](const SafetensorsWriteEntry* a, const SafetensorsWriteEntry* b) {
    const size_t ea = safetensors_dtype_size(a->dtype), eb = safetensors_dtype_size(b->dtype);
    return ea != eb ? ea > eb : a->name < b->name;
  });

  std::string header = "{";
  bool first = true;
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    for (const auto& [key, value] : metadata) {
      if (!first) header += ',';
      first = false;
      json::append_quoted(header, key);
      header += ':';
      json::append_quoted(header, value);
    }
    header += '}';
    first = false;
  }
  size_t offset = 0;
  for (const SafetensorsWriteEntry* t : order) {
    if (!first) header += ',';
    first = false;
    json::append_quoted(header, t->name);
    header += ":{\"dtype\":";
    json::append_quoted(header, t->dtype);
    header += ",\"shape\":[";
    for (size_t i = 0; i < t->shape.size(); ++i) {
      if (i) header += ',';
      header += std::to_string(t->shape[i]);
    }
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," +
              std::to_string(offset + t->nbytes) + "]}";
    offset += t->nbytes;
  }
  header += '}';
  header.append((8 - header.size() % 8) % 8, ' ');  // 8 + header is then a multiple of 8
  if (header.size() > kMaxHeader) {
    fail(code::kArgument, kOp, path, ": header would be ", header.size(), " bytes, over the limit of ",
         kMaxHeader, " that readers accept");
  }

  uint8_t len[8];
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i, n >>= 8) len[i] = static_cast<uint8_t>(n & 0xff);

  AtomicFile out(path, kOp);
  out.write(len, 8);
  out.write(header.data(), header.size());
  for (const SafetensorsWriteEntry* t : order) out.write(t->data, t->nbytes);
  out.commit();
}

}  // namespace s2s
