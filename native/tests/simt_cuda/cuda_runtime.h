// A stand-in for the CUDA runtime, so the CUDA backend's own sources (native/src/backends/cuda,
// every .cu file) compile as C++ and run on the CPU in the SIMT simulator
// (../simt_simulator.h): the `sim` targets of cmake/cuda_sim.cmake put this folder first on the
// include path and rewrite the two pieces of CUDA syntax C++ cannot parse (kernel<<<...>>>(args)
// launches and `extern __shared__` arrays) into calls of cuda_launch / cuda_dynamic_smem below,
// and follows each static `__shared__` array with a call of declare_static_shared.
// There are two devices; device memory is host memory, a stream is a token that remembers its
// device (work queued on it from another current device is refused, as the runtime refuses it),
// launches run to completion before they return, and cuBLASLt is emulated from its documented contract with the CPU's GEMMs
// (cublaslt_sim.cpp, registered as the cuBLASLt table). What this proves: the kernels'
// indexing, launch shapes, shared-memory use, warp collectives and arithmetic, and the backend's
// host logic, against the CPU ops (test_cuda_ops_sim, test_cuda_models_sim). What it cannot:
// nvcc's code generation, the hardware's memory model, timing.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <tuple>
#include <typeinfo>
#include <type_traits>
#include <utility>

#include "simt_simulator.h"

// ---- CUDA C++ keywords and qualifiers ----------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
// A block's static shared arrays (cmake/cuda_sim.cmake writes `__shared__ T a[n];` as
// `S2S_SIMT_STATIC_SHARED T a[n]; declare_static_shared(a, sizeof(a));`): function statics, one
// copy shared by the fibers of the block that runs (blocks run one after another), one per host
// thread (two models on two GPUs run their kernels at once from the N-API pool's threads).
#define S2S_SIMT_STATIC_SHARED static thread_local
#define S2S_SIMT_SIM 1

// ---- types ------------------------------------------------------------------------------------
struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
  dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
};
using cudaStream_t = struct SimStream*;
using cudaGraph_t = struct SimGraph*;
using cudaGraphExec_t = struct SimGraphExec*;
using cudaEvent_t = struct SimEvent*;

enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInsufficientDriver = 35,  // never returned here; named by device_query.cpp
  cudaErrorInvalidDevice = 101,
  cudaErrorInvalidResourceHandle = 400,  // work on a stream of a device that is not current
  cudaErrorLaunchFailure = 719,
  cudaErrorIllegalState = 401,  // pinned memory reused while a copy from it may still be queued
  cudaErrorStreamCaptureUnsupported = 900,  // a copy to or from the host, or a synchronize
  cudaErrorStreamCaptureInvalidated = 901,  // the capture met such a call earlier
};
enum cudaStreamCaptureMode {
  cudaStreamCaptureModeGlobal = 0,
  cudaStreamCaptureModeThreadLocal = 1,
  cudaStreamCaptureModeRelaxed = 2
};
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4
};
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
enum cudaDeviceAttr { cudaDevAttrMemoryClockRate = 36, cudaDevAttrGlobalMemoryBusWidth = 37 };
constexpr unsigned cudaStreamNonBlocking = 1;

struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  int major, minor, multiProcessorCount;
};

// ---- runtime API (simt_cuda_runtime.cpp) -------------------------------------------------------
cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device);
// The simulated device has no memory clock: every attribute is cudaErrorInvalidValue.
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device);
cudaError_t cudaRuntimeGetVersion(int* version);
cudaError_t cudaDriverGetVersion(int* version);
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes);
cudaError_t cudaMalloc(void** ptr, size_t bytes);
cudaError_t cudaFree(void* ptr);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream = nullptr);
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t stream = nullptr);
cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch,
                              size_t width, size_t height, cudaMemcpyKind kind,
                              cudaStream_t stream = nullptr);
cudaError_t cudaMemset2DAsync(void* dst, size_t pitch, int value, size_t width, size_t height,
                              cudaStream_t stream = nullptr);
