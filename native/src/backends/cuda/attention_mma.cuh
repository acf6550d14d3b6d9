// Tensor-core attention (attention.cu picks it when AttentionOptions::products is bf16 or f16 and
// the head dim is one of kMmaHeadDims): the fp32 kernels' algorithm and semantics (online
// softmax forward; two-pass deterministic backward, no atomics), with every product on the
// tensor cores through mma.sync.m16n8k16 (bf16 or f16 operands, fp32 accumulation): q, k, v and
// dout are rounded to the 16-bit type as they are staged in shared memory, and the probabilities
// P and score gradients dS are rounded as they enter a product, as in torch's SDPA under
// autocast. Statistics (max, sum, lse, Di) and the softmax itself stay fp32.
//
// The kernel bodies are templates over an execution policy X so that the same code runs on the
// GPU (attention_mma.cu: X reads threadIdx/blockIdx, syncs with __syncthreads, shuffles and
// issues the mma instruction) and, in native/tests/test_attention_mma_sim.cpp, on the CPU in a
// simulator that runs every thread of a block as a fiber and performs each warp-wide mma from
// the 32 lanes' fragments by the PTX ISA's layout. X provides:
//   int tid(), block_x(), block_y(), block_z();  void sync();  float shfl_xor(float, int);
//   void mma(float d[4], const uint32_t a[4], const uint32_t b[2], bool bf16);  // d += a b
//   void ldmatrix(uint32_t* r, int count, const uint16_t* row);  // ldmatrix.x{count} (2 or 4)
//   void ldmatrix_trans(uint32_t r[2], const uint16_t* row);  // ldmatrix.x2.trans
//   void report_bad_mask(const AttentionGeometry&, int64_t index, int value);
//   void cp_async16(void* smem_dst, const void* src);  // cp.async.cg of 16 bytes
//   void cp_async_commit();  void cp_async_wait(int pending);  // commit_group, wait_group
// The bodies take g.dropout again as the template argument Drop (callers dispatch on it), so the
// kernels without dropout carry none of its code. Fragments come from shared memory by ldmatrix
// (one instruction for an A fragment, one for a B, instead of four and two 32-bit loads).
// ptxas (nvcc 13.0, sm_90, bf16, D = 64), registers without / with dropout: forward 124 / 138,
// Q pass 164 / 166, KV pass 134 / 156 (before ldmatrix and the Drop split: 196, 228, 168), so
// three 128-thread blocks fit an SM's registers where two did (four for the forward without
// dropout).
//
// Fragments of mma.m16n8k16 (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point
// type"), g = lane / 4, t = lane % 4, each 32-bit register holding two 16-bit values (the lower
// column in the low half):
//   A (16x16, row major): a[0] = A[g][2t..2t+1], a[1] = A[g+8][2t..], a[2] = A[g][2t+8..],
//                         a[3] = A[g+8][2t+8..]
//   B (16x8, "col"):      b[0] = B[2t..2t+1][g], b[1] = B[2t+8..2t+9][g]
//   C/D (16x8, fp32):     c[0..1] = C[g][2t..2t+1], c[2..3] = C[g+8][2t..2t+1]
// So a B operand is read from a tile stored as [n][k] (two adjacent k in one 32-bit load), or
// from one stored [k][n] by ldmatrix's .trans, which hands each lane two adjacent rows of one
// column: V, K, Q and dout are staged once, row-major, and serve as B operands either way. The
// C fragments of two adjacent 8-column chunks are, packed to 16 bits, the A fragment of one
// 16-deep chunk (how P and dS feed the next product without leaving registers).
//
// Work split (4 warps of 16 rows each):
//   forward   block (64 query rows, head, batch), key tiles of 64: S = Q K^T, online softmax,
//             O += P V.
//   KV pass   block (64 keys, kv head, batch), query tiles of 32 over the group's heads:
//             S^T = K Q^T and dP^T = V dO^T, then dV += (P o Z)^T dO, dK += dS^T Q.
//   Q pass    block (64 query rows, head, batch): S = Q K^T, dP = dO V^T, dS into per-batch
//             dbias slices (or, serially over the batch, dbias += dS), dQ += dS K.
// Tiles are padded by 8 elements per row (16 bytes) so the fragment loads of a warp hit 32
// distinct banks (ldmatrix's eight 16-byte rows too).
// The tiles a block loops over (keys and values in the forward and Q pass; queries, dout and
// their lse and Di in the KV pass) are double-buffered: tile t + 1's copies are issued before
// tile t is worked on, by cp.async where the source holds 16-bit values at a 16-byte aligned
// address (straight from global memory to shared, no registers, nothing to wait for until the
// next tile), else staged through registers as before (the Q pass at D = 128 keeps one key
// buffer: mma_backward_q_key_buffers). The backward reads dout in 16 bits
// (attention.cu's Di pass writes it rounded, as staging would round it: g.dout16), so all its
// tiles take cp.async. Probabilities are exp2f of scores kept in log2 units (kLog2e below).
// A tile whose every (query, key) pair exists and may be attended (tile_is_full: the padding
// mask, if any, keeps all its keys; inside Tq and Tk; wholly under the causal diagonal) takes a
// copy of the score loop with no mask test; in causal training that is all tiles but those on
// the diagonal and those with padded keys.
#pragma once
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "backends/cuda/half_bits.h"
#include "core/philox.h"
#include "ops/dropout_mask.h"

#if defined(__CUDACC__)
#define S2S_MMA_FN __device__ __forceinline__
#define S2S_MMA_UNROLL _Pragma("unroll")
#define S2S_MMA_NO_UNROLL _Pragma("unroll 1")
#else
#define S2S_MMA_FN inline
#define S2S_MMA_UNROLL
#define S2S_MMA_NO_UNROLL
#endif

