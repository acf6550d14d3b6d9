// cuda::gemm (gemm.h) on cuBLASLt. Row-major C = op(A) op(B) is column-major C^T = op(B)^T
// op(A)^T, so cuBLASLt gets B as its first operand and A as its second, m = N, n = M, and each
// stored matrix's column-major shape is its row-major shape swapped. The only caller of
// cuBLASLt, through the table cublaslt_api.h loads at run time (the library is not linked).
// A bias rides in the BIAS epilogue (cuBLASLt's per-row bias of column-major D is our per-column
// one); the bias pointer is part of the plan's descriptor, set again before every call.
// gemm_rounded's D is 16-bit (the operands' type), the fp32 result and f32 bias rounded as
// they are stored.
// Deterministic: a context's plan fixes the algorithm per shape, and every cuBLASLt split-K
// reduction scheme (cublasLtReductionScheme_t) adds the partial products in a fixed order.
// Napkin (H100 SXM): bf16 dense ~990 TFLOP/s peak, ~600-750 achieved on large GPT-2 shapes;
// fp32 without TF32 ~60 TFLOP/s, which is why models train with bf16 compute copies.
#include <cuda_runtime.h>

#include <cstring>
#include <unordered_map>

#include "backends/cuda/check.cuh"
#include "backends/cuda/cublaslt_api.h"
#include "backends/cuda/gemm.h"

namespace s2s {
namespace cuda {

namespace {

using namespace lt;  // the library's own names for its types and constants

constexpr const char* kOp = "cuda.gemm";

void check_lt(const Api& L, cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) {
    fail(code::kCuda, kOp, what, " failed: ", L.cublasLtGetStatusName(s), " (",
         L.cublasLtGetStatusString(s), ")");
  }
}

// All fields int64_t: no padding, so memcmp and the byte hash see exactly the fields.
// bias: the plan adds one in the epilogue (align_bias: the alignment the heuristic saw).
// out: C's dtype (f32, or the operands' 16-bit one: gemm_rounded).
struct Key {
  int64_t ta, tb, tf32, dtype, out;
  int64_t M, N, K, lda, ldb, ldc;
  int64_t align_a, align_b, align_c;
  int64_t bias, align_bias;
  bool operator==(const Key& o) const { return std::memcmp(this, &o, sizeof(Key)) == 0; }
};
struct KeyHash {
  size_t operator()(const Key& k) const {
    const unsigned char* p = reinterpret_cast<const unsigned char*>(&k);
    size_t h = 1469598103934665603ull;
    for (size_t i = 0; i < sizeof(Key); ++i) h = (h ^ p[i]) * 1099511628211ull;
    return h;
  }
};

struct Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool fused_bias = false;  // the epilogue adds the bias (else add_bias_kernel does)
};

void destroy_plan(const Api& L, Plan& p) {
  L.cublasLtMatrixLayoutDestroy(p.a);
  L.cublasLtMatrixLayoutDestroy(p.b);
  L.cublasLtMatrixLayoutDestroy(p.c);
  L.cublasLtMatmulDescDestroy(p.op);
  p = Plan{};
}

// Largest power of two (<= 256) dividing the address: the alignment cuBLASLt may assume.
uint32_t alignment_of(const void* p) {
  const uintptr_t u = reinterpret_cast<uintptr_t>(p);
  uint32_t a = 256;
  while (a > 1 && (u % a) != 0) a >>= 1;
  return a;
}

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::BF16: return CUDA_R_16BF;
    case DType::F16: return CUDA_R_16F;
    default: return CUDA_R_32F;
  }
}

// C = beta * C (K == 0: no products to add).
__global__ void scale_matrix_kernel(float* C, int64_t M, int64_t N, int64_t ldc, float beta) {
  const int64_t n = M * N;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    float* c = C + (i / N) * ldc + i % N;
    *c = beta == 0.f ? 0.f : *c * beta;
  }
}

