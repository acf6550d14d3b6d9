// The CUDA backend linked as the full build links it (the kernels, the model path's backend, the
// static CUDA runtime, the cuBLASLt loader), run on a machine without a GPU (CI, the development
// machine): it must load, report why it cannot run, and refuse a CUDA model with S2S_DEVICE
// rather than crash. Built and run by ctest where nvcc is present and cuBLASLt is not
// (cmake/cuda.cmake's compile-only mode); on a GPU machine the CUDA tests run instead.
#include <cstdio>
#include <string>

#include "backends/cuda/cuda_backend.h"
#include "s2s/device.h"
#include "s2s/error.h"

int main() {
  const s2s::CudaStatus s = s2s::cuda_status();
  std::printf("built %d, runtime %d, driver %d, devices %zu, min cc %d\n", int(s.built),
              s.runtime_version, s.driver_version, s.devices.size(), s.min_compute_capability);
  std::printf("cuBLASLt: %s\n", s.cublaslt_library.empty() ? s.cublaslt_problem.c_str()
                                                           : s.cublaslt_library.c_str());
  std::printf("problem: %s\n", s.problem.c_str());
  if (!s.built || s.runtime_version == 0 || s.min_compute_capability == 0) {
    std::printf("FAIL: expected the linked backend to report itself built\n");
    return 1;
  }
  if (s.usable()) {
    std::printf("a usable GPU is present: nothing for this check to show\n");
    return 0;
  }
  if (s.problem.empty()) {
    std::printf("FAIL: unusable without a reason\n");
    return 1;
  }
  try {
    s2s::cuda::make_cuda_backend(s2s::cuda::ContextOptions{}, "cuda_link_check");
    std::printf("FAIL: expected the CUDA backend to be refused without a usable GPU\n");
    return 1;
  } catch (const s2s::Error& e) {
    std::printf("refused: %s %s\n", e.code().c_str(), e.what());
    if (e.code() != s2s::code::kDevice && e.code() != s2s::code::kCuda) {
      std::printf("FAIL: expected S2S_DEVICE or S2S_CUDA\n");
      return 1;
    }
  }
  std::printf("ok\n");
  return 0;
}
