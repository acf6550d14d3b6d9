// attention: blockwise scaled-dot-product attention (flash-attention 2 style), forward and
// backward side by side, then the materialised double-precision reference loops.
// Legend: B batch, Tq/Tk query/key length, Hq query heads, Hkv kv heads, G = Hq/Hkv, D head dim,
// TQ query tile rows, KB keys per block (TK per tile in the two-pass backward). Only one score
// tile (and one dP tile) per task ever exists. The exp-heavy row loops are ActKernels
// (ops/act_kernels.h), compiled per ISA.
#include "s2s/ops/attention.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "ops/act_kernels.h"
#include "ops/dropout_mask.h"
#include "ops/dropout_mask_kernels.h"
#include "s2s/arena.h"
#include "s2s/gemm.h"
#include "s2s/thread_pool.h"

namespace s2s {

namespace {

constexpr const char* kOp = "attention";
constexpr int64_t TQ = 64;   // query rows per tile
constexpr int64_t TK = 64;   // keys per tile of the two-pass backward (its tasks are key tiles)
constexpr int64_t KB = 256;  // keys per block of the forward and the one-pass backward
constexpr float kNegInf = -std::numeric_limits<float>::infinity();
// Below this many flops a task is not worth a thread of its own.
constexpr int64_t kMinFlopsPerChunk = int64_t(1) << 17;

std::atomic<int>& backward_plan_slot() {
  static std::atomic<int> plan{static_cast<int>(AttentionBackwardPlan::Auto)};
  return plan;
}

struct Geometry {
  int64_t B, Tq, Tk, Hq, Hkv, D, G;
  int64_t offset;  // Tk - Tq: query i sits at key position i + offset (causal alignment)
  float scale;
  bool causal;
  const float* bias;      // (Hq,Tq,Tk) or nullptr
  const uint8_t* mask;    // (B,Tk) or nullptr
  bool dropout;           // dropout_p > 0: probabilities are dropped (AttentionOptions)
  float dropout_p, dropout_scale;  // scale = 1 / (1 - p), in float as the dropout op has it
  uint64_t dropout_seed, dropout_offset;
};

Geometry check_inputs(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& bias,
                      const uint8_t* key_mask, int64_t key_mask_size,
                      const AttentionOptions& options) {
  expect_f32(q, {-1, -1, -1, -1}, kOp, "q");
  Geometry g{};
  g.B = q.shape[0];
  g.Tq = q.shape[1];
  g.Hq = q.shape[2];
  g.D = q.shape[3];
  S2S_REQUIRE(g.D >= 1, code::kShape, kOp, "expected q with head dim >= 1, got ",
              q.shape_string());
  expect_f32(k, {g.B, -1, -1, g.D}, kOp, "k");
  g.Tk = k.shape[1];
  g.Hkv = k.shape[2];
  expect_f32(v, {g.B, g.Tk, g.Hkv, g.D}, kOp, "v");
  S2S_REQUIRE(g.Hkv >= 1 && g.Hq % g.Hkv == 0, code::kShape, kOp,
              "expected query heads to be a multiple of kv heads, got Hq = ", g.Hq,
              " and Hkv = ", g.Hkv);
  g.G = g.Hq / g.Hkv;
  g.offset = g.Tk - g.Tq;
  g.causal = options.causal;
  if (options.scale.has_value()) {
    S2S_REQUIRE(std::isfinite(*options.scale), code::kArgument, kOp,
                "expected a finite scale, got ", *options.scale);
    g.scale = *options.scale;
  } else {
    g.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(g.D)));
  }
  S2S_REQUIRE(options.dropout_p >= 0.0f && options.dropout_p < 1.0f, code::kArgument, kOp,
              "expected dropout_p in [0, 1), got ", options.dropout_p);
  S2S_REQUIRE(options.products == DType::F32 || options.products == DType::BF16 ||
                  options.products == DType::F16,
              code::kArgument, kOp, "expected products F32, BF16 or F16, got ",
              dtype_name(options.products));
  g.dropout = options.dropout_p > 0.0f;
  g.dropout_p = options.dropout_p;
  g.dropout_scale = 1.0f / (1.0f - options.dropout_p);
  g.dropout_seed = options.dropout_seed.read_on_host();
  g.dropout_offset = options.dropout_offset;
  g.bias = nullptr;
  if (bias.data != nullptr) {
    expect_f32(bias, {g.Hq, g.Tq, g.Tk}, kOp, "bias");
    g.bias = bias.f32();
  }
  g.mask = key_mask;
  S2S_REQUIRE(key_mask_size == (key_mask != nullptr ? g.B * g.Tk : 0), code::kShape, kOp,
              "expected key_mask of ", key_mask != nullptr ? g.B * g.Tk : 0,
              key_mask != nullptr ? " values (B*Tk)" : " values (no mask pointer)", ", got ",
              key_mask_size);
  if (key_mask != nullptr) {
    for (int64_t b = 0; b < g.B; ++b) {
      for (int64_t j = 0; j < g.Tk; ++j) {
        const uint8_t m = key_mask[b * g.Tk + j];
        S2S_REQUIRE(m <= 1, code::kArgument, kOp, "expected key_mask[", b, ", ", j,
                    "] to be 0 or 1, got ", int(m));
      }
    }
  }
  return g;
}

