// The CUDA runtime stand-in's functions (cuda_runtime.h): two simulated devices whose memory is
// host memory, streams as tokens that remember their device, copies and fills done on the spot.
// Two, so that a model on the second device runs in the tests and a backend op that forgets to
// make its context's device current fails as it would on a multi-GPU machine: work queued on a
// stream of another device than the calling thread's current one is refused (the real runtime's
// cudaErrorInvalidResourceHandle).
#include <cxxabi.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "cuda_runtime.h"
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

struct SimGraph {
  int device;
  std::vector<std::function<void()>> nodes;
};
struct SimGraphExec {
  int device;
  std::vector<std::function<void()>> nodes;
};
struct SimStream {
  int device;
  SimGraph* capture = nullptr;  // while capturing
  bool invalidated = false;     // the capture met a call it cannot record
  int64_t queued = 0;           // operations queued so far (positions for events)
};
struct SimEvent {
  cudaStream_t stream = nullptr;  // where it was last recorded, and at which position
  int64_t position = 0;
};

namespace s2s {
namespace simt {
std::map<const void*, size_t>& opted_in_shared_memory() {
  static thread_local std::map<const void*, size_t> limits;  // as last_launch_error
  return limits;
}

cudaError_t& last_launch_error() {
  static thread_local cudaError_t e = cudaSuccess;
  return e;
}
}  // namespace simt
}  // namespace s2s

namespace {
constexpr size_t kDeviceBytes = size_t(16) << 30;  // what each simulated device reports
constexpr int kDevices = 2;
thread_local int current_device = 0;  // per host thread, as the runtime's current device is
thread_local bool switching = false;
// The devices whose context the runtime would have set up (bit d: device d): by cudaSetDevice
// (as CUDA 12 and newer do), or by the first call that needs one on the current device.
std::atomic<unsigned> set_up{0};
void set_up_current() { set_up |= 1u << current_device; }
}  // namespace

