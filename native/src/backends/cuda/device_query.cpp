// device.h: parsing `device`, the CUDA status `doctor` prints, and the model-device policy.
// Compiled into every build; the CUDA runtime is asked only when the backend is built in
// (S2S_HAVE_CUDA), through its C API, so this file needs no nvcc.
#include "s2s/device.h"

#include "s2s/error.h"

#if S2S_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "backends/cuda/cublaslt_api.h"
#endif

// The lowest compute capability (x10) the build has kernels for (cmake/cuda.cmake); the
// tensor-core kernels need sm_80.
#ifndef S2S_CUDA_MIN_CC
#define S2S_CUDA_MIN_CC 80
#endif

namespace s2s {

DeviceRequest parse_device_request(const std::string& name, const char* what) {
  if (name == "auto") return DeviceRequest::Auto;
  if (name == "cpu") return DeviceRequest::Cpu;
  if (name == "cuda") return DeviceRequest::Cuda;
  fail(code::kArgument, what, "expected device 'auto', 'cpu' or 'cuda', got '", name, "'");
}

const char* device_kind_name(DeviceKind kind) { return kind == DeviceKind::Cuda ? "cuda" : "cpu"; }

CudaStatus cuda_status() {
  CudaStatus s;
#if S2S_HAVE_CUDA
  s.built = true;
  s.min_compute_capability = S2S_CUDA_MIN_CC;
  cudaRuntimeGetVersion(&s.runtime_version);
  if (cudaDriverGetVersion(&s.driver_version) != cudaSuccess) s.driver_version = 0;
  const cuda::lt::Status lt = cuda::lt::status();
  s.cublaslt_library = lt.library;
  s.cublaslt_version = lt.version;
  s.cublaslt_problem = lt.problem;
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    s.problem = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
    if (e == cudaErrorInsufficientDriver && s.driver_version == 0) {
      // What the static runtime says when it cannot load libcuda.so.1 at all.
      s.problem = "no NVIDIA driver found (libcuda.so.1 did not load; " + s.problem + ")";
    } else if (e == cudaErrorInsufficientDriver) {
      s.problem += " (the driver supports CUDA " + std::to_string(s.driver_version / 1000) + "." +
                   std::to_string(s.driver_version % 1000 / 10) + ", this build's runtime is " +
                   std::to_string(s.runtime_version / 1000) + "." +
                   std::to_string(s.runtime_version % 1000 / 10) +
                   ": update the driver, or build from source with your toolkit)";
    }
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    return s;
  }
  if (count == 0) s.problem = "the CUDA runtime found no device";
  int current = 0;
  cudaGetDevice(&current);
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
    CudaDeviceInfo d;
    d.index = i;
    d.name = p.name;
    d.compute_major = p.major;
    d.compute_minor = p.minor;
    d.multiprocessors = p.multiProcessorCount;
    d.total_bytes = p.totalGlobalMem;
    d.supported = p.major * 10 + p.minor >= S2S_CUDA_MIN_CC;
    if (d.supported && cudaSetDevice(i) == cudaSuccess) {
      size_t free_b = 0, total_b = 0;
      if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) d.free_bytes = free_b;
    }
    s.devices.push_back(d);
  }
  cudaSetDevice(current);
  cudaGetLastError();
  if (!s.problem.empty()) return s;
  if (s.devices.empty() || !s.devices[0].supported) {
    // The models run on device 0 (the current one), as the CUDA runtime numbers them.
    const CudaDeviceInfo* d = s.devices.empty() ? nullptr : &s.devices[0];
    s.problem = d == nullptr ? "the CUDA runtime listed no device it could describe"
                             : "GPU 0 (" + d->name + ") has compute capability " +
                                   std::to_string(d->compute_major) + "." +
                                   std::to_string(d->compute_minor) + "; this build has kernels "
                                   "for " + std::to_string(S2S_CUDA_MIN_CC / 10) + "." +
                                   std::to_string(S2S_CUDA_MIN_CC % 10) + " and newer";
    return s;
  }
  if (!lt.ok) s.problem = lt.problem;
#else
  s.problem = "not built: this binary has no CUDA backend (build with nvcc present, "
              "S2S_CUDA=ON)";
#endif
  return s;
}

DeviceKind resolve_model_device(DeviceRequest request, const char* what) {
  if (request == DeviceRequest::Cpu) return DeviceKind::Cpu;
  const CudaStatus s = cuda_status();
  if (request == DeviceRequest::Auto) return s.usable() ? DeviceKind::Cuda : DeviceKind::Cpu;
  if (!s.built) {
    fail(code::kDevice, what,
         "CUDA backend not built into this binary (device 'cuda' was asked for; rebuild with "
         "nvcc installed, S2S_CUDA=ON, or use device 'cpu')");
  }
  if (!s.usable()) fail(code::kDevice, what, "no usable CUDA device: ", s.problem);
  return DeviceKind::Cuda;
}

}  // namespace s2s
