// UploadStaging (upload_staging.h): cudaHostAlloc'd ring, one event per segment.
#include "backends/cuda/upload_staging.h"

#include <cuda_runtime.h>

#include <cstring>

#include "backends/cuda/check.cuh"

namespace s2s {
namespace cuda {

namespace {
constexpr size_t kAlign = 64;
}

UploadStaging::UploadStaging(int device, size_t segment_bytes)
    : device_(device), segment_bytes_(segment_bytes / kAlign * kAlign) {}

UploadStaging::~UploadStaging() {
  if (memory_ == nullptr) return;
  cudaSetDevice(device_);
  for (void* e : events_) {
    if (e != nullptr) cudaEventDestroy(static_cast<cudaEvent_t>(e));
  }
  cudaFreeHost(memory_);  // the owner has synchronised its stream: no copy reads it any more
  cudaGetLastError();
}

bool UploadStaging::allocate() {
  if (memory_ != nullptr) return true;
  if (unavailable_ || segment_bytes_ == 0) return false;
  void* p = nullptr;
  if (cudaHostAlloc(&p, kSegments * segment_bytes_, cudaHostAllocDefault) != cudaSuccess) {
    cudaGetLastError();
    unavailable_ = true;  // pageable uploads work, only with possible waits
    return false;
  }
  for (int s = 0; s < kSegments; ++s) {
    cudaEvent_t e = nullptr;
    if (cudaEventCreateWithFlags(&e, cudaEventDisableTiming) != cudaSuccess) {
      cudaGetLastError();
      for (int t = 0; t < s; ++t) cudaEventDestroy(static_cast<cudaEvent_t>(events_[t]));
      cudaFreeHost(p);
      unavailable_ = true;
      return false;
    }
    events_[s] = e;
  }
  memory_ = static_cast<char*>(p);
  return true;
}

void* UploadStaging::next(void* stream, size_t bytes) {
  if (used_ + bytes > segment_bytes_) {
    // Leave the segment: the event marks the device's passing its last copy. The next segment
    // was left kSegments - 1 segments ago; wait (in practice long done) until the device has
    // read it, then write over it.
    check_cuda(cudaEventRecord(static_cast<cudaEvent_t>(events_[segment_]),
                               static_cast<cudaStream_t>(stream)),
               "cuda", "cudaEventRecord (upload staging)");
    recorded_[segment_] = true;
    segment_ = (segment_ + 1) % kSegments;
    used_ = 0;
    if (recorded_[segment_]) {
      check_cuda(cudaEventSynchronize(static_cast<cudaEvent_t>(events_[segment_])), "cuda",
                 "cudaEventSynchronize (upload staging)");
    }
  }
  char* p = memory_ + size_t(segment_) * segment_bytes_ + used_;
  used_ += (bytes + kAlign - 1) / kAlign * kAlign;
  return p;
}

bool UploadStaging::upload(void* stream, void* dst, const void* src, size_t bytes) {
  if (bytes > segment_bytes_ || !allocate()) return false;
  void* staged = next(stream, bytes);
  std::memcpy(staged, src, bytes);
  check_cuda(cudaMemcpyAsync(dst, staged, bytes, cudaMemcpyHostToDevice,
                             static_cast<cudaStream_t>(stream)),
             "cuda", "cudaMemcpyAsync (upload)");
  return true;
}

}  // namespace cuda
}  // namespace s2s