namespace s2s {
namespace simt {
bool on_current_device(cudaStream_t stream) {
  return stream == nullptr || stream->device == current_device;  // null: the current device's
}
int current_device_index() { return current_device; }
int stream_device(cudaStream_t stream) { return stream == nullptr ? current_device : stream->device; }
void set_device_switching(bool on) { switching = on; }
unsigned devices_set_up() { return set_up; }
void forget_set_up_devices() { set_up = 0; }
// cudaMalloc's allocations and their sizes, for cudaMemGetInfo. Never destroyed: static
// destructors elsewhere may still free device memory.
struct HeldBytes {
  std::mutex mutex;
  std::unordered_map<const void*, size_t> blocks;
  size_t bytes = 0;
};
HeldBytes& held() {
  static HeldBytes* h = new HeldBytes;
  return *h;
}
void hold_device_bytes(const void* p, size_t bytes) {
  std::lock_guard<std::mutex> lock(held().mutex);
  held().blocks[p] = bytes;
  held().bytes += bytes;
}
void release_device_bytes(const void* p) {
  std::lock_guard<std::mutex> lock(held().mutex);
  const auto it = held().blocks.find(p);
  if (it == held().blocks.end()) return;
  held().bytes -= it->second;
  held().blocks.erase(it);
}
size_t device_block_bytes(const void* p) {
  std::lock_guard<std::mutex> lock(held().mutex);
  const auto it = held().blocks.find(p);
  return it == held().blocks.end() ? 0 : it->second;
}
size_t device_bytes_held() {
  std::lock_guard<std::mutex> lock(held().mutex);
  return held().bytes;
}
// s without its trailing balanced (...) or <...> group, if it ends in `close`.
void strip_trailing_group(std::string& s, char open, char close) {
  if (s.empty() || s.back() != close) return;
  int depth = 0;
  for (size_t i = s.size(); i-- > 0;) {
    depth += s[i] == close ? 1 : s[i] == open ? -1 : 0;
    if (depth == 0) {
      s.resize(i);
      return;
    }
  }
}
std::string lambda_owner(const char* mangled) {
  int status = 0;
  char* d = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
  if (d == nullptr) return "";
  std::string s = d;
  std::free(d);
  const size_t lambda = s.find("::{lambda");
  if (lambda == std::string::npos) return "";
  s.resize(lambda);
  // "s2s::cuda::(anonymous namespace)::gelu_rows(s2s::cuda::Context&, ...)" -> "gelu_rows",
  // "...::column_sums<...::DoutRead>(...)" -> "column_sums"
  strip_trailing_group(s, '(', ')');
  strip_trailing_group(s, '<', '>');
  const size_t colon = s.rfind("::");
  return colon == std::string::npos ? s : s.substr(colon + 2);
}
QueuedWork& queued_work() {
  static thread_local QueuedWork w;
  return w;
}
// Pinned host memory (cudaHostAlloc's blocks), and the copies from it the host has not yet
// waited past: on a GPU they may still be queued, so their source must not be written again.
struct PinnedMemory {
  std::mutex mutex;
  std::unordered_map<const char*, size_t> blocks;
  struct InFlight {
    const char* end;
    cudaStream_t stream;
    int64_t position;
  };
  std::map<const char*, InFlight> in_flight;  // by first byte; disjoint (overlaps are refused)
};
PinnedMemory& pinned() {
  static PinnedMemory* p = new PinnedMemory;
  return *p;
}
bool is_pinned(const void* src, size_t bytes) {
  const char* s = static_cast<const char*>(src);
  std::lock_guard<std::mutex> lock(pinned().mutex);
  for (const auto& [begin, size] : pinned().blocks) {
    if (s >= begin && s + bytes <= begin + size) return true;
  }
  return false;
}
// A copy from pinned [src, src + bytes) queued at `position` of `stream`: refused when an
// earlier copy from overlapping memory has not been waited past.
bool note_pinned_copy(const void* src, size_t bytes, cudaStream_t stream, int64_t position) {
  const char* s = static_cast<const char*>(src);
  std::lock_guard<std::mutex> lock(pinned().mutex);
  auto& m = pinned().in_flight;
  auto after = m.lower_bound(s);  // the first copy starting at s or later
  if (after != m.end() && after->first < s + bytes) return false;
  if (after != m.begin() && std::prev(after)->second.end > s) return false;
  m.emplace_hint(after, s, PinnedMemory::InFlight{s + bytes, stream, position});
  return true;
}
// The host has waited until `stream` passed `position` (every queued operation: INT64_MAX).
void waited(cudaStream_t stream, int64_t position) {
  std::lock_guard<std::mutex> lock(pinned().mutex);
  auto& m = pinned().in_flight;
  for (auto it = m.begin(); it != m.end();) {
    const bool passed = it->second.stream == stream && it->second.position <= position;
    it = passed ? m.erase(it) : std::next(it);
  }
}
void count_copy(cudaMemcpyKind kind, size_t bytes) {
  QueuedWork& w = queued_work();
  if (kind == cudaMemcpyHostToDevice) {
    ++w.uploads;
  } else if (kind == cudaMemcpyDeviceToHost) {
    ++w.downloads;
  } else {
    ++w.device_copies;
    w.device_copy_bytes += int64_t(bytes);
  }
}
bool capturing(cudaStream_t stream) { return stream != nullptr && stream->capture != nullptr; }
void run_or_record(cudaStream_t stream, std::function<void()> operation) {
  if (capturing(stream)) {
    stream->capture->nodes.push_back(std::move(operation));
  } else {
    operation();
  }
}
// A call a capture cannot hold: refused, and the capture ends in failure.
cudaError_t refuse_in_capture(cudaStream_t stream) {
  stream->invalidated = true;
  return cudaErrorStreamCaptureUnsupported;
}
void after_queued_work() {
  set_up_current();
  if (switching) current_device = (current_device + 1) % kDevices;
}
}  // namespace simt
}  // namespace s2s

cudaError_t cudaGetDeviceCount(int* count) {
  *count = kDevices;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  *device = current_device;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  if (device < 0 || device >= kDevices) return cudaErrorInvalidDevice;
  current_device = device;
  set_up_current();
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (device < 0 || device >= kDevices) return cudaErrorInvalidDevice;
  std::memset(prop, 0, sizeof *prop);
  std::strcpy(prop->name, "SIMT simulator (CPU)");
  prop->totalGlobalMem = kDeviceBytes;
  prop->major = 9;
  prop->minor = 0;
  prop->multiProcessorCount = 1;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr, int) {
  *value = 0;
  return cudaErrorInvalidValue;
}
cudaError_t cudaRuntimeGetVersion(int* version) {
  *version = 13000;
  return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int* version) {
  *version = 13000;
  return cudaSuccess;
}
// Free memory as a device reports it: its size less what cudaMalloc holds (all devices and
// threads together: the simulated devices share the host's memory).
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  set_up_current();
  const size_t held = s2s::simt::device_bytes_held();
  *free_bytes = held < kDeviceBytes ? kDeviceBytes - held : 0;
  *total_bytes = kDeviceBytes;
  return cudaSuccess;
}
cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  set_up_current();
  // 256-byte aligned like cudaMalloc; filled with 0xFF (NaN) so reads of unwritten memory show.
  const size_t rounded = (bytes + 255) / 256 * 256;
  void* p = rounded == 0 ? nullptr : std::aligned_alloc(256, rounded);
  if (rounded != 0 && p == nullptr) return cudaErrorMemoryAllocation;
  if (p != nullptr) std::memset(p, 0xFF, rounded);
  if (p != nullptr) s2s::simt::hold_device_bytes(p, rounded);