// Grain (in tasks) so that one chunk holds at least kMinFlopsPerChunk.
int64_t grain_for(int64_t flops_per_task) {
  if (flops_per_task <= 0) return 1 << 30;
  const int64_t g = kMinFlopsPerChunk / flops_per_task;
  return g < 1 ? 1 : g;
}

// Number of keys of tile [j0, j0+nk) that query row i may see under the causal rule.
inline int64_t causal_cols(const Geometry& g, int64_t i, int64_t j0, int64_t nk) {
  if (!g.causal) return nk;
  const int64_t n = i + g.offset - j0 + 1;
  return n < 0 ? 0 : (n > nk ? nk : n);
}

// S (nq rows, stride ld) = scale * Q K^T + bias, with disallowed keys set to -inf, for query
// rows [i0, i0+nq) of head h and keys [j0, j0+nk) of kv head h / G, batch b.
void score_tile(const Geometry& g, const float* q, const float* k, int64_t b, int64_t h,
                int64_t i0, int64_t nq, int64_t j0, int64_t nk, float* S, int64_t ld) {
  const int64_t hk = h / g.G;
  const float* qp = q + ((b * g.Tq + i0) * g.Hq + h) * g.D;  // rows strided by Hq*D
  const float* kp = k + ((b * g.Tk + j0) * g.Hkv + hk) * g.D;  // rows strided by Hkv*D
  gemm_f32(false, true, nq, nk, g.D, g.scale, qp, g.Hq * g.D, kp, g.Hkv * g.D, 0.f, S, ld);
  for (int64_t r = 0; r < nq; ++r) {
    float* s = S + r * ld;
    if (g.bias != nullptr) {
      const float* br = g.bias + (h * g.Tq + i0 + r) * g.Tk + j0;
      for (int64_t c = 0; c < nk; ++c) s[c] += br[c];
    }
    if (g.mask != nullptr) {
      const uint8_t* mr = g.mask + b * g.Tk + j0;
      for (int64_t c = 0; c < nk; ++c) s[c] = mr[c] ? s[c] : kNegInf;
    }
    for (int64_t c = causal_cols(g, i0 + r, j0, nk); c < nk; ++c) s[c] = kNegInf;
  }
}

// Dropout counter of element (b, h, i, j): its index in a (B,Hq,Tq,Tk) tensor plus the offset.
inline uint64_t dropout_counter(const Geometry& g, int64_t b, int64_t h, int64_t i, int64_t j) {
  return g.dropout_offset + uint64_t(((b * g.Hq + h) * g.Tq + i) * g.Tk + j);
}

// The tile's rows [i0, i0+nq) and keys [j0, j0+nk) of (b, h): row r's counters are one
// contiguous range, rows Tk apart, made for the whole tile at once by the vector Philox kernels.
// The tile helpers are kept out of line so that the task loops, which call them only with
// dropout, compile as they do without it (the dropout_p == 0 path stays today's code).

// Z (nq rows, stride ld) = the tile's dropout factors keep ? 1/(1-p) : 0 (ops/dropout_mask.h).
[[gnu::noinline]] void dropout_tile(const Geometry& g, int64_t b, int64_t h, int64_t i0,
                                    int64_t nq, int64_t j0, int64_t nk, float* Z, int64_t ld) {
  dropout_rows(DropoutApply::kFactors, Z, nullptr, ld, nq, nk, g.dropout_seed,
               dropout_counter(g, b, h, i0, j0), uint64_t(g.Tk), g.dropout_p, g.dropout_scale);
}

// X (nq rows, stride ld) o= the tile's dropout factors, in place.
[[gnu::noinline]] void drop_tile(const Geometry& g, int64_t b, int64_t h, int64_t i0, int64_t nq,
                                 int64_t j0, int64_t nk, float* X, int64_t ld) {
  dropout_rows(DropoutApply::kMultiply, X, X, ld, nq, nk, g.dropout_seed,
               dropout_counter(g, b, h, i0, j0), uint64_t(g.Tk), g.dropout_p, g.dropout_scale);
}

// dst = a o Z elementwise over an (nq, nk) tile of stride ld (dst may be a).
[[gnu::noinline]] void multiply_tile(float* dst, const float* a, const float* Z, int64_t ld,
                                     int64_t nq, int64_t nk) {
  for (int64_t r = 0; r < nq; ++r) {
    for (int64_t c = 0; c < nk; ++c) dst[r * ld + c] = a[r * ld + c] * Z[r * ld + c];
  }
}

// Exclusive key bound that query rows [i0, i0+nq) may see at all.
inline int64_t key_end(const Geometry& g, int64_t i0, int64_t nq) {
  if (!g.causal) return g.Tk;
  int64_t last = i0 + nq - 1 + g.offset + 1;
  if (last < 0) last = 0;
  if (last > g.Tk) last = g.Tk;
  return last;
}

