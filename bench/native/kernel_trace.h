// KernelTrace: what the GPU did during a bench's timed steps, from CUPTI's activity records (the
// source torch.profiler and Nsight Systems read): every kernel, copy and memset with its start
// and end on the GPU's clock. Nothing is synchronised per op, so the step runs as it does
// untraced, and two questions get their answers:
//   - how much of a step the GPU was busy (the union of its activities inside the steps); the
//     rest is the GPU waiting for the host (launch overhead, host-side work, synchronisations);
//   - which kernels the busy time went to (by name, cuBLASLt's included, per step).
// libcupti is loaded at run time (dlopen: pip's nvidia-cuda-cupti, the CUDA toolkit's
// extras/CUPTI or lib64), so the bench neither links it nor needs its header; where it is
// missing or refuses (no GPU, a simulator), start() says why and the bench goes on without.
// The record layouts read are CUPTI's (cupti_activity.h, stable since CUDA 11): where the header
// is at hand, the static_asserts below hold our offsets to it.
#pragma once

#include <dlfcn.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cxxabi.h>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__has_include)
#if __has_include(<cupti_activity.h>)
#include <cupti_activity.h>
#define S2S_HAVE_CUPTI_HEADER 1
#endif
#endif

namespace s2s_bench {

namespace cupti {

// CUpti_ActivityKind values and CUptiResult codes used here.
constexpr uint32_t kKindMemcpy = 1, kKindMemset = 2, kKindConcurrentKernel = 10;
constexpr int kSuccess = 0, kMaxLimitReached = 12;
constexpr uint32_t kFlushForced = 1;
// Byte offsets in the records: every kind read starts with its kind (uint32) and has start and
// end (uint64 ns) at 16 and 24; a kernel's name (const char*, mangled) is at 104.
constexpr size_t kStartOffset = 16, kEndOffset = 24, kKernelNameOffset = 104;

using RequestFn = void (*)(uint8_t** buffer, size_t* size, size_t* max_records);
using CompleteFn = void (*)(void* context, uint32_t stream, uint8_t* buffer, size_t size,
                            size_t valid_size);
struct Api {
  int (*register_callbacks)(RequestFn, CompleteFn) = nullptr;
  int (*enable)(uint32_t kind) = nullptr;
  int (*disable)(uint32_t kind) = nullptr;
  int (*flush_all)(uint32_t flag) = nullptr;
  int (*next_record)(uint8_t* buffer, size_t valid, void** record) = nullptr;
  int (*timestamp)(uint64_t* ns) = nullptr;
  int (*result_string)(int result, const char** text) = nullptr;
};

}  // namespace cupti

#ifdef S2S_HAVE_CUPTI_HEADER
static_assert(cupti::kKindMemcpy == CUPTI_ACTIVITY_KIND_MEMCPY, "CUPTI kind");
static_assert(cupti::kKindMemset == CUPTI_ACTIVITY_KIND_MEMSET, "CUPTI kind");
static_assert(cupti::kKindConcurrentKernel == CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL, "CUPTI kind");
static_assert(cupti::kMaxLimitReached == CUPTI_ERROR_MAX_LIMIT_REACHED, "CUPTI result");
static_assert(cupti::kFlushForced == CUPTI_ACTIVITY_FLAG_FLUSH_FORCED, "CUPTI flag");
static_assert(offsetof(CUpti_ActivityKernel10, start) == cupti::kStartOffset, "kernel start");
static_assert(offsetof(CUpti_ActivityKernel10, end) == cupti::kEndOffset, "kernel end");
static_assert(offsetof(CUpti_ActivityKernel10, name) == cupti::kKernelNameOffset, "kernel name");
static_assert(offsetof(CUpti_ActivityMemcpy6, start) == cupti::kStartOffset, "memcpy start");
static_assert(offsetof(CUpti_ActivityMemcpy6, end) == cupti::kEndOffset, "memcpy end");
static_assert(offsetof(CUpti_ActivityMemset4, start) == cupti::kStartOffset, "memset start");
static_assert(offsetof(CUpti_ActivityMemset4, end) == cupti::kEndOffset, "memset end");
#endif

// s as a JSON string literal (quotes and backslashes escaped, control characters dropped).
inline std::string json_string(const std::string& s) {
  std::string q = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') q += '\\';
    if (static_cast<unsigned char>(c) >= 0x20) q += c;
  }
  return q + "\"";
}

