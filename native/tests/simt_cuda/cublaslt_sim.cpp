// cuBLASLt on the simulated device (the API subset of backends/cuda/cublaslt_api.h, registered
// as the process's table), carried out from the documented contract rather than from gemm.cu's
// reading of it:
//   - a matrix layout (type, rows, cols, ld) is column-major: element (i, j) at i + j * ld, ld >= rows;
//   - op(A) is m x k, op(B) is k x n, C and D are m x n (m = D's rows, n = D's columns);
//   - D = alpha op(A) op(B) + beta C, C unread when beta == 0; the BIAS epilogue then adds
//     bias[i] to row i of D (a vector of D's rows, D's type unless set otherwise);
//   - an algorithm from cublasLtMatmulAlgoGetHeuristic serves only the configuration it was
//     asked for (descriptor, layouts) and assumes the alignments the preference promised (and the
//     bias pointer's, which the heuristic reads), and needs the workspace it reported.
// Violations return the status the real library documents (INVALID_VALUE for inconsistent
// arguments, NOT_SUPPORTED for configurations outside what this emulator does), so gemm.cu's
// error path and its plan cache key are exercised as well as its arithmetic.
//
// The products come from the CPU's own GEMMs, through the other direction of the mapping:
// column-major D (m x n) is row-major D^T (n x m) = op(B)^T op(A)^T, and a column-major
// stored matrix is its row-major transpose. A correct gemm.cu therefore gives the CPU backend's
// bits here (what differs between the backends in the sim tests stays the kernels' doing),
// and a wrong mapping gives wrong numbers. TF32 compute rounds the operands to TF32 first.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "backends/cuda/cublaslt_api.h"
#include "cuda_runtime.h"
#include "s2s/dtype.h"
#include "s2s/gemm.h"

using namespace s2s::cuda::lt;  // NOLINT: the library's names, as gemm.cu sees them

namespace s2s {
namespace cuda {
namespace lt {

// The library's objects, opaque to gemm.cu.
struct LtContext {
  int device = 0;  // the device current at cublasLtCreate: the handle works there only
};
struct LtMatmulDesc {
  cublasComputeType_t compute;
  cudaDataType_t scale;
  int32_t transa = CUBLAS_OP_N, transb = CUBLAS_OP_N;
  uint32_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  const void* bias = nullptr;
  int32_t bias_type = -1;
};
struct LtMatrixLayout {
  cudaDataType_t type;
  uint64_t rows, cols;
  int64_t ld;
};
struct LtPreference {
  uint64_t max_workspace = 0;
  uint32_t min_alignment[4] = {256, 256, 256, 256};  // A, B, C, D
};

}  // namespace lt
}  // namespace cuda
}  // namespace s2s

