// UploadStaging: page-locked host memory that a context's uploads are copied through, so that
// cudaMemcpyAsync returns at once. From pageable memory the runtime may first synchronise with
// the stream to stage the copy itself (CUDA's "API synchronization behavior"), which would make
// the host wait for the GPU at every upload: the batch's index arrays of each micro-step, the
// optimizer's tensor tables, between work that is meant to run while the host queues more.
// A ring of segments: an upload takes the next bytes of the current segment; a segment is
// reused only after the device has passed an event recorded when the ring left it, so the host
// never writes memory a queued copy has yet to read. Plain C++ header (no CUDA types).
#pragma once
#include <cstddef>

namespace s2s {
namespace cuda {

class UploadStaging {
 public:
  static constexpr int kSegments = 8;

  // Nothing is allocated before the first upload; device: the GPU whose stream is used.
  UploadStaging(int device, size_t segment_bytes);
  ~UploadStaging();
  UploadStaging(const UploadStaging&) = delete;
  UploadStaging& operator=(const UploadStaging&) = delete;

  // Copies host [src, src + bytes) into the ring and queues its copy to device `dst` on `stream`
  // (a cudaStream_t of `device`, current). False, with nothing queued, where the bytes do not
  // fit a segment or pinned memory cannot be had: the caller copies from `src` itself.
  bool upload(void* stream, void* dst, const void* src, size_t bytes);

 private:
  bool allocate();
  void* next(void* stream, size_t bytes);  // the ring's next bytes, waiting where it wraps

  int device_;
  size_t segment_bytes_;
  char* memory_ = nullptr;  // kSegments * segment_bytes_ pinned bytes
  bool unavailable_ = false;  // cudaHostAlloc failed once: never tried again
  void* events_[kSegments] = {};  // cudaEvent_t: recorded when the ring left the segment
  bool recorded_[kSegments] = {};
  int segment_ = 0;
  size_t used_ = 0;  // bytes taken in the current segment
};

}  // namespace cuda
}  // namespace s2s