namespace s2s {
namespace cuda {

// The arguments every attention kernel reads (attention.cu fills it from the op's checks).
struct AttentionGeometry {
  int64_t B, Tq, Tk, Hq, Hkv, D, G;
  int64_t offset;  // Tk - Tq: query i sits at key position i + offset (causal alignment)
  float scale;
  bool causal;
  const float* bias;     // (Hq,Tq,Tk) or nullptr
  const uint8_t* mask;   // (B,Tk) or nullptr (device)
  unsigned long long* err;
  bool dropout;          // dropout_p > 0 (AttentionOptions)
  float dropout_p, dropout_scale;  // scale = 1 / (1 - p) in float, as on the CPU
  uint64_t dropout_seed, dropout_offset;
  // Where set, the seed is read here instead (AttentionOptions: DropoutSeed::on_device), once by
  // each thread at its kernel's start (read_dropout_seed), so a recorded pass replays with the
  // seed written there since.
  const uint64_t* dropout_seed_on_device;
  // Tensor-core kernels only: q, k or v already holds the operand type's 16-bit values (its
  // producer rounded them as staging would: the same bits); else fp32, rounded while staged.
  bool q16, k16, v16;
  // Backward: dout holds the operand type's 16-bit values (else fp32, rounded while staged).
  bool dout16;
  // Forward: out is written in the operand type's 16 bits, each value rounded from the fp32 one
  // (for a 16-bit linear, which would round it so: the same products); else fp32. Backward: the
  // saved out is so stored (attention.cu's Di pass reads it).
  bool out16;
  // Q pass with dbias: dbias is (B, Hq, Tq, Tk) zeros and each block stores its batch row's dS
  // there (the caller then adds the B slices in order); else dbias is (Hq, Tq, Tk) and each
  // block loops over the batch rows, adding in order.
  bool dbias_partials;
  // Backward: dq, dk and dv are fresh gradients, written (=) rather than accumulated (+=), so
  // nothing zero-fills them first (each element is written by exactly one block).
  bool overwrite_grads;
  // Tensor-core kernels with a mask: (B, mma_key_tiles(Tk)), 1 where the mask keeps every key
  // of the 64-key tile (mma_key_tile_kept), so tile_is_full may pass it; null: every tile of a
  // masked attention takes the tested copy.
  const uint8_t* kept_key_tiles;
  // Every tile takes the tested copy of the score loops (S2S_ATTENTION_FULL_TILES=0, to
  // measure what the full tiles' copy saves; the tests, to compare the two).
  bool test_every_tile;
};

constexpr int kMmaThreads = 128;   // 4 warps
constexpr int kMmaRows = 64;       // query rows (forward, Q pass) or keys (KV pass) per block
constexpr int kMmaKeys = 64;       // keys per tile (forward, Q pass)
constexpr int kMmaKvQueries = 32;  // queries per tile in the KV pass (fewer registers)
constexpr int kMmaPad = 8;         // elements of padding per staged row

// Head dims with a tensor-core kernel (multiples of 16; others use the fp32 kernels).
inline bool mma_head_dim_supported(int64_t D) { return D == 32 || D == 64 || D == 96 || D == 128; }

// Key tiles of 64 per batch row: the forward's and Q pass's key tiles, the KV pass's blocks.
static_assert(kMmaKeys == kMmaRows, "the KV pass's blocks are the other passes' key tiles");
S2S_HOST_DEVICE constexpr int64_t mma_key_tiles(int64_t Tk) {
  return (Tk + kMmaKeys - 1) / kMmaKeys;
}

// Whether the padding mask (B, Tk) keeps every key of key tile t of batch row b: each value 1
// (any other goes to the tested copy of the score loops, which reports values over 1).
S2S_HOST_DEVICE inline bool mma_key_tile_kept(const uint8_t* mask, int64_t Tk, int64_t b,
                                              int64_t t) {
  const int64_t end = (t + 1) * kMmaKeys < Tk ? (t + 1) * kMmaKeys : Tk;
  for (int64_t j = t * kMmaKeys; j < end; ++j) {
    if (mask[b * Tk + j] != 1) return false;
  }
  return true;
}

// Key tile buffers of the Q pass: two (double buffering) up to D = 96; one at D = 128, where two
// would take 102 KB of shared memory, more than the 99 KB an sm_86/89 block may have.
S2S_HOST_DEVICE constexpr int mma_backward_q_key_buffers(int64_t D) {
  return D <= 96 ? 2 : 1;
}

// Blocks per SM the forward's registers must allow (__launch_bounds__): on an H100 at D = 64
// without dropout, four (128 registers; its 46 KB of shared memory fit four in the 228 KB of
// an sm_90 SM, three in an A100's 164, two in the 100 of an sm_86/89), which ptxas gave it
// unasked until the full-tile copy of the score loop (tile_is_full) and its kept_key_tiles
// lookup; it then took 140, three blocks. Held to 128 for sm_90, it spills nothing there; the
// other architectures, where shared memory allows fewer blocks anyway, are left free (held to
// 128, ptxas spilled 16 bytes for sm_80 and 260 for sm_86).
constexpr int mma_forward_min_blocks(int64_t D, bool drop) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  return D == 64 && !drop ? 4 : 1;
#else
  return (void)D, (void)drop, 1;
#endif
}

// Shared memory (bytes) of each kernel for head dim D, the looped-over tiles twice (double
// buffering): D = 64: 46, 37 and 55 KB; D = 128: 85, 69 and 68 KB.
constexpr int64_t mma_forward_smem_bytes(int64_t D) {
  return 2 * (kMmaRows + 2 * 2 * kMmaKeys) * (D + kMmaPad);
}
constexpr int64_t mma_backward_kv_smem_bytes(int64_t D) {
  return 2 * (2 * kMmaRows + 2 * 2 * kMmaKvQueries) * (D + kMmaPad) + 2 * 4 * 2 * kMmaKvQueries;
}
constexpr int64_t mma_backward_q_smem_bytes(int64_t D) {
  return 2 * (2 * kMmaRows + 2 * mma_backward_q_key_buffers(D) * kMmaKeys) * (D + kMmaPad);
}

// The 16-bit operand type: bf16 or f16, rounded with dtype.h's rules.
struct MmaBf16 {
  static constexpr bool kBf16 = true;
  S2S_MMA_FN static uint16_t round(float x) { return f32_to_bf16_bits(x); }
};
struct MmaF16 {
  static constexpr bool kBf16 = false;
  S2S_MMA_FN static uint16_t round(float x) { return f32_to_f16_bits(x); }
};

namespace mma_detail {

S2S_MMA_FN float nan_max(float a, float b) { return (b > a || b != b) ? b : a; }
// A gradient element: written (a fresh gradient, never read) or accumulated.
S2S_MMA_FN void put_grad(float* p, float v, bool overwrite) {
  if (overwrite) {
    *p = v;
  } else {
    *p += v;
  }
}

template <class E>
S2S_MMA_FN uint32_t pack(float lo, float hi) {
  return uint32_t(E::round(lo)) | (uint32_t(E::round(hi)) << 16);
}

S2S_MMA_FN uint32_t ld32(const uint16_t* p) { return *reinterpret_cast<const uint32_t*>(p); }

// A fragment of rows [r0, r0+16) x columns [k0, k0+16) of a row-major tile with `pitch`, by one
// ldmatrix.x4 (a warp-wide load of four 8x8 matrices, each lane naming one 16-byte row and
// receiving row lane/4, columns 2(lane%4)..+1 of each): lane l names row r0 + l%16 at column
// k0 + 8(l/16), so the matrices are the quadrants in a[0..3]'s order (rows 0-7 | 8-15 of
// columns 0-7, then of 8-15). Rows are 16-byte aligned: pitches are multiples of 8 elements.
template <class X>
S2S_MMA_FN void load_a(const X& x, uint32_t a[4], const uint16_t* tile, int pitch, int r0,
                       int k0) {
  const int lane = x.tid() & 31;
  x.ldmatrix(a, 4, tile + (r0 + (lane & 15)) * pitch + k0 + 8 * (lane >> 4));
}

// B fragment of k [k0, k0+16) x n [n0, n0+8) from a tile stored [n][k] with `pitch`, by one
// ldmatrix.x2: lanes 0-7 name rows n0.. at column k0 (b[0]), lanes 8-15 at k0 + 8 (b[1]); lanes
// 16-31 repeat them (their addresses are not read).
template <class X>
S2S_MMA_FN void load_b(const X& x, uint32_t b[2], const uint16_t* tile, int pitch, int n0,
                       int k0) {
  const int lane = x.tid() & 31;
  x.ldmatrix(b, 2, tile + (n0 + (lane & 7)) * pitch + k0 + 8 * ((lane >> 3) & 1));
}

// The same B fragment from a tile stored [k][n] (row-major in k, as staged), by one
// ldmatrix.x2.trans: lanes 0-7 name rows k0.. (b[0]), lanes 8-15 rows k0 + 8.. (b[1]), all at
// column n0; each lane receives column n0 + g of rows 2t and 2t + 1, B's "col" pairs.
template <class X>
S2S_MMA_FN void load_b_trans(const X& x, uint32_t b[2], const uint16_t* tile, int pitch, int k0,
                             int n0) {
  const int lane = x.tid() & 31;
  x.ldmatrix_trans(b, tile + (k0 + (lane & 15)) * pitch + n0);
}

// The A fragment of a 16-deep chunk from the fp32 C fragments of its two 8-column halves.
template <class E>
S2S_MMA_FN void c_to_a(uint32_t a[4], const float lo[4], const float hi[4]) {
  a[0] = pack<E>(lo[0], lo[1]);
  a[1] = pack<E>(lo[2], lo[3]);
  a[2] = pack<E>(hi[0], hi[1]);
  a[3] = pack<E>(hi[2], hi[3]);
}

// The backward passes' two score-shaped products over the head dim, sharing each 16-deep
// chunk's loads: s[n] = A1 B1^T and dp[n] = A2 B2^T for this warp's 16 rows (from r0) of the
// row-major A tiles against the N 8-row chunks of the B tiles (stored [n][k]). S and dP in the
// Q pass (A: q, dout; B: keys, values), S^T and dP^T in the KV pass (A: keys, values; B: q,
// dout).
template <class E, int D, int N, class X>
S2S_MMA_FN void two_products(const X& x, float s[N][4], float dp[N][4], const uint16_t* a1,
                             const uint16_t* a2, const uint16_t* b1, const uint16_t* b2,
                             int r0) {
  constexpr int P = D + kMmaPad, NK = D / 16;
  S2S_MMA_UNROLL
  for (int n = 0; n < N; ++n) {
    S2S_MMA_UNROLL
    for (int c = 0; c < 4; ++c) s[n][c] = dp[n][c] = 0.f;
  }
  S2S_MMA_UNROLL
  for (int kc = 0; kc < NK; ++kc) {
    uint32_t a1f[4], a2f[4];
    load_a(x, a1f, a1, P, r0, kc * 16);
    load_a(x, a2f, a2, P, r0, kc * 16);
    S2S_MMA_UNROLL
    for (int n = 0; n < N; ++n) {
      uint32_t b1f[2], b2f[2];
      load_b(x, b1f, b1, P, n * 8, kc * 16);
      load_b(x, b2f, b2, P, n * 8, kc * 16);
      x.mma(s[n], a1f, b1f, E::kBf16);
      x.mma(dp[n], a2f, b2f, E::kBf16);
    }
  }
}

// Stages rows [r0, r0 + rows) of head `head` of a (B, T, H, D) tensor into tile[r][d] (pitch
// D + kMmaPad): fp32 rounded to E, or E's bits as they are (is16); rows past T are zero. All
// threads take part.
template <class E, int D, class X>
S2S_MMA_FN void stage_rows(const X& x, uint16_t* tile, int rows, const void* src, bool is16,
                           int64_t b, int64_t r0, int64_t T, int64_t H, int64_t head) {
  constexpr int P = D + kMmaPad, HALF = D / 2;
  for (int idx = x.tid(); idx < rows * HALF; idx += kMmaThreads) {
    const int r = idx / HALF, d = 2 * (idx % HALF);
    const int64_t row = r0 + r;
    uint32_t pair = 0;  // +0 in bf16 and f16 alike
    if (row < T) {
      const int64_t at = ((b * T + row) * H + head) * D + d;
      if (is16) {
        pair = ld32(static_cast<const uint16_t*>(src) + at);
      } else {
        const float* s = static_cast<const float*>(src) + at;
        pair = pack<E>(s[0], s[1]);
      }
    }
    *reinterpret_cast<uint32_t*>(tile + r * P + d) = pair;
  }
}

// stage_rows by cp.async where src holds E's bits (is16) at a 16-byte aligned address: 16
// bytes (8 values) per copy, rows past T zeroed by plain stores; the caller commits the group
// and waits for it before the tile is read. Otherwise stage_rows itself (the values are there
// when it returns).
template <class E, int D, class X>
S2S_MMA_FN void stage_rows_async(const X& x, uint16_t* tile, int rows, const void* src,
                                 bool is16, int64_t b, int64_t r0, int64_t T, int64_t H,
                                 int64_t head) {
  if (!is16 || (reinterpret_cast<uintptr_t>(src) & 15) != 0) {
    stage_rows<E, D>(x, tile, rows, src, is16, b, r0, T, H, head);
    return;
  }
  constexpr int P = D + kMmaPad, CHUNKS = D / 8;
  // Not unrolled: unrolled, the compiler keeps every copy's addresses in registers across the
  // tile loop (the Q pass at D = 128: 238 registers instead of 168).
  S2S_MMA_NO_UNROLL
  for (int idx = x.tid(); idx < rows * CHUNKS; idx += kMmaThreads) {
    const int r = idx / CHUNKS, d = 8 * (idx % CHUNKS);
    const int64_t row = r0 + r;
    uint16_t* dst = tile + r * P + d;
    if (row < T) {
      x.cp_async16(dst, static_cast<const uint16_t*>(src) + ((b * T + row) * H + head) * D + d);
    } else {
      reinterpret_cast<uint64_t*>(dst)[0] = 0;  // +0 in bf16 and f16 alike
      reinterpret_cast<uint64_t*>(dst)[1] = 0;
    }
  }
}

// Whether key j of batch row b may be attended by the padding mask (the caller checks j < Tk);
// a value other than 0/1 is reported and treated as 1, as by the fp32 kernels.
template <class X>
S2S_MMA_FN bool key_allowed(const X& x, const AttentionGeometry& g, int64_t b, int64_t j) {
  if (g.mask == nullptr) return true;
  const uint8_t m = g.mask[b * g.Tk + j];
  if (m > 1) x.report_bad_mask(g, b * g.Tk + j, m);
  return m != 0;
}

// Scores are kept in log2 units (scaled by log2(e)) so that each probability is one exp2f,
// the hardware's ex2, where expf spends several more instructions per score on the way there;
// the softmax arithmetic, not the tensor cores, bounds these kernels at small head dims. lse
// stays natural (ln 2 converts it back), and the backward scales it into log2 units once per
// row as it reads it.
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

S2S_MMA_FN float bias_at(const AttentionGeometry& g, int64_t h, int64_t i, int64_t j) {
  return g.bias != nullptr ? g.bias[(h * g.Tq + i) * g.Tk + j] : 0.f;
}

S2S_MMA_FN bool causal_ok(const AttentionGeometry& g, int64_t i, int64_t j) {
  return !g.causal || j <= i + g.offset;
}

// The forward's per-score tests, hoisted out of its score loop, where each score then costs a
// 32-bit compare and a bit test instead of 64-bit compares and per-score branches (ptxas, bf16,
// D = 64: 141 -> 128 registers, four blocks per SM). The backward passes keep their per-score
// tests: hoisting them there raised their registers (Q pass at D = 128: 168 -> 236).
// visible_keys: how many leading columns of the key tile at j0 query row i may see (the row and
// the key exist, the causal rule); 0 for rows past Tq.
S2S_MMA_FN int visible_keys(const AttentionGeometry& g, int64_t i, int64_t j0) {
  if (i >= g.Tq) return 0;
  int64_t end = g.Tk;
  if (g.causal && i + g.offset + 1 < end) end = i + g.offset + 1;
  const int64_t n = end - j0;
  return n <= 0 ? 0 : (n >= kMmaKeys ? kMmaKeys : int(n));
}

// kept_keys: bit 2n + e says whether the padding mask keeps this thread's key column
// 8n + 2t + e of the tile at j0 (every bit without a mask). Columns at or past `seen` (no row
// of the thread sees them) are not read, so bad values are reported where the per-score test
// reported them.
template <class X>
S2S_MMA_FN uint32_t kept_keys(const X& x, const AttentionGeometry& g, int64_t b, int64_t j0,
                              int t, int seen) {
  uint32_t kept = ~0u;
  if (g.mask == nullptr) return kept;
  S2S_MMA_UNROLL
  for (int n = 0; n < kMmaKeys / 8; ++n) {
    S2S_MMA_UNROLL
    for (int e = 0; e < 2; ++e) {
      const int col = n * 8 + 2 * t + e;
      if (col < seen && !key_allowed(x, g, b, j0 + col)) kept &= ~(1u << (2 * n + e));
    }
  }
  return kept;
}

// Dropout factor of probability (b, h, i, j): keep ? 1/(1-p) : 0, the CPU op's mask; 1 without.
// Drop = false: a kernel instantiated without dropout, which then carries no Philox code (its
// registers count in every kernel that has it); true: g.dropout decides (attention.cu's fp32
// kernels pass true).
template <bool Drop>
S2S_MMA_FN float dropout_factor(const AttentionGeometry& g, int64_t b, int64_t h, int64_t i,
                                int64_t j) {
  if (!Drop || !g.dropout) return 1.f;
  const uint64_t counter = g.dropout_offset + uint64_t(((b * g.Hq + h) * g.Tq + i) * g.Tk + j);
  return dropout_keep(g.dropout_seed, counter, g.dropout_p) ? g.dropout_scale : 0.f;
}

// g.dropout_seed from device memory where the op was given it there (dropout_seed_on_device):
// every kernel that drops calls this on its copy of g before anything reads the seed.
template <bool Drop>
S2S_MMA_FN void read_dropout_seed(AttentionGeometry& g) {
  if (Drop && g.dropout && g.dropout_seed_on_device != nullptr) {
    g.dropout_seed = *g.dropout_seed_on_device;
  }
}

// Whether every pair of query rows [i0, i0 + rows) and keys [j0, j0 + keys) of batch row b
// exists and may be attended: the mask keeps the key tile (none, or kept_key_tiles says so), all
// inside Tq and Tk, and (causal) the tile's last key visible to its first row. The same for
// every thread of a block, so the score loops branch on it once per tile into a copy without
// per-score tests (FullTile), which give the same values there.
S2S_MMA_FN bool tile_is_full(const AttentionGeometry& g, int64_t b, int64_t i0, int rows,
                             int64_t j0, int keys) {
  if (g.test_every_tile) return false;
  const bool kept = g.mask == nullptr ||
                    (g.kept_key_tiles != nullptr &&
                     g.kept_key_tiles[b * mma_key_tiles(g.Tk) + j0 / kMmaKeys] != 0);
  return kept && i0 + rows <= g.Tq && j0 + keys <= g.Tk &&
         (!g.causal || j0 + keys - 1 <= i0 + g.offset);
}

// The score loops' two copies: FullTile<true> (tile_is_full) drops every per-score test that
// the full tile makes true.
template <bool Full>
using FullTile = std::integral_constant<bool, Full>;

// Last key (exclusive) any of query rows [i0, i0 + rows) may see.
S2S_MMA_FN int64_t key_end(const AttentionGeometry& g, int64_t i0, int64_t rows) {
  if (!g.causal) return g.Tk;
  const int64_t last_row = (i0 + rows < g.Tq ? i0 + rows : g.Tq) - 1;
  const int64_t e = last_row + g.offset + 1;
  return e < 0 ? 0 : (e > g.Tk ? g.Tk : e);
}

}  // namespace mma_detail

// ---- forward: block (64 query rows, head h, batch b) ------------------------------------------
template <class E, int D, bool Drop, class X>
S2S_MMA_FN void mma_attention_forward(const X& x, const AttentionGeometry& g, const void* q,
                                      const void* k, const void* v, void* out, float* lse,
                                      uint16_t* smem) {
  using namespace mma_detail;
  constexpr int P = D + kMmaPad, NK = D / 16, ND = D / 8;
  constexpr int NS = kMmaKeys / 8;  // 8-key chunks of a score tile
  uint16_t* Qs = smem;                   // [64][P]
  uint16_t* Ks = Qs + kMmaRows * P;      // [2][64][P]: key tile t in buffer t % 2
  uint16_t* Vs = Ks + 2 * kMmaKeys * P;  // [2][64][P]
  const int warp = x.tid() / 32, lane = x.tid() % 32, gq = lane >> 2, tq = lane & 3;
  const float scale_log2 = g.scale * kLog2e;  // scores in log2 units
  const int64_t i0 = int64_t(x.block_x()) * kMmaRows, h = x.block_y(), b = x.block_z();
  const int64_t hk = h / g.G;
  const int64_t tiles = (key_end(g, i0, kMmaRows) + kMmaKeys - 1) / kMmaKeys;
  // Key tile t's keys and values into buffer t % 2, as one cp.async group.
  auto stage_tile = [&](int64_t t) {
    const int buf = int(t & 1) * kMmaKeys * P;
    stage_rows_async<E, D>(x, Ks + buf, kMmaKeys, k, g.k16, b, t * kMmaKeys, g.Tk, g.Hkv, hk);
    stage_rows_async<E, D>(x, Vs + buf, kMmaKeys, v, g.v16, b, t * kMmaKeys, g.Tk, g.Hkv, hk);
    x.cp_async_commit();
  };
  stage_rows_async<E, D>(x, Qs, kMmaRows, q, g.q16, b, i0, g.Tq, g.Hq, h);
  if (tiles > 0) {
    stage_tile(0);
  } else {
    x.cp_async_commit();
  }
  x.cp_async_wait(0);
  x.sync();
  uint32_t qf[NK][4];
  S2S_MMA_UNROLL
  for (int kc = 0; kc < NK; ++kc) load_a(x, qf[kc], Qs, P, warp * 16, kc * 16);
  const int64_t row[2] = {i0 + warp * 16 + gq, i0 + warp * 16 + gq + 8};

  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f}, o[ND][4];
  S2S_MMA_UNROLL
  for (int nd = 0; nd < ND; ++nd) o[nd][0] = o[nd][1] = o[nd][2] = o[nd][3] = 0.f;
  for (int64_t t = 0; t < tiles; ++t) {
    const int64_t j0 = t * kMmaKeys;
    x.sync();  // tile t - 1 is no longer read: its buffer takes tile t + 1
    if (t + 1 < tiles) {
      stage_tile(t + 1);
    } else {
      x.cp_async_commit();  // an empty group: the wait below is the same in every iteration
    }
    x.cp_async_wait(1);  // tile t's copies (this thread's) have landed
    x.sync();            // and every thread's
    const uint16_t* Kt = Ks + int(t & 1) * kMmaKeys * P;
    const uint16_t* Vt = Vs + int(t & 1) * kMmaKeys * P;
    float s[NS][4];
    S2S_MMA_UNROLL
    for (int n = 0; n < NS; ++n) {
      s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
      S2S_MMA_UNROLL
      for (int kc = 0; kc < NK; ++kc) {
        uint32_t kb[2];
        load_b(x, kb, Kt, P, n * 8, kc * 16);
        x.mma(s[n], qf[kc], kb, E::kBf16);
      }
    }
    // Scores: scale, bias, masks (-inf); this thread holds rows row[r], keys j0 + 8n + 2t + e.
    auto scale_scores = [&](auto full) {
      constexpr bool kFull = decltype(full)::value;
      const int vis[2] = {kFull ? kMmaKeys : visible_keys(g, row[0], j0),
                          kFull ? kMmaKeys : visible_keys(g, row[1], j0)};
      const uint32_t kept =
          kFull ? ~0u : kept_keys(x, g, b, j0, tq, vis[0] > vis[1] ? vis[0] : vis[1]);
      auto allowed = [&](int n, int r, int e) {
        return kFull || (n * 8 + 2 * tq + e < vis[r] && ((kept >> (2 * n + e)) & 1u) != 0);
      };
      if (g.bias == nullptr) {
        S2S_MMA_UNROLL
        for (int n = 0; n < NS; ++n) {
          S2S_MMA_UNROLL
          for (int c = 0; c < 4; ++c) {
            s[n][c] = allowed(n, c / 2, c & 1) ? scale_log2 * s[n][c] : -INFINITY;
          }
        }
      } else {
        S2S_MMA_UNROLL
        for (int n = 0; n < NS; ++n) {
          S2S_MMA_UNROLL
          for (int c = 0; c < 4; ++c) {
            const int64_t j = j0 + n * 8 + 2 * tq + (c & 1);
            s[n][c] = allowed(n, c / 2, c & 1)
                          ? scale_log2 * s[n][c] + kLog2e * bias_at(g, h, row[c / 2], j)
                          : -INFINITY;
          }
        }
      }
    };
    if (tile_is_full(g, b, i0, kMmaRows, j0, kMmaKeys)) {
      scale_scores(FullTile<true>());
    } else {
      scale_scores(FullTile<false>());
    }
    float mx[2] = {-INFINITY, -INFINITY};
    S2S_MMA_UNROLL
    for (int n = 0; n < NS; ++n) {
      S2S_MMA_UNROLL
      for (int c = 0; c < 4; ++c) mx[c / 2] = nan_max(mx[c / 2], s[n][c]);
    }
    // Online softmax: a row's four lanes (same g) share its max; l stays a per-lane partial sum.
    S2S_MMA_UNROLL
    for (int r = 0; r < 2; ++r) {
      mx[r] = nan_max(mx[r], x.shfl_xor(mx[r], 1));
      mx[r] = nan_max(mx[r], x.shfl_xor(mx[r], 2));
      const float m_new = nan_max(m[r], mx[r]);
      if (m_new == -INFINITY) {  // nothing allowed in this row so far
        S2S_MMA_UNROLL
        for (int n = 0; n < NS; ++n) s[n][2 * r] = s[n][2 * r + 1] = 0.f;
        continue;
      }
      const float alpha = exp2f(m[r] - m_new);  // 0 when m was -inf
      m[r] = m_new;
      l[r] *= alpha;
      S2S_MMA_UNROLL
      for (int nd = 0; nd < ND; ++nd) {
        o[nd][2 * r] *= alpha;
        o[nd][2 * r + 1] *= alpha;
      }
      S2S_MMA_UNROLL
      for (int n = 0; n < NS; ++n) {
        S2S_MMA_UNROLL
        for (int e = 0; e < 2; ++e) {
          const float p = exp2f(s[n][2 * r + e] - m_new);
          l[r] += p;
          s[n][2 * r + e] = p;
        }
      }
    }
    if (Drop) {  // after l summed the undropped probabilities, as on the CPU
      S2S_MMA_UNROLL
      for (int n = 0; n < NS; ++n) {
        S2S_MMA_UNROLL
        for (int c = 0; c < 4; ++c) {
          const int64_t i = row[c / 2], j = j0 + n * 8 + 2 * tq + (c & 1);
          if (i < g.Tq && j < g.Tk) s[n][c] *= dropout_factor<Drop>(g, b, h, i, j);
        }
      }
    }
    // O += P V
    S2S_MMA_UNROLL
    for (int kc = 0; kc < NS / 2; ++kc) {
      uint32_t pa[4];
      c_to_a<E>(pa, s[2 * kc], s[2 * kc + 1]);
      S2S_MMA_UNROLL
      for (int nd = 0; nd < ND; ++nd) {
        uint32_t vb[2];
        load_b_trans(x, vb, Vt, P, kc * 16, nd * 8);
        x.mma(o[nd], pa, vb, E::kBf16);
      }
    }
  }
  S2S_MMA_UNROLL
  for (int r = 0; r < 2; ++r) {
    l[r] += x.shfl_xor(l[r], 1);
    l[r] += x.shfl_xor(l[r], 2);
    const int64_t i = row[r];
    if (i >= g.Tq) continue;
    const bool empty = l[r] == 0.f;
    const float inv = empty ? 0.f : 1.f / l[r];
    const int64_t orow = ((b * g.Tq + i) * g.Hq + h) * D;
    S2S_MMA_UNROLL
    for (int nd = 0; nd < ND; ++nd) {
      const float o0 = empty ? 0.f : o[nd][2 * r] * inv;
      const float o1 = empty ? 0.f : o[nd][2 * r + 1] * inv;
      const int64_t at = orow + nd * 8 + 2 * tq;
      if (g.out16) {  // the pair as one 32-bit store (at is even, D a multiple of 16)
        *reinterpret_cast<uint32_t*>(static_cast<uint16_t*>(out) + at) = pack<E>(o0, o1);
      } else {
        static_cast<float*>(out)[at] = o0;
        static_cast<float*>(out)[at + 1] = o1;
      }
    }
    if (tq == 0) lse[(b * g.Hq + h) * g.Tq + i] = empty ? -INFINITY : kLn2 * m[r] + logf(l[r]);
  }
}

