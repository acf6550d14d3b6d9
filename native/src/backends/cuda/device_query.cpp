// device.h: parsing `device`, the CUDA status `doctor` prints, and the model-device policy.
// Compiled into every build; the CUDA runtime is asked only when the backend is built in
// (S2S_HAVE_CUDA), through its C API, so this file needs no nvcc.
#include "s2s/device.h"

#include "s2s/error.h"

#if S2S_HAVE_CUDA
#include <cuda_runtime_api.h>
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
  cudaRuntimeGetVersion(&s.runtime_version);
  if (cudaDriverGetVersion(&s.driver_version) != cudaSuccess) s.driver_version = 0;
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    s.problem = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
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
    if (cudaSetDevice(i) == cudaSuccess) {
      size_t free_b = 0, total_b = 0;
      if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) d.free_bytes = free_b;
    }
    s.devices.push_back(d);
  }
  cudaSetDevice(current);
  cudaGetLastError();
#else
  s.problem = "not built: this binary has no CUDA backend (build with nvcc and cuBLASLt present, "
              "S2S_CUDA=ON)";
#endif
  return s;
}

DeviceKind resolve_model_device(DeviceRequest request, const char* what) {
  if (request == DeviceRequest::Cpu) return DeviceKind::Cpu;
  const CudaStatus s = cuda_status();
  if (request == DeviceRequest::Auto) {
    return s.built && !s.devices.empty() ? DeviceKind::Cuda : DeviceKind::Cpu;
  }
  if (!s.built) {
    fail(code::kDevice, what,
         "CUDA backend not built into this binary (device 'cuda' was asked for; rebuild with "
         "nvcc and cuBLASLt installed, S2S_CUDA=ON, or use device 'cpu')");
  }
  if (s.devices.empty()) fail(code::kDevice, what, "no usable CUDA device: ", s.problem);
  return DeviceKind::Cuda;
}

}  // namespace s2s
