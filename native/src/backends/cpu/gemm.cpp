// The CPU GEMM driver: argument checks, ISA dispatch, Goto/BLIS-style cache blocking over the
// packed panels, the fixed thread split, and the portable scalar microkernel (Isa::Scalar and
// any architecture without its own). The SIMD microkernels live in gemm_*_<isa>.cpp.
//
// Loop nest of one thread over its rectangle of C (shapes in elements):
//   for ic in M step MC          A block  (MC x KC)  packed once per (ic, pc)
//     for pc in K step KC        fixed K order: C gets beta on the first block, += after
//       for jc in N step NC      B block  (KC x NC)  packed, stays in this core's L2
//         for ir in MC step MR   A panel  (MR x KC)  stays in L1 across the jr loop
//           for jr in NC step NR B panel  (KC x NR)  streams from L2
//             microkernel: C(MR x NR) (+)= alpha * A panel * B panel
// Determinism: the tile grid and the K blocking depend only on (M, N, K) and the ISA, never on
// the thread count; every C tile is computed by exactly one thread with the same instruction
// sequence, so results are bit-identical run to run (and in fact across thread counts).
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "backends/cpu/gemm_internal.h"
#include "s2s/arena.h"
#include "s2s/cpu_features.h"
#include "s2s/dtype.h"
#include "s2s/error.h"
#include "s2s/gemm.h"
#include "s2s/thread_pool.h"