// Di (B,Hq,Tq) = <dout, out> per row, accumulated in double.
AlignedPtr<float> row_dots(const Geometry& g, const float* dod, const float* outd) {
  AlignedPtr<float> Di = make_aligned<float>(g.B * g.Hq * g.Tq);
  float* di = Di.get();
  const int64_t D = g.D;
  parallel_for(g.B * g.Tq * g.Hq, grain_for(2 * D), [&](int64_t r0, int64_t r1) {
    for (int64_t row = r0; row < r1; ++row) {  // row = (b*Tq + i)*Hq + h
      const int64_t h = row % g.Hq, i = (row / g.Hq) % g.Tq, b = row / (g.Hq * g.Tq);
      const float* a = dod + row * D;
      const float* o = outd + row * D;
      double acc = 0;
      for (int64_t d = 0; d < D; ++d) acc += double(a[d]) * double(o[d]);
      di[(b * g.Hq + h) * g.Tq + i] = static_cast<float>(acc);
    }
  });
  return Di;
}

// The pointers and flags every backward plan shares.
struct BackwardArgs {
  const float *q, *k, *v, *dout, *lse, *di;
  float *dq, *dk, *dv, *dbias;  // nullptr: not wanted
  bool overwrite;               // dq, dk, dv are fresh: each task zeroes its rows first
};

// Zeroes `rows` rows of D values, `stride` apart (one head's rows of a (B, T, H, D) gradient).
void zero_rows(float* x, int64_t rows, int64_t stride, int64_t D) {
  for (int64_t r = 0; r < rows; ++r) std::memset(x + r * stride, 0, sizeof(float) * size_t(D));
}

// dbias (h, rows [i0, i0+nq), keys [j0, j0+nk)) += dS.
void add_dbias(const Geometry& g, float* dbias, const float* dS, int64_t ld, int64_t h,
               int64_t i0, int64_t nq, int64_t j0, int64_t nk) {
  for (int64_t r = 0; r < nq; ++r) {
    float* db = dbias + (h * g.Tq + i0 + r) * g.Tk + j0;
    const float* s = dS + r * ld;
    for (int64_t c = 0; c < nk; ++c) db[c] += s[c];
  }
}

// One-pass backward (flash-attention 2's loop order, without atomics): a task owns one kv head
// of one batch (or, when dbias is wanted, one kv head over the whole batch, so that it also owns
// dbias's rows of its query heads), and walks its query heads, batches and query tiles in a
// fixed order; for each key block it recomputes P from lse and adds every gradient term:
//   dP = dO V^T,  dS = P o (dP - Di),  dV += P^T dO,  dK += scale dS^T Q,  dQ += scale dS K.
// 5 GEMMs per (query tile, key block), 10 Tq Tk D flops per head: the two-pass plan's 14
// without its duplicated score and dP products. With dropout (Z = the tile's dropout factors)
// dV takes P o Z and dS = P o (Z o dP - Di).
void backward_one_pass(const Geometry& g, const BackwardArgs& a) {
  const ActKernels& kern = act_kernels();
  const int64_t D = g.D, nqt = (g.Tq + TQ - 1) / TQ;
  const int64_t inner_b = a.dbias ? g.B : 1;
  const int64_t tasks = (a.dbias ? 1 : g.B) * g.Hkv;
  parallel_for(tasks, 1, [&](int64_t t0, int64_t t1) {
    AlignedPtr<float> P = make_aligned<float>(TQ * KB);
    AlignedPtr<float> dP = make_aligned<float>(TQ * KB);
    AlignedPtr<float> Z = g.dropout ? make_aligned<float>(TQ * KB) : AlignedPtr<float>();
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t hk = t % g.Hkv;
      const int64_t b_first = a.dbias ? 0 : t / g.Hkv;
      for (int64_t b = b_first; a.overwrite && b < b_first + inner_b; ++b) {
        const int64_t kv_row0 = (b * g.Tk * g.Hkv + hk) * D;
        if (a.dk) zero_rows(a.dk + kv_row0, g.Tk, g.Hkv * D, D);
        if (a.dv) zero_rows(a.dv + kv_row0, g.Tk, g.Hkv * D, D);
        for (int64_t h = hk * g.G; a.dq && h < (hk + 1) * g.G; ++h) {
          zero_rows(a.dq + (b * g.Tq * g.Hq + h) * D, g.Tq, g.Hq * D, D);
        }
      }
      for (int64_t h = hk * g.G; h < (hk + 1) * g.G; ++h) {
        for (int64_t b = b_first; b < b_first + inner_b; ++b) {
          for (int64_t qt = 0; qt < nqt; ++qt) {
            const int64_t i0 = qt * TQ, nq = std::min(TQ, g.Tq - i0);
            const float* qp = a.q + ((b * g.Tq + i0) * g.Hq + h) * D;
            const float* dop = a.dout + ((b * g.Tq + i0) * g.Hq + h) * D;
            const float* lse_rows = a.lse + (b * g.Hq + h) * g.Tq + i0;
            const float* di_rows = a.di + (b * g.Hq + h) * g.Tq + i0;
            const int64_t kend = key_end(g, i0, nq);
            for (int64_t j0 = 0; j0 < kend; j0 += KB) {
              const int64_t nk = std::min(KB, kend - j0);
              const float* kp = a.k + ((b * g.Tk + j0) * g.Hkv + hk) * D;
              const float* vp = a.v + ((b * g.Tk + j0) * g.Hkv + hk) * D;
              score_tile(g, a.q, a.k, b, h, i0, nq, j0, nk, P.get(), KB);
              kern.attn_probs_from_lse(P.get(), KB, nq, nk, lse_rows);
              if (g.dropout) dropout_tile(g, b, h, i0, nq, j0, nk, Z.get(), KB);
              if (a.dv) {  // dV += P^T dO   (nk,nq) x (nq,D), P o Z with dropout
                const float* Pv = P.get();
                if (g.dropout) {
                  multiply_tile(dP.get(), P.get(), Z.get(), KB, nq, nk);
                  Pv = dP.get();
                }
                gemm_f32(true, false, nk, D, nq, 1.f, Pv, KB, dop, g.Hq * D, 1.f,
                         a.dv + ((b * g.Tk + j0) * g.Hkv + hk) * D, g.Hkv * D);
              }
              if (!a.dk && !a.dq && !a.dbias) continue;
              // dP = dO V^T   (nq,D) x (D,nk);  dS = P o (dP - Di)   (dP o Z with dropout)
              gemm_f32(false, true, nq, nk, D, 1.f, dop, g.Hq * D, vp, g.Hkv * D, 0.f, dP.get(),
                       KB);
              if (g.dropout) multiply_tile(dP.get(), dP.get(), Z.get(), KB, nq, nk);
              kern.attn_ds_from_p(P.get(), dP.get(), KB, nq, nk, di_rows);
              if (a.dbias) add_dbias(g, a.dbias, P.get(), KB, h, i0, nq, j0, nk);
              if (a.dk) {  // dK += scale dS^T Q   (nk,nq) x (nq,D)
                gemm_f32(true, false, nk, D, nq, g.scale, P.get(), KB, qp, g.Hq * D, 1.f,
                         a.dk + ((b * g.Tk + j0) * g.Hkv + hk) * D, g.Hkv * D);
              }
              if (a.dq) {  // dQ += scale dS K   (nq,nk) x (nk,D)
                gemm_f32(false, false, nq, D, nk, g.scale, P.get(), KB, kp, g.Hkv * D, 1.f,
                         a.dq + ((b * g.Tq + i0) * g.Hq + h) * D, g.Hq * D);
              }
            }
          }
        }
      }
    }
  });
}