// ---- backward, KV pass: block (64 keys, kv head hk, batch b); di = <dout, out> per row --------
template <class E, int D, bool Drop, class X>
S2S_MMA_FN void mma_attention_backward_kv(const X& x, const AttentionGeometry& g, const void* q,
                                          const void* k, const void* v, const void* dout,
                                          const float* lse, const float* di, float* dk, float* dv,
                                          uint16_t* smem) {
  using namespace mma_detail;
  constexpr int P = D + kMmaPad, QT = kMmaKvQueries;
  constexpr int ND = D / 8, NQ = QT / 8;
  uint16_t* Ks = smem;                   // [64][P]
  uint16_t* Vs = Ks + kMmaRows * P;      // [64][P]
  uint16_t* Qs = Vs + kMmaRows * P;      // [2][QT][P]: query tile t in buffer t % 2
  uint16_t* Os = Qs + 2 * QT * P;        // [2][QT][P]  dout
  float* lse_s = reinterpret_cast<float*>(Os + 2 * QT * P);  // [2][QT]
  float* di_s = lse_s + 2 * QT;                              // [2][QT]
  const int warp = x.tid() / 32, lane = x.tid() % 32, gq = lane >> 2, tq = lane & 3;
  const int64_t j0 = int64_t(x.block_x()) * kMmaRows, hk = x.block_y(), b = x.block_z();
  const float scale_log2 = g.scale * kLog2e;
  // The query tiles, over the group's heads in order: per head, those from the first one with a
  // row that may see key j0 under the causal rule to the last.
  int64_t first_row = g.causal ? j0 - g.offset : 0;
  if (first_row < 0) first_row = 0;
  const int64_t first_i0 = first_row / QT * QT;
  const int64_t tiles = first_i0 < g.Tq ? g.G * ((g.Tq - first_i0 + QT - 1) / QT) : 0;
  // The tile after (h, i0): the next rows of head h, or the first ones of head h + 1 (counters
  // rather than a division per tile, which costs registers).
  auto next_tile = [&](int64_t* h, int64_t* i0) {
    *i0 += QT;
    if (*i0 >= g.Tq) {
      *i0 = first_i0;
      ++*h;
    }
  };
  // Query tile t (head h, rows from i0) and its q, dout, lse and Di into buffer t % 2 (one group).
  auto stage_tile = [&](int64_t t, int64_t h, int64_t i0) {
    const int buf = int(t & 1);
    stage_rows_async<E, D>(x, Qs + buf * QT * P, QT, q, g.q16, b, i0, g.Tq, g.Hq, h);
    stage_rows_async<E, D>(x, Os + buf * QT * P, QT, dout, g.dout16, b, i0, g.Tq, g.Hq, h);
    if (x.tid() < QT) {
      const int64_t i = i0 + x.tid();
      lse_s[buf * QT + x.tid()] = i < g.Tq ? kLog2e * lse[(b * g.Hq + h) * g.Tq + i] : -INFINITY;
      di_s[buf * QT + x.tid()] = i < g.Tq ? di[(b * g.Hq + h) * g.Tq + i] : 0.f;
    }
    x.cp_async_commit();
  };
  stage_rows_async<E, D>(x, Ks, kMmaRows, k, g.k16, b, j0, g.Tk, g.Hkv, hk);
  stage_rows_async<E, D>(x, Vs, kMmaRows, v, g.v16, b, j0, g.Tk, g.Hkv, hk);
  int64_t h = hk * g.G, i0 = first_i0;  // the tile being worked on
  if (tiles > 0) {
    stage_tile(0, h, i0);  // the same group as K and V
  } else {
    x.cp_async_commit();
  }
  const int64_t key[2] = {j0 + warp * 16 + gq, j0 + warp * 16 + gq + 8};
  bool key_ok[2];
  S2S_MMA_UNROLL
  for (int r = 0; r < 2; ++r) key_ok[r] = key[r] < g.Tk && key_allowed(x, g, b, key[r]);

  float dk_acc[ND][4], dv_acc[ND][4];
  S2S_MMA_UNROLL
  for (int nd = 0; nd < ND; ++nd) {
    S2S_MMA_UNROLL
    for (int c = 0; c < 4; ++c) dk_acc[nd][c] = dv_acc[nd][c] = 0.f;
  }
  for (int64_t t = 0; t < tiles; ++t, next_tile(&h, &i0)) {
    x.sync();  // tile t - 1 is no longer read: its buffers take tile t + 1
    if (t + 1 < tiles) {
      int64_t h1 = h, i1 = i0;
      next_tile(&h1, &i1);
      stage_tile(t + 1, h1, i1);
    } else {
      x.cp_async_commit();  // an empty group: the wait below is the same in every iteration
    }
    x.cp_async_wait(1);  // tile t's copies (this thread's) have landed
    x.sync();            // and every thread's
    const int buf = int(t & 1);
    const uint16_t* Qt = Qs + buf * QT * P;
    const uint16_t* Ot = Os + buf * QT * P;
    const float* lse_t = lse_s + buf * QT;
    const float* di_t = di_s + buf * QT;
    // S^T = K Q^T and dP^T = V dO^T: rows are this warp's 16 keys, columns the QT queries.
    float s[NQ][4], dp[NQ][4];
    two_products<E, D, NQ>(x, s, dp, Ks, Vs, Qt, Ot, warp * 16);
    // P^T o Z (into s) and dS^T = P^T o (Z o dP^T - Di) (into dp).
    auto probabilities = [&](auto full) {
      constexpr bool kFull = decltype(full)::value;
      S2S_MMA_UNROLL
      for (int n = 0; n < NQ; ++n) {
        S2S_MMA_UNROLL
        for (int c = 0; c < 4; ++c) {
          const int col = n * 8 + 2 * tq + (c & 1);
          const int64_t i = i0 + col, j = key[c / 2];
          const float li = lse_t[col];
          float pz = 0.f, ds = 0.f;
          if ((kFull || (i < g.Tq && key_ok[c / 2] && causal_ok(g, i, j))) && li != -INFINITY) {
            const float p = exp2f(scale_log2 * s[n][c] + kLog2e * bias_at(g, h, i, j) - li);
            const float z = dropout_factor<Drop>(g, b, h, i, j);
            pz = p * z;
            ds = p * (z * dp[n][c] - di_t[col]);
          }
          s[n][c] = pz;
          dp[n][c] = ds;
        }
      }
    };
    if (tile_is_full(g, b, i0, QT, j0, kMmaRows)) {
      probabilities(FullTile<true>());
    } else {
      probabilities(FullTile<false>());
    }
    // dV += (P o Z)^T dO,  dK += dS^T Q (times scale at the end).
    S2S_MMA_UNROLL
    for (int kc = 0; kc < NQ / 2; ++kc) {
      uint32_t pa[4], da[4];
      c_to_a<E>(pa, s[2 * kc], s[2 * kc + 1]);
      c_to_a<E>(da, dp[2 * kc], dp[2 * kc + 1]);
      S2S_MMA_UNROLL
      for (int nd = 0; nd < ND; ++nd) {
        uint32_t ob[2], qb[2];
        load_b_trans(x, ob, Ot, P, kc * 16, nd * 8);
        load_b_trans(x, qb, Qt, P, kc * 16, nd * 8);
        x.mma(dv_acc[nd], pa, ob, E::kBf16);
        x.mma(dk_acc[nd], da, qb, E::kBf16);
      }
    }
  }
  x.cp_async_wait(0);  // K and V's copies when there was no query tile
  S2S_MMA_UNROLL
  for (int r = 0; r < 2; ++r) {
    if (key[r] >= g.Tk) continue;
    const int64_t base = ((b * g.Tk + key[r]) * g.Hkv + hk) * D;
    S2S_MMA_UNROLL
    for (int nd = 0; nd < ND; ++nd) {
      S2S_MMA_UNROLL
      for (int e = 0; e < 2; ++e) {
        const int64_t d = nd * 8 + 2 * tq + e;
        const bool w = g.overwrite_grads;
        if (dk != nullptr) put_grad(dk + base + d, g.scale * dk_acc[nd][2 * r + e], w);
        if (dv != nullptr) put_grad(dv + base + d, dv_acc[nd][2 * r + e], w);
      }
    }
  }
}