class KernelTrace {
 public:
  // Loads CUPTI and starts recording, or returns null with *why set.
  static std::unique_ptr<KernelTrace> start(std::string* why) {
    cupti::Api api;
    std::string tried;
    void* lib = nullptr;
    for (const std::string& path : library_candidates()) {
      lib = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (lib != nullptr) break;
      tried += (tried.empty() ? "" : ", ") + path;
    }
    if (lib == nullptr) {
      *why = "libcupti not found (tried " + tried + ")";
      return nullptr;
    }
    auto sym = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(::dlsym(lib, name));
      return fn != nullptr;
    };
    if (!sym(api.register_callbacks, "cuptiActivityRegisterCallbacks") ||
        !sym(api.enable, "cuptiActivityEnable") || !sym(api.disable, "cuptiActivityDisable") ||
        !sym(api.flush_all, "cuptiActivityFlushAll") ||
        !sym(api.next_record, "cuptiActivityGetNextRecord") ||
        !sym(api.timestamp, "cuptiGetTimestamp") ||
        !sym(api.result_string, "cuptiGetResultString")) {
      *why = "libcupti lacks an activity API entry point";
      return nullptr;
    }
    std::unique_ptr<KernelTrace> t(new KernelTrace(api));
    instance() = t.get();
    const uint32_t kinds[] = {cupti::kKindConcurrentKernel, cupti::kKindMemcpy,
                              cupti::kKindMemset};
    int r = api.register_callbacks(&KernelTrace::on_request, &KernelTrace::on_complete);
    for (size_t i = 0; r == cupti::kSuccess && i < 3; ++i) {
      r = api.enable(kinds[i]);
      if (r == cupti::kSuccess) t->enabled_.push_back(kinds[i]);
    }
    if (r != cupti::kSuccess) {
      const char* text = nullptr;
      api.result_string(r, &text);
      *why = std::string("CUPTI refused activity tracing: ") + (text ? text : "unknown error");
      return nullptr;  // the destructor disables what was enabled
    }
    return t;
  }

  ~KernelTrace() {
    for (uint32_t kind : enabled_) api_.disable(kind);
    api_.flush_all(cupti::kFlushForced);
    instance() = nullptr;
  }

  // Brackets one timed step (call both with the GPU idle: after a synchronisation).
  void begin_step() { api_.timestamp(&step_begin_); }
  void end_step() {
    uint64_t end = 0;
    api_.timestamp(&end);
    windows_.push_back({step_begin_, end});
  }

  // ",\"trace\":{...}": per step, the window, the GPU's busy time inside it and the `top`
  // kernels by time, from the records of the bracketed steps.
  std::string json(size_t top = 30) {
    api_.flush_all(cupti::kFlushForced);
    std::lock_guard<std::mutex> lock(mutex_);
    return summary(activities_, windows_, dropped_, top);
  }

  // One GPU activity: a kernel (by name), "[memcpy]" or "[memset]", on the GPU's clock (ns).
  struct Activity {
    uint64_t start, end;
    std::string name;
  };
  using Window = std::pair<uint64_t, uint64_t>;  // [begin, end) of a bracketed step

  // json()'s text from activities and step windows. An activity counts in the window it starts
  // in (none: not counted); busy time is the union of the counted ones, each clipped to its
  // window; a kernel's time is its whole run. Names ranked by time, the first `top` listed.
  static std::string summary(const std::vector<Activity>& activities,
                             const std::vector<Window>& windows, size_t dropped, size_t top) {
    const double steps = double(std::max<size_t>(windows.size(), 1));
    uint64_t window_ns = 0;
    for (const Window& w : windows) window_ns += w.second - w.first;
    std::vector<Window> spans;
    struct Sum {
      uint64_t ns = 0;
      int64_t calls = 0;
    };
    std::map<std::string, Sum> by_name;
    for (const Activity& a : activities) {
      const Window* w = window_of(windows, a.start);
      if (w == nullptr) continue;
      spans.push_back({a.start, std::min(a.end, w->second)});
      Sum& s = by_name[a.name];
      s.ns += a.end - a.start;
      s.calls += 1;
    }
    std::sort(spans.begin(), spans.end());
    uint64_t busy_ns = 0, reach = 0;
    for (const auto& [b, e] : spans) {
      const uint64_t from = std::max(b, reach);
      if (e > from) busy_ns += e - from;
      reach = std::max(reach, e);
    }
    std::vector<std::pair<std::string, Sum>> ranked(by_name.begin(), by_name.end());
    std::stable_sort(ranked.begin(), ranked.end(),
                     [](const auto& a, const auto& b) { return a.second.ns > b.second.ns; });
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  ",\"trace\":{\"steps\":%zu,\"window_ms_per_step\":%.4f,"
                  "\"gpu_busy_ms_per_step\":%.4f,\"busy_fraction\":%.4f,\"records\":%zu,"
                  "\"dropped_buffers\":%zu,\"kernels\":[",
                  windows.size(), double(window_ns) * 1e-6 / steps, double(busy_ns) * 1e-6 / steps,
                  window_ns > 0 ? double(busy_ns) / double(window_ns) : 0.0, activities.size(),
                  dropped);
    std::string out = buf;
    double rest_ms = 0;
    for (size_t i = 0; i < ranked.size(); ++i) {
      const double ms = double(ranked[i].second.ns) * 1e-6 / steps;
      if (i >= top) {
        rest_ms += ms;
        continue;
      }
      std::snprintf(buf, sizeof buf, "%s{\"ms_per_step\":%.4f,\"calls_per_step\":%.2f,\"name\":",
                    i == 0 ? "" : ",", ms, double(ranked[i].second.calls) / steps);
      out += buf;
      out += json_string(ranked[i].first) + "}";
    }
    std::snprintf(buf, sizeof buf, "],\"other_kernels_ms_per_step\":%.4f}", rest_ms);
    return out + buf;
  }

  // The demangled name, cut at its parameter list (templates keep their arguments: they tell
  // the tensor-core attention's instantiations apart), at most 160 characters.
  static std::string readable(const char* mangled) {
    if (mangled == nullptr) return "[unnamed kernel]";
    int status = 0;
    char* plain = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
    std::string s = status == 0 && plain != nullptr ? plain : mangled;
    std::free(plain);
    // The parameter list: the parenthesised group that ends the name ("(anonymous namespace)"
    // earlier in it stays).
    if (!s.empty() && s.back() == ')') {
      int depth = 0;
      for (size_t i = s.size(); i-- > 0;) {
        if (s[i] == ')') ++depth;
        if (s[i] == '(' && --depth == 0) {
          s.resize(i);
          break;
        }
      }
    }
    if (s.size() > 160) s = s.substr(0, 157) + "...";
    return s;
  }

 private:
  explicit KernelTrace(const cupti::Api& api) : api_(api) {}

  static KernelTrace*& instance() {
    static KernelTrace* current = nullptr;
    return current;
  }

  static std::vector<std::string> library_candidates() {
    std::vector<std::string> c = {"libcupti.so", "libcupti.so.13", "libcupti.so.12"};
    for (const char* root : {"/usr/local/cuda", "/usr/local/cuda-13.0", "/usr/local/cuda-12"}) {
      c.push_back(std::string(root) + "/extras/CUPTI/lib64/libcupti.so");
      c.push_back(std::string(root) + "/lib64/libcupti.so");
      c.push_back(std::string(root) + "/lib/libcupti.so");
    }
    return c;
  }

  static void on_request(uint8_t** buffer, size_t* size, size_t* max_records) {
    constexpr size_t kBytes = size_t{8} << 20;
    *buffer = static_cast<uint8_t*>(std::aligned_alloc(8, kBytes));
    *size = *buffer != nullptr ? kBytes : 0;
    *max_records = 0;  // as many as fit
  }

  static void on_complete(void*, uint32_t, uint8_t* buffer, size_t, size_t valid) {
    KernelTrace* t = instance();
    if (t != nullptr && valid > 0) t->take(buffer, valid);
    std::free(buffer);
  }

  void take(uint8_t* buffer, size_t valid) {
    std::lock_guard<std::mutex> lock(mutex_);
    void* record = nullptr;
    int r;
    while ((r = api_.next_record(buffer, valid, &record)) == cupti::kSuccess) {
      const auto* bytes = static_cast<const uint8_t*>(record);
      uint32_t kind;
      std::memcpy(&kind, bytes, sizeof kind);
      Activity a;
      std::memcpy(&a.start, bytes + cupti::kStartOffset, sizeof a.start);
      std::memcpy(&a.end, bytes + cupti::kEndOffset, sizeof a.end);
      if (kind == cupti::kKindConcurrentKernel) {
        const char* name = nullptr;
        std::memcpy(&name, bytes + cupti::kKernelNameOffset, sizeof name);
        a.name = readable(name);
      } else if (kind == cupti::kKindMemcpy) {
        a.name = "[memcpy]";
      } else if (kind == cupti::kKindMemset) {
        a.name = "[memset]";
      } else {
        continue;
      }
      if (a.end >= a.start) activities_.push_back(std::move(a));
    }
    if (r != cupti::kMaxLimitReached) ++dropped_;  // a buffer cut short
  }

  static const Window* window_of(const std::vector<Window>& windows, uint64_t t) {
    for (const Window& w : windows) {
      if (t >= w.first && t < w.second) return &w;
    }
    return nullptr;
  }

  cupti::Api api_;
  std::vector<uint32_t> enabled_;
  std::mutex mutex_;
  std::vector<Activity> activities_;
  std::vector<Window> windows_;
  uint64_t step_begin_ = 0;
  size_t dropped_ = 0;
};

}  // namespace s2s_bench