// Two-pass backward, for when there are too few (batch, kv head) tasks to keep the threads busy:
//   pass KV, tasks (b, kv head, key tile): dk, dv for those keys, over the G query heads and
//           all query tiles in a fixed order;
//   pass Q,  tasks (h, query tile) with the batch loop inside when dbias is wanted (dbias rows
//           are then owned by the task and summed over b in order), else (b, h, query tile).
// Pass KV 8 Tq Tk D flops per (b,h), pass Q 6: 7/5 of the one-pass count, the price of more,
// smaller tasks without atomics.
void backward_two_pass(const Geometry& g, const BackwardArgs& a) {
  const ActKernels& kern = act_kernels();
  const int64_t D = g.D;
  const int64_t nqt = (g.Tq + TQ - 1) / TQ;
  const int64_t nkt = (g.Tk + TK - 1) / TK;

  // ---- pass KV: dk, dv ----
  if (a.dk || a.dv) {
    const int64_t tasks = g.B * g.Hkv * nkt;
    parallel_for(tasks, grain_for(8 * TK * g.Tq * D * g.G), [&](int64_t t0, int64_t t1) {
      AlignedPtr<float> P = make_aligned<float>(TQ * TK);
      AlignedPtr<float> dP = make_aligned<float>(TQ * TK);
      AlignedPtr<float> Z = g.dropout ? make_aligned<float>(TQ * TK) : AlignedPtr<float>();
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t kt = t % nkt, hk = (t / nkt) % g.Hkv, b = t / (nkt * g.Hkv);
        const int64_t j0 = kt * TK, nk = std::min(TK, g.Tk - j0);
        const float* vp = a.v + ((b * g.Tk + j0) * g.Hkv + hk) * D;
        float* dkp = a.dk ? a.dk + ((b * g.Tk + j0) * g.Hkv + hk) * D : nullptr;
        float* dvp = a.dv ? a.dv + ((b * g.Tk + j0) * g.Hkv + hk) * D : nullptr;
        if (a.overwrite && dkp) zero_rows(dkp, nk, g.Hkv * D, D);
        if (a.overwrite && dvp) zero_rows(dvp, nk, g.Hkv * D, D);
        // First query row that may see key j0 under the causal rule.
        int64_t first_row = g.causal ? j0 - g.offset : 0;
        if (first_row < 0) first_row = 0;
        if (first_row >= g.Tq) continue;
        for (int64_t h = hk * g.G; h < (hk + 1) * g.G; ++h) {
          for (int64_t qt = first_row / TQ; qt < nqt; ++qt) {
            const int64_t i0 = qt * TQ, nq = std::min(TQ, g.Tq - i0);
            const float* qp = a.q + ((b * g.Tq + i0) * g.Hq + h) * D;
            const float* dop = a.dout + ((b * g.Tq + i0) * g.Hq + h) * D;
            score_tile(g, a.q, a.k, b, h, i0, nq, j0, nk, P.get(), TK);
            kern.attn_probs_from_lse(P.get(), TK, nq, nk, a.lse + (b * g.Hq + h) * g.Tq + i0);
            if (g.dropout) dropout_tile(g, b, h, i0, nq, j0, nk, Z.get(), TK);
            // dV += P^T dO   (nk,nq) x (nq,D), P o Z with dropout
            if (dvp) {
              const float* Pv = P.get();
              if (g.dropout) {
                multiply_tile(dP.get(), P.get(), Z.get(), TK, nq, nk);
                Pv = dP.get();
              }
              gemm_f32(true, false, nk, D, nq, 1.f, Pv, TK, dop, g.Hq * D, 1.f, dvp, g.Hkv * D);
            }
            if (dkp) {
              // dP = dO V^T   (nq,D) x (D,nk);  dS = P o (dP - Di);  dK += scale dS^T Q
              // (dP o Z with dropout)
              gemm_f32(false, true, nq, nk, D, 1.f, dop, g.Hq * D, vp, g.Hkv * D, 0.f, dP.get(),
                       TK);
              if (g.dropout) multiply_tile(dP.get(), dP.get(), Z.get(), TK, nq, nk);
              kern.attn_ds_from_p(P.get(), dP.get(), TK, nq, nk,
                                  a.di + (b * g.Hq + h) * g.Tq + i0);
              gemm_f32(true, false, nk, D, nq, g.scale, P.get(), TK, qp, g.Hq * D, 1.f, dkp,
                       g.Hkv * D);
            }
          }
        }
      }
    });
  }

  // ---- pass Q: dq, dbias ----
  if (a.dq || a.dbias) {
    // With dbias a task is (h, qt) and loops over b inside; otherwise (b, h, qt).
    const int64_t inner_b = a.dbias ? g.B : 1;
    const int64_t tasks = (a.dbias ? 1 : g.B) * g.Hq * nqt;
    parallel_for(tasks, grain_for(6 * TQ * g.Tk * D * inner_b), [&](int64_t t0, int64_t t1) {
      AlignedPtr<float> P = make_aligned<float>(TQ * TK);
      AlignedPtr<float> dP = make_aligned<float>(TQ * TK);
      AlignedPtr<float> Z = g.dropout ? make_aligned<float>(TQ * TK) : AlignedPtr<float>();
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t qt = t % nqt, h = (t / nqt) % g.Hq;
        const int64_t b_first = a.dbias ? 0 : t / (nqt * g.Hq);
        const int64_t i0 = qt * TQ, nq = std::min(TQ, g.Tq - i0), hk = h / g.G;
        const int64_t kend = key_end(g, i0, nq);
        for (int64_t b = b_first; b < b_first + inner_b; ++b) {
          const float* dop = a.dout + ((b * g.Tq + i0) * g.Hq + h) * D;
          if (a.overwrite && a.dq) {
            zero_rows(a.dq + ((b * g.Tq + i0) * g.Hq + h) * D, nq, g.Hq * D, D);
          }
          for (int64_t j0 = 0; j0 < kend; j0 += TK) {
            const int64_t nk = std::min(TK, g.Tk - j0);
            const float* kp = a.k + ((b * g.Tk + j0) * g.Hkv + hk) * D;
            const float* vp = a.v + ((b * g.Tk + j0) * g.Hkv + hk) * D;
            score_tile(g, a.q, a.k, b, h, i0, nq, j0, nk, P.get(), TK);
            kern.attn_probs_from_lse(P.get(), TK, nq, nk, a.lse + (b * g.Hq + h) * g.Tq + i0);
            gemm_f32(false, true, nq, nk, D, 1.f, dop, g.Hq * D, vp, g.Hkv * D, 0.f, dP.get(),
                     TK);
            if (g.dropout) {  // dS = P o (Z o dP - Di)
              dropout_tile(g, b, h, i0, nq, j0, nk, Z.get(), TK);
              multiply_tile(dP.get(), dP.get(), Z.get(), TK, nq, nk);
            }
            kern.attn_ds_from_p(P.get(), dP.get(), TK, nq, nk,
                                a.di + (b * g.Hq + h) * g.Tq + i0);
            if (a.dbias) add_dbias(g, a.dbias, P.get(), TK, h, i0, nq, j0, nk);
            // dQ += scale dS K   (nq,nk) x (nk,D)
            if (a.dq) {
              gemm_f32(false, false, nq, D, nk, g.scale, P.get(), TK, kp, g.Hkv * D, 1.f,
                       a.dq + ((b * g.Tq + i0) * g.Hq + h) * D, g.Hq * D);
            }
          }
        }
      }
    });
  }
}

}  // namespace