// ---- backward, Q pass: block (64 query rows, head h, batch b — or every batch row in order
// when dbias is wanted without partials, so each dbias element is summed over b by one thread;
// with g.dbias_partials each block stores its own batch row's dS slice) ----------------------
template <class E, int D, bool Drop, class X>
S2S_MMA_FN void mma_attention_backward_q(const X& x, const AttentionGeometry& g, const void* q,
                                         const void* k, const void* v, const void* dout,
                                         const float* lse, const float* di, float* dq,
                                         float* dbias, uint16_t* smem) {
  using namespace mma_detail;
  constexpr int P = D + kMmaPad, ND = D / 8;
  constexpr int NS = kMmaKeys / 8, NB = mma_backward_q_key_buffers(D);
  uint16_t* Qs = smem;                    // [64][P]
  uint16_t* Os = Qs + kMmaRows * P;       // [64][P]  dout
  uint16_t* Ks = Os + kMmaRows * P;       // [NB][64][P]: key tile t in buffer t % NB
  uint16_t* Vs = Ks + NB * kMmaKeys * P;  // [NB][64][P]
  const int warp = x.tid() / 32, lane = x.tid() % 32, gq = lane >> 2, tq = lane & 3;
  const int64_t i0 = int64_t(x.block_x()) * kMmaRows, h = x.block_y(), hk = h / g.G;
  const float scale_log2 = g.scale * kLog2e;
  const bool serial = dbias != nullptr && !g.dbias_partials;
  const int64_t b_first = serial ? 0 : x.block_z();
  const int64_t b_last = serial ? g.B : b_first + 1;
  const int64_t tiles = (key_end(g, i0, kMmaRows) + kMmaKeys - 1) / kMmaKeys;
  const int64_t row[2] = {i0 + warp * 16 + gq, i0 + warp * 16 + gq + 8};
  for (int64_t b = b_first; b < b_last; ++b) {
    // Key tile t of batch row b: keys and values into buffer t % NB, as one cp.async group.
    auto stage_tile = [&](int64_t t) {
      const int buf = int(t % NB) * kMmaKeys * P;
      stage_rows_async<E, D>(x, Ks + buf, kMmaKeys, k, g.k16, b, t * kMmaKeys, g.Tk, g.Hkv, hk);
      stage_rows_async<E, D>(x, Vs + buf, kMmaKeys, v, g.v16, b, t * kMmaKeys, g.Tk, g.Hkv, hk);
      x.cp_async_commit();
    };
    x.sync();  // the previous batch row's tiles are no longer read
    stage_rows_async<E, D>(x, Qs, kMmaRows, q, g.q16, b, i0, g.Tq, g.Hq, h);
    stage_rows_async<E, D>(x, Os, kMmaRows, dout, g.dout16, b, i0, g.Tq, g.Hq, h);
    if (NB == 2 && tiles > 0) {
      stage_tile(0);  // the same group as q and dout
    } else {
      x.cp_async_commit();
    }
    float li[2], dii[2], dq_acc[ND][4];
    S2S_MMA_UNROLL
    for (int r = 0; r < 2; ++r) {
      li[r] = row[r] < g.Tq ? kLog2e * lse[(b * g.Hq + h) * g.Tq + row[r]] : -INFINITY;
      dii[r] = row[r] < g.Tq ? di[(b * g.Hq + h) * g.Tq + row[r]] : 0.f;
    }
    S2S_MMA_UNROLL
    for (int nd = 0; nd < ND; ++nd) {
      dq_acc[nd][0] = dq_acc[nd][1] = dq_acc[nd][2] = dq_acc[nd][3] = 0.f;
    }
    for (int64_t t = 0; t < tiles; ++t) {
      const int64_t j0 = t * kMmaKeys;
      x.sync();  // tile t - 1 is no longer read: its buffer takes tile t + NB - 1
      if (NB == 1) {
        stage_tile(t);
        x.cp_async_wait(0);
      } else {
        if (t + 1 < tiles) {
          stage_tile(t + 1);
        } else {
          x.cp_async_commit();  // an empty group: the wait below is the same in every iteration
        }
        x.cp_async_wait(1);  // tile t's copies (this thread's) have landed
      }
      x.sync();  // and every thread's
      const uint16_t* Kt = Ks + int(t % NB) * kMmaKeys * P;
      const uint16_t* Vt = Vs + int(t % NB) * kMmaKeys * P;
      // S = Q K^T and dP = dO V^T.
      float s[NS][4], dp[NS][4];
      two_products<E, D, NS>(x, s, dp, Qs, Os, Kt, Vt, warp * 16);
      // dS = P o (Z o dP - Di) (into s); dbias += dS.
      auto score_gradients = [&](auto full) {
        constexpr bool kFull = decltype(full)::value;
        S2S_MMA_UNROLL
        for (int n = 0; n < NS; ++n) {
          S2S_MMA_UNROLL
          for (int c = 0; c < 4; ++c) {
            const int r = c / 2;
            const int64_t i = row[r], j = j0 + n * 8 + 2 * tq + (c & 1);
            float ds = 0.f;
            const bool in_range = kFull || (i < g.Tq && j < g.Tk);
            if (in_range && li[r] != -INFINITY &&
                (kFull || (causal_ok(g, i, j) && key_allowed(x, g, b, j)))) {
              const float p =
                  exp2f(scale_log2 * s[n][c] + kLog2e * bias_at(g, h, i, j) - li[r]);
              ds = p * (dropout_factor<Drop>(g, b, h, i, j) * dp[n][c] - dii[r]);
            }
            if (dbias != nullptr && in_range) {
              if (g.dbias_partials) {
                dbias[((b * g.Hq + h) * g.Tq + i) * g.Tk + j] = ds;
              } else {
                dbias[(h * g.Tq + i) * g.Tk + j] += ds;
              }
            }
            s[n][c] = ds;
          }
        }
      };
      // Not at D = 128: there the full-tile copy took the pass from 168 registers to 194, from
      // three blocks per SM (as its 68 KB of shared memory allow on an H100) to two; held to
      // 168 by __launch_bounds__, ptxas spilled.
      if (D < 128 && tile_is_full(g, b, i0, kMmaRows, j0, kMmaKeys)) {
        score_gradients(FullTile<true>());
      } else {
        score_gradients(FullTile<false>());
      }
      // dQ += dS K (times scale at the end).
      S2S_MMA_UNROLL
      for (int kc = 0; kc < NS / 2; ++kc) {
        uint32_t da[4];
        c_to_a<E>(da, s[2 * kc], s[2 * kc + 1]);
        S2S_MMA_UNROLL
        for (int nd = 0; nd < ND; ++nd) {
          uint32_t kb[2];
          load_b_trans(x, kb, Kt, P, kc * 16, nd * 8);
          x.mma(dq_acc[nd], da, kb, E::kBf16);
        }
      }
    }
    x.cp_async_wait(0);  // q and dout's copies when there was no key tile
    if (dq == nullptr) continue;
    S2S_MMA_UNROLL
    for (int r = 0; r < 2; ++r) {
      if (row[r] >= g.Tq) continue;
      float* drow = dq + ((b * g.Tq + row[r]) * g.Hq + h) * D;
      S2S_MMA_UNROLL
      for (int nd = 0; nd < ND; ++nd) {
        put_grad(drow + nd * 8 + 2 * tq, g.scale * dq_acc[nd][2 * r], g.overwrite_grads);
        put_grad(drow + nd * 8 + 2 * tq + 1, g.scale * dq_acc[nd][2 * r + 1], g.overwrite_grads);
      }
    }
  }
}

