// Context, DeviceBuffer and the copy helpers (context.h), plus CUDA error translation.
#include <cuda_runtime.h>

#include <algorithm>
#include <string>
#if defined(__SANITIZE_ADDRESS__) && !defined(__CUDACC__)
#include <sanitizer/asan_interface.h>
#endif

#include "backends/cuda/check.cuh"

namespace s2s {
namespace cuda {

void destroy_gemm_state(GemmState* state);  // gemm.cu

[[noreturn]] void throw_cuda_error(cudaError_t e, const char* op, const char* what) {
  cudaGetLastError();  // clear a non-sticky error so the context stays usable
  const char* c = e == cudaErrorMemoryAllocation ? code::kOutOfMemory : code::kCuda;
  fail(c, op, what, " failed: ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ")");
}

ActivationOut activation_out(const Tensor& out, const Tensor& like, const char* op) {
  S2S_REQUIRE(out.dtype == DType::F32 || out.dtype == DType::BF16 || out.dtype == DType::F16,
              code::kDType, op, "expected out to be float32, bfloat16 or float16, got ",
              dtype_name(out.dtype));
  bool same = out.ndim == like.ndim;
  for (int i = 0; same && i < out.ndim; ++i) same = out.shape[i] == like.shape[i];
  S2S_REQUIRE(same, code::kShape, op, "expected out of shape ", like.shape_string(), ", got ",
              out.shape_string());
  expect_contiguous(out, op, "out");
  return ActivationOut{out.data, out.dtype};
}

Context::Context(const ContextOptions& options) : options_(options) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    cudaGetLastError();
    fail(code::kDevice, "cuda", "expected a CUDA device, got none (",
         e != cudaSuccess ? cudaGetErrorString(e) : "the runtime found no device", ")");
  }
  S2S_REQUIRE(options.device >= 0 && options.device < count, code::kDevice, "cuda",
              "expected a device index in [0, ", count, "), got ", options.device);
  activate();
  cudaStream_t s = nullptr;
  check_cuda(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cuda", "cudaStreamCreate");
  stream_ = s;
  void* slot = nullptr;
  if (cudaMalloc(&slot, 4 * sizeof(unsigned long long)) != cudaSuccess) {
    cudaStreamDestroy(s);
    throw_cuda_error(cudaErrorMemoryAllocation, "cuda", "cudaMalloc (error slot)");
  }
  error_slot_ = static_cast<unsigned long long*>(slot);
  // On this stream: a non-blocking stream does not wait for work on the legacy default stream.
  check_cuda(cudaMemsetAsync(error_slot_, 0, 4 * sizeof(unsigned long long), s), "cuda",
             "clearing the kernel error slot");
  const int dev = options.device;
  BlockSource source{[dev](size_t bytes) -> void* {
                             void* p = nullptr;
                             cudaSetDevice(dev);
                             if (cudaMalloc(&p, bytes) != cudaSuccess) {
                               cudaGetLastError();
                               return nullptr;
                             }
                             return p;
                           },
                           [dev](void* p) {
                             cudaSetDevice(dev);
                             cudaFree(p);
                           },
                           nullptr};
#if defined(__SANITIZE_ADDRESS__) && !defined(__CUDACC__)
  // The SIMT simulator under AddressSanitizer: device memory is host memory, so the arenas tell
  // ASan which of it is handed out (DeviceArena's BlockSource::mark).
  source.mark = [](void* p, size_t bytes, bool usable) {
    if (usable) {
      ASAN_UNPOISON_MEMORY_REGION(p, bytes);
    } else {
      ASAN_POISON_MEMORY_REGION(p, bytes);
    }
  };
#endif
  arena_ = std::make_unique<DeviceArena>(source, options.arena_block_bytes);
  // Blocks are taken on first use: a model that never checkpoints never allocates one.
  segment_arena_ = std::make_unique<DeviceArena>(source, options.arena_block_bytes);
  // Inputs are small (a batch's ids, labels, mask, positions: 4 bytes a token each).
  input_arena_ = std::make_unique<DeviceArena>(source, size_t(4) << 20);
  staging_ = std::make_unique<UploadStaging>(dev, options.upload_segment_bytes);
}

Context::~Context() {
  cudaSetDevice(options_.device);
  if (stream_ != nullptr) cudaStreamSynchronize(static_cast<cudaStream_t>(stream_));
  destroy_gemm_state(gemm_);
  staging_.reset();
  input_arena_.reset();
  segment_arena_.reset();
  arena_.reset();
  for (auto& [key, table] : constants_) cudaFree(table);
  cudaFree(error_slot_);
  if (stream_ != nullptr) cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
  cudaGetLastError();
}

void Context::activate() const {
  int current = -1;
  if (cudaGetDevice(&current) == cudaSuccess && current == options_.device) return;
  check_cuda(cudaSetDevice(options_.device), "cuda", "cudaSetDevice");
}

const float* Context::constant_table(const std::string& key,
                                     const std::function<std::vector<float>()>& make) {
  auto it = constants_.find(key);
  if (it != constants_.end()) return static_cast<const float*>(it->second);
  const std::vector<float> values = make();
  activate();
  void* table = nullptr;
  check_cuda(cudaMalloc(&table, sizeof(float) * std::max<size_t>(values.size(), 1)), "cuda",
             "cudaMalloc (constant table)");
  constants_[key] = table;  // owned from here, even if the upload fails
  upload(*this, table, values.data(), sizeof(float) * values.size());
  return static_cast<const float*>(table);
}

void Context::synchronize() {
  activate();
  check_cuda(cudaStreamSynchronize(stream_of(*this)), "cuda", "cudaStreamSynchronize");
  unsigned long long r[4] = {0, 0, 0, 0};
  check_cuda(cudaMemcpyAsync(r, error_slot_, sizeof(r), cudaMemcpyDeviceToHost, stream_of(*this)),
             "cuda", "reading the kernel error slot");
  check_cuda(cudaStreamSynchronize(stream_of(*this)), "cuda", "cudaStreamSynchronize");
  if (r[0] == 0) return;
  check_cuda(cudaMemsetAsync(error_slot_, 0, sizeof(r), stream_of(*this)), "cuda",
             "clearing the kernel error slot");
  const int64_t index = static_cast<int64_t>(r[1]);
  const int64_t value = static_cast<int64_t>(r[2]);
  const int64_t bound = static_cast<int64_t>(r[3]);
  switch (static_cast<KernelReport>(r[0])) {
    case KernelReport::EmbeddingId:
      fail(code::kArgument, "embedding", "expected ids in [0, ", bound, "), got ids[", index,
           "] = ", value);
    case KernelReport::EmbeddingPosition:
      fail(code::kArgument, "embedding", "expected positions in [0, ", bound, "), got pos[",
           index, "] = ", value);
    case KernelReport::CrossEntropyLabel:
      fail(code::kArgument, "cross_entropy", "expected labels in [0, ", bound,
           ") or == ignore_index, got labels[", index, "] = ", value);
    case KernelReport::RopePosition:
      fail(code::kArgument, "rope", "expected positions in [0, ", bound, "), got positions[",
           index, "] = ", value);
    case KernelReport::AttentionKeyMask:
      fail(code::kArgument, "attention", "expected key_mask values 0 or 1, got key_mask[", index,
           "] = ", value);
    case KernelReport::AttentionCacheSlot:
      fail(code::kArgument, "attention_cached", "expected slot[", index, "] in [0, ", bound,
           "), got ", value);
    case KernelReport::AttentionCacheRange:
      fail(code::kArgument, "attention_cached", "expected 0 <= key_begin[", index,
           "] <= key_end[", index, "] <= ", bound,
           " (and key_end >= Tq when causal, <= the bias's keys), got key_end ", value);
    case KernelReport::KvCacheSlot:
      fail(code::kArgument, "kv_cache_append", "expected slot[", index, "] in [0, ", bound,
           "), got ", value);
    case KernelReport::KvCacheEnd:
      fail(code::kArgument, "kv_cache_append", "expected key_end[", index,
           "] within the capacity ", bound, " and after the new positions, got ", value);
    case KernelReport::T5DecodingKeyEnd:
      fail(code::kArgument, "t5_relative_position", "expected key_end[0] in [the new queries, ",
           bound, "], got ", value);
    default:
      fail(code::kInternal, "cuda", "unknown kernel report ", r[0]);
  }
}

DeviceBuffer::DeviceBuffer(Context& ctx, size_t bytes) : bytes_(bytes), device_(ctx.device()) {
  ctx.activate();
  if (bytes == 0) return;
  const cudaError_t e = cudaMalloc(&data_, bytes);
  if (e != cudaSuccess) {
    data_ = nullptr;
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    fail(code::kOutOfMemory, "cuda", "expected ", bytes, " bytes of GPU memory, but only ",
         free_b, " of ", total_b, " are free");
  }
}

DeviceBuffer::~DeviceBuffer() {
  if (data_ != nullptr) {
    cudaSetDevice(device_);
    cudaFree(data_);
  }
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    if (data_ != nullptr) {
      cudaSetDevice(device_);
      cudaFree(data_);
    }
    data_ = o.data_;
    bytes_ = o.bytes_;
    device_ = o.device_;
    o.data_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}

void upload(Context& ctx, void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  ctx.activate();
  if (!ctx.capturing() && ctx.upload_staging().upload(ctx.stream(), dst, src, bytes)) return;
  check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_of(ctx)), "cuda",
             "cudaMemcpyAsync (upload)");
}

void download(Context& ctx, void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  ctx.activate();
  check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_of(ctx)), "cuda",
             "cudaMemcpyAsync (download)");
  check_cuda(cudaStreamSynchronize(stream_of(ctx)), "cuda", "cudaStreamSynchronize");
}

void copy_device(Context& ctx, void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  ctx.activate();
  check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_of(ctx)), "cuda",
             "cudaMemcpyAsync (device)");
}

void fill_zero(Context& ctx, void* dst, size_t bytes) {
  if (bytes == 0) return;
  ctx.activate();
  check_cuda(cudaMemsetAsync(dst, 0, bytes, stream_of(ctx)), "cuda", "cudaMemsetAsync");
}

}  // namespace cuda
}  // namespace s2s