void set_attention_backward_plan(AttentionBackwardPlan plan) {
  backward_plan_slot().store(static_cast<int>(plan), std::memory_order_relaxed);
}

// ---------------------------------------------------------------------------------------------
// forward
//
// Per task (b, h, query tile): for each block of up to KB keys, S = scale QK^T + bias (masked
// -> -inf), then the online softmax: m' = max(m, rowmax S), P = exp(S - m'),
// l = l e^(m-m') + rowsum P, O = O e^(m-m') + P V. At the end out = O / l and lse = m + log l.
// With Tk <= KB (or the causal rows' reach) there is one block and no rescaling. Dropout
// multiplies P by its factors after l is updated (lse stays that of the undropped row).
// Napkin: 4 Tq Tk D flops per (b,h) (two GEMMs) + Tq Tk exps; k and v are re-read Tq/TQ times
// per head, from cache for Tk*D*8 < L2.
void attention_forward(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k,
                       const Tensor& v, const Tensor& bias, const uint8_t* key_mask,
                       int64_t key_mask_size, const AttentionOptions& options) {
  const Geometry g = check_inputs(q, k, v, bias, key_mask, key_mask_size, options);
  expect_f32(out, {g.B, g.Tq, g.Hq, g.D}, kOp, "out");
  expect_f32(lse, {g.B, g.Hq, g.Tq}, kOp, "lse");
  const float* qd = q.f32();
  const float* kd = k.f32();
  const float* vd = v.f32();
  float* outd = out.f32();
  float* lsed = lse.f32();
  const ActKernels& kern = act_kernels();

  const int64_t nqt = (g.Tq + TQ - 1) / TQ;
  const int64_t tasks = g.B * g.Hq * nqt;
  const int64_t D = g.D;
  parallel_for(tasks, grain_for(4 * TQ * g.Tk * D), [&](int64_t t0, int64_t t1) {
    AlignedPtr<float> S = make_aligned<float>(TQ * KB);
    AlignedPtr<float> O = make_aligned<float>(TQ * D);
    float m[TQ], l[TQ], alpha[TQ];
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t qt = t % nqt, h = (t / nqt) % g.Hq, b = t / (nqt * g.Hq);
      const int64_t i0 = qt * TQ, nq = std::min(TQ, g.Tq - i0), hk = h / g.G;
      for (int64_t r = 0; r < nq; ++r) { m[r] = kNegInf; l[r] = 0.f; }
      for (int64_t x = 0; x < nq * D; ++x) O[x] = 0.f;
      const int64_t kend = key_end(g, i0, nq);
      for (int64_t j0 = 0; j0 < kend; j0 += KB) {
        const int64_t nk = std::min(KB, kend - j0);
        float* Sp = S.get();
        score_tile(g, qd, kd, b, h, i0, nq, j0, nk, Sp, KB);
        kern.attn_online_softmax(Sp, KB, nq, nk, m, l, alpha);
        // After l has summed the undropped P: drop P before it meets V.
        if (g.dropout) drop_tile(g, b, h, i0, nq, j0, nk, Sp, KB);
        if (j0 > 0) {  // the first block starts from O = 0: nothing to rescale
          for (int64_t r = 0; r < nq; ++r) {
            if (alpha[r] == 1.f) continue;
            float* o = O.get() + r * D;
            for (int64_t d = 0; d < D; ++d) o[d] *= alpha[r];
          }
        }
        // O += P V   (nq,nk) x (nk,D)
        const float* vp = vd + ((b * g.Tk + j0) * g.Hkv + hk) * D;
        gemm_f32(false, false, nq, D, nk, 1.f, Sp, KB, vp, g.Hkv * D, 1.f, O.get(), D);
      }
      for (int64_t r = 0; r < nq; ++r) {
        const int64_t i = i0 + r;
        float* o = outd + ((b * g.Tq + i) * g.Hq + h) * D;
        const float* acc = O.get() + r * D;
        if (l[r] == 0.f) {  // fully masked row: zeros, lse = -inf
          for (int64_t d = 0; d < D; ++d) o[d] = 0.f;
          lsed[(b * g.Hq + h) * g.Tq + i] = kNegInf;
        } else {
          const float inv = 1.f / l[r];
          for (int64_t d = 0; d < D; ++d) o[d] = acc[d] * inv;
          lsed[(b * g.Hq + h) * g.Tq + i] = m[r] + std::log(l[r]);
        }
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------
// backward
//
// With P recomputed from lse and Di = <dout_i, out_i> (= sum_j P_ij dP_ij):
//   dP = dO V^T,  dS = P o (dP - Di),  dV = P^T dO,  dK = scale dS^T Q,  dQ = scale dS K,
//   dbias = dS (summed over the batch).
// With dropout (Z = keep / (1 - p) per element, regenerated from the seed and counters, and O
// the dropped output as saved, so Di = sum_j P_ij Z_ij dP_ij still):
//   dV = (P o Z)^T dO,  dS = P o (Z o dP - Di), the rest from dS as above.
// Every gradient element is owned by one task (no atomics, deterministic). Two plans: one pass
// over (batch, kv head) tasks when there are enough of them for the threads, else two passes
// over smaller tasks (see backward_one_pass / backward_two_pass).
void attention_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dbias,
                        const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                        const Tensor& out, const Tensor& lse, const Tensor& bias,
                        const uint8_t* key_mask, int64_t key_mask_size,
                        const AttentionOptions& options, bool overwrite) {
  const Geometry g = check_inputs(q, k, v, bias, key_mask, key_mask_size, options);
  expect_f32(dout, {g.B, g.Tq, g.Hq, g.D}, kOp, "dout");
  expect_f32(out, {g.B, g.Tq, g.Hq, g.D}, kOp, "out");
  expect_f32(lse, {g.B, g.Hq, g.Tq}, kOp, "lse");
  const bool want_dq = dq.data != nullptr, want_dk = dk.data != nullptr;
  const bool want_dv = dv.data != nullptr, want_dbias = dbias.data != nullptr;
  if (want_dq) expect_f32(dq, {g.B, g.Tq, g.Hq, g.D}, kOp, "dq");
  if (want_dk) expect_f32(dk, {g.B, g.Tk, g.Hkv, g.D}, kOp, "dk");
  if (want_dv) expect_f32(dv, {g.B, g.Tk, g.Hkv, g.D}, kOp, "dv");
  if (want_dbias) {
    S2S_REQUIRE(g.bias != nullptr, code::kArgument, kOp,
                "expected a bias when dbias is requested, got none");
    expect_f32(dbias, {g.Hq, g.Tq, g.Tk}, kOp, "dbias");
  }
  if (g.B * g.Tq * g.Tk * g.Hq == 0) {  // no scores: the gradients are zeros
    for (const Tensor* d : {&dq, &dk, &dv}) {
      if (overwrite && d->data) std::memset(d->data, 0, sizeof(float) * size_t(d->numel()));
    }
    return;
  }
  if (!want_dq && !want_dk && !want_dv && !want_dbias) return;
  const AlignedPtr<float> Di = row_dots(g, dout.f32(), out.f32());
  BackwardArgs a{q.f32(),  k.f32(), v.f32(), dout.f32(), lse.f32(), Di.get(),
                 want_dq ? dq.f32() : nullptr,          want_dk ? dk.f32() : nullptr,
                 want_dv ? dv.f32() : nullptr,          want_dbias ? dbias.f32() : nullptr,
                 overwrite};
  const int plan = backward_plan_slot().load(std::memory_order_relaxed);
  bool one_pass;
  if (plan == static_cast<int>(AttentionBackwardPlan::OnePass)) {
    one_pass = true;
  } else if (plan == static_cast<int>(AttentionBackwardPlan::TwoPass)) {
    one_pass = false;
  } else {
    // One pass when its tasks fill every thread at least twice over (tasks are equal, so the
    // split is even); otherwise the two-pass plan's smaller tasks keep the threads busy.
    const int64_t tasks = (want_dbias ? 1 : g.B) * g.Hkv;
    one_pass = in_parallel_region() || tasks >= 2 * int64_t(num_threads());
  }
  if (one_pass) backward_one_pass(g, a);
  else backward_two_pass(g, a);
}

// ---------------------------------------------------------------------------------------------
// reference: materialise each head's (Tq,Tk) probabilities in double; dropout factors one
// Philox block per element (dropout_keep), the fast path's batched generator not involved.

namespace {

// The dropout factor of element (b,h,i,j): keep ? 1/(1-p) : 0, one Philox block per element;
// 1 without dropout.
double reference_dropout_factor(const Geometry& g, int64_t b, int64_t h, int64_t i, int64_t j) {
  if (!g.dropout) return 1.0;
  return dropout_keep(g.dropout_seed, dropout_counter(g, b, h, i, j), g.dropout_p)
             ? double(g.dropout_scale)
             : 0.0;
}

// p (Tq*Tk) for (b,h) in double; rows with no allowed key are all zero and flagged empty.
// Returns the per-row lse (-inf for empty rows).
void reference_probs(const Geometry& g, const float* q, const float* k, int64_t b, int64_t h,
                     std::vector<double>& p, std::vector<double>& row_lse) {
  const int64_t hk = h / g.G, D = g.D;
  p.assign(g.Tq * g.Tk, 0.0);
  row_lse.assign(g.Tq, -INFINITY);
  std::vector<double> s(g.Tk);
  for (int64_t i = 0; i < g.Tq; ++i) {
    double mx = -INFINITY;
    bool any_nan = false;
    for (int64_t j = 0; j < g.Tk; ++j) {
      const bool allowed = (g.mask == nullptr || g.mask[b * g.Tk + j] != 0) &&
                           (!g.causal || j <= i + g.offset);
      if (!allowed) { s[j] = -INFINITY; continue; }
      double dot = 0;
      const float* qi = q + ((b * g.Tq + i) * g.Hq + h) * D;
      const float* kj = k + ((b * g.Tk + j) * g.Hkv + hk) * D;
      for (int64_t d = 0; d < D; ++d) dot += double(qi[d]) * double(kj[d]);
      s[j] = double(g.scale) * dot + (g.bias ? double(g.bias[(h * g.Tq + i) * g.Tk + j]) : 0.0);
      if (std::isnan(s[j])) any_nan = true;
      if (s[j] > mx) mx = s[j];
    }
    if (any_nan) {
      for (int64_t j = 0; j < g.Tk; ++j) p[i * g.Tk + j] = NAN;
      row_lse[i] = NAN;
      continue;
    }
    if (mx == -INFINITY) continue;  // fully masked row
    double sum = 0;
    for (int64_t j = 0; j < g.Tk; ++j) sum += std::exp(s[j] - mx);
    for (int64_t j = 0; j < g.Tk; ++j) p[i * g.Tk + j] = std::exp(s[j] - mx) / sum;
    row_lse[i] = mx + std::log(sum);
  }
}

}  // namespace

void attention_forward_reference(const Tensor& out, const Tensor& lse, const Tensor& q,
                                 const Tensor& k, const Tensor& v, const Tensor& bias,
                                 const uint8_t* key_mask, int64_t key_mask_size,
                                 const AttentionOptions& options) {
  const Geometry g = check_inputs(q, k, v, bias, key_mask, key_mask_size, options);
  expect_f32(out, {g.B, g.Tq, g.Hq, g.D}, kOp, "out");
  if (lse.data != nullptr) expect_f32(lse, {g.B, g.Hq, g.Tq}, kOp, "lse");
  std::vector<double> p, row_lse;
  for (int64_t b = 0; b < g.B; ++b) {
    for (int64_t h = 0; h < g.Hq; ++h) {
      reference_probs(g, q.f32(), k.f32(), b, h, p, row_lse);
      const int64_t hk = h / g.G;
      for (int64_t i = 0; i < g.Tq; ++i) {
        for (int64_t d = 0; d < g.D; ++d) {
          double acc = 0;
          for (int64_t j = 0; j < g.Tk; ++j) {
            const double pij = p[i * g.Tk + j] * reference_dropout_factor(g, b, h, i, j);
            if (pij != 0.0 || std::isnan(pij))
              acc += pij * double(v.f32()[((b * g.Tk + j) * g.Hkv + hk) * g.D + d]);
          }
          out.f32()[((b * g.Tq + i) * g.Hq + h) * g.D + d] = static_cast<float>(acc);
        }
        if (lse.data != nullptr) lse.f32()[(b * g.Hq + h) * g.Tq + i] = float(row_lse[i]);
      }
    }
  }
}

void attention_backward_reference(const Tensor& dq, const Tensor& dk, const Tensor& dv,
                                  const Tensor& dbias, const Tensor& dout, const Tensor& q,
                                  const Tensor& k, const Tensor& v, const Tensor& bias,
                                  const uint8_t* key_mask, int64_t key_mask_size,
                                 const AttentionOptions& options) {
  const Geometry g = check_inputs(q, k, v, bias, key_mask, key_mask_size, options);
  expect_f32(dout, {g.B, g.Tq, g.Hq, g.D}, kOp, "dout");
  if (dq.data) expect_f32(dq, {g.B, g.Tq, g.Hq, g.D}, kOp, "dq");
  if (dk.data) expect_f32(dk, {g.B, g.Tk, g.Hkv, g.D}, kOp, "dk");
  if (dv.data) expect_f32(dv, {g.B, g.Tk, g.Hkv, g.D}, kOp, "dv");
  if (dbias.data) expect_f32(dbias, {g.Hq, g.Tq, g.Tk}, kOp, "dbias");
  const int64_t D = g.D;
  std::vector<double> gq(q.numel(), 0.0), gk(k.numel(), 0.0), gv(v.numel(), 0.0);
  std::vector<double> gb(g.Hq * g.Tq * g.Tk, 0.0);
  std::vector<double> p, row_lse, dp(g.Tk), z(g.Tk);
  const float *qd = q.f32(), *kd = k.f32(), *vd = v.f32(), *dod = dout.f32();
  for (int64_t b = 0; b < g.B; ++b) {
    for (int64_t h = 0; h < g.Hq; ++h) {
      reference_probs(g, qd, kd, b, h, p, row_lse);
      const int64_t hk = h / g.G;
      for (int64_t i = 0; i < g.Tq; ++i) {
        if (row_lse[i] == -INFINITY) continue;  // fully masked row: no gradient
        const float* doi = dod + ((b * g.Tq + i) * g.Hq + h) * D;
        // With dropout, out_i = sum_j P_ij Z_ij v_j: dL/dP_ij = Z_ij dP_ij.
        double dsum = 0;
        for (int64_t j = 0; j < g.Tk; ++j) {
          const float* vj = vd + ((b * g.Tk + j) * g.Hkv + hk) * D;
          double acc = 0;
          for (int64_t d = 0; d < D; ++d) acc += double(doi[d]) * double(vj[d]);
          z[j] = reference_dropout_factor(g, b, h, i, j);
          dp[j] = z[j] * acc;
          dsum += p[i * g.Tk + j] * dp[j];
        }
        for (int64_t j = 0; j < g.Tk; ++j) {
          const double pij = p[i * g.Tk + j];
          if (pij == 0.0) continue;
          const double ds = pij * (dp[j] - dsum);
          gb[(h * g.Tq + i) * g.Tk + j] += ds;
          const int64_t qi = ((b * g.Tq + i) * g.Hq + h) * D;
          const int64_t kj = ((b * g.Tk + j) * g.Hkv + hk) * D;
          for (int64_t d = 0; d < D; ++d) {
            gq[qi + d] += double(g.scale) * ds * double(kd[kj + d]);
            gk[kj + d] += double(g.scale) * ds * double(qd[qi + d]);
            gv[kj + d] += pij * z[j] * double(doi[d]);
          }
        }
      }
    }
  }
  auto add = [](const Tensor& t, const std::vector<double>& src) {
    if (t.data == nullptr) return;
    float* x = t.f32();
    for (size_t n = 0; n < src.size(); ++n) x[n] = static_cast<float>(double(x[n]) + src[n]);
  };
  add(dq, gq);
  add(dk, gk);
  add(dv, gv);
  add(dbias, gb);
}

}  // namespace s2s