// C (16-bit, row stride ldc) = src (M,N) f32 rounded to nearest even: gemm_rounded's output
// where cuBLASLt's epilogue cannot write it.
__global__ void round_matrix_kernel(const float* src, int64_t M, int64_t N, uint16_t* C,
                                    int64_t ldc, bool bf16) {
  const int64_t n = M * N;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    C[(i / N) * ldc + i % N] = bf16 ? f32_to_bf16_bits(src[i]) : f32_to_f16_bits(src[i]);
  }
}

// D += C, both with row stride ld: gemm_onto's C where cuBLASLt does not take it.
__global__ void add_matrix_kernel(float* D, const float* C, int64_t M, int64_t N, int64_t ld) {
  const int64_t n = M * N;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t at = (i / N) * ld + i % N;
    D[at] += C[at];
  }
}

// C[i][j] += bias[j]: the bias where the epilogue does not add it.
__global__ void add_bias_kernel(float* C, int64_t M, int64_t N, int64_t ldc, const float* bias) {
  const int64_t n = M * N;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    C[(i / N) * ldc + i % N] += bias[i % N];
  }
}

}  // namespace

struct GemmState {
  const Api* lt = nullptr;  // the process's cuBLASLt (lt::api())
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  std::unordered_map<Key, Plan, KeyHash> plans;
  int64_t rounded_through_scratch = 0;  // gemm_rounded_through_scratch
  int64_t onto_through_add = 0;         // gemm_onto_through_add
};

void destroy_gemm_state(GemmState* s) {
  if (s == nullptr) return;
  for (auto& kv : s->plans) destroy_plan(*s->lt, kv.second);
  if (s->workspace != nullptr) cudaFree(s->workspace);
  if (s->handle != nullptr) s->lt->cublasLtDestroy(s->handle);
  delete s;
}

static GemmState& state_of(Context& ctx) {
  GemmState*& s = ctx.gemm_state();
  if (s == nullptr) {
    ctx.activate();  // the handle and its workspace belong to this context's device
    const Api& L = lt::api();  // throws S2S_DEVICE when no cuBLASLt can be loaded
    auto fresh = new GemmState();
    fresh->lt = &L;
    const cublasStatus_t created = L.cublasLtCreate(&fresh->handle);
    if (created != CUBLAS_STATUS_SUCCESS) {
      delete fresh;
      fail(code::kCuda, kOp, "cublasLtCreate failed: ", L.cublasLtGetStatusName(created), " (",
           L.library, "; is the driver recent enough for it?)");
    }
    fresh->workspace_bytes = ctx.options().gemm_workspace_bytes;
    if (fresh->workspace_bytes > 0 &&
        cudaMalloc(&fresh->workspace, fresh->workspace_bytes) != cudaSuccess) {
      cudaGetLastError();
      fresh->workspace = nullptr;
      fresh->workspace_bytes = 0;  // cuBLASLt still runs, with fewer algorithms
    }
    s = fresh;
  }
  return *s;
}