#if defined(__SANITIZE_ADDRESS__)
  // Under AddressSanitizer a kernel's access past the requested bytes is reported.
  if (p != nullptr) ASAN_POISON_MEMORY_REGION(static_cast<char*>(p) + bytes, rounded - bytes);
#endif
  *ptr = p;
  return cudaSuccess;
}
cudaError_t cudaFree(void* ptr) {
#if defined(__SANITIZE_ADDRESS__)
  const size_t held = s2s::simt::device_block_bytes(ptr);
  if (ptr != nullptr) ASAN_UNPOISON_MEMORY_REGION(ptr, held);  // the arenas' marks too
#endif
  s2s::simt::release_device_bytes(ptr);
  std::free(ptr);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream) {
  if (!s2s::simt::on_current_device(stream)) return cudaErrorInvalidResourceHandle;
  if (s2s::simt::capturing(stream) && kind != cudaMemcpyDeviceToDevice) {
    return s2s::simt::refuse_in_capture(stream);
  }
  const int64_t position = stream != nullptr ? ++stream->queued : 0;
  if (kind == cudaMemcpyHostToDevice && bytes != 0) {
    if (!s2s::simt::is_pinned(src, bytes)) {
      ++s2s::simt::queued_work().pageable_uploads;
    } else if (!s2s::simt::note_pinned_copy(src, bytes, stream, position)) {
      return cudaErrorIllegalState;
    }
  }
  s2s::simt::run_or_record(stream, [=] {
    if (bytes != 0) std::memmove(dst, src, bytes);
  });
  s2s::simt::count_copy(kind, bytes);
  s2s::simt::after_queued_work();
  return cudaSuccess;
}
cudaError_t cudaHostAlloc(void** ptr, size_t bytes, unsigned) {
  void* p = bytes == 0 ? nullptr : std::malloc(bytes);
  if (bytes != 0 && p == nullptr) return cudaErrorMemoryAllocation;
  if (p != nullptr) {
    std::lock_guard<std::mutex> lock(s2s::simt::pinned().mutex);
    s2s::simt::pinned().blocks[static_cast<const char*>(p)] = bytes;
  }
  *ptr = p;
  return cudaSuccess;
}
cudaError_t cudaFreeHost(void* ptr) {
  if (ptr == nullptr) return cudaSuccess;
  {
    std::lock_guard<std::mutex> lock(s2s::simt::pinned().mutex);
    const char* begin = static_cast<const char*>(ptr);
    const auto it = s2s::simt::pinned().blocks.find(begin);
    if (it == s2s::simt::pinned().blocks.end()) return cudaErrorInvalidValue;
    auto& m = s2s::simt::pinned().in_flight;
    const char* end = begin + it->second;
    m.erase(m.lower_bound(begin), m.lower_bound(end));  // copies from the block: forgotten
    s2s::simt::pinned().blocks.erase(it);
  }
  std::free(ptr);
  return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned) {
  *event = new SimEvent;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  if (event == nullptr) return cudaErrorInvalidResourceHandle;
  if (!s2s::simt::on_current_device(stream)) return cudaErrorInvalidResourceHandle;
  if (s2s::simt::capturing(stream)) return s2s::simt::refuse_in_capture(stream);
  event->stream = stream;
  event->position = stream != nullptr ? stream->queued : 0;
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  if (event == nullptr) return cudaErrorInvalidResourceHandle;
  if (event->stream != nullptr) s2s::simt::waited(event->stream, event->position);
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  delete event;
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t stream) {
  if (!s2s::simt::on_current_device(stream)) return cudaErrorInvalidResourceHandle;
  s2s::simt::run_or_record(stream, [=] {
    if (bytes != 0) std::memset(dst, value, bytes);
  });
  ++s2s::simt::queued_work().fills;
  s2s::simt::queued_work().fill_bytes += int64_t(bytes);
  s2s::simt::after_queued_work();
  return cudaSuccess;
}
cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch,
                              size_t width, size_t height, cudaMemcpyKind kind,
                              cudaStream_t stream) {
  if (!s2s::simt::on_current_device(stream)) return cudaErrorInvalidResourceHandle;
  if (width > dpitch || width > spitch) return cudaErrorInvalidValue;
  if (s2s::simt::capturing(stream) && kind != cudaMemcpyDeviceToDevice) {
    return s2s::simt::refuse_in_capture(stream);
  }
  s2s::simt::run_or_record(stream, [=] {
    for (size_t r = 0; r < height; ++r) {
      std::memmove(static_cast<char*>(dst) + r * dpitch,
                   static_cast<const char*>(src) + r * spitch, width);
    }
  });
  s2s::simt::count_copy(kind, width * height);
  s2s::simt::after_queued_work();
  return cudaSuccess;
}
cudaError_t cudaMemset2DAsync(void* dst, size_t pitch, int value, size_t width, size_t height,
                              cudaStream_t stream) {
  if (!s2s::simt::on_current_device(stream)) return cudaErrorInvalidResourceHandle;
  if (width > pitch) return cudaErrorInvalidValue;
  s2s::simt::run_or_record(stream, [=] {
    for (size_t r = 0; r < height; ++r) {
      std::memset(static_cast<char*>(dst) + r * pitch, value, width);
    }
  });
  ++s2s::simt::queued_work().fills;
  s2s::simt::queued_work().fill_bytes += int64_t(width * height);
  s2s::simt::after_queued_work();
  return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t* stream) {
  set_up_current();
  *stream = new SimStream{current_device};
  return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned) {
  return cudaStreamCreate(stream);
}
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  if (stream != nullptr) s2s::simt::waited(stream, INT64_MAX);  // the runtime waits for it
  if (stream != nullptr) delete stream->capture;
  delete stream;
  return cudaSuccess;
}
// Synchronising needs no current device: the stream names its own. Not while capturing.
cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  if (s2s::simt::capturing(stream)) return s2s::simt::refuse_in_capture(stream);
  if (stream != nullptr) s2s::simt::waited(stream, INT64_MAX);
  return cudaSuccess;
}
cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode) {
  if (stream == nullptr || stream->capture != nullptr) return cudaErrorInvalidValue;
  if (!s2s::simt::on_current_device(stream)) return cudaErrorInvalidResourceHandle;
  stream->capture = new SimGraph{stream->device, {}};
  stream->invalidated = false;
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  if (stream == nullptr || stream->capture == nullptr) return cudaErrorInvalidValue;
  SimGraph* g = stream->capture;
  stream->capture = nullptr;
  if (stream->invalidated) {
    delete g;
    *graph = nullptr;
    return cudaErrorStreamCaptureInvalidated;
  }
  *graph = g;
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
  if (graph == nullptr) return cudaErrorInvalidValue;
  *exec = new SimGraphExec{graph->device, graph->nodes};
  return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  if (exec == nullptr) return cudaErrorInvalidValue;
  if (!s2s::simt::on_current_device(stream) ||
      s2s::simt::stream_device(stream) != exec->device) {
    return cudaErrorInvalidResourceHandle;
  }
  if (s2s::simt::capturing(stream)) return s2s::simt::refuse_in_capture(stream);
  for (const auto& node : exec->nodes) node();
  ++s2s::simt::queued_work().graph_launches;
  s2s::simt::after_queued_work();
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  delete exec;
  return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete graph;
  return cudaSuccess;
}
cudaError_t cudaGetLastError() {
  const cudaError_t e = s2s::simt::last_launch_error();
  s2s::simt::last_launch_error() = cudaSuccess;
  return e;
}
const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorIllegalState: return "cudaErrorIllegalState";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    default: return "cudaErrorLaunchFailure";
  }
}
const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorIllegalState:
      return "pinned memory written again while a copy from it may be queued (simulator)";
    case cudaErrorStreamCaptureUnsupported:
      return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated:
      return "operation failed due to a previous error during capture";
    default: return "unspecified launch failure";
  }
}