cudaError_t cudaStreamCreate(cudaStream_t* stream);
// Page-locked host memory. A copy to the device from it is asynchronous on a real GPU: it may
// still be queued when the call returns, so the host must not write the memory again until the
// stream has passed the copy (an event recorded after it and synchronised, or a stream
// synchronize). The stand-in checks that: a new copy from memory an earlier copy read, which
// the host has not since waited past, is refused with cudaErrorIllegalState.
constexpr unsigned cudaHostAllocDefault = 0;
cudaError_t cudaHostAlloc(void** ptr, size_t bytes, unsigned flags);
cudaError_t cudaFreeHost(void* ptr);
constexpr unsigned cudaEventDisableTiming = 2;
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned flags);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventDestroy(cudaEvent_t event);
// Stream capture (CUDA graphs): between begin and end, launches, device-to-device copies, fills
// and cuBLASLt matmuls on the stream are recorded with their arguments as of the call (as a
// graph's nodes hold them) instead of run; a copy to or from the host or a synchronize is
// refused and invalidates the capture. A launched graph runs its nodes in order, on the spot.
cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph,
                                 unsigned long long flags = 0);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);
cudaError_t cudaGraphDestroy(cudaGraph_t graph);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaGetLastError();
const char* cudaGetErrorName(cudaError_t e);
const char* cudaGetErrorString(cudaError_t e);
namespace s2s {
namespace simt {
// The dynamic shared memory each kernel may take beyond the 48 KB default, as
// cudaFuncSetAttribute(MaxDynamicSharedMemorySize) raised it (per kernel, as on a GPU).
std::map<const void*, size_t>& opted_in_shared_memory();
}  // namespace simt
}  // namespace s2s
template <typename F>
cudaError_t cudaFuncSetAttribute(F* kernel, cudaFuncAttribute, int value) {
  if (value < 0 || value > 227 * 1024) return cudaErrorInvalidValue;
  s2s::simt::opted_in_shared_memory()[reinterpret_cast<const void*>(kernel)] = size_t(value);
  return cudaSuccess;
}
template <typename T>
cudaError_t cudaMalloc(T** ptr, size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(ptr), bytes);
}

