// TmpDir: a fresh, empty folder under the system temp directory for one test case, removed with
// everything in it when the case ends.
#pragma once
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

namespace s2s_test {

struct TmpDir {
  std::filesystem::path dir;
  TmpDir() {
    static int n = 0;
    dir = std::filesystem::temp_directory_path() /
          ("s2s-test-" + std::to_string(::getpid()) + "-" + std::to_string(n++));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
  }
  ~TmpDir() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  TmpDir(const TmpDir&) = delete;
  TmpDir& operator=(const TmpDir&) = delete;

  std::string file(const std::string& name) const { return (dir / name).string(); }
  // Names in the folder, sorted (to prove no temporary file was left behind).
  std::vector<std::string> listing() const {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
      names.push_back(e.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }
};

}  // namespace s2s_test
