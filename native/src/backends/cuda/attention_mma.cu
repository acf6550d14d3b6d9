// Tensor-core attention on the GPU: the bodies of attention_mma.cuh (their header says the
// algorithm, the fragment layouts and the work split) run with the device execution policy
// below, which issues mma.sync.aligned.m16n8k16 with bf16 or f16 operands and fp32
// accumulators, loading its fragments with ldmatrix (sm_80 and newer; the build's architectures
// are 8.x and 9.x). attention.cu decides when these kernels run and computes Di before the
// backward passes.
#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>

#include "backends/cuda/attention_mma.cuh"
#include "backends/cuda/check.cuh"

namespace s2s {
namespace cuda {

namespace {

constexpr const char* kOp = "attention";

struct DeviceExec {
  __device__ __forceinline__ int tid() const { return int(threadIdx.x); }
  __device__ __forceinline__ int block_x() const { return int(blockIdx.x); }
  __device__ __forceinline__ int block_y() const { return int(blockIdx.y); }
  __device__ __forceinline__ int block_z() const { return int(blockIdx.z); }
  __device__ __forceinline__ void sync() const { __syncthreads(); }
  __device__ __forceinline__ float shfl_xor(float v, int mask) const {
    return __shfl_xor_sync(0xffffffffu, v, mask);
  }
  // d += a b (d is both C and D of the instruction).
  __device__ __forceinline__ void mma(float d[4], const uint32_t a[4], const uint32_t b[2],
                                      bool bf16) const {
#if defined(S2S_SIMT_SIM)  // the CPU simulator (native/tests/simt_cuda)
    ::s2s::simt::warp_mma(d, a, b, bf16);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    if (bf16) {
      asm volatile(
          "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
          "{%8,%9}, {%0,%1,%2,%3};\n"
          : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
          : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    } else {
      asm volatile(
          "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
          "{%8,%9}, {%0,%1,%2,%3};\n"
          : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
          : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    }
#else
    __trap();  // not built for this architecture (the host picks the fp32 kernels there)
#endif
  }
  // r[0..count) = the count 8x8 matrices whose rows lanes 0..8count-1 name (count 2 or 4);
  // ldmatrix_trans: two matrices, each read column-major (lane i: column i/4, rows 2(i%4), +1).
  // volatile, as CUTLASS issues it: not reordered against the barriers around the staging.
  __device__ __forceinline__ void ldmatrix(uint32_t* r, int count, const uint16_t* row) const {
    load_matrices<false>(r, count, row);
  }
  __device__ __forceinline__ void ldmatrix_trans(uint32_t r[2], const uint16_t* row) const {
    load_matrices<true>(r, 2, row);
  }
  // cp.async.cg: 16 bytes from global to shared memory, through L2 only, no registers;
  // commit_group closes the group of the copies issued since the last one; wait_group n waits
  // until at most n of this thread's groups are still in flight (n is 0 or 1 here).
  __device__ __forceinline__ void cp_async16(void* smem_dst, const void* src) const {
#if defined(S2S_SIMT_SIM)
    ::s2s::simt::thread_cp_async16(smem_dst, src);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(smem_dst));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(addr), "l"(src) : "memory");
#else
    __trap();
#endif
  }
  __device__ __forceinline__ void cp_async_commit() const {
#if defined(S2S_SIMT_SIM)
    ::s2s::simt::thread_cp_async_commit();
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.commit_group;\n" ::: "memory");
#else
    __trap();
#endif
  }
  __device__ __forceinline__ void cp_async_wait(int pending) const {
#if defined(S2S_SIMT_SIM)
    ::s2s::simt::thread_cp_async_wait(pending);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    if (pending == 0) {
      asm volatile("cp.async.wait_group 0;\n" ::: "memory");
    } else {
      asm volatile("cp.async.wait_group 1;\n" ::: "memory");
    }
#else
    __trap();
#endif
  }
  __device__ __forceinline__ void report_bad_mask(const AttentionGeometry& g, int64_t index,
                                                  int value) const {
    report_bad_input(g.err, KernelReport::AttentionKeyMask, index, value, 2);
  }

 private:
  template <bool Trans>
  __device__ __forceinline__ void load_matrices(uint32_t* r, int count,
                                                const uint16_t* row) const {
#if defined(S2S_SIMT_SIM)
    ::s2s::simt::warp_ldmatrix(r, count, row, Trans);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(row));
    if (Trans) {  // x2 only: all that the B fragments need
      asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
                   : "=r"(r[0]), "=r"(r[1])
                   : "r"(addr));
    } else if (count == 4) {
      asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                   : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                   : "r"(addr));
    } else {
      asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
                   : "=r"(r[0]), "=r"(r[1])
                   : "r"(addr));
    }
#else
    __trap();
#endif
  }
};

