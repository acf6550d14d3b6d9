// Context: what one model owns on a GPU. Its device, its own non-blocking stream (every op of the
// model is queued there in order, so models on different contexts overlap), the device arena for
// activations and scratch (and a second one for checkpointed segments, Graph::checkpoint), the cuBLASLt handle and workspace (created by gemm.cu on first use),
// and a small device slot where kernels report bad index inputs (a token id out of range) that
// synchronize() turns into an s2s::Error. Plain C++ header: no CUDA types leak to its users
// (tests, benches, napi), so they compile without nvcc.
// CUDA failures never abort: every runtime call is checked and becomes s2s::Error S2S_CUDA
// (S2S_OUT_OF_MEMORY for allocations, S2S_DEVICE when there is no device).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backends/cuda/device_arena.h"
#include "backends/cuda/upload_staging.h"

namespace s2s {
namespace cuda {

struct ContextOptions {
  int device = 0;
  size_t arena_block_bytes = size_t(256) << 20;
  size_t gemm_workspace_bytes = size_t(32) << 20;  // cuBLASLt's recommendation for Hopper
  bool allow_tf32 = false;     // fp32 GEMMs on TF32 tensor cores (10-bit mantissa inputs)
  // Biases added in cuBLASLt's epilogue (one pass over the output fewer); off: a separate kernel.
  bool gemm_bias_epilogue = true;
  // gemm_onto hands its C to cuBLASLt beside a separate D; off (or where cuBLASLt refuses that
  // call): the product into D, then a kernel adds C.
  bool gemm_c_input = true;
  // Uploads are copied through a ring of UploadStaging::kSegments pinned segments of this many
  // bytes (larger uploads go from pageable memory, as model loading's); 0: none.
  size_t upload_segment_bytes = size_t(256) << 10;
};

struct GemmState;  // gemm.cu: cuBLASLt handle, workspace, plan cache

class Context {
 public:
  // Throws S2S_DEVICE when the device does not exist, S2S_CUDA when the runtime fails.
  explicit Context(const ContextOptions& options = {});
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  int device() const { return options_.device; }
  void* stream() const { return stream_; }  // a cudaStream_t
  DeviceArena& arena() { return *arena_; }
  // Activations of the checkpointed segment being run (Backend::segment_allocate).
  DeviceArena& segment_arena() { return *segment_arena_; }
  // A pass's inputs (Backend::input_allocate): index arrays and dropout's seed.
  DeviceArena& input_arena() { return *input_arena_; }
  const ContextOptions& options() const { return options_; }
  void set_allow_tf32(bool on) { options_.allow_tf32 = on; }
  void set_gemm_bias_epilogue(bool on) { options_.gemm_bias_epilogue = on; }
  void set_gemm_c_input(bool on) { options_.gemm_c_input = on; }

  // Makes this context's device current on the calling thread (every op starts with it, and
  // stream_of does it again for each launch: the N-API layer runs work on pool threads, and
  // models on different GPUs share them). Asks the runtime first, and switches only when
  // another device is current.
  void activate() const;
  // Waits for the stream, then throws the first bad-index report a kernel left (S2S_ARGUMENT,
  // naming op, argument, position and value) and clears it.
  void synchronize();

  // Device memory for kernel reports: {op id, index, value, bound} as unsigned long long.
  unsigned long long* error_slot() const { return error_slot_; }
  UploadStaging& upload_staging() { return *staging_; }
  // While the stream is being captured (CapturedGraph::capture): uploads then go from the
  // caller's pageable memory, which the capture refuses (a recording must not hold a copy from
  // staging memory that later uploads write over).
  bool capturing() const { return capturing_; }
  void set_capturing(bool on) { capturing_ = on; }
  GemmState*& gemm_state() { return gemm_; }

  // A device copy of a small table the kernels read (rope's inverse frequencies), made by
  // `values` and uploaded on the first call with this key only, and kept while the context
  // lives: no later call computes or uploads it again.
  const float* constant_table(const std::string& key,
                              const std::function<std::vector<float>()>& values);

 private:
  ContextOptions options_;
  void* stream_ = nullptr;
  unsigned long long* error_slot_ = nullptr;
  std::unique_ptr<DeviceArena> arena_;
  std::unique_ptr<DeviceArena> segment_arena_;
  std::unique_ptr<DeviceArena> input_arena_;
  std::unique_ptr<UploadStaging> staging_;
  bool capturing_ = false;
  GemmState* gemm_ = nullptr;
  std::map<std::string, void*> constants_;  // cudaMalloc'd, freed with the context
};

// Owned device memory (parameters, moments: anything that outlives a step). Move-only.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(Context& ctx, size_t bytes);  // uninitialised; S2S_OUT_OF_MEMORY when it fails
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& o) noexcept : data_(o.data_), bytes_(o.bytes_), device_(o.device_) {
    o.data_ = nullptr;
    o.bytes_ = 0;
  }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  int device_ = 0;
};

// Copies on the context's stream. upload returns once the host memory may be reused, without
// waiting for the stream (staged through pinned memory, Context::upload_staging); download
// waits for the data.
void upload(Context& ctx, void* device_dst, const void* host_src, size_t bytes);
void download(Context& ctx, void* host_dst, const void* device_src, size_t bytes);
void copy_device(Context& ctx, void* device_dst, const void* device_src, size_t bytes);
void fill_zero(Context& ctx, void* device_dst, size_t bytes);

// Ids of the ops that report bad inputs from inside kernels (Context::error_slot).
enum class KernelReport : unsigned long long {
  None = 0, EmbeddingId, EmbeddingPosition, CrossEntropyLabel, RopePosition, AttentionKeyMask,
  AttentionCacheSlot, AttentionCacheRange, KvCacheSlot, KvCacheEnd, T5DecodingKeyEnd,
};

}  // namespace cuda
}  // namespace s2s
