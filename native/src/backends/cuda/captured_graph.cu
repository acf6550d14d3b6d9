// CapturedGraph (captured_graph.h): cudaStreamBeginCapture / EndCapture around the work, then
// cudaGraphInstantiate; a failed capture is ended and cleared so the stream works as before.
#include <cuda_runtime.h>

#include "backends/cuda/captured_graph.h"
#include "backends/cuda/check.cuh"

namespace s2s {
namespace cuda {

std::unique_ptr<CapturedGraph> CapturedGraph::capture(Context& ctx,
                                                      const std::function<void()>& work) {
  ctx.activate();
  const cudaStream_t stream = static_cast<cudaStream_t>(ctx.stream());
  if (cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed) != cudaSuccess) {
    cudaGetLastError();
    return nullptr;
  }
  bool threw = false;
  ctx.set_capturing(true);
  try {
    work();
  } catch (...) {
    threw = true;  // the ops' own errors: the caller runs the work uncaptured and meets them
  }
  ctx.set_capturing(false);
  ctx.activate();  // work may have left another device current
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(stream, &graph);
  cudaGraphExec_t exec = nullptr;
  const bool ok = !threw && ended == cudaSuccess && graph != nullptr &&
                  cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess;
  if (graph != nullptr) cudaGraphDestroy(graph);
  if (!ok) {
    if (exec != nullptr) cudaGraphExecDestroy(exec);
    cudaGetLastError();  // the capture's refusals are not the next op's error
    return nullptr;
  }
  return std::unique_ptr<CapturedGraph>(new CapturedGraph(ctx, exec));
}

CapturedGraph::~CapturedGraph() {
  cudaSetDevice(ctx_.device());
  cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
  cudaGetLastError();
}

void CapturedGraph::launch() {
  check_cuda(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec_), stream_of(ctx_)), "cuda",
             "cudaGraphLaunch");
}

}  // namespace cuda
}  // namespace s2s
