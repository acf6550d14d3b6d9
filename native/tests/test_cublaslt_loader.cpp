// cuBLASLt loaded at run time (backends/cuda/cublaslt_api.h): where the loader looks, in what
// order, and what it does with what it finds: a library with every symbol fills the table (calls
// through it reach the library), one without is passed over with its missing symbol named, a
// file that is no library with the dynamic loader's reason, and nothing found is an S2S_DEVICE
// error saying how to install or point at cuBLASLt. The stand-in libraries are
// fake_cublaslt.cpp, built by CMakeLists.txt (Linux).
#include <cstdio>
#include <cstring>
#include <map>
#include <string>

#include "backends/cuda/cublaslt_api.h"
#include "harness.h"
#include "s2s/error.h"

using namespace s2s;
namespace lt = s2s::cuda::lt;

namespace {

std::map<std::string, std::string>& fake_env() {
  static std::map<std::string, std::string> env;
  return env;
}
const char* lookup(const char* name) {
  auto it = fake_env().find(name);
  return it == fake_env().end() ? nullptr : it->second.c_str();
}
size_t index_of(const std::vector<std::string>& v, const std::string& x) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] == x) return i;
  }
  return v.size();
}

}  // namespace

TEST(cublaslt_candidates_follow_the_documented_order) {
  fake_env() = {{"S2S_CUBLASLT", "/opt/x/libcublasLt.so.13.1"}, {"S2S_CUBLAS_ROOT", "/r"}};
  // An explicit file is the only candidate.
  const std::vector<std::string> only = lt::library_candidates(lookup, 13);
  CHECK(only.size() == 1 && only[0] == "/opt/x/libcublasLt.so.13.1");

  fake_env() = {
      {"S2S_CUBLAS_ROOT", "/r"}, {"CUDA_HOME", "/cuda-home"}, {"HOME", "/nonexistent-home"}};
  const std::vector<std::string> c = lt::library_candidates(lookup, 12);
  // The root first, the runtime's major before the other; then the bare sonames; then toolkits.
  CHECK(c.size() > 8);
  CHECK(c[0] == "/r/lib/libcublasLt.so.12");
  CHECK(c[1] == "/r/lib64/libcublasLt.so.12");
  CHECK(c[2] == "/r/lib/libcublasLt.so.13");
  const size_t bare12 = index_of(c, "libcublasLt.so.12"), bare13 = index_of(c, "libcublasLt.so.13");
  const size_t home = index_of(c, "/cuda-home/lib64/libcublasLt.so.12");
  const size_t usr_local = index_of(c, "/usr/local/cuda/lib64/libcublasLt.so.12");
  CHECK(bare12 == 4 && bare13 == 5);
  CHECK(home > bare13 && home < c.size());
  CHECK(usr_local > home && usr_local < c.size());
  // Without the root, the sonames come first.
  fake_env() = {};
  const std::vector<std::string> plain = lt::library_candidates(lookup, 13);
  CHECK(plain.size() >= 2 && plain[0] == "libcublasLt.so.13" && plain[1] == "libcublasLt.so.12");
}

#if defined(__linux__) && defined(S2S_FAKE_CUBLASLT_DIR)

TEST(cublaslt_loads_the_first_complete_library) {
  const std::string dir = S2S_FAKE_CUBLASLT_DIR;
  const std::string full = dir + "/full/lib/libcublasLt.so.13";
  const std::string partial = dir + "/partial/lib/libcublasLt.so.13";
  const lt::Api a = lt::load_first({dir + "/absent/libcublasLt.so.13", partial, full});
  CHECK_MSG(a.library.find("/full/lib/libcublasLt.so.13") != std::string::npos, a.library);
  CHECK(a.version == 120907);
  lt::cublasLtHandle_t h = nullptr;
  CHECK(a.cublasLtCreate(&h) == lt::CUBLAS_STATUS_SUCCESS && h != nullptr);
  CHECK(std::strcmp(a.cublasLtGetStatusName(lt::CUBLAS_STATUS_NOT_SUPPORTED),
                    "FAKE_NOT_SUPPORTED") == 0);
  int returned = -1;
  CHECK(a.cublasLtMatmulAlgoGetHeuristic(h, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                         1, nullptr, &returned) == lt::CUBLAS_STATUS_NOT_SUPPORTED);
  CHECK(returned == 0);
}

TEST(cublaslt_failures_say_what_was_tried_and_how_to_fix_it) {
  const std::string dir = S2S_FAKE_CUBLASLT_DIR;
  const std::string partial = dir + "/partial/lib/libcublasLt.so.13";
  // Not a library: the dynamic loader's reason is kept.
  const std::string junk = dir + "/not-a-library.so";
  if (FILE* f = std::fopen(junk.c_str(), "w")) {
    std::fputs("not an ELF file\n", f);
    std::fclose(f);
  }
  try {
    lt::load_first({partial, junk, "libcublasLt-not-installed.so.99"});
    CHECK_MSG(false, "expected no library to load");
  } catch (const Error& e) {
    const std::string m = e.what();
    CHECK(e.code() == code::kDevice);
    CHECK_MSG(m.find(partial + ": has no symbol cublasLtMatmul") != std::string::npos, m);
    CHECK_MSG(m.find(junk + ": ") != std::string::npos, m);
    CHECK_MSG(m.find("libcublasLt-not-installed") == std::string::npos, m);  // bare: not listed
    CHECK_MSG(m.find("pip install nvidia-cublas` for CUDA 13") != std::string::npos, m);
    CHECK_MSG(m.find("S2S_CUBLASLT") != std::string::npos, m);
  }
  CHECK_THROWS_CODE(lt::load_first({}), code::kDevice);
}

#endif

TEST(cublaslt_registered_table_wins) {
  // A registered table (the simulator's) is used without looking for a library, and status()
  // reports it. Registered last in this process: nothing after this test looks for a library.
  lt::Api table;
  table.library = "registered in the test";
  table.version = 7;
  lt::register_builtin(table);
  const lt::Status s = lt::status();
  CHECK(s.ok && s.library == "registered in the test" && s.version == 7 && s.problem.empty());
  CHECK(lt::api().library == "registered in the test");
}