namespace s2s {
namespace simt {

// Set by a launch the simulator rejects (bad configuration); returned by cudaGetLastError.
cudaError_t& last_launch_error();
// Whether work may be queued on `stream` from this thread: it belongs to the current device.
bool on_current_device(cudaStream_t stream);
int current_device_index();
int stream_device(cudaStream_t stream);  // the device the stream was created on
// Bit d set: device d's context would have been set up by now (cudaSetDevice, or a call that
// needs one on the current device), since the process began or forget_set_up_devices.
unsigned devices_set_up();
void forget_set_up_devices();
// With switching on (this thread), every launch, copy, fill or GEMM queued moves the current
// device on to the next one: work that relies on the device an earlier call made current, rather
// than making its own current, then goes to the wrong device and is refused. Stricter than a
// real machine, where the device changes only between ops (another model's op on the thread).
void set_device_switching(bool on);
void after_queued_work();

// What this host thread has queued since it last zeroed this: kernel launches, copies by
// direction, fills and cuBLASLt matmuls. Tests count a decoding step's work with it (on a GPU
// each is an API call and a gap between kernels).
// A recorded operation (stream capture) counts where it is recorded, not when a graph replays
// it; graph_launches counts the replays. The bytes of device copies and fills are summed, and
// launches_by_kernel splits `launches` by the kernel's
// name as the launch spells it (template arguments included), matmuls_by_shape `matmuls` by
// operand type and shape.
struct QueuedWork {
  int64_t launches = 0, uploads = 0, downloads = 0, device_copies = 0, fills = 0, matmuls = 0;
  int64_t pageable_uploads = 0;  // uploads not from cudaHostAlloc memory (may wait on a GPU)
  int64_t graph_launches = 0;
  // GEMMs with a matrix whose rows (its ld) are not a multiple of 16 bytes: cuBLASLt's fast
  // kernels need 16-byte aligned rows (GPT-2's 50,257-column logits, unpadded).
  int64_t unaligned_matmuls = 0;
  int64_t device_copy_bytes = 0, fill_bytes = 0;
  std::map<std::string, int64_t> launches_by_kernel;
  std::map<std::string, int64_t> matmuls_by_shape;  // "bf16 4096x768x3072 +=": rows x cols x k
};
QueuedWork& queued_work();
// Whether `stream` is being captured. run_or_record runs a queued operation now, or adds it to
// the stream's capture (its arguments copied into it, as a graph node holds them).
bool capturing(cudaStream_t stream);
void run_or_record(cudaStream_t stream, std::function<void()> operation);

inline Simulator& cuda_simulator() {
  static thread_local Simulator sim;
  return sim;
}
inline Simulator& running() {
  Simulator* s = Simulator::current();
  if (s == nullptr) std::abort();  // a device builtin used outside a kernel
  return *s;
}
inline uint3 thread_idx() { return uint3{unsigned(running().current_tid()), 0u, 0u}; }
inline uint3 block_idx() {
  const Dim3 b = running().block_index();
  return uint3{unsigned(b.x), unsigned(b.y), unsigned(b.z)};
}
inline dim3 block_dim() { return dim3(unsigned(running().block_threads())); }
inline dim3 grid_dim() {
  const Dim3 g = running().grid_dim();
  return dim3(unsigned(g.x), unsigned(g.y), unsigned(g.z));
}

template <typename T>
T* cuda_dynamic_smem() {
  return reinterpret_cast<T*>(running().shared_memory());
}
inline void declare_static_shared(void* array, size_t bytes) {
  running().declare_static_shared(array, bytes);
}

// The function a kernel's lambda parameter was written in ("add_forward"), or "" for other
// types: generic kernels (for_each_kernel<F>) are counted by the op that launched them.
std::string lambda_owner(const char* mangled);
template <typename... P>
std::string kernel_count_key(const char* name) {
  std::string owner;
  ((owner.empty() && std::is_class_v<std::decay_t<P>>
        ? (void)(owner = lambda_owner(typeid(std::decay_t<P>).name()))
        : (void)0),
   ...);
  return owner.empty() ? std::string(name) : std::string(name) + " in " + owner;
}

// kernel<<<grid, block, smem, stream>>>(args...): the arguments are copied into the kernel's
// parameter types (as a launch does), then every block runs in the simulator. `name` is the
// launch's spelling of the kernel (cmake/cuda_sim.cmake writes it in), for the counts.
template <typename... P, typename... A>
void cuda_launch(const char* name, void (*kernel)(P...), dim3 grid, dim3 block, size_t smem = 0,
                 cudaStream_t stream = nullptr, A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "kernel launched with the wrong argument count");
  if (!on_current_device(stream)) {
    last_launch_error() = cudaErrorInvalidResourceHandle;
    return;
  }
  // A GPU's limits (compute capability 9.0): 1024 threads a block, grid.y and grid.z at most
  // 65535; dynamic shared memory 48 KB unless the kernel opted in to more, and the static
  // __shared__ arrays beside it within 48 KB, or 227 KB with the opt-in (the simulator counts
  // them as the blocks declare them).
  const auto opted = opted_in_shared_memory().find(reinterpret_cast<const void*>(kernel));
  const bool opted_in = opted != opted_in_shared_memory().end() &&
                        opted->second > Simulator::kDefaultSharedBytes;
  const size_t smem_limit = opted_in ? opted->second : Simulator::kDefaultSharedBytes;
  const size_t block_limit = opted_in ? Simulator::kMaxSharedBytes
                                      : Simulator::kDefaultSharedBytes;
  if (block.y != 1 || block.z != 1 || block.x == 0 || block.x > 1024 || grid.x == 0 ||
      grid.y == 0 || grid.z == 0 || grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535 ||
      smem > smem_limit) {
    last_launch_error() = cudaErrorInvalidConfiguration;
    return;
  }
  std::tuple<std::decay_t<P>...> params(std::forward<A>(args)...);
  auto run = [kernel, grid, block, smem, block_limit, params] {
    cuda_simulator().launch(Dim3{int(grid.x), int(grid.y), int(grid.z)}, int(block.x), smem,
                            [&](const SimThread&, uint8_t*) { std::apply(kernel, params); },
                            block_limit);
  };
  run_or_record(stream, run);
  ++queued_work().launches;
  ++queued_work().launches_by_kernel[kernel_count_key<P...>(name)];
  after_queued_work();
}

// The tensor-core attention's mma, ldmatrix and cp.async (attention_mma.cu's DeviceExec under
// S2S_SIMT_SIM).
inline void warp_mma(float d[4], const uint32_t a[4], const uint32_t b[2], bool bf16) {
  running().mma(running().current_tid(), d, a, b, bf16);
}
inline void warp_ldmatrix(uint32_t* r, int count, const uint16_t* row, bool trans) {
  running().ldmatrix(running().current_tid(), r, count, row, trans);
}
inline void thread_cp_async16(void* dst, const void* src) {
  running().cp_async16(running().current_tid(), dst, src);
}
inline void thread_cp_async_commit() { running().cp_async_commit(running().current_tid()); }
inline void thread_cp_async_wait(int pending) {
  running().cp_async_wait(running().current_tid(), pending);
}

}  // namespace simt
}  // namespace s2s