namespace s2s {
namespace gemm_detail {

// ---- portable scalar microkernel --------------------------------------------------------
// 4 x 16 tile: 64 fp32 accumulators. Written as plain loops with constant bounds so the
// compiler keeps them in vector registers on whatever baseline it targets (4 x 4 xmm on
// x86-64 SSE2). This is the correctness floor, not a fast path.
namespace {
constexpr int kScalarMR = 4, kScalarNR = 16;

// Shared write-back from a row-major tile in memory (acc[i * NR + j]).
void store_tile(const float* acc, int NR, float* C, int64_t ldc, int mr, int nr, float alpha,
                float beta, Store store) {
  for (int i = 0; i < mr; ++i) {
    float* c = C + i * ldc;
    const float* a = acc + i * NR;
    switch (store) {
      case Store::Overwrite:
        for (int j = 0; j < nr; ++j) c[j] = alpha * a[j];
        break;
      case Store::ScaleAdd:
        for (int j = 0; j < nr; ++j) c[j] = alpha * a[j] + beta * c[j];
        break;
      case Store::Accumulate:
        for (int j = 0; j < nr; ++j) c[j] = alpha * a[j] + c[j];
        break;
    }
  }
}

void kernel_scalar(int64_t kc, const void* Ap_v, const void* Bp_v, float* C, int64_t ldc, int mr,
                   int nr, float alpha, float beta, Store store) {
  const float* Ap = static_cast<const float*>(Ap_v);
  const float* Bp = static_cast<const float*>(Bp_v);
  float acc[kScalarMR * kScalarNR] = {};
  for (int64_t k = 0; k < kc; ++k) {
    const float* a = Ap + k * kScalarMR;
    const float* b = Bp + k * kScalarNR;
    for (int i = 0; i < kScalarMR; ++i)
      for (int j = 0; j < kScalarNR; ++j) acc[i * kScalarNR + j] += a[i] * b[j];
  }
  store_tile(acc, kScalarNR, C, ldc, mr, nr, alpha, beta, store);
}
}  // namespace

const KernelDesc& scalar_desc(bool src_bf16) {
  // Blocks sized like the AVX2 path; the scalar kernel is compute-bound long before caches.
  static const KernelDesc f32{"scalar 4x16 fp32",
                              kScalarMR, kScalarNR, 256, 128, 1024, 1, 1, 4,
                              pack_generic<kScalarMR, float>, pack_generic<kScalarNR, float>,
                              kernel_scalar};
  static const KernelDesc bf16{"scalar 4x16 (bf16 widened to fp32 in packing)",
                               kScalarMR, kScalarNR, 256, 128, 1024, 1, 1, 4,
                               pack_generic<kScalarMR, uint16_t>,
                               pack_generic<kScalarNR, uint16_t>, kernel_scalar};
  return src_bf16 ? bf16 : f32;
}

const KernelDesc& scalar_f16_desc() {
  static const KernelDesc f16{"scalar 4x16 fp32 (f16 widened to fp32 in packing)",
                              kScalarMR, kScalarNR, 256, 128, 1024, 1, 1, 4,
                              pack_generic<kScalarMR, F16Bits>, pack_generic<kScalarNR, F16Bits>,
                              kernel_scalar,
                              pack_generic<kScalarMR, F32RoundedToF16>,
                              pack_generic<kScalarNR, F32RoundedToF16>};
  return f16;
}

// AMX on/off switch for tests and benchmarks (the env var sets the starting value).
namespace {
std::atomic<bool>& amx_switch() {
  static std::atomic<bool> on{[] {
    const char* env = std::getenv("S2S_GEMM_AMX");
    return !(env && env[0] == '0');
  }()};
  return on;
}
}  // namespace
void set_amx_enabled(bool on) { amx_switch().store(on, std::memory_order_relaxed); }
bool amx_enabled() { return amx_switch().load(std::memory_order_relaxed); }

// ---- dispatch -----------------------------------------------------------------------------
namespace {

const KernelDesc& pick(bool bf16) {
  switch (active_isa()) {
#if defined(S2S_HAVE_X86_KERNELS)
    case Isa::Avx512Bf16:
      if (!bf16) return avx512_desc(false);
      if (const KernelDesc* amx = amx_enabled() ? amx_bf16_desc() : nullptr) return *amx;
      return avx512bf16_desc();
    case Isa::Avx512: return avx512_desc(bf16);
    case Isa::Avx2: return avx2_desc(bf16);
#endif
#if defined(S2S_HAVE_NEON_KERNELS)
    case Isa::Neon: return neon_desc(bf16);
#endif
    default: return scalar_desc(bf16);
  }
}

// fp16 operands run on the fp32 kernel of the active ISA (no CPU we target multiplies fp16 with
// fp32 accumulation faster: avx512_fp16 accumulates in fp16), so the table must match
// pick(false)'s kernel and blocking for gemm_f16_rounding to equal gemm_f32 bit for bit.
const KernelDesc& pick_f16() {
  switch (active_isa()) {
#if defined(S2S_HAVE_X86_KERNELS)
    case Isa::Avx512Bf16:
    case Isa::Avx512: return avx512_f16_desc();
    case Isa::Avx2: return avx2_f16_desc();
#endif
#if defined(S2S_HAVE_NEON_KERNELS)
    case Isa::Neon: return neon_f16_desc();
#endif
    default: return scalar_f16_desc();
  }
}

// Packing buffers: one pair per thread (pool workers are persistent, so these live as long as
// the pool), grown to the largest block ever asked for and then reused: no malloc per call.
struct PackBuffers {
  AlignedPtr<uint8_t> a, b;
  size_t a_bytes = 0, b_bytes = 0;
  void* get_a(size_t bytes) { return grow(a, a_bytes, bytes); }
  void* get_b(size_t bytes) { return grow(b, b_bytes, bytes); }
  static void* grow(AlignedPtr<uint8_t>& p, size_t& have, size_t want) {
    if (want > have) {
      p = make_aligned<uint8_t>(want);
      have = want;
    }
    return p.get();
  }
};
thread_local PackBuffers t_buffers;

struct Problem {
  const void* A;
  int64_t lda;
  bool a_kcontig;  // op(A)(i, k) = A[i * lda + k]
  const void* B;
  int64_t ldb;
  bool b_kcontig;  // op(B)(k, j) = B[j * ldb + k]
  int64_t M, N, K;
  float alpha, beta;
  float* C;
  int64_t ldc;
  bool a_f32 = false, b_f32 = false;  // bf16 / f16 tables: fp32 source rounded while packing
};

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// Even blocking: n split into ceil(n / max_block) blocks of near-equal size, rounded up to
// `unit`, so the last block is not a sliver (e.g. K = 768, KC = 384 gives 2 x 384, and
// K = 800 gives 2 x 400 rather than 384 + 384 + 32).
int64_t even_block(int64_t n, int64_t max_block, int64_t unit) {
  const int64_t blocks = ceil_div(n, max_block);
  return std::max<int64_t>(unit, round_up(ceil_div(n, blocks), unit));
}

// Small products read an operand where it lies instead of packing it when its k steps are
// already runs of consecutive values (op(A) = A^T, op(B) = B; see StridedKernelFn) and few
// tiles reuse it (`reuse`: M for B, N for A). Packing is a copy of the operand, about 0.3-0.6 ns
// per value, repaid when many tiles read the packed copy: the attention tiles (64 x 64 x
// 64..256) spent about as long packing as multiplying. But a kernel reading in place strides
// from one k step to the next (a row of B, ldb apart), which costs more the more steps a panel
// has and the larger the operand: measured on AVX-512 with 2 threads, B read in place at M = 256
// ran at 0.6-0.8x the packed speed (N 768 K 50257, the LM head's dx; N 3072 K 768), and at
// M = 8-16 with K = 50257 too. So: in place when very few tiles reuse an operand of moderate
// depth, or a few reuse a small one (at most 64K values, L2-resident).
bool read_in_place(int64_t reuse, int64_t k, int64_t other) {
  return (reuse <= 16 && k <= 4096) || (reuse <= 64 && k * other <= 65536);
}

// One thread's rectangle [m0, m1) x [n0, n1) of C, the whole K range.
void run_rect(const KernelDesc& d, const Problem& p, int64_t m0, int64_t m1, int64_t n0,
              int64_t n1) {
  const int MR = d.mr, NR = d.nr;
  // Block sizes depend on (M, N, K) only, never on the rectangle: this is what keeps the K
  // order, and so the bits, independent of the thread split. (Reading an operand in place
  // changes no arithmetic either: packing is an exact copy.)
  const int64_t kc_blk = even_block(p.K, d.kc, d.kalign);
  const int64_t mc_blk = even_block(p.M, d.mc, MR);
  const int64_t nc_blk = even_block(p.N, d.nc, NR);
  const int64_t kcs_max = round_up(kc_blk, d.kalign);
  const bool a_in_place =
      d.kernel_strided != nullptr && !p.a_kcontig && read_in_place(p.N, p.K, p.M);
  const bool b_in_place =
      d.kernel_strided != nullptr && !p.b_kcontig && read_in_place(p.M, p.K, p.N);
  uint8_t* Abuf = static_cast<uint8_t*>(
      t_buffers.get_a(size_t(round_up(std::min(mc_blk, m1 - m0), MR) * kcs_max) * d.packed_elem));
  uint8_t* Bbuf = static_cast<uint8_t*>(
      t_buffers.get_b(size_t(round_up(std::min(nc_blk, n1 - n0), NR) * kcs_max) * d.packed_elem));
  const PackFn pack_a = p.a_f32 ? d.pack_a_f32 : d.pack_a;
  const PackFn pack_b = p.b_f32 ? d.pack_b_f32 : d.pack_b;

  for (int64_t ic = m0; ic < m1; ic += mc_blk) {
    const int64_t mc = std::min(mc_blk, m1 - ic);
    for (int64_t pc = 0; pc < p.K; pc += kc_blk) {
      const int64_t kc = std::min(kc_blk, p.K - pc);
      const int64_t kcs = round_up(kc, d.kalign);  // packed K length (zero padded)
      const int64_t ksteps = kcs / d.kpair;
      const size_t a_panel = size_t(MR) * kcs * d.packed_elem;  // bytes
      const size_t b_panel = size_t(NR) * kcs * d.packed_elem;
      const Store store =
          pc > 0 ? Store::Accumulate : (p.beta == 0.f ? Store::Overwrite : Store::ScaleAdd);
      if (!a_in_place) pack_a(p.A, p.lda, p.a_kcontig, ic, mc, pc, kc, Abuf);
      for (int64_t jc = n0; jc < n1; jc += nc_blk) {
        const int64_t nc = std::min(nc_blk, n1 - jc);
        if (!b_in_place) pack_b(p.B, p.ldb, p.b_kcontig, jc, nc, pc, kc, Bbuf);
        for (int64_t ir = 0; ir < mc; ir += MR) {
          const uint8_t* Ap = Abuf + (ir / MR) * a_panel;
          const int mr = static_cast<int>(std::min<int64_t>(MR, mc - ir));
          float* Crow = p.C + (ic + ir) * p.ldc + jc;
          for (int64_t jr = 0; jr < nc; jr += NR) {
            const int nr = static_cast<int>(std::min<int64_t>(NR, nc - jr));
            const uint8_t* Bp = Bbuf + (jr / NR) * b_panel;
            if (a_in_place || b_in_place) {
              // fp32 layout (kpair 1, kalign 1): ksteps == kc.
              const float* a = a_in_place
                                   ? static_cast<const float*>(p.A) + pc * p.lda + ic + ir
                                   : reinterpret_cast<const float*>(Ap);
              const float* b = b_in_place
                                   ? static_cast<const float*>(p.B) + pc * p.ldb + jc + jr
                                   : reinterpret_cast<const float*>(Bp);
              d.kernel_strided(kc, a, a_in_place ? p.lda : MR, b, b_in_place ? p.ldb : NR,
                               b_in_place, Crow + jr, p.ldc, mr, nr, p.alpha, p.beta, store);
            } else {
              d.kernel(ksteps, Ap, Bp, Crow + jr, p.ldc, mr, nr, p.alpha, p.beta, store);
            }
          }
        }
      }
    }
  }
}

// C = beta * C (K == 0 or alpha == 0: the BLAS convention, A and B are not read).
void scale_c(int64_t M, int64_t N, float beta, float* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    float* c = C + i * ldc;
    if (beta == 0.f) {
      std::fill(c, c + N, 0.f);
    } else if (beta != 1.f) {
      for (int64_t j = 0; j < N; ++j) c[j] *= beta;
    }
  }
}

// Below this many multiply-adds a second thread costs more (wake-up, duplicated packing) than
// it saves: ~2 MFLOP is ~20 us on one AVX-512 core, comparable to a pool round trip.
constexpr double kMinMacsForThreads = 1.0 * (1 << 20);

// Fraction of the register tiles' lanes that hold real elements of an (M, N) result.
double tile_fill(int64_t M, int64_t N, int mr, int nr) {
  return (double(M) / double(round_up(M, mr))) * (double(N) / double(round_up(N, nr)));
}

// The calling thread's scratch for a transposed result (thread_local: a GEMM's worker threads
// write the caller's).
thread_local PackBuffers t_transposed;

void run_tiles(const KernelDesc& d, const Problem& p);

// A narrow result (N = LoRA's rank 8 against a 32-wide register tile: a quarter of the FMAs
// useful) is computed as its transpose, C^T = op(B)^T op(A)^T, whose N' = M fills the tiles,
// into scratch, then added into C with beta: the same products, summed in the same K order
// (only C's beta term is added last instead of first).
bool run_transposed_if_narrow(const KernelDesc& d, const Problem& p) {
  if (tile_fill(p.N, p.M, d.mr, d.nr) < 1.5 * tile_fill(p.M, p.N, d.mr, d.nr)) return false;
  float* scratch = static_cast<float*>(t_transposed.get_a(size_t(p.M * p.N) * sizeof(float)));
  Problem t = p;
  t.A = p.B;
  t.lda = p.ldb;
  t.a_kcontig = p.b_kcontig;
  t.a_f32 = p.b_f32;
  t.B = p.A;
  t.ldb = p.lda;
  t.b_kcontig = p.a_kcontig;
  t.b_f32 = p.a_f32;
  t.M = p.N;
  t.N = p.M;
  t.beta = 0.f;
  t.C = scratch;
  t.ldc = p.M;
  run_tiles(d, t);
  const int64_t N = p.N;
  parallel_for(p.M, std::max<int64_t>(1, 4096 / std::max<int64_t>(N, 1)), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      float* c = p.C + i * p.ldc;
      if (p.beta == 0.f) {
        for (int64_t j = 0; j < N; ++j) c[j] = scratch[j * p.M + i];
      } else {
        for (int64_t j = 0; j < N; ++j) c[j] = scratch[j * p.M + i] + p.beta * c[j];
      }
    }
  });
  return true;
}

