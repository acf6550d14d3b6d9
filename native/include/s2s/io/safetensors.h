// safetensors files (Hugging Face's format): read by memory-mapping the file and handing out
// zero-copy views of its tensors; written atomically (temporary file, fsync, rename). Every
// failure is an s2s::Error: S2S_FORMAT for a malformed file, S2S_IO for open/read/write failures,
// S2S_ARGUMENT/S2S_DTYPE/S2S_SHAPE for bad writer input; messages name the file and the tensor.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "s2s/tensor.h"

namespace s2s {

// Bytes per element of a safetensors dtype name ("F32", "BF16", "I64", "BOOL", "F8_E4M3", ...),
// or 0 when the name is not one this reader knows. Sub-byte types (F4, F6_*) and complex types
// are not supported.
size_t safetensors_dtype_size(const std::string& dtype);

// One tensor of an open file. `data` points into the mapping (or, for a tensor the file stores
// misaligned for its element type, into an aligned copy made at open); it is aligned to the
// element size and valid while the SafetensorsFile lives. Treat it as read-only: the mapping is
// private (copy-on-write), so a stray write never reaches the file, but other readers of the same
// SafetensorsFile would see it.
struct SafetensorsTensor {
  std::string name;
  std::string dtype;           // as the file spells it: "F32", "BF16", ...
  std::vector<int64_t> shape;  // row-major; empty for a 0-d (scalar) tensor
  const void* data = nullptr;  // nullptr only when nbytes == 0
  size_t nbytes = 0;           // numel * element size
  size_t offset = 0;           // data_offsets[0]: bytes from the start of the data buffer
};

class SafetensorsFile {
 public:
  // Maps and validates `path`. Checks: the 8-byte header length is within the file and below
  // 100 MB; the header is a strict-JSON object; "__metadata__" (optional) maps strings to
  // strings; every tensor has a known dtype, non-negative shape and data_offsets [begin, end]
  // with end - begin == numel * element size; the tensors neither overlap nor leave gaps and
  // exactly cover the data buffer (as the reference implementation requires).
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);

  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  // In file order: by data offset (for files written by safetensors or by us, also header order).
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  const SafetensorsTensor* find(const std::string& name) const;  // nullptr when absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // A contiguous Tensor over a float tensor's data (F32, BF16 or F16; S2S_DTYPE otherwise,
  // S2S_ARGUMENT for an unknown name). Read-only by contract, as above; valid while this lives.
  Tensor view(const std::string& name) const;

  // The data buffer (everything after the header) as mapped: tensors lie inside it unless they
  // were copied for alignment (see SafetensorsTensor::data). size may be 0.
  const uint8_t* data_begin() const { return data_begin_; }
  size_t data_size() const { return data_size_; }
  // Where the data buffer starts in the file: 8 + header length. The whole file is mapped, so
  // data_begin() - data_offset() is the file's first byte (page-aligned under mmap).
  size_t data_offset() const { return data_offset_; }

  struct Mapping;  // the platform's view of the file (mmap on POSIX)

 private:
  SafetensorsFile() = default;

  std::string path_;
  std::unique_ptr<Mapping> mapping_;
  const uint8_t* data_begin_ = nullptr;
  size_t data_size_ = 0;
  size_t data_offset_ = 0;
  std::vector<SafetensorsTensor> tensors_;
  std::unordered_map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
  std::vector<std::unique_ptr<uint64_t[]>> aligned_copies_;
};

// One tensor to write. `data` must hold exactly nbytes == numel * element size bytes in
// little-endian row-major order and stay valid for the duration of the call.
struct SafetensorsWriteEntry {
  std::string name;
  std::string dtype;  // safetensors spelling: "F32", "BF16", "I64", ...
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t nbytes = 0;
};

// Writes a safetensors file readable by the Hugging Face libraries. Layout follows the reference
// writer: tensors sorted by element size (largest first), then by name, so every tensor is
// aligned for its type; header is compact JSON with "__metadata__" first (omitted when empty),
// padded with spaces so the data starts at a multiple of 8. The file is written to
// "<path>.tmp-<pid>-<random>" in the same folder, fsync'ed, renamed over `path` and the folder
// fsync'ed; on any failure before the rename the temporary file is removed and `path` is
// untouched. Duplicate names, "__metadata__" as a name, unknown dtypes, sizes that disagree
// with the shape and names or metadata that are not valid UTF-8 are rejected before anything
// is written.
void write_safetensors(const std::string& path, const std::vector<SafetensorsWriteEntry>& tensors,
                       const std::map<std::string, std::string>& metadata);

}  // namespace s2s
