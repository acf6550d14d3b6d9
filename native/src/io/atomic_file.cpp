// Atomic file and folder writes (see the header). The platform parts (create, write, sync,
// rename, remove) sit in the block marked PLATFORM; a Windows port replaces only that
// (CreateFileW + FlushFileBuffers + MoveFileExW).
#include "s2s/io/atomic_file.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "s2s/error.h"

#if defined(__unix__) || defined(__APPLE__)
#define S2S_POSIX_IO 1
#include <fcntl.h>
#include <unistd.h>
#else
#include <cstdio>
#endif

namespace s2s {

namespace fs = std::filesystem;

namespace {

std::string sys_error(int err) { return std::strerror(err); }

std::string random_suffix() {
  uint64_t r = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  try {
    std::random_device rd;
    r ^= (static_cast<uint64_t>(rd()) << 32) ^ rd();
  } catch (const std::exception&) {
    // No entropy source: the clock and the pid still make a collision unlikely, and the
    // temporary file is created exclusively, so a collision fails instead of clobbering.
  }
  std::ostringstream os;
  os << std::hex << (r & 0xffffffffffull);
  return os.str();
}

std::string parent_of(const std::string& path) {
  std::string p = fs::path(path).parent_path().string();
  return p.empty() ? "." : p;
}

long process_id();

// "<path>.tmp-<pid>-<random>": a sibling of `path`, so the final rename stays in one folder.
std::string temp_sibling(const std::string& path) {
  return path + ".tmp-" + std::to_string(process_id()) + "-" + random_suffix();
}

}  // namespace

// ---- PLATFORM: create, write, sync, rename, remove --------------------------------------------
#ifdef S2S_POSIX_IO
struct AtomicFile::Handle {
  int fd = -1;
};

namespace {
long process_id() { return static_cast<long>(::getpid()); }

// fsync of a folder: 0, or the errno that matters (a folder that cannot be opened, or a file
// system that cannot sync one, EINVAL/ENOTSUP, counts as done: nothing more can be done there).
int fsync_folder(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return 0;
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  return rc != 0 && err != EINVAL && err != ENOTSUP ? err : 0;
}
}  // namespace

AtomicFile::AtomicFile(std::string path, const char* op)
    : path_(std::move(path)), op_(op), handle_(std::make_unique<Handle>()) {
  std::string tried;
  for (int attempt = 0; attempt < 8; ++attempt) {
    tried = temp_sibling(path_);
    handle_->fd = ::open(tried.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (handle_->fd >= 0) {
      temp_path_ = tried;
      return;
    }
    if (errno != EEXIST) break;
  }
  // temp_path_ stays empty: the name tried is not ours, the destructor must not remove it.
  fail(code::kIO, op_, path_, ": cannot create the temporary file ", tried, ": ", sys_error(errno));
}

AtomicFile::~AtomicFile() {
  if (handle_->fd >= 0) ::close(handle_->fd);
  if (!committed_ && !temp_path_.empty()) ::unlink(temp_path_.c_str());
}

void AtomicFile::write(const void* data, size_t n) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    const size_t chunk = std::min<size_t>(n, size_t{1} << 30);  // Linux writes at most ~2 GiB
    const ssize_t w = ::write(handle_->fd, p, chunk);
    if (w < 0) {
      if (errno == EINTR) continue;
      fail(code::kIO, op_, path_, ": cannot write ", temp_path_, ": ", sys_error(errno));
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void AtomicFile::commit() {
  if (::fsync(handle_->fd) != 0) {
    fail(code::kIO, op_, path_, ": cannot fsync ", temp_path_, ": ", sys_error(errno));
  }
  const int fd = handle_->fd;
  handle_->fd = -1;
  if (::close(fd) != 0) fail(code::kIO, op_, path_, ": cannot close ", temp_path_, ": ", sys_error(errno));
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0) {
    fail(code::kIO, op_, path_, ": cannot rename ", temp_path_, " over it: ", sys_error(errno));
  }
  committed_ = true;
  // The new file is in place; flushing the folder makes the rename itself survive a power loss.
  if (const int err = fsync_folder(parent_of(path_))) {
    fail(code::kIO, op_, path_, ": written and renamed, but flushing its folder failed: ",
         sys_error(err));
  }
}
#else
// Portable fallback (no fsync of the file or the folder, and std::rename may not replace an
// existing file on every platform): correct contents, weaker crash guarantees. A Windows port
// belongs here.
struct AtomicFile::Handle {
  std::FILE* fp = nullptr;
};

namespace {
long process_id() { return 0; }
int fsync_folder(const std::string&) { return 0; }
}  // namespace

AtomicFile::AtomicFile(std::string path, const char* op)
    : path_(std::move(path)), op_(op), handle_(std::make_unique<Handle>()) {
  const std::string tried = temp_sibling(path_);
  handle_->fp = std::fopen(tried.c_str(), "wb");
  if (handle_->fp == nullptr) {
    fail(code::kIO, op_, path_, ": cannot create the temporary file ", tried, ": ", sys_error(errno));
  }
  temp_path_ = tried;
}

AtomicFile::~AtomicFile() {
  if (handle_->fp != nullptr) std::fclose(handle_->fp);
  if (!committed_ && !temp_path_.empty()) std::remove(temp_path_.c_str());
}

void AtomicFile::write(const void* data, size_t n) {
  if (n > 0 && std::fwrite(data, 1, n, handle_->fp) != n) {
    fail(code::kIO, op_, path_, ": cannot write ", temp_path_);
  }
}

void AtomicFile::commit() {
  std::FILE* fp = handle_->fp;
  handle_->fp = nullptr;
  if (std::fclose(fp) != 0) fail(code::kIO, op_, path_, ": cannot close ", temp_path_);
  std::remove(path_.c_str());
  if (std::rename(temp_path_.c_str(), path_.c_str()) != 0) {
    fail(code::kIO, op_, path_, ": cannot rename ", temp_path_, " over it");
  }
  committed_ = true;
}
#endif
// ---- end PLATFORM ----------------------------------------------------------------------------

void write_file_atomic(const std::string& path, std::string_view bytes, const char* op) {
  AtomicFile out(path, op);
  out.write(bytes.data(), bytes.size());
  out.commit();
}

std::string read_text_file(const std::string& path, const char* op) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(code::kIO, op, path, ": cannot open for reading");
  std::ostringstream os;
  os << in.rdbuf();
  if (in.bad()) fail(code::kIO, op, path, ": cannot read");
  return os.str();
}

void sync_directory(const std::string& path, const char* op) {
  if (const int err = fsync_folder(path)) fail(code::kIO, op, path, ": cannot fsync: ", sys_error(err));
}

void write_folder_atomic(const std::string& dir, const std::function<void(const std::string&)>& write,
                         const char* op) {
  std::error_code ec;
  if (fs::exists(dir, ec)) {
    S2S_REQUIRE(fs::is_directory(dir, ec), code::kIO, op, dir, ": exists and is not a folder");
    write(dir);
    return;
  }
  std::string clean = dir;
  while (clean.size() > 1 && clean.back() == '/') clean.pop_back();
  const std::string parent = parent_of(clean);
  fs::create_directories(parent, ec);
  if (ec) fail(code::kIO, op, dir, ": cannot create the parent folder: ", ec.message());
  const std::string tmp = temp_sibling(clean);
  if (!fs::create_directory(tmp, ec) || ec) {
    fail(code::kIO, op, dir, ": cannot create the temporary folder ", tmp, ": ", ec.message());
  }
  try {
    write(tmp);
    sync_directory(tmp, op);
    fs::rename(tmp, clean, ec);
    if (ec) fail(code::kIO, op, dir, ": cannot rename ", tmp, " to it: ", ec.message());
    sync_directory(parent, op);
  } catch (...) {
    std::error_code ignored;
    fs::remove_all(tmp, ignored);
    throw;
  }
}

}  // namespace s2s