void run(const KernelDesc& d, const Problem& p) {
  if (run_transposed_if_narrow(d, p)) return;
  run_tiles(d, p);
}

void run_tiles(const KernelDesc& d, const Problem& p) {
  int T = num_threads();
  const double macs = double(p.M) * double(p.N) * double(p.K);
  // Nested inside a pool task, parallel_run would run the T slices one after another on this
  // thread, each repacking the unsplit operand: one whole-C pass is the same bits (see the
  // header) with no duplicated packing. It also keeps this driver safe if it ever
  // synchronises its threads (a barrier inside a serial nested run would deadlock).
  if (macs < kMinMacsForThreads || in_parallel_region()) T = 1;
  const int64_t m_panels = ceil_div(p.M, d.mr), n_panels = ceil_div(p.N, d.nr);
  // Each thread packs its own share of one operand and the whole of the other, so split the
  // dimension whose unsplit operand is smaller: split N (every thread packs all of A, M x K)
  // when M <= N, else split M (every thread packs all of B, K x N).
  // (Measured: packing the unsplit operand's blocks once, each thread a slice of them into a
  // shared buffer behind a barrier, took packing from 7.6% to 6.8% of a GPT-2 124M step's
  // cycles but made warm mid-size products slower, 512^3 by 7% at 2 threads: half of the
  // shared panels then come from the other core's L2.)
  const bool split_n = (p.M <= p.N && n_panels >= 2) || m_panels < 2;
  const int64_t units = split_n ? n_panels : m_panels;
  T = static_cast<int>(std::min<int64_t>(T, units));
  if (T <= 1) {
    run_rect(d, p, 0, p.M, 0, p.N);
    return;
  }
  // Fixed split of whole panels: thread t gets units [t * units / T, (t + 1) * units / T).
  parallel_run(T, [&](int t) {
    const int64_t u0 = units * t / T, u1 = units * (t + 1) / T;
    if (split_n) {
      run_rect(d, p, 0, p.M, u0 * d.nr, std::min(p.N, u1 * d.nr));
    } else {
      run_rect(d, p, u0 * d.mr, std::min(p.M, u1 * d.mr), 0, p.N);
    }
  });
}