// The descriptors and the heuristic's algorithm for `k`; with k.bias, the bias epilogue on
// `bias` (the heuristic reads its alignment), or none (fused_bias false) where cuBLASLt has no
// algorithm with it.
static Plan make_plan(GemmState& st, const Key& k, const float* bias) {
  const Api& L = *st.lt;
  Plan p;
  const cublasComputeType_t compute = (k.dtype == int(DType::F32) && k.tf32)
                                          ? CUBLAS_COMPUTE_32F_FAST_TF32
                                          : CUBLAS_COMPUTE_32F;
  check_lt(L, L.cublasLtMatmulDescCreate(&p.op, compute, CUDA_R_32F), "cublasLtMatmulDescCreate");
  auto set_desc = [&](cublasLtMatmulDescAttributes_t attr, const auto& value, const char* what) {
    check_lt(L, L.cublasLtMatmulDescSetAttribute(p.op, attr, &value, sizeof(value)), what);
  };
  // cuBLASLt operand 1 is our B, operand 2 our A (see the file header).
  const cublasOperation_t op1 = k.tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op2 = k.ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  set_desc(CUBLASLT_MATMUL_DESC_TRANSA, op1, "set TRANSA");
  set_desc(CUBLASLT_MATMUL_DESC_TRANSB, op2, "set TRANSB");
  if (k.bias) {
    // cuBLASLt's rows of D are our columns (N), so its per-row bias is our per-column one.
    const uint32_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    const int32_t bias_type = CUDA_R_32F;
    set_desc(CUBLASLT_MATMUL_DESC_EPILOGUE, epilogue, "set EPILOGUE");
    set_desc(CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias, "set BIAS_POINTER");
    set_desc(CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, bias_type, "set BIAS_DATA_TYPE");
  }
  const cudaDataType_t t = cuda_type(static_cast<DType>(k.dtype));
  // Column-major stored shapes: operand 1 is (N,K) untransposed or (K,N) transposed, ld = ldb;
  // operand 2 is (K,M) or (M,K), ld = lda; the output is (N,M), ld = ldc.
  check_lt(L, L.cublasLtMatrixLayoutCreate(&p.a, t, k.tb ? k.K : k.N, k.tb ? k.N : k.K, k.ldb),
           "layout B");
  check_lt(L, L.cublasLtMatrixLayoutCreate(&p.b, t, k.ta ? k.M : k.K, k.ta ? k.K : k.M, k.lda),
           "layout A");
  check_lt(L, L.cublasLtMatrixLayoutCreate(&p.c, cuda_type(static_cast<DType>(k.out)), k.N, k.M,
                                           k.ldc),
           "layout C");
  cublasLtMatmulPreference_t pref = nullptr;
  check_lt(L, L.cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
  auto set_pref = [&](cublasLtMatmulPreferenceAttributes_t attr, const auto& value) {
    L.cublasLtMatmulPreferenceSetAttribute(pref, attr, &value, sizeof(value));
  };
  set_pref(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, uint64_t(st.workspace_bytes));
  // Operand 1 is our B, operand 2 our A.
  set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, uint32_t(k.align_b));
  set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, uint32_t(k.align_a));
  set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, uint32_t(k.align_c));
  set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, uint32_t(k.align_c));
  cublasLtMatmulHeuristicResult_t result{};
  int returned = 0;
  const cublasStatus_t hs = L.cublasLtMatmulAlgoGetHeuristic(st.handle, p.op, p.a, p.b, p.c, p.c,
                                                             pref, 1, &result, &returned);
  L.cublasLtMatmulPreferenceDestroy(pref);
  if ((hs != CUBLAS_STATUS_SUCCESS || returned == 0) && k.bias) {
    destroy_plan(L, p);
    Key plain = k;
    plain.bias = 0;
    plain.align_bias = 0;
    return make_plan(st, plain, nullptr);  // fused_bias false: gemm() adds the bias itself
  }
  if (hs != CUBLAS_STATUS_SUCCESS || returned == 0) {
    destroy_plan(L, p);
    fail(code::kCuda, kOp, "expected cuBLASLt to have an algorithm for ",
         dtype_name(static_cast<DType>(k.dtype)), " M=", k.M, " N=", k.N, " K=", k.K, " (lda ",
         k.lda, ", ldb ", k.ldb, ", ldc ", k.ldc, ", trans ", k.ta, k.tb, "), got none: ",
         L.cublasLtGetStatusName(hs));
  }
  p.algo = result.algo;
  p.fused_bias = k.bias != 0;
  return p;
}