template <class E, int D, bool Drop>
__global__ void __launch_bounds__(kMmaThreads, mma_forward_min_blocks(D, Drop))
    mma_forward_kernel(AttentionGeometry g, const void* q, const void* k, const void* v,
                       void* out, float* lse) {
  extern __shared__ __align__(16) uint16_t mma_smem[];
  mma_detail::read_dropout_seed<Drop>(g);
  mma_attention_forward<E, D, Drop>(DeviceExec{}, g, q, k, v, out, lse, mma_smem);
}

template <class E, int D, bool Drop>
__global__ void __launch_bounds__(kMmaThreads)
    mma_backward_kv_kernel(AttentionGeometry g, const void* q, const void* k, const void* v,
                           const void* dout, const float* lse, const float* di, float* dk,
                           float* dv) {
  extern __shared__ __align__(16) uint16_t mma_smem[];
  mma_detail::read_dropout_seed<Drop>(g);
  mma_attention_backward_kv<E, D, Drop>(DeviceExec{}, g, q, k, v, dout, lse, di, dk, dv, mma_smem);
}

template <class E, int D, bool Drop>
__global__ void __launch_bounds__(kMmaThreads)
    mma_backward_q_kernel(AttentionGeometry g, const void* q, const void* k, const void* v,
                          const void* dout, const float* lse, const float* di, float* dq,
                          float* dbias) {
  extern __shared__ __align__(16) uint16_t mma_smem[];
  mma_detail::read_dropout_seed<Drop>(g);
  mma_attention_backward_q<E, D, Drop>(DeviceExec{}, g, q, k, v, dout, lse, di, dq, dbias,
                                       mma_smem);
}

// kept[b * tiles + t] = mma_key_tile_kept(mask, Tk, b, t), a thread per entry.
__global__ void kept_key_tiles_kernel(const uint8_t* mask, int64_t B, int64_t Tk,
                                      uint8_t* kept) {
  const int64_t tiles = mma_key_tiles(Tk);
  const int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e < B * tiles) kept[e] = mma_key_tile_kept(mask, Tk, e / tiles, e % tiles) ? 1 : 0;
}

// Whether full tiles take the score loops' untested copy: yes unless S2S_ATTENTION_FULL_TILES
// is 0 (bench_cuda_train --profile with and without measures what the copy saves).
bool full_tiles_enabled() {
  static const bool enabled = [] {
    const char* env = std::getenv("S2S_ATTENTION_FULL_TILES");
    return env == nullptr || std::strcmp(env, "0") != 0;
  }();
  return enabled;
}

// g with kept_key_tiles filled where there is a mask (from the arena: the caller holds a scope),
// so the tiles the padding leaves whole take the untested score loops too.
AttentionGeometry with_kept_key_tiles(Context& ctx, const AttentionGeometry& g) {
  AttentionGeometry out = g;
  out.test_every_tile = !full_tiles_enabled();
  out.kept_key_tiles = nullptr;
  if (g.mask == nullptr) return out;
  const int64_t n = g.B * mma_key_tiles(g.Tk);
  uint8_t* kept = ctx.arena().allocate_array<uint8_t>(size_t(n));
  kept_key_tiles_kernel<<<grid(ceil_div(n, 128)), 128, 0, stream_of(ctx)>>>(g.mask, g.B, g.Tk,
                                                                            kept);
  check_launch(kOp);
  out.kept_key_tiles = kept;
  return out;
}

// The limit is the current device's: set after making the context's device current.
template <typename Kernel>
void allow_smem(const Context& ctx, Kernel kernel, int64_t bytes) {
  if (bytes > 48 * 1024) {
    ctx.activate();
    check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)),
               kOp, "cudaFuncSetAttribute (shared memory)");
  }
}

template <class E, int D, bool Drop>
void forward(Context& ctx, const AttentionGeometry& g, const void* q, const void* k,
             const void* v, void* out, float* lse) {
  const int64_t bytes = mma_forward_smem_bytes(D);
  allow_smem(ctx, mma_forward_kernel<E, D, Drop>, bytes);
  const dim3 grid_dim(grid(ceil_div(g.Tq, kMmaRows)), grid(g.Hq), grid(g.B));
  mma_forward_kernel<E, D, Drop><<<grid_dim, kMmaThreads, bytes, stream_of(ctx)>>>(g, q, k, v,
                                                                                   out, lse);
  check_launch(kOp);
}