// ---- device builtins ---------------------------------------------------------------------------
#define threadIdx (::s2s::simt::thread_idx())
#define blockIdx (::s2s::simt::block_idx())
#define blockDim (::s2s::simt::block_dim())
#define gridDim (::s2s::simt::grid_dim())

inline void __syncthreads() { ::s2s::simt::running().sync(::s2s::simt::running().current_tid()); }
[[noreturn]] inline void __trap() { std::abort(); }

template <typename T>
T simt_shuffle(T v, int arg, bool xor_mode) {
  static_assert(sizeof(T) <= 8, "shuffle of a value wider than 64 bits");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  ::s2s::simt::Simulator& s = ::s2s::simt::running();
  bits = s.shuffle(s.current_tid(), bits, arg, xor_mode);
  T out;
  std::memcpy(&out, &bits, sizeof(T));
  return out;
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask) {
  if (mask != 0xffffffffu) std::abort();  // the kernels only shuffle whole warps
  return simt_shuffle(v, lane_mask, true);
}
template <typename T>
T __shfl_sync(unsigned mask, T v, int src_lane) {
  if (mask != 0xffffffffu) std::abort();
  return simt_shuffle(v, src_lane, false);
}

// The ballot as the warp's OR of one bit per lane, over the simulator's shuffles (a collective:
// every lane must reach it, as on a GPU).
inline unsigned __ballot_sync(unsigned mask, int predicate) {
  if (mask != 0xffffffffu) std::abort();
  const int lane = ::s2s::simt::running().current_tid() % 32;
  unsigned bits = predicate ? 1u << lane : 0u;
  for (int o = 16; o > 0; o >>= 1) bits |= simt_shuffle(bits, o, true);
  return bits;
}
inline int __popc(unsigned x) { return __builtin_popcount(x); }

// No fiber switches between the read and the write: these are atomic here.
inline float atomicAdd(float* p, float v) {
  const float old = *p;
  *p = old + v;
  return old;
}
inline double atomicAdd(double* p, double v) {
  const double old = *p;
  *p = old + v;
  return old;
}
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
  const unsigned long long old = *p;
  *p = old + v;
  return old;
}
inline unsigned long long atomicCAS(unsigned long long* p, unsigned long long cmp,
                                    unsigned long long v) {
  const unsigned long long old = *p;
  if (old == cmp) *p = v;
  return old;
}

// Correctly rounded arithmetic (the sim sources are compiled without FMA contraction).
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline unsigned __float_as_uint(float f) {
  unsigned u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
inline float __uint_as_float(unsigned u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
