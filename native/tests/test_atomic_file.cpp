// AtomicFile and the helpers around it: write, replace whole, failures leave no temporary file
// and the target untouched, read back, and folders written through a temporary sibling.
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "harness.h"
#include "tmp_dir.h"
#include "s2s/error.h"
#include "s2s/io/atomic_file.h"

using s2s_test::TmpDir;

using namespace s2s;
namespace fs = std::filesystem;

namespace {


std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// "code message" of the s2s::Error fn throws, or "" when it throws none.
std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.code() + " " + e.what();
  }
  return "";
}

using Names = std::vector<std::string>;

}  // namespace

TEST(atomic_file_writes_and_replaces_whole) {
  TmpDir tmp;
  const std::string p = tmp.file("a.bin");
  {
    AtomicFile f(p, "test");
    CHECK(f.temp_path().rfind(p + ".tmp-", 0) == 0);  // "<path>.tmp-<pid>-<random>"
    CHECK(fs::exists(f.temp_path()) && !fs::exists(p));  // the target appears only at commit
    f.write("hello ", 6);
    f.write("world", 5);
    f.write(nullptr, 0);
    f.commit();
  }
  CHECK(read_bytes(p) == "hello world");
  CHECK(tmp.listing() == Names{"a.bin"});

  // Replacing a longer file leaves no stale tail; bytes (NUL included) come back as written.
  const std::string bytes("x\0y\n", 4);
  write_file_atomic(p, bytes, "test");
  CHECK(read_bytes(p) == bytes);
  CHECK(read_text_file(p, "test") == bytes);
  write_file_atomic(p, "", "test");
  CHECK(fs::file_size(p) == 0 && read_text_file(p, "test").empty());
  CHECK(tmp.listing() == Names{"a.bin"});
}

TEST(atomic_file_failures_leave_no_temporary_file) {
  TmpDir tmp;
  const std::string p = tmp.file("keep.txt");
  write_file_atomic(p, "old", "test");

  // Dropped without commit: the temporary file goes, the target keeps its old contents.
  {
    AtomicFile f(p, "test");
    f.write("new", 3);
  }
  CHECK(read_bytes(p) == "old");
  CHECK(tmp.listing() == Names{"keep.txt"});

  // A folder that does not exist: S2S_IO naming the target and the step, nothing created.
  const std::string nowhere = tmp.file("no/such/dir/f.txt");
  std::string msg = error_of([&] { write_file_atomic(nowhere, "x", "test"); });
  CHECK_MSG(contains(msg, "S2S_IO [test] " + nowhere) && contains(msg, "cannot create the temporary file"), msg);
  CHECK(tmp.listing() == Names{"keep.txt"});

  // The rename fails (the target is a non-empty folder): the folder is untouched and the
  // temporary file, already written and synced, is removed.
  const std::string folder = tmp.file("taken");
  fs::create_directories(folder + "/inside");
  msg = error_of([&] { write_file_atomic(folder, "x", "test"); });
  CHECK_MSG(contains(msg, "S2S_IO [test] " + folder) && contains(msg, "cannot rename"), msg);
  CHECK(fs::is_directory(folder + "/inside"));
  CHECK((tmp.listing() == Names{"keep.txt", "taken"}));
}

TEST(read_text_file_errors_name_the_file) {
  TmpDir tmp;
  const std::string missing = tmp.file("missing.json");
  const std::string msg = error_of([&] { read_text_file(missing, "loadModel"); });
  CHECK_MSG(contains(msg, "S2S_IO [loadModel] " + missing) && contains(msg, "cannot open"), msg);
}

TEST(sync_directory_accepts_folders_and_missing_paths) {
  TmpDir tmp;
  CHECK(error_of([&] { sync_directory(tmp.dir.string(), "test"); }).empty());
  CHECK(error_of([&] { sync_directory(tmp.file("absent"), "test"); }).empty());
}

TEST(write_folder_atomic_renames_a_temporary_sibling_into_place) {
  TmpDir tmp;
  const std::string dir = tmp.file("deep/out");
  std::string seen;
  write_folder_atomic(dir, [&](const std::string& folder) {
    seen = folder;
    CHECK(folder != dir && contains(folder, dir + ".tmp-") && !fs::exists(dir));
    write_file_atomic(folder + "/a.txt", "A", "test");
    write_file_atomic(folder + "/b.txt", "B", "test");
  }, "test");
  CHECK(!fs::exists(seen));
  CHECK(read_bytes(dir + "/a.txt") == "A" && read_bytes(dir + "/b.txt") == "B");
  CHECK(tmp.listing() == Names{"deep"});

  // An existing folder is written in place, each file replaced on its own.
  write_folder_atomic(dir + "/", [&](const std::string& folder) {
    CHECK(folder == dir + "/");
    write_file_atomic(folder + "a.txt", "A2", "test");
  }, "test");
  CHECK(read_bytes(dir + "/a.txt") == "A2" && read_bytes(dir + "/b.txt") == "B");

  // A failing writer: the temporary folder is removed and the target never appears.
  const std::string other = tmp.file("deep/failed");
  const std::string msg = error_of([&] {
    write_folder_atomic(other, [&](const std::string& folder) {
      write_file_atomic(folder + "/a.txt", "A", "test");
      fail(code::kIO, "test", "writer gave up");
    }, "test");
  });
  CHECK_MSG(contains(msg, "writer gave up"), msg);
  CHECK(!fs::exists(other));
  std::vector<std::string> deep;
  for (const auto& e : fs::directory_iterator(tmp.file("deep"))) deep.push_back(e.path().filename().string());
  CHECK(deep == Names{"out"});

  // A file where the folder should be: S2S_IO, nothing written.
  write_file_atomic(tmp.file("plain"), "p", "test");
  const std::string msg2 = error_of([&] { write_folder_atomic(tmp.file("plain"), [](const std::string&) {}, "test"); });
  CHECK_MSG(contains(msg2, "S2S_IO") && contains(msg2, "exists and is not a folder"), msg2);
}
