// cublaslt_api.h: finding libcublasLt.so and filling the function table from it. Plain C++ in
// every build (the tests load stand-in libraries through it); only the CUDA backend calls api().
#include "backends/cuda/cublaslt_api.h"

#include <cstdlib>
#include <mutex>
#include <type_traits>
#include <sstream>

#include "s2s/error.h"

#if !defined(_WIN32)
#include <dlfcn.h>
#include <glob.h>
#include <sys/stat.h>
#endif

// The CUDA major version the backend was compiled against (cmake/cuda.cmake sets it): its
// cuBLASLt is tried first.
#ifndef S2S_CUDA_RUNTIME_MAJOR
#define S2S_CUDA_RUNTIME_MAJOR 13
#endif

namespace s2s {
namespace cuda {
namespace lt {

namespace {

constexpr const char* kWhat = "cuda.cublasLt";

#if defined(__aarch64__)
constexpr const char* kTargetLib = "targets/sbsa-linux/lib";
#else
constexpr const char* kTargetLib = "targets/x86_64-linux/lib";
#endif

std::string soname(int major) { return "libcublasLt.so." + std::to_string(major); }

std::vector<int> majors(int preferred) {
  std::vector<int> out{preferred};
  for (int m : {13, 12}) {
    if (m != preferred) out.push_back(m);
  }
  return out;
}

std::vector<std::string> glob_paths(const std::string& pattern) {
  std::vector<std::string> out;
#if !defined(_WIN32)
  glob_t g{};
  if (::glob(pattern.c_str(), 0, nullptr, &g) == 0) {
    for (size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
  }
  ::globfree(&g);
#endif
  return out;
}

bool exists(const std::string& path) {
#if defined(_WIN32)
  (void)path;
  return false;
#else
  struct stat st{};
  return ::stat(path.c_str(), &st) == 0;
#endif
}

std::string nonempty(EnvLookup env, const char* name) {
  const char* v = env(name);
  return v != nullptr ? std::string(v) : std::string();
}

// The registered table, and api()'s one lookup.
struct State {
  std::mutex mu;
  bool builtin = false;
  bool looked = false;
  Api table;
  std::string problem;
};
State& state() {
  static State s;
  return s;
}

const char* getenv_lookup(const char* name) { return std::getenv(name); }

// Under the lock: the first call loads (or records why it could not).
void look_once(State& s) {
  if (s.builtin || s.looked) return;
  s.looked = true;
  try {
    s.table = load_first(library_candidates(getenv_lookup, S2S_CUDA_RUNTIME_MAJOR));
  } catch (const Error& e) {
    s.problem = e.what();
  }
}

}  // namespace

std::vector<std::string> library_candidates(EnvLookup env, int preferred_major) {
  std::vector<std::string> out;
  const std::string file = nonempty(env, "S2S_CUBLASLT");
  if (!file.empty()) return {file};
  const std::vector<int> ms = majors(preferred_major);
  const std::string root = nonempty(env, "S2S_CUBLAS_ROOT");
  if (!root.empty()) {
    for (int m : ms) {
      for (const char* lib : {"lib", "lib64"}) out.push_back(root + "/" + lib + "/" + soname(m));
    }
  }
  for (int m : ms) out.push_back(soname(m));
  std::vector<std::string> toolkits;
  for (const char* name : {"CUDA_HOME", "CUDA_PATH"}) {
    const std::string dir = nonempty(env, name);
    if (!dir.empty()) toolkits.push_back(dir);
  }
  toolkits.emplace_back("/usr/local/cuda");
  for (const std::string& dir : toolkits) {
    for (int m : ms) {
      for (const char* lib : {"lib64", "lib", kTargetLib}) {
        out.push_back(dir + "/" + lib + "/" + soname(m));
      }
    }
  }
  std::vector<std::string> prefixes;
  for (const char* name : {"VIRTUAL_ENV", "CONDA_PREFIX"}) {
    const std::string dir = nonempty(env, name);
    if (!dir.empty()) prefixes.push_back(dir);
  }
  const std::string home = nonempty(env, "HOME");
  if (!home.empty()) prefixes.push_back(home + "/.local");
  prefixes.emplace_back("/usr/local");
  prefixes.emplace_back("/usr");
  for (const std::string& prefix : prefixes) {
    for (int m : ms) {
      for (const std::string& pkg : {"cu" + std::to_string(m), std::string("cublas")}) {
        for (const char* site : {"site-packages", "dist-packages"}) {
          const std::string pattern =
              prefix + "/lib/python3*/" + site + "/nvidia/" + pkg + "/lib/" + soname(m);
          for (std::string& p : glob_paths(pattern)) out.push_back(std::move(p));
        }
      }
    }
  }
  return out;
}

Api load_first(const std::vector<std::string>& candidates) {
#if defined(_WIN32)
  (void)candidates;
  fail(code::kDevice, kWhat, "loading cuBLASLt at run time is implemented for Linux only");
#else
  std::ostringstream tried;
  for (const std::string& path : candidates) {
    const bool bare = path.find('/') == std::string::npos;  // a soname: the loader searches
    if (!bare && !exists(path)) continue;
    void* h = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) {
      const char* why = ::dlerror();
      // A bare soname the loader does not find is the common case, not worth a line.
      if (!bare) tried << "\n  " << path << ": " << (why != nullptr ? why : "dlopen failed");
      continue;
    }
    Api a;
    std::string missing;
    auto bind = [&](auto& fn, const char* name) {
      void* p = ::dlsym(h, name);
      if (p == nullptr && missing.empty()) missing = name;
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(p);
    };
    bind(a.cublasLtCreate, "cublasLtCreate");
    bind(a.cublasLtDestroy, "cublasLtDestroy");
    bind(a.cublasLtGetStatusName, "cublasLtGetStatusName");
    bind(a.cublasLtGetStatusString, "cublasLtGetStatusString");
    bind(a.cublasLtGetVersion, "cublasLtGetVersion");
    bind(a.cublasLtMatmulDescCreate, "cublasLtMatmulDescCreate");
    bind(a.cublasLtMatmulDescDestroy, "cublasLtMatmulDescDestroy");
    bind(a.cublasLtMatmulDescSetAttribute, "cublasLtMatmulDescSetAttribute");
    bind(a.cublasLtMatrixLayoutCreate, "cublasLtMatrixLayoutCreate");
    bind(a.cublasLtMatrixLayoutDestroy, "cublasLtMatrixLayoutDestroy");
    bind(a.cublasLtMatmulPreferenceCreate, "cublasLtMatmulPreferenceCreate");
    bind(a.cublasLtMatmulPreferenceDestroy, "cublasLtMatmulPreferenceDestroy");
    bind(a.cublasLtMatmulPreferenceSetAttribute, "cublasLtMatmulPreferenceSetAttribute");
    bind(a.cublasLtMatmulAlgoGetHeuristic, "cublasLtMatmulAlgoGetHeuristic");
    bind(a.cublasLtMatmul, "cublasLtMatmul");
    if (!missing.empty()) {
      tried << "\n  " << path << ": has no symbol " << missing;
      ::dlclose(h);
      continue;
    }
    // The handle stays open for the life of the process: the table points into it.
    Dl_info info{};
    a.library = ::dladdr(reinterpret_cast<void*>(a.cublasLtCreate), &info) != 0 &&
                        info.dli_fname != nullptr
                    ? info.dli_fname
                    : path;
    a.version = a.cublasLtGetVersion();
    return a;
  }
  fail(code::kDevice, kWhat,
       "cuBLASLt (libcublasLt.so.13 or .12), which the CUDA backend's matrix products need, was "
       "not found: searched the dynamic loader's path (LD_LIBRARY_PATH, ldconfig), CUDA_HOME, "
       "CUDA_PATH, /usr/local/cuda and pip's nvidia packages",
       tried.str().empty() ? "" : "; these failed to load:", tried.str(),
       "\nInstall it (`pip install nvidia-cublas` for CUDA 13, `nvidia-cublas-cu12` for 12, or the "
       "CUDA toolkit), or set S2S_CUBLASLT to the file or S2S_CUBLAS_ROOT to the folder that "
       "holds lib/");
#endif
}

const Api& api() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  look_once(s);
  if (!s.builtin && !s.problem.empty()) throw Error(code::kDevice, s.problem);
  return s.table;
}

Status status() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  look_once(s);
  Status out;
  out.ok = s.builtin || s.problem.empty();
  out.library = out.ok ? s.table.library : "";
  out.version = out.ok ? s.table.version : 0;
  out.problem = out.ok ? "" : s.problem;
  return out;
}

void register_builtin(const Api& table) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  s.table = table;
  s.builtin = true;
  s.problem.clear();
}

}  // namespace lt
}  // namespace cuda
}  // namespace s2s
