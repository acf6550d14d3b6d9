// Our cuBLASLt declarations (cublaslt_api.h) against the library's own header, where the build
// finds one (cmake/cuda.cmake puts its folder on s2s_core's include path: a GPU machine, pip's
// nvidia-cublas, the CUDA toolkit). A value or layout that differs fails the build there instead
// of a matrix product at run time. Elsewhere this file compiles to nothing.
#if defined(__has_include)
#if __has_include(<cublasLt.h>)
#include <cublasLt.h>

#include <cstddef>
#include <type_traits>

#include "backends/cuda/cublaslt_api.h"

namespace ours = s2s::cuda::lt;

#define S2S_SAME_VALUE(name) static_assert(int(ours::name) == int(::name), #name " differs")
S2S_SAME_VALUE(CUBLAS_STATUS_SUCCESS);
S2S_SAME_VALUE(CUBLAS_STATUS_NOT_INITIALIZED);
S2S_SAME_VALUE(CUBLAS_STATUS_ALLOC_FAILED);
S2S_SAME_VALUE(CUBLAS_STATUS_INVALID_VALUE);
S2S_SAME_VALUE(CUBLAS_STATUS_ARCH_MISMATCH);
S2S_SAME_VALUE(CUBLAS_STATUS_EXECUTION_FAILED);
S2S_SAME_VALUE(CUBLAS_STATUS_INTERNAL_ERROR);
S2S_SAME_VALUE(CUBLAS_STATUS_NOT_SUPPORTED);
S2S_SAME_VALUE(CUBLAS_OP_N);
S2S_SAME_VALUE(CUBLAS_OP_T);
S2S_SAME_VALUE(CUBLAS_OP_C);
S2S_SAME_VALUE(CUBLAS_COMPUTE_32F);
S2S_SAME_VALUE(CUBLAS_COMPUTE_32F_FAST_TF32);
S2S_SAME_VALUE(CUDA_R_32F);
S2S_SAME_VALUE(CUDA_R_16F);
S2S_SAME_VALUE(CUDA_R_16BF);
S2S_SAME_VALUE(CUBLASLT_MATMUL_DESC_TRANSA);
S2S_SAME_VALUE(CUBLASLT_MATMUL_DESC_TRANSB);
S2S_SAME_VALUE(CUBLASLT_MATMUL_DESC_EPILOGUE);
S2S_SAME_VALUE(CUBLASLT_MATMUL_DESC_BIAS_POINTER);
S2S_SAME_VALUE(CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE);
S2S_SAME_VALUE(CUBLASLT_EPILOGUE_DEFAULT);
S2S_SAME_VALUE(CUBLASLT_EPILOGUE_BIAS);
S2S_SAME_VALUE(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES);
S2S_SAME_VALUE(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES);
S2S_SAME_VALUE(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES);
S2S_SAME_VALUE(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES);
S2S_SAME_VALUE(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES);
#undef S2S_SAME_VALUE

// The enums are passed by value and written through attribute buffers: same sizes.
static_assert(sizeof(ours::cublasStatus_t) == sizeof(::cublasStatus_t), "status size");
static_assert(sizeof(ours::cublasOperation_t) == sizeof(::cublasOperation_t), "operation size");
static_assert(sizeof(ours::cublasComputeType_t) == sizeof(::cublasComputeType_t), "compute size");
static_assert(sizeof(ours::cudaDataType_t) == sizeof(::cudaDataType_t), "data type size");

// The structs we allocate and the library fills.
static_assert(sizeof(ours::cublasLtMatmulAlgo_t) == sizeof(::cublasLtMatmulAlgo_t), "algo size");
static_assert(sizeof(ours::cublasLtMatmulHeuristicResult_t) ==
                  sizeof(::cublasLtMatmulHeuristicResult_t), "heuristic result size");
static_assert(offsetof(ours::cublasLtMatmulHeuristicResult_t, workspaceSize) ==
                  offsetof(::cublasLtMatmulHeuristicResult_t, workspaceSize), "workspaceSize");
static_assert(offsetof(ours::cublasLtMatmulHeuristicResult_t, state) ==
                  offsetof(::cublasLtMatmulHeuristicResult_t, state), "state");
static_assert(offsetof(ours::cublasLtMatmulHeuristicResult_t, wavesCount) ==
                  offsetof(::cublasLtMatmulHeuristicResult_t, wavesCount), "wavesCount");

// Every function: the same parameter and return sizes, position by position (the types are
// ours, not the header's, so compare their shapes).
template <typename R1, typename... A1, typename R2, typename... A2>
constexpr bool same_shape(R1 (*)(A1...), R2 (*)(A2...)) {
  if constexpr (sizeof...(A1) != sizeof...(A2)) {
    return false;
  } else {
    return sizeof(R1) == sizeof(R2) && ((sizeof(A1) == sizeof(A2)) && ...);
  }
}
#define S2S_SAME_SHAPE(fn) \
  static_assert(same_shape(decltype(ours::Api{}.fn){}, &::fn), #fn " has another signature")
S2S_SAME_SHAPE(cublasLtCreate);
S2S_SAME_SHAPE(cublasLtDestroy);
S2S_SAME_SHAPE(cublasLtGetStatusName);
S2S_SAME_SHAPE(cublasLtGetStatusString);
S2S_SAME_SHAPE(cublasLtGetVersion);
S2S_SAME_SHAPE(cublasLtMatmulDescCreate);
S2S_SAME_SHAPE(cublasLtMatmulDescDestroy);
S2S_SAME_SHAPE(cublasLtMatmulDescSetAttribute);
S2S_SAME_SHAPE(cublasLtMatrixLayoutCreate);
S2S_SAME_SHAPE(cublasLtMatrixLayoutDestroy);
S2S_SAME_SHAPE(cublasLtMatmulPreferenceCreate);
S2S_SAME_SHAPE(cublasLtMatmulPreferenceDestroy);
S2S_SAME_SHAPE(cublasLtMatmulPreferenceSetAttribute);
S2S_SAME_SHAPE(cublasLtMatmulAlgoGetHeuristic);
S2S_SAME_SHAPE(cublasLtMatmul);
#undef S2S_SAME_SHAPE

#endif
#endif
