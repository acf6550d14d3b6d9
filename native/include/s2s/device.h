// Which compute device a model runs on, and what this build and machine offer: whether the CUDA
// backend was compiled in, and the GPUs the CUDA runtime sees (for `doctor` and for resolving
// `device: auto|cpu|cuda`). Plain C++: callable from every build, with or without CUDA.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace s2s {

enum class DeviceRequest { Auto, Cpu, Cuda };  // what a config asks for
enum class DeviceKind { Cpu, Cuda };           // what a model actually runs on

// "auto" | "cpu" | "cuda"; throws S2S_ARGUMENT naming `what` (e.g. "loadModel options.device").
DeviceRequest parse_device_request(const std::string& name, const char* what);
const char* device_kind_name(DeviceKind kind);

struct CudaDeviceInfo {
  int index = 0;
  std::string name;                 // e.g. "NVIDIA H100 80GB HBM3"
  int compute_major = 0, compute_minor = 0;
  int multiprocessors = 0;
  size_t total_bytes = 0, free_bytes = 0;
  // Whether this build has kernels for it (compute capability at least min_compute_capability);
  // the models use supported devices only.
  bool supported = true;
};

struct CudaStatus {
  bool built = false;        // the CUDA backend is compiled into this binary
  int runtime_version = 0;   // CUDART_VERSION-style, e.g. 13000 (0 when not built)
  int driver_version = 0;    // the newest CUDA version the installed driver supports (0: none)
  std::vector<CudaDeviceInfo> devices;
  int min_compute_capability = 0;  // e.g. 80: the oldest GPU generation the kernels run on
  // cuBLASLt, loaded at run time (backends/cuda/cublaslt_api.h): the file and its version
  // (e.g. 130100), or why none loaded.
  std::string cublaslt_library;
  size_t cublaslt_version = 0;
  std::string cublaslt_problem;
  // Why the CUDA backend cannot run a model here ("" when it can): not built, no driver or
  // device, no supported device, no cuBLASLt.
  std::string problem;
  bool usable() const { return problem.empty(); }
};

// Queried once per call (cheap after the runtime's first initialisation). Never throws: a
// missing driver, device or library is reported in `problem`.
CudaStatus cuda_status();

// The device a model is loaded on. Auto: CUDA when the backend is usable (built in, a supported
// device, cuBLASLt found), else the CPU. Cuda: CUDA, or S2S_DEVICE with "CUDA backend not built
// into this binary" when it is not compiled in and "no usable CUDA device: <why>" otherwise.
// `what` prefixes the message (e.g. "loadModel"). What runs on a GPU model and what does not
// (generation): native/src/backends/cuda/README.md.
DeviceKind resolve_model_device(DeviceRequest request, const char* what);

}  // namespace s2s
