// Whole-file writes that readers never see half done: bytes go to a temporary file in the same
// folder, which is fsync'ed, renamed over the target and the folder fsync'ed. Also the matching
// plain read of a small text file, and a folder written the same way (a temporary sibling folder
// renamed into place). Every failure is an s2s::Error with code S2S_IO whose message, prefixed
// "[op]", names the target path and the step that failed.
//
// The platform parts live in atomic_file.cpp (POSIX: open O_EXCL, fsync, rename, fsync of the
// folder; elsewhere a portable fallback with correct contents and weaker crash guarantees).
#pragma once
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace s2s {

class AtomicFile {
 public:
  // Creates "<path>.tmp-<pid>-<random>" exclusively in path's folder; `op` (a string literal)
  // prefixes error messages. `path` itself is not touched until commit().
  AtomicFile(std::string path, const char* op);
  // Without a successful commit(): closes and removes the temporary file; `path` is untouched.
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t n);
  // fsync + close the temporary file, rename it over `path`, fsync the folder (file systems that
  // cannot sync a folder are accepted). On a failure before the rename the temporary file is
  // removed (by the destructor) and `path` keeps its old contents.
  void commit();

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return temp_path_; }

  struct Handle;  // the platform's open file

 private:
  std::string path_;
  std::string temp_path_;
  const char* op_;
  std::unique_ptr<Handle> handle_;
  bool committed_ = false;
};

// `bytes` written to `path` through an AtomicFile (JSON and other text files).
void write_file_atomic(const std::string& path, std::string_view bytes, const char* op);

// The whole file as bytes; S2S_IO "cannot open for reading" / "cannot read" naming `path`.
std::string read_text_file(const std::string& path, const char* op);

// fsync of a folder, so renames and creations inside it survive a power loss. A folder that
// cannot be opened, or a file system that cannot sync folders, is not an error.
void sync_directory(const std::string& path, const char* op);

// Runs write(folder) so that `dir` gets its files whole. When `dir` does not exist, write() fills
// a fresh temporary sibling folder "<dir>.tmp-<pid>-<random>" (parents created as needed), which
// is fsync'ed and renamed to `dir`; on failure it is removed and `dir` does not appear. When
// `dir` exists (it must be a folder), write() runs on it directly, and each file it writes should
// be atomic on its own (write_file_atomic, write_safetensors).
void write_folder_atomic(const std::string& dir, const std::function<void(const std::string&)>& write,
                         const char* op);

}  // namespace s2s