namespace {

void check_dims(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, int64_t lda,
                int64_t ldb, int64_t ldc) {
  S2S_REQUIRE(M >= 0 && N >= 0 && K >= 0, code::kShape, kOp, "expected M, N, K >= 0, got ", M,
              ", ", N, ", ", K);
  S2S_REQUIRE(lda >= (trans_a ? M : K) && ldb >= (trans_b ? K : N) && ldc >= N, code::kLayout,
              kOp, "expected row strides lda >= ", trans_a ? M : K, ", ldb >= ", trans_b ? K : N,
              ", ldc >= ", N, ", got ", lda, ", ", ldb, ", ", ldc);
}

// The context's plan for this product with C in `out` (f32, or ab's 16-bit dtype), C's
// alignment the least of C's and (where it is another matrix) D's.
const Plan& plan_for(Context& ctx, GemmState& st, bool trans_a, bool trans_b, int64_t M,
                     int64_t N, int64_t K, const void* A, int64_t lda, const void* B, int64_t ldb,
                     DType ab, const void* C, DType out, int64_t ldc, const float* bias,
                     const void* D = nullptr) {
  Key key{};  // zeroed, padding included, so memcmp/hash see only the fields
  key.ta = trans_a;
  key.tb = trans_b;
  key.tf32 = ab == DType::F32 && ctx.options().allow_tf32;
  key.dtype = int(ab);
  key.out = int(out);
  key.M = M; key.N = N; key.K = K;
  key.lda = lda; key.ldb = ldb; key.ldc = ldc;
  key.align_a = alignment_of(A);
  key.align_b = alignment_of(B);
  key.align_c = alignment_of(C);
  if (D != nullptr && alignment_of(D) < key.align_c) key.align_c = alignment_of(D);
  key.bias = bias != nullptr && ctx.options().gemm_bias_epilogue;
  key.align_bias = key.bias ? alignment_of(bias) : 0;
  auto it = st.plans.find(key);
  if (it == st.plans.end()) it = st.plans.emplace(key, make_plan(st, key, bias)).first;
  return it->second;
}

// Runs plan p: D = alpha op(A) op(B) + beta C (+ bias where p fuses it); D null: D is C.
// Returns cublasLtMatmul's status (the caller checks it).
cublasStatus_t try_plan(Context& ctx, GemmState& st, const Plan& p, float alpha, const void* A,
                        const void* B, float beta, void* C, const float* bias, void* D) {
  if (D == nullptr) D = C;
  const Api& L = *st.lt;
  if (p.fused_bias) {
    check_lt(L, L.cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                                 sizeof(bias)),
             "set BIAS_POINTER");
  }
  return L.cublasLtMatmul(st.handle, p.op, &alpha, B, p.a, A, p.b, &beta, C, p.c, D, p.c,
                          &p.algo, st.workspace, st.workspace_bytes, stream_of(ctx));
}
void run_plan(Context& ctx, GemmState& st, const Plan& p, float alpha, const void* A,
              const void* B, float beta, void* C, const float* bias) {
  check_lt(*st.lt, try_plan(ctx, st, p, alpha, A, B, beta, C, bias, nullptr), "cublasLtMatmul");
}

}  // namespace

void gemm(Context& ctx, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
          const void* A, int64_t lda, const void* B, int64_t ldb, DType ab, float beta, float* C,
          int64_t ldc, const float* bias) {
  check_dims(trans_a, trans_b, M, N, K, lda, ldb, ldc);
  if (M == 0 || N == 0) return;
  if (K == 0) {
    const Launch l = elementwise_launch(M * N);
    scale_matrix_kernel<<<grid(l.blocks), l.threads, 0, stream_of(ctx)>>>(C, M, N, ldc, beta);
    check_launch(kOp);
    if (bias != nullptr) {
      add_bias_kernel<<<grid(l.blocks), l.threads, 0, stream_of(ctx)>>>(C, M, N, ldc, bias);
      check_launch(kOp);
    }
    return;
  }
  GemmState& st = state_of(ctx);
  const Plan& p = plan_for(ctx, st, trans_a, trans_b, M, N, K, A, lda, B, ldb, ab, C,
                           DType::F32, ldc, bias);
  run_plan(ctx, st, p, alpha, A, B, beta, C, bias);
  if (bias != nullptr && !p.fused_bias) {
    const Launch l = elementwise_launch(M * N);
    add_bias_kernel<<<grid(l.blocks), l.threads, 0, stream_of(ctx)>>>(C, M, N, ldc, bias);
    check_launch(kOp);
  }
}