// The argument checks shared by every entry; false when there is nothing to multiply (C has
// been scaled by beta already).
bool check_args(const char* op, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                float alpha, const void* A, int64_t lda, const void* B, int64_t ldb, float beta,
                float* C, int64_t ldc) {
  S2S_REQUIRE(M >= 0 && N >= 0 && K >= 0, code::kArgument, op,
              "expected non-negative sizes, got M=", M, " N=", N, " K=", K);
  if (M == 0 || N == 0) return false;
  S2S_REQUIRE(ldc >= N, code::kArgument, op, "expected ldc >= N (", N, "), got ", ldc);
  if (K == 0 || alpha == 0.f) {
    scale_c(M, N, beta, C, ldc);
    return false;
  }
  const int64_t a_cols = trans_a ? M : K, b_cols = trans_b ? K : N;
  S2S_REQUIRE(lda >= a_cols, code::kArgument, op, "expected lda >= ", a_cols, ", got ", lda);
  S2S_REQUIRE(ldb >= b_cols, code::kArgument, op, "expected ldb >= ", b_cols, ", got ", ldb);
  S2S_REQUIRE(A != nullptr && B != nullptr && C != nullptr, code::kArgument, op,
              "expected non-null A, B, C");
  return true;
}

template <typename T>
void gemm_entry(const char* op, bool bf16, bool trans_a, bool trans_b, int64_t M, int64_t N,
                int64_t K, float alpha, const T* A, int64_t lda, const T* B, int64_t ldb,
                float beta, float* C, int64_t ldc) {
  if (!check_args(op, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)) return;
  Problem p{A, lda, !trans_a, B, ldb, trans_b, M, N, K, alpha, beta, C, ldc};
  run(pick(bf16), p);
}

