// cuBLASLt, loaded at run time: the subset of its C API that gemm.cu calls, declared here (names
// and values are the library's, the declarations this project's own), and a table of function
// pointers filled from libcublasLt.so by dlopen/dlsym on first use.
//
// Why not link it: a binary built with the CUDA backend then loads on every machine, with or
// without a GPU or cuBLAS (the CUDA runtime is linked statically and finds the driver itself), so
// one prebuilt addon serves CPU-only and GPU machines, and nvcc is needed only by whoever builds
// it, not by its users. cuBLASLt's ABI for these calls is the same in CUDA 12 and 13.
//
// The simulated device's stand-in (native/tests/simt_cuda/cublaslt_sim.cpp) registers its own
// table (register_builtin), so gemm.cu runs the same calls through the same table there.
// Plain C++: no CUDA header needed (streams are passed as the opaque pointers they are).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace s2s {
namespace cuda {
namespace lt {

// ---- cublas_api.h / library_types.h subset ------------------------------------------------------
enum cublasStatus_t : int {
  CUBLAS_STATUS_SUCCESS = 0,
  CUBLAS_STATUS_NOT_INITIALIZED = 1,
  CUBLAS_STATUS_ALLOC_FAILED = 3,
  CUBLAS_STATUS_INVALID_VALUE = 7,
  CUBLAS_STATUS_ARCH_MISMATCH = 8,
  CUBLAS_STATUS_EXECUTION_FAILED = 13,
  CUBLAS_STATUS_INTERNAL_ERROR = 14,
  CUBLAS_STATUS_NOT_SUPPORTED = 15,
};
enum cublasOperation_t : int { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1, CUBLAS_OP_C = 2 };
enum cublasComputeType_t : int { CUBLAS_COMPUTE_32F = 68, CUBLAS_COMPUTE_32F_FAST_TF32 = 77 };
enum cudaDataType_t : int { CUDA_R_32F = 0, CUDA_R_16F = 2, CUDA_R_16BF = 14 };

// ---- cublasLt.h subset --------------------------------------------------------------------------
// Opaque to us; the library's own objects (the simulator defines these structs).
struct LtContext;
struct LtMatmulDesc;
struct LtMatrixLayout;
struct LtPreference;
using cublasLtHandle_t = LtContext*;
using cublasLtMatmulDesc_t = LtMatmulDesc*;
using cublasLtMatrixLayout_t = LtMatrixLayout*;
using cublasLtMatmulPreference_t = LtPreference*;

struct cublasLtMatmulAlgo_t {
  uint64_t data[8];
};
struct cublasLtMatmulHeuristicResult_t {
  cublasLtMatmulAlgo_t algo;
  size_t workspaceSize;
  cublasStatus_t state;
  float wavesCount;
  int reserved[4];
};
static_assert(sizeof(cublasLtMatmulHeuristicResult_t) == 96,
              "cuBLASLt's heuristic result is 96 bytes");

enum cublasLtMatmulDescAttributes_t : int {
  CUBLASLT_MATMUL_DESC_TRANSA = 3,           // int32_t (cublasOperation_t)
  CUBLASLT_MATMUL_DESC_TRANSB = 4,           // int32_t (cublasOperation_t)
  CUBLASLT_MATMUL_DESC_EPILOGUE = 7,         // uint32_t (cublasLtEpilogue_t)
  CUBLASLT_MATMUL_DESC_BIAS_POINTER = 8,     // const void*
  CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE = 26,  // int32_t (cudaDataType_t), -1: D's type
};
enum cublasLtEpilogue_t : int { CUBLASLT_EPILOGUE_DEFAULT = 1, CUBLASLT_EPILOGUE_BIAS = 4 };
enum cublasLtMatmulPreferenceAttributes_t : int {
  CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1,    // uint64_t
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5,  // uint32_t, default 256
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8,
};

// The functions, one pointer each, named as in the library. `library` is the file they came from
// ("built in" for a registered table) and `version` cublasLtGetVersion's (e.g. 130100 for 13.1.0).
struct Api {
  cublasStatus_t (*cublasLtCreate)(cublasLtHandle_t* handle) = nullptr;
  cublasStatus_t (*cublasLtDestroy)(cublasLtHandle_t handle) = nullptr;
  const char* (*cublasLtGetStatusName)(cublasStatus_t status) = nullptr;
  const char* (*cublasLtGetStatusString)(cublasStatus_t status) = nullptr;
  size_t (*cublasLtGetVersion)() = nullptr;
  cublasStatus_t (*cublasLtMatmulDescCreate)(cublasLtMatmulDesc_t* desc,
                                             cublasComputeType_t compute,
                                             cudaDataType_t scale_type) = nullptr;
  cublasStatus_t (*cublasLtMatmulDescDestroy)(cublasLtMatmulDesc_t desc) = nullptr;
  cublasStatus_t (*cublasLtMatmulDescSetAttribute)(cublasLtMatmulDesc_t desc,
                                                   cublasLtMatmulDescAttributes_t attr,
                                                   const void* buf, size_t bytes) = nullptr;
  cublasStatus_t (*cublasLtMatrixLayoutCreate)(cublasLtMatrixLayout_t* layout,
                                               cudaDataType_t type, uint64_t rows, uint64_t cols,
                                               int64_t ld) = nullptr;
  cublasStatus_t (*cublasLtMatrixLayoutDestroy)(cublasLtMatrixLayout_t layout) = nullptr;
  cublasStatus_t (*cublasLtMatmulPreferenceCreate)(cublasLtMatmulPreference_t* pref) = nullptr;
  cublasStatus_t (*cublasLtMatmulPreferenceDestroy)(cublasLtMatmulPreference_t pref) = nullptr;
  cublasStatus_t (*cublasLtMatmulPreferenceSetAttribute)(
      cublasLtMatmulPreference_t pref, cublasLtMatmulPreferenceAttributes_t attr,
      const void* buf, size_t bytes) = nullptr;
  cublasStatus_t (*cublasLtMatmulAlgoGetHeuristic)(
      cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t a,
      cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d,
      cublasLtMatmulPreference_t pref, int requested, cublasLtMatmulHeuristicResult_t results[],
      int* returned) = nullptr;
  // `stream` is a cudaStream_t.
  cublasStatus_t (*cublasLtMatmul)(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
                                   const void* alpha, const void* A, cublasLtMatrixLayout_t a,
                                   const void* B, cublasLtMatrixLayout_t b, const void* beta,
                                   const void* C, cublasLtMatrixLayout_t c, void* D,
                                   cublasLtMatrixLayout_t d, const cublasLtMatmulAlgo_t* algo,
                                   void* workspace, size_t workspace_bytes,
                                   void* stream) = nullptr;
  std::string library;
  size_t version = 0;
};

// The process's cuBLASLt: the registered table, else the first library of library_candidates()
// that loads with every symbol (looked up once; a failure is remembered too). Throws S2S_DEVICE
// saying what was tried and how to install or point at the library.
const Api& api();

// What api() found, without throwing: ok, or why not (for `doctor` and device "auto").
struct Status {
  bool ok = false;
  std::string library;  // the file loaded ("" when none)
  size_t version = 0;
  std::string problem;  // why none loaded ("" when ok)
};
Status status();

// Used instead of any library from then on (the CUDA simulator's stand-in).
void register_builtin(const Api& table);

// Where to look, in order (the environment as a lookup, for the tests):
//   S2S_CUBLASLT            that file, and nothing else;
//   S2S_CUBLAS_ROOT         <root>/{lib,lib64}/libcublasLt.so.<major>;
//   the bare sonames        libcublasLt.so.<major> through the dynamic loader's own search
//                           (LD_LIBRARY_PATH, the ld.so cache, the addon's RUNPATH);
//   CUDA_HOME, CUDA_PATH, /usr/local/cuda: {lib64,lib,targets/<arch>-linux/lib}/...;
//   pip's nvidia packages   <prefix>/lib/python3*/{site,dist}-packages/nvidia/
//                           {cu<major>,cublas}/lib
//                           for prefix in VIRTUAL_ENV, CONDA_PREFIX, ~/.local, /usr/local, /usr.
// <major>: `preferred_major` (the CUDA runtime's) first, then the other of 13 and 12.
using EnvLookup = const char* (*)(const char* name);
std::vector<std::string> library_candidates(EnvLookup env, int preferred_major);

// Loads the first candidate that opens and has every symbol; throws S2S_DEVICE listing each
// candidate tried and why it failed (not found, or the dynamic loader's error, or a missing
// symbol).
Api load_first(const std::vector<std::string>& candidates);

}  // namespace lt
}  // namespace cuda
}  // namespace s2s
