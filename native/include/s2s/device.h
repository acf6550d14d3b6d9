// Which compute device a model runs on, and what this build and machine offer: whether the CUDA
// backend was compiled in, and the GPUs the CUDA runtime sees (for `doctor` and for resolving
// `device: auto|cpu|cuda|cuda:N`). Plain C++: callable from every build, with or without CUDA.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace s2s {

enum class DeviceRequest { Auto, Cpu, Cuda };  // what a config asks for
enum class DeviceKind { Cpu, Cuda };           // what a model actually runs on

// A `device` value as written: "auto", "cpu", "cuda" (GPU 0) or "cuda:N" (GPU N, numbered as
// the CUDA runtime numbers them, that is after CUDA_VISIBLE_DEVICES; PyTorch's spelling).
struct DeviceSpec {
  DeviceRequest request = DeviceRequest::Auto;
  int index = 0;  // the GPU, for Cuda
};
// Throws S2S_ARGUMENT naming `what` (e.g. "loadModel") for anything else.
DeviceSpec parse_device(const std::string& name, const char* what);

// Where a model runs: the CPU, or GPU `index`.
struct Device {
  DeviceKind kind = DeviceKind::Cpu;
  int index = 0;
  std::string name() const;  // "cpu" or "cuda:N", which parse_device reads back
  bool operator==(const Device& o) const { return kind == o.kind && index == o.index; }
};

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
  // Why the CUDA backend cannot run a model on any GPU here ("" when nothing stops it): not
  // built, no driver or device, no cuBLASLt.
  std::string runtime_problem;
  // Why GPU 0, where `auto` and `cuda` put a model, cannot run one ("" when it can): the
  // runtime's problem, or the device's (device_problem(0)).
  std::string problem;
  bool usable() const { return problem.empty(); }
  // Why GPU `index` cannot run a model ("" when it can): the runtime's problem, no such device,
  // or one this build has no kernels for.
  std::string device_problem(int index) const;
};

// Queried once per call (cheap after the runtime's first initialisation). Never throws: a
// missing driver, device or library is reported in `problem`. With free_memory, each supported
// GPU's free bytes too (cudaMemGetInfo), for which the runtime sets up a context on every GPU
// (a few hundred MB of each, and refused on a GPU another process holds in exclusive mode):
// `doctor` asks for them; placing a model does not, so a model on GPU 1 leaves GPU 0 alone.
CudaStatus cuda_status(bool free_memory = true);

// The device a model is loaded on. Auto: GPU 0 when the backend is usable there (built in, a
// supported device, cuBLASLt found), else the CPU. Cuda: GPU `spec.index`, or S2S_DEVICE with
// "CUDA backend not built into this binary" when it is not compiled in and "no usable CUDA
// device: <why>" otherwise. `what` prefixes the message (e.g. "loadModel"). What runs on a GPU
// model and what does not (generation): native/src/backends/cuda/README.md.
Device resolve_model_device(const DeviceSpec& spec, const char* what);

}  // namespace s2s