// bf16 bits of an fp32 operand stored as `rows` rows of `cols` values, row stride ld (the
// fallback for kernels without rounding packers; the stride is kept so offsets still hold).
AlignedPtr<uint16_t> rounded_copy(const float* src, int64_t rows, int64_t cols, int64_t ld) {
  const int64_t n = (rows - 1) * ld + cols;
  AlignedPtr<uint16_t> out = make_aligned<uint16_t>(size_t(n));
  uint16_t* dst = out.get();
  parallel_for(rows, std::max<int64_t>(1, 65536 / cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* s = src + r * ld;
      uint16_t* d = dst + r * ld;
      for (int64_t c = 0; c < cols; ++c) d[c] = f32_to_bf16(s[c]);
    }
  });
  return out;
}

}  // namespace
}  // namespace gemm_detail

void gemm_bf16_rounding(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                        const void* A, DType a_dtype, int64_t lda, const void* B, DType b_dtype,
                        int64_t ldb, float beta, float* C, int64_t ldc) {
  using namespace gemm_detail;
  const char* op = "gemm_bf16_rounding";
  for (DType t : {a_dtype, b_dtype}) {
    S2S_REQUIRE(t == DType::F32 || t == DType::BF16, code::kDType, op,
                "expected float32 or bfloat16 operands, got ", dtype_name(t));
  }
  if (!check_args(op, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)) return;
  const KernelDesc& d = pick(true);
  Problem p{A, lda, !trans_a, B, ldb, trans_b, M, N, K, alpha, beta, C, ldc};
  p.a_f32 = a_dtype == DType::F32;
  p.b_f32 = b_dtype == DType::F32;
  AlignedPtr<uint16_t> a16, b16;
  if (p.a_f32 && d.pack_a_f32 == nullptr) {
    a16 = rounded_copy(static_cast<const float*>(A), trans_a ? K : M, trans_a ? M : K, lda);
    p.A = a16.get();
    p.a_f32 = false;
  }
  if (p.b_f32 && d.pack_b_f32 == nullptr) {
    b16 = rounded_copy(static_cast<const float*>(B), trans_b ? N : K, trans_b ? K : N, ldb);
    p.B = b16.get();
    p.b_f32 = false;
  }
  run(d, p);
}

