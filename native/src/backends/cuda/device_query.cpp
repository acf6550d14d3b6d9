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

DeviceSpec parse_device(const std::string& name, const char* what) {
  if (name == "auto") return {DeviceRequest::Auto, 0};
  if (name == "cpu") return {DeviceRequest::Cpu, 0};
  if (name == "cuda") return {DeviceRequest::Cuda, 0};
  const std::string prefix = "cuda:";
  if (name.compare(0, prefix.size(), prefix) == 0) {
    const std::string digits = name.substr(prefix.size());
    // Plain decimal, no sign or spaces, small enough for an int: "cuda:1", not "cuda:+1".
    bool ok = !digits.empty() && digits.size() <= 4;
    for (char c : digits) ok = ok && c >= '0' && c <= '9';
    if (ok) return {DeviceRequest::Cuda, std::stoi(digits)};
  }
  fail(code::kArgument, what,
       "expected device 'auto', 'cpu', 'cuda' or 'cuda:N' (N a GPU index), got '", name, "'");
}

std::string Device::name() const {
  return kind == DeviceKind::Cuda ? "cuda:" + std::to_string(index) : "cpu";
}

std::string CudaStatus::device_problem(int index) const {
  if (!runtime_problem.empty()) return runtime_problem;
  const CudaDeviceInfo* d = nullptr;
  for (const CudaDeviceInfo& info : devices) {
    if (info.index == index) d = &info;
  }
  if (d == nullptr) {
    std::string seen;
    for (const CudaDeviceInfo& info : devices) {
      seen += (seen.empty() ? "" : ", ") + std::to_string(info.index) + ": " + info.name;
    }
    return "there is no GPU " + std::to_string(index) + " (the CUDA runtime sees " +
           std::to_string(devices.size()) + (devices.size() == 1 ? " device" : " devices") +
           (seen.empty() ? "" : ": " + seen) + "; CUDA_VISIBLE_DEVICES renumbers them)";
  }
  if (d->supported) return "";
  return "GPU " + std::to_string(index) + " (" + d->name + ") has compute capability " +
         std::to_string(d->compute_major) + "." + std::to_string(d->compute_minor) +
         "; this build has kernels for " + std::to_string(min_compute_capability / 10) + "." +
         std::to_string(min_compute_capability % 10) + " and newer";
}

CudaStatus cuda_status(bool free_memory) {
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
    s.runtime_problem = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
    if (e == cudaErrorInsufficientDriver && s.driver_version == 0) {
      // What the static runtime says when it cannot load libcuda.so.1 at all.
      s.runtime_problem =
          "no NVIDIA driver found (libcuda.so.1 did not load; " + s.runtime_problem + ")";
    } else if (e == cudaErrorInsufficientDriver) {
      const auto version = [](int v) {
        return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10);
      };
      s.runtime_problem += " (the driver supports CUDA " + version(s.driver_version) +
                           ", this build's runtime is " + version(s.runtime_version) +
                           ": update the driver, or build from source with your toolkit)";
    }
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    s.problem = s.runtime_problem;
    return s;
  }
  if (count == 0) s.runtime_problem = "the CUDA runtime found no device";
  int current = 0;
  cudaGetDevice(&current);  // sets nothing up
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
    // cudaSetDevice sets up the GPU's context (CUDA 12 and newer): only when asked.
    if (free_memory && d.supported && cudaSetDevice(i) == cudaSuccess) {
      size_t free_b = 0, total_b = 0;
      if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) d.free_bytes = free_b;
    }
    s.devices.push_back(d);
  }
  if (free_memory) cudaSetDevice(current);
  cudaGetLastError();
  if (s.runtime_problem.empty() && s.devices.empty()) {
    s.runtime_problem = "the CUDA runtime listed no device it could describe";
  }
  if (s.runtime_problem.empty() && !lt.ok) s.runtime_problem = lt.problem;
  s.problem = s.device_problem(0);
#else
  (void)free_memory;
  s.runtime_problem = "not built: this binary has no CUDA backend (build with nvcc present, "
                      "S2S_CUDA=ON)";
  s.problem = s.runtime_problem;
#endif
  return s;
}

Device resolve_model_device(const DeviceSpec& spec, const char* what) {
  if (spec.request == DeviceRequest::Cpu) return Device{};
  const CudaStatus s = cuda_status(/*free_memory=*/false);
  if (spec.request == DeviceRequest::Auto) {
    return s.usable() ? Device{DeviceKind::Cuda, 0} : Device{};
  }
  if (!s.built) {
    fail(code::kDevice, what, "CUDA backend not built into this binary (device '",
         Device{DeviceKind::Cuda, spec.index}.name(),
         "' was asked for; rebuild with nvcc installed, S2S_CUDA=ON, or use device 'cpu')");
  }
  const std::string problem = s.device_problem(spec.index);
  if (!problem.empty()) fail(code::kDevice, what, "no usable CUDA device: ", problem);
  return Device{DeviceKind::Cuda, spec.index};
}

}  // namespace s2s