class Context;

// attention_dbias.cu: the Q pass's dbias target under the arena scope the caller holds: per-batch
// slices (zeroed; g.dbias_partials set) or dbias itself (serial form; none wanted: null). Then
// dbias_slices_end adds the slices onto dbias in batch order (nothing in the serial form).
float* dbias_slices_begin(Context& ctx, AttentionGeometry& g, float* dbias);
void dbias_slices_end(Context& ctx, const AttentionGeometry& g, const float* slices, float* dbias);

// attention_mma.cu: the kernels on ctx's stream (device pointers, arguments already checked by
// attention.cu, g.D one of mma_head_dim_supported). bf16: bf16 operands, else f16. The backward
// expects Di (B, Hq, Tq) = <dout, out> per row, and dout in fp32 or (g.dout16) in the operand
// type; gradient pointers may be null (not wanted). The forward's out is fp32, or (g.out16) the
// operand type's 16 bits.
void mma_attention_forward_launch(Context& ctx, const AttentionGeometry& g, bool bf16,
                                  const void* q, const void* k, const void* v, void* out,
                                  float* lse);
void mma_attention_backward_launch(Context& ctx, const AttentionGeometry& g, bool bf16,
                                   const void* q, const void* k, const void* v,
                                   const void* dout, const float* lse, const float* di,
                                   float* dq, float* dk, float* dv, float* dbias);

}  // namespace cuda
}  // namespace s2s