void gemm_f16_rounding(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                       const void* A, DType a_dtype, int64_t lda, const void* B, DType b_dtype,
                       int64_t ldb, float beta, float* C, int64_t ldc) {
  using namespace gemm_detail;
  const char* op = "gemm_f16_rounding";
  for (DType t : {a_dtype, b_dtype}) {
    S2S_REQUIRE(t == DType::F32 || t == DType::F16, code::kDType, op,
                "expected float32 or float16 operands, got ", dtype_name(t));
  }
  if (!check_args(op, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)) return;
  // Every f16 table has rounding packers, so the fp32 operands are never copied. No in-place
  // (kernel_strided) reads either: an operand must be converted, so it is always packed.
  Problem p{A, lda, !trans_a, B, ldb, trans_b, M, N, K, alpha, beta, C, ldc};
  p.a_f32 = a_dtype == DType::F32;
  p.b_f32 = b_dtype == DType::F32;
  run(pick_f16(), p);
}

void gemm_f32(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
              int64_t ldc) {
  gemm_detail::gemm_entry("gemm_f32", false, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb,
                          beta, C, ldc);
}

void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
               const uint16_t* A, int64_t lda, const uint16_t* B, int64_t ldb, float beta,
               float* C, int64_t ldc) {
  gemm_detail::gemm_entry("gemm_bf16", true, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb,
                          beta, C, ldc);
}

const char* gemm_kernel_name(DType dtype) {
  switch (dtype) {
    case DType::F32: return gemm_detail::pick(false).name;
    case DType::BF16: return gemm_detail::pick(true).name;
    case DType::F16: return gemm_detail::pick_f16().name;
  }
  return "unknown";
}

}  // namespace s2s
