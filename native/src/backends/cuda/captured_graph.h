// CapturedGraph: the work a function queues on a context's stream, captured once as a CUDA graph
// (stream capture) and then replayed with a single launch, where running the function again
// would have the host issue every kernel, copy and GEMM one by one. A replay repeats the calls
// with their arguments as they were at the capture (kernel arguments, pointers, GEMM scalars):
// only the contents of device memory may change between replays. Decoding records one step
// this way (Backend::record) and replays it for the steps after, uploading each step's inputs
// to the same device addresses first. Plain C++ header.
#pragma once
#include <functional>
#include <memory>

#include "backends/cuda/context.h"

namespace s2s {
namespace cuda {

class CapturedGraph {
 public:
  // Captures what `work` queues on ctx's stream, in relaxed mode (work may allocate device
  // memory). Null when the capture fails: work threw, or queued something a capture cannot hold
  // (a copy to or from the host, a synchronize). The stream has then left capture mode, nothing
  // work queued has run, and the context is usable.
  static std::unique_ptr<CapturedGraph> capture(Context& ctx, const std::function<void()>& work);
  ~CapturedGraph();
  CapturedGraph(const CapturedGraph&) = delete;
  CapturedGraph& operator=(const CapturedGraph&) = delete;

  // Queues the captured work on ctx's stream, after whatever is queued there.
  void launch();

 private:
  CapturedGraph(Context& ctx, void* exec) : ctx_(ctx), exec_(exec) {}
  Context& ctx_;
  void* exec_;  // cudaGraphExec_t
};

}  // namespace cuda
}  // namespace s2s