namespace {

// What an algorithm remembers of the configuration it was chosen for (algo.data, 64 bytes).
struct AlgoRecord {
  uint32_t magic;
  int32_t transa, transb;
  uint32_t epilogue;
  uint32_t compute, types;  // types: A | B << 8 | C << 16 | D << 24
  uint32_t align[5];        // A, B, C, D, bias
  uint32_t m, n, k;
  uint64_t workspace;
};
static_assert(sizeof(AlgoRecord) <= sizeof(cublasLtMatmulAlgo_t), "algo record too large");
constexpr uint32_t kMagic = 0x51317a7b;

uint32_t alignment_of(const void* p) {
  const uintptr_t u = reinterpret_cast<uintptr_t>(p);
  uint32_t a = 256;
  while (a > 1 && u % a != 0) a >>= 1;
  return a;
}

bool known_type(cudaDataType_t t) {
  return t == CUDA_R_32F || t == CUDA_R_16F || t == CUDA_R_16BF;
}

// The shape the descriptor and layouts describe; INVALID_VALUE where they disagree.
struct Shape {
  uint64_t m, n, k;
};
cublasStatus_t shape_of(const LtMatmulDesc* op, const LtMatrixLayout* a,
                        const LtMatrixLayout* b, const LtMatrixLayout* c,
                        const LtMatrixLayout* d, Shape* s) {
  if (op == nullptr || a == nullptr || b == nullptr || c == nullptr || d == nullptr) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  const bool ta = op->transa != CUBLAS_OP_N, tb = op->transb != CUBLAS_OP_N;
  s->m = d->rows;
  s->n = d->cols;
  s->k = ta ? a->rows : a->cols;
  if ((ta ? a->cols : a->rows) != s->m) return CUBLAS_STATUS_INVALID_VALUE;
  if ((tb ? b->cols : b->rows) != s->k || (tb ? b->rows : b->cols) != s->n) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  if (c->rows != d->rows || c->cols != d->cols) return CUBLAS_STATUS_INVALID_VALUE;
  for (const LtMatrixLayout* l : {a, b, c, d}) {
    if (l->ld < int64_t(std::max<uint64_t>(l->rows, 1))) return CUBLAS_STATUS_INVALID_VALUE;
  }
  return CUBLAS_STATUS_SUCCESS;
}

// The configurations emulated: A and B both f32 (32F or TF32 compute), bf16 or f16 (32F
// compute); C and D f32, or both in A and B's 16-bit type (the fp32 result rounded to nearest
// even as it is stored); scale f32; no epilogue or a bias (f32, which a 16-bit D must ask for:
// its default bias type is D's).
cublasStatus_t supported(const LtMatmulDesc* op, const LtMatrixLayout* a,
                         const LtMatrixLayout* b, const LtMatrixLayout* c,
                         const LtMatrixLayout* d) {
  if (!known_type(a->type) || a->type != b->type) return CUBLAS_STATUS_NOT_SUPPORTED;
  const bool half_d = d->type != CUDA_R_32F;
  if (c->type != d->type || (half_d && d->type != a->type) || op->scale != CUDA_R_32F) {
    return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  if (half_d && op->epilogue == CUBLASLT_EPILOGUE_BIAS && op->bias_type != CUDA_R_32F) {
    return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  if (op->compute == CUBLAS_COMPUTE_32F_FAST_TF32 && a->type != CUDA_R_32F) {
    return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  if (op->epilogue == CUBLASLT_EPILOGUE_BIAS) {
    if (op->bias_type != -1 && op->bias_type != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
  } else if (op->epilogue != CUBLASLT_EPILOGUE_DEFAULT) {
    return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  return CUBLAS_STATUS_SUCCESS;
}

uint32_t types_of(const LtMatrixLayout* a, const LtMatrixLayout* b,
                  const LtMatrixLayout* c, const LtMatrixLayout* d) {
  return uint32_t(a->type) | uint32_t(b->type) << 8 | uint32_t(c->type) << 16 |
         uint32_t(d->type) << 24;
}

// TF32 keeps fp32's exponent and 10 mantissa bits: round to nearest even on the 13 dropped bits.
float to_tf32(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0xfffu + ((u >> 13) & 1u)) & ~0x1fffu;
  std::memcpy(&x, &u, sizeof x);
  return x;
}
// The column-major stored matrix of `l` at p, as TF32 values in a buffer of the same layout.
std::vector<float> tf32_copy(const void* p, const LtMatrixLayout* l) {
  const size_t n = l->cols == 0 ? 0 : size_t(l->ld) * (l->cols - 1) + l->rows;
  std::vector<float> out(n);
  const float* src = static_cast<const float*>(p);
  for (uint64_t j = 0; j < l->cols; ++j) {
    for (uint64_t i = 0; i < l->rows; ++i) out[j * l->ld + i] = to_tf32(src[j * l->ld + i]);
  }
  return out;
}

cublasStatus_t cublasLtCreate(cublasLtHandle_t* handle) {
  if (handle == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  *handle = new LtContext{::s2s::simt::current_device_index()};
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtDestroy(cublasLtHandle_t handle) {
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}
const char* cublasLtGetStatusName(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}
const char* cublasLtGetStatusString(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "success";
    case CUBLAS_STATUS_INVALID_VALUE: return "an invalid value was used as an argument";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
    default: return "simulated cuBLASLt error";
  }
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* desc, cublasComputeType_t compute,
                                        cudaDataType_t scale_type) {
  if (desc == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  if (compute != CUBLAS_COMPUTE_32F && compute != CUBLAS_COMPUTE_32F_FAST_TF32) {
    return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  *desc = new LtMatmulDesc{compute, scale_type};
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t desc) {
  delete desc;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t desc,
                                              cublasLtMatmulDescAttributes_t attr,
                                              const void* buf, size_t bytes) {
  if (desc == nullptr || buf == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  auto read = [&](auto* field) {
    if (bytes != sizeof(*field)) return CUBLAS_STATUS_INVALID_VALUE;
    std::memcpy(field, buf, bytes);
    return CUBLAS_STATUS_SUCCESS;
  };
  switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA: return read(&desc->transa);
    case CUBLASLT_MATMUL_DESC_TRANSB: return read(&desc->transb);
    case CUBLASLT_MATMUL_DESC_EPILOGUE: return read(&desc->epilogue);
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER: return read(&desc->bias);
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: return read(&desc->bias_type);
  }
  return CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* layout, cudaDataType_t type,
                                          uint64_t rows, uint64_t cols, int64_t ld) {
  if (layout == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  if (!known_type(type)) return CUBLAS_STATUS_NOT_SUPPORTED;
  *layout = new LtMatrixLayout{type, rows, cols, ld};
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t layout) {
  delete layout;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* pref) {
  if (pref == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  *pref = new LtPreference();
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref) {
  delete pref;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                                    cublasLtMatmulPreferenceAttributes_t attr,
                                                    const void* buf, size_t bytes) {
  if (pref == nullptr || buf == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  if (attr == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES) {
    if (bytes != sizeof(uint64_t)) return CUBLAS_STATUS_INVALID_VALUE;
    std::memcpy(&pref->max_workspace, buf, bytes);
    return CUBLAS_STATUS_SUCCESS;
  }
  const int i = int(attr) - int(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES);
  if (i < 0 || i > 3 || bytes != sizeof(uint32_t)) return CUBLAS_STATUS_INVALID_VALUE;
  std::memcpy(&pref->min_alignment[i], buf, bytes);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(
    cublasLtHandle_t handle, cublasLtMatmulDesc_t op, cublasLtMatrixLayout_t a,
    cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d,
    cublasLtMatmulPreference_t pref, int requested, cublasLtMatmulHeuristicResult_t results[],
    int* returned) {
  if (handle == nullptr || pref == nullptr || requested < 1 || results == nullptr ||
      returned == nullptr) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  *returned = 0;
  Shape s{};
  cublasStatus_t st = shape_of(op, a, b, c, d, &s);
  if (st == CUBLAS_STATUS_SUCCESS) st = supported(op, a, b, c, d);
  if (st != CUBLAS_STATUS_SUCCESS) return st;
  if (op->epilogue == CUBLASLT_EPILOGUE_BIAS && op->bias == nullptr) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  AlgoRecord r{};
  r.magic = kMagic;
  r.transa = op->transa;
  r.transb = op->transb;
  r.epilogue = op->epilogue;
  r.compute = uint32_t(op->compute);
  r.types = types_of(a, b, c, d);
  for (int i = 0; i < 4; ++i) r.align[i] = pref->min_alignment[i];
  r.align[4] = op->epilogue == CUBLASLT_EPILOGUE_BIAS ? alignment_of(op->bias) : 1;
  r.m = uint32_t(s.m);
  r.n = uint32_t(s.n);
  r.k = uint32_t(s.k);
  // A split-K algorithm for deep products where the workspace allows one.
  r.workspace = s.k >= 4096 ? std::min<uint64_t>(pref->max_workspace, uint64_t(1) << 20) : 0;
  cublasLtMatmulHeuristicResult_t& out = results[0];
  std::memset(&out, 0, sizeof out);
  std::memcpy(out.algo.data, &r, sizeof r);
  out.workspaceSize = r.workspace;
  out.state = CUBLAS_STATUS_SUCCESS;
  out.wavesCount = 1.f;
  *returned = 1;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t handle, cublasLtMatmulDesc_t op,
                              const void* alpha_p, const void* A, cublasLtMatrixLayout_t a,
                              const void* B, cublasLtMatrixLayout_t b, const void* beta_p,
                              const void* C, cublasLtMatrixLayout_t c, void* D,
                              cublasLtMatrixLayout_t d, const cublasLtMatmulAlgo_t* algo,
                              void* workspace, size_t workspace_bytes, void* stream) {
  if (handle == nullptr || alpha_p == nullptr || beta_p == nullptr || algo == nullptr) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  // A handle or stream of another device than the current one: the GEMM cannot run.
  if (handle->device != ::s2s::simt::current_device_index() ||
      !::s2s::simt::on_current_device(static_cast<cudaStream_t>(stream))) {
    return CUBLAS_STATUS_EXECUTION_FAILED;
  }
  Shape s{};
  cublasStatus_t st = shape_of(op, a, b, c, d, &s);
  if (st == CUBLAS_STATUS_SUCCESS) st = supported(op, a, b, c, d);
  if (st != CUBLAS_STATUS_SUCCESS) return st;
  AlgoRecord r;
  std::memcpy(&r, algo->data, sizeof r);
  // The algorithm serves the configuration it was chosen for, nothing else.
  if (r.magic != kMagic || r.transa != op->transa || r.transb != op->transb ||
      r.epilogue != op->epilogue || r.compute != uint32_t(op->compute) ||
      r.types != types_of(a, b, c, d) || r.m != s.m || r.n != s.n || r.k != s.k) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  if (workspace_bytes < r.workspace || (r.workspace > 0 && workspace == nullptr)) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  const bool bias = op->epilogue == CUBLASLT_EPILOGUE_BIAS;
  if (alignment_of(A) < r.align[0] || alignment_of(B) < r.align[1] ||
      alignment_of(C) < r.align[2] || alignment_of(D) < r.align[3] ||
      (bias && (op->bias == nullptr || alignment_of(op->bias) < r.align[4]))) {
    return CUBLAS_STATUS_NOT_SUPPORTED;  // the chosen kernel assumes more alignment
  }
  // In place (C == D) only with the same layout.
  if (C == D && c->ld != d->ld) return CUBLAS_STATUS_INVALID_VALUE;
  if (A == nullptr || B == nullptr || D == nullptr) return CUBLAS_STATUS_INVALID_VALUE;

  // alpha and beta are host values read at the call (CUBLASLT_POINTER_MODE_HOST): a captured
  // matmul keeps the values it was recorded with, as a graph node does.
  float alpha, beta;
  std::memcpy(&alpha, alpha_p, sizeof alpha);
  std::memcpy(&beta, beta_p, sizeof beta);
  if (beta != 0.f && C != D && C == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  // The product, with everything it reads copied in (descriptors may be gone at a replay).
  const LtMatrixLayout la = *a, lb = *b, lc = *c, ld = *d;
  const cublasComputeType_t compute = op->compute;
  const void* bias_v = bias ? op->bias : nullptr;
  const bool ta = op->transa != CUBLAS_OP_N, tb = op->transb != CUBLAS_OP_N;
  auto product = [=] {
    // A 16-bit D: the fp32 result in scratch (C widened into it where beta reads it), rounded
    // into D at the end.
    const bool half_d = ld.type != CUDA_R_32F;
    std::vector<float> wide;
    if (half_d) wide.assign(size_t(s.n) * size_t(ld.ld), 0.f);
    float* out = half_d ? wide.data() : static_cast<float*>(D);
    if (beta != 0.f && (C != D || half_d)) {
      for (uint64_t j = 0; j < s.n; ++j) {
        for (uint64_t i = 0; i < s.m; ++i) {
          const size_t at = size_t(j * lc.ld + i);
          out[j * ld.ld + i] =
              !half_d ? static_cast<const float*>(C)[at]
              : lc.type == CUDA_R_16BF ? s2s::bf16_to_f32(static_cast<const uint16_t*>(C)[at])
                                       : s2s::f16_to_f32(static_cast<const uint16_t*>(C)[at]);
        }
      }
    }
    // Row-major: D^T (n x m, row stride ldd) = op(B)^T (n x k) @ op(A)^T (k x m). B stored
    // column-major is B^T row-major: with transb N that is op(B)^T as stored (no transpose).
    const int64_t M = int64_t(s.n), N = int64_t(s.m), K = int64_t(s.k);
    using s2s::DType;
    if (la.type == CUDA_R_32F) {
      if (compute == CUBLAS_COMPUTE_32F_FAST_TF32) {
        const std::vector<float> a32 = tf32_copy(A, &la), b32 = tf32_copy(B, &lb);
        s2s::gemm_f32(tb, ta, M, N, K, alpha, b32.data(), lb.ld, a32.data(), la.ld, beta, out,
                      ld.ld);
      } else {
        s2s::gemm_f32(tb, ta, M, N, K, alpha, static_cast<const float*>(B), lb.ld,
                      static_cast<const float*>(A), la.ld, beta, out, ld.ld);
      }
    } else if (la.type == CUDA_R_16BF) {
      s2s::gemm_bf16(tb, ta, M, N, K, alpha, static_cast<const uint16_t*>(B), lb.ld,
                     static_cast<const uint16_t*>(A), la.ld, beta, out, ld.ld);
    } else {
      s2s::gemm_f16_rounding(tb, ta, M, N, K, alpha, B, DType::F16, lb.ld, A, DType::F16, la.ld,
                             beta, out, ld.ld);
    }
    if (bias_v != nullptr) {
      const float* v = static_cast<const float*>(bias_v);
      for (uint64_t j = 0; j < s.n; ++j) {
        for (uint64_t i = 0; i < s.m; ++i) out[j * ld.ld + i] += v[i];
      }
    }
    if (half_d) {
      uint16_t* d16 = static_cast<uint16_t*>(D);
      for (uint64_t j = 0; j < s.n; ++j) {
        for (uint64_t i = 0; i < s.m; ++i) {
          const float v = out[j * ld.ld + i];
          d16[j * ld.ld + i] = ld.type == CUDA_R_16BF ? s2s::f32_to_bf16(v) : s2s::f32_to_f16(v);
        }
      }
    }
  };
  ::s2s::simt::run_or_record(static_cast<cudaStream_t>(stream), product);
  ++::s2s::simt::queued_work().matmuls;
  auto aligned_rows = [](const LtMatrixLayout& l) {
    return l.ld * (l.type == CUDA_R_32F ? 4 : 2) % 16 == 0;
  };
  if (!aligned_rows(la) || !aligned_rows(lb) || !aligned_rows(ld) ||
      (beta != 0.f && C != D && !aligned_rows(lc))) {
    ++::s2s::simt::queued_work().unaligned_matmuls;
  }
  // Row-major D (rows x cols) += A-side (rows x k) B-side (k x cols), as the counts name it.
  const char* type = la.type == CUDA_R_32F ? "f32" : la.type == CUDA_R_16BF ? "bf16" : "f16";
  ++::s2s::simt::queued_work().matmuls_by_shape[std::string(type) + " " + std::to_string(s.n) +
                                                "x" + std::to_string(s.m) + "x" +
                                                std::to_string(s.k) + (beta != 0.f ? " +=" : "")];
  ::s2s::simt::after_queued_work();
  return CUBLAS_STATUS_SUCCESS;
}

// gemm.cu's cuBLASLt in every simulated build: registered before main (or as the sim addon
// loads), so no library is looked for.
const bool registered = [] {
  Api a;
  a.cublasLtCreate = cublasLtCreate;
  a.cublasLtDestroy = cublasLtDestroy;
  a.cublasLtGetStatusName = cublasLtGetStatusName;
  a.cublasLtGetStatusString = cublasLtGetStatusString;
  a.cublasLtGetVersion = [] { return size_t(0); };
  a.cublasLtMatmulDescCreate = cublasLtMatmulDescCreate;
  a.cublasLtMatmulDescDestroy = cublasLtMatmulDescDestroy;
  a.cublasLtMatmulDescSetAttribute = cublasLtMatmulDescSetAttribute;
  a.cublasLtMatrixLayoutCreate = cublasLtMatrixLayoutCreate;
  a.cublasLtMatrixLayoutDestroy = cublasLtMatrixLayoutDestroy;
  a.cublasLtMatmulPreferenceCreate = cublasLtMatmulPreferenceCreate;
  a.cublasLtMatmulPreferenceDestroy = cublasLtMatmulPreferenceDestroy;
  a.cublasLtMatmulPreferenceSetAttribute = cublasLtMatmulPreferenceSetAttribute;
  a.cublasLtMatmulAlgoGetHeuristic = cublasLtMatmulAlgoGetHeuristic;
  a.cublasLtMatmul = cublasLtMatmul;
  a.library = "built in (the SIMT simulator's stand-in)";
  register_builtin(a);
  return true;
}();

}  // namespace
