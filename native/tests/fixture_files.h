// Where the committed fixtures are, found from this header's own path (tests run from the build
// folder), and reading a text file whole.
#pragma once
#include <string>

#include "s2s/io/atomic_file.h"

namespace s2s_test {

inline std::string repo_root() {
  const std::string here = __FILE__;
  const size_t at = here.rfind("native/tests/");
  return at == std::string::npos ? std::string("./") : here.substr(0, at);
}

// test/fixtures/models/<model>: the tiny Hugging Face folders made by
// scripts/fixtures/make_tiny_models.py.
inline std::string fixture_dir(const std::string& model) {
  return repo_root() + "test/fixtures/models/" + model;
}

inline std::string read_text(const std::string& path) { return s2s::read_text_file(path, "test"); }

}  // namespace s2s_test