template <class E, int D, bool Drop>
void backward(Context& ctx, const AttentionGeometry& g, const void* q, const void* k,
              const void* v, const void* dout, const float* lse, const float* di, float* dq,
              float* dk, float* dv, float* dbias) {
  if (dk != nullptr || dv != nullptr) {
    const int64_t bytes = mma_backward_kv_smem_bytes(D);
    allow_smem(ctx, mma_backward_kv_kernel<E, D, Drop>, bytes);
    const dim3 grid_dim(grid(ceil_div(g.Tk, kMmaRows)), grid(g.Hkv), grid(g.B));
    mma_backward_kv_kernel<E, D, Drop><<<grid_dim, kMmaThreads, bytes, stream_of(ctx)>>>(
        g, q, k, v, dout, lse, di, dk, dv);
    check_launch(kOp);
  }
  if (dq != nullptr || dbias != nullptr) {
    const int64_t bytes = mma_backward_q_smem_bytes(D);
    allow_smem(ctx, mma_backward_q_kernel<E, D, Drop>, bytes);
    ArenaScope scope(ctx.arena());
    AttentionGeometry gq = g;
    float* target = dbias_slices_begin(ctx, gq, dbias);  // T5's dbias: attention_dbias.cu
    const bool serial = dbias != nullptr && !gq.dbias_partials;
    const dim3 grid_dim(grid(ceil_div(g.Tq, kMmaRows)), grid(g.Hq), grid(serial ? 1 : g.B));
    mma_backward_q_kernel<E, D, Drop><<<grid_dim, kMmaThreads, bytes, stream_of(ctx)>>>(
        gq, q, k, v, dout, lse, di, dq, target);
    check_launch(kOp);
    dbias_slices_end(ctx, gq, target, dbias);
  }
}

// Calls f.template run<E, D, Drop>() for the operand type, a supported head dim and dropout.
template <class E, int D, class F>
void dispatch_dropout(bool dropout, const F& f) {
  if (dropout) {
    f.template run<E, D, true>();
  } else {
    f.template run<E, D, false>();
  }
}
template <class E, class F>
void dispatch_head_dim(int64_t D, bool dropout, const F& f) {
  switch (D) {
    case 32: dispatch_dropout<E, 32>(dropout, f); break;
    case 64: dispatch_dropout<E, 64>(dropout, f); break;
    case 96: dispatch_dropout<E, 96>(dropout, f); break;
    default: dispatch_dropout<E, 128>(dropout, f); break;
  }
}
template <class F>
void dispatch(bool bf16, const AttentionGeometry& g, const F& f) {
  if (bf16) {
    dispatch_head_dim<MmaBf16>(g.D, g.dropout, f);
  } else {
    dispatch_head_dim<MmaF16>(g.D, g.dropout, f);
  }
}

struct ForwardRun {
  Context& ctx;
  const AttentionGeometry& g;
  const void *q, *k, *v;
  void* out;
  float* lse;
  template <class E, int D, bool Drop>
  void run() const { forward<E, D, Drop>(ctx, g, q, k, v, out, lse); }
};

struct BackwardRun {
  Context& ctx;
  const AttentionGeometry& g;
  const void *q, *k, *v;
  const void* dout;
  const float *lse, *di;
  float *dq, *dk, *dv, *dbias;
  template <class E, int D, bool Drop>
  void run() const { backward<E, D, Drop>(ctx, g, q, k, v, dout, lse, di, dq, dk, dv, dbias); }
};

}  // namespace

void mma_attention_forward_launch(Context& ctx, const AttentionGeometry& g, bool bf16,
                                  const void* q, const void* k, const void* v, void* out,
                                  float* lse) {
  ArenaScope scope(ctx.arena());
  const AttentionGeometry gk = with_kept_key_tiles(ctx, g);
  dispatch(bf16, gk, ForwardRun{ctx, gk, q, k, v, out, lse});
}

void mma_attention_backward_launch(Context& ctx, const AttentionGeometry& g, bool bf16,
                                   const void* q, const void* k, const void* v,
                                   const void* dout, const float* lse, const float* di,
                                   float* dq, float* dk, float* dv, float* dbias) {
  ArenaScope scope(ctx.arena());
  const AttentionGeometry gk = with_kept_key_tiles(ctx, g);
  dispatch(bf16, gk, BackwardRun{ctx, gk, q, k, v, dout, lse, di, dq, dk, dv, dbias});
}

}  // namespace cuda
}  // namespace s2s