void gemm_onto(Context& ctx, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
               const void* A, int64_t lda, const void* B, int64_t ldb, DType ab, const float* C,
               float* D, int64_t ldd, const float* bias) {
  check_dims(trans_a, trans_b, M, N, K, lda, ldb, ldd);
  if (M == 0 || N == 0) return;
  if (C == D) {  // in place: an accumulating GEMM
    gemm(ctx, trans_a, trans_b, M, N, K, 1.f, A, lda, B, ldb, ab, 1.f, D, ldd, bias);
    return;
  }
  S2S_REQUIRE(K > 0, code::kShape, kOp, "expected K > 0 for a product onto another matrix, got 0");
  GemmState& st = state_of(ctx);
  const Launch l = elementwise_launch(M * N);
  if (ctx.options().gemm_c_input) {
    const Plan& p = plan_for(ctx, st, trans_a, trans_b, M, N, K, A, lda, B, ldb, ab, C,
                             DType::F32, ldd, bias, D);
    const cublasStatus_t s = try_plan(ctx, st, p, 1.f, A, B, 1.f, const_cast<float*>(C), bias, D);
    if (s == CUBLAS_STATUS_SUCCESS) {
      if (bias != nullptr && !p.fused_bias) {
        add_bias_kernel<<<grid(l.blocks), l.threads, 0, stream_of(ctx)>>>(D, M, N, ldd, bias);
        check_launch(kOp);
      }
      return;
    }
    // Refused (NOT_SUPPORTED, INVALID_VALUE: C as an input beside a separate D with this
    // algorithm): the way below. Anything else is a failure.
    if (s != CUBLAS_STATUS_NOT_SUPPORTED && s != CUBLAS_STATUS_INVALID_VALUE) {
      check_lt(*st.lt, s, "cublasLtMatmul");
    }
  }
  ++st.onto_through_add;
  gemm(ctx, trans_a, trans_b, M, N, K, 1.f, A, lda, B, ldb, ab, 0.f, D, ldd, bias);
  add_matrix_kernel<<<grid(l.blocks), l.threads, 0, stream_of(ctx)>>>(D, C, M, N, ldd);
  check_launch(kOp);
}

int64_t gemm_onto_through_add(Context& ctx) {
  return ctx.gemm_state() != nullptr ? ctx.gemm_state()->onto_through_add : 0;
}

void gemm_rounded(Context& ctx, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                  const void* A, int64_t lda, const void* B, int64_t ldb, DType ab, void* C,
                  int64_t ldc, const float* bias) {
  S2S_REQUIRE(ab == DType::BF16 || ab == DType::F16, code::kDType, kOp,
              "expected bfloat16 or float16 operands for a 16-bit output, got ", dtype_name(ab));
  check_dims(trans_a, trans_b, M, N, K, lda, ldb, ldc);
  if (M == 0 || N == 0) return;
  GemmState* st = K > 0 ? &state_of(ctx) : nullptr;
  const Plan* p = nullptr;
  if (st != nullptr && (bias == nullptr || ctx.options().gemm_bias_epilogue)) {
    p = &plan_for(ctx, *st, trans_a, trans_b, M, N, K, A, lda, B, ldb, ab, C, ab, ldc, bias);
  }
  if (p != nullptr && (bias == nullptr || p->fused_bias)) {
    run_plan(ctx, *st, *p, 1.f, A, B, 0.f, C, bias);
    return;
  }
  // No epilogue for it (or no products): the f32 values in scratch, then rounded, the same bits.
  if (st != nullptr) ++st->rounded_through_scratch;
  ArenaScope scope(ctx.arena());
  float* scratch = ctx.arena().allocate_array<float>(size_t(M * N));
  gemm(ctx, trans_a, trans_b, M, N, K, 1.f, A, lda, B, ldb, ab, 0.f, scratch, N, bias);
  const Launch l = elementwise_launch(M * N);
  round_matrix_kernel<<<grid(l.blocks), l.threads, 0, stream_of(ctx)>>>(
      scratch, M, N, static_cast<uint16_t*>(C), ldc, ab == DType::BF16);
  check_launch(kOp);
}

int64_t gemm_rounded_through_scratch(Context& ctx) {
  return ctx.gemm_state() != nullptr ? ctx.gemm_state()->rounded_through_scratch : 0;
}

}  // namespace cuda
}  // namespace s2s
