// Bodies of the ActKernels table (act_kernels.h). Included once per instruction set by
// act_kernels.cpp / act_kernels_avx2.cpp / act_kernels_avx512.cpp, each defining
// S2S_ACT_KERNELS_NAME (the accessor) and S2S_ACT_KERNELS_LABEL. Everything here has internal
// linkage and uses no std:: templates, so no ISA-specific code can leak into other files.
// Reductions use 16 fixed lanes: vectorisable without -ffast-math and the same summation order
// on every ISA (results still differ in the last bits where the compiler contracts to FMA).
// The compare-selects vectorise because CMake passes -fno-trapping-math (see CMakeLists.txt).
#include <cmath>
#if defined(__F16C__) && defined(__AVX2__)
#include <immintrin.h>
#endif

#include "ops/act_kernels.h"
#include "ops/vec_math.h"

namespace s2s {
namespace {

constexpr int kLanes = 16;

void k_gelu_forward(float* out, const float* inp, int64_t n, bool approx_tanh) {
  if (approx_tanh) {
    for (int64_t i = 0; i < n; ++i) out[i] = vm::gelu_tanh_f(inp[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = vm::gelu_erf_f(inp[i]);
  }
}

// dst[i] = grad(i), or dst[i] += grad(i): one loop for each, so the overwriting one never
// reads dst (a fresh gradient may hold garbage) and both vectorise.
template <typename Grad>
inline void write_grad(float* dst, int64_t n, bool overwrite, Grad grad) {
  if (overwrite) {
    for (int64_t i = 0; i < n; ++i) dst[i] = grad(i);
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i] += grad(i);
  }
}

void k_gelu_backward(float* dinp, const float* dout, const float* inp, int64_t n,
                     bool approx_tanh, bool overwrite) {
  if (approx_tanh) {
    write_grad(dinp, n, overwrite,
               [=](int64_t i) { return dout[i] * vm::gelu_tanh_grad_f(inp[i]); });
  } else {
    write_grad(dinp, n, overwrite,
               [=](int64_t i) { return dout[i] * vm::gelu_erf_grad_f(inp[i]); });
  }
}

void k_silu_forward(float* out, const float* inp, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = vm::silu_f(inp[i]);
}

void k_silu_backward(float* dinp, const float* dout, const float* inp, int64_t n,
                     bool overwrite) {
  write_grad(dinp, n, overwrite, [=](int64_t i) { return dout[i] * vm::silu_grad_f(inp[i]); });
}

void k_swiglu_forward(float* out, const float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = vm::silu_f(gate[i]) * up[i];
}

void k_swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                       const float* up, int64_t n, bool overwrite) {
  if (dgate) {
    write_grad(dgate, n, overwrite,
               [=](int64_t i) { return dout[i] * up[i] * vm::silu_grad_f(gate[i]); });
  }
  if (dup) write_grad(dup, n, overwrite, [=](int64_t i) { return dout[i] * vm::silu_f(gate[i]); });
}

void k_geglu_forward(float* out, const float* gate, const float* up, int64_t n,
                     bool approx_tanh) {
  if (approx_tanh) {
    for (int64_t i = 0; i < n; ++i) out[i] = vm::gelu_tanh_f(gate[i]) * up[i];
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = vm::gelu_erf_f(gate[i]) * up[i];
  }
}

void k_geglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                      const float* up, int64_t n, bool approx_tanh, bool overwrite) {
  if (dgate) {
    if (approx_tanh) {
      write_grad(dgate, n, overwrite,
                 [=](int64_t i) { return dout[i] * up[i] * vm::gelu_tanh_grad_f(gate[i]); });
    } else {
      write_grad(dgate, n, overwrite,
                 [=](int64_t i) { return dout[i] * up[i] * vm::gelu_erf_grad_f(gate[i]); });
    }
  }
  if (dup) {
    if (approx_tanh) {
      write_grad(dup, n, overwrite,
                 [=](int64_t i) { return dout[i] * vm::gelu_tanh_f(gate[i]); });
    } else {
      write_grad(dup, n, overwrite, [=](int64_t i) { return dout[i] * vm::gelu_erf_f(gate[i]); });
    }
  }
}

// Sum of v[0..n) in 16 fixed lanes, lanes added in order at the end.
float lane_sum(const float* v, int64_t n) {
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) acc[j] += v[i + j];
  }
  for (int j = 0; i < n; ++i, ++j) acc[j] += v[i];
  float s = 0;
  for (int j = 0; j < kLanes; ++j) s += acc[j];
  return s;
}

// softmax: y = e^{x - max} / sum e^{x - max}. A NaN anywhere in the row makes the row NaN
// (it reaches the sum through exp), as in PyTorch.
void k_softmax_forward(float* out, const float* inp, int64_t rows, int64_t C) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = inp + r * C;
    float* y = out + r * C;
    float mx[kLanes];
    for (int j = 0; j < kLanes; ++j) mx[j] = -__builtin_inff();
    int64_t i = 0;
    for (; i + kLanes <= C; i += kLanes) {
      for (int j = 0; j < kLanes; ++j) mx[j] = x[i + j] > mx[j] ? x[i + j] : mx[j];
    }
    for (int j = 0; i < C; ++i, ++j) mx[j] = x[i] > mx[j] ? x[i] : mx[j];
    float m = mx[0];
    for (int j = 1; j < kLanes; ++j) m = mx[j] > m ? mx[j] : m;
    for (int64_t k = 0; k < C; ++k) y[k] = vm::exp_f(x[k] - m);
    const float inv = 1.0f / lane_sum(y, C);
    for (int64_t k = 0; k < C; ++k) y[k] *= inv;
  }
}

// dx = y * (dy - sum(dy * y))
void k_softmax_backward(float* dinp, const float* dout, const float* out, int64_t rows,
                        int64_t C) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* dy = dout + r * C;
    const float* y = out + r * C;
    float* dx = dinp + r * C;
    float acc[kLanes] = {};
    int64_t i = 0;
    for (; i + kLanes <= C; i += kLanes) {
      for (int j = 0; j < kLanes; ++j) acc[j] += dy[i + j] * y[i + j];
    }
    for (int j = 0; i < C; ++i, ++j) acc[j] += dy[i] * y[i];
    float dot = 0;
    for (int j = 0; j < kLanes; ++j) dot += acc[j];
    for (int64_t k = 0; k < C; ++k) dx[k] += y[k] * (dy[k] - dot);
  }
}

// Cross-entropy logsumexp of one row in one streaming pass: the row is walked in chunks of
// kCeChunk (8 KB, so the exp pass reads it from L1); each chunk's NaN-propagating max
// (kLanes lanes), then its sum of exp(x - m) in kLanes fp32 lanes (<= kCeChunk / kLanes terms
// each) against the running max m, folded into a double running sum that is rescaled by
// exp(m_old - m_new) whenever the max grows. The order of every addition is fixed by V alone.
constexpr int64_t kCeChunk = 2048;

float k_ce_row_lse(const float* x, int64_t V) {
  const float kNegInf = -__builtin_inff();
  float m = kNegInf;
  double s = 0.0;
  for (int64_t c0 = 0; c0 < V; c0 += kCeChunk) {
    const int64_t n = V - c0 < kCeChunk ? V - c0 : kCeChunk;
    const float* xc = x + c0;
    // Plain maxima: a NaN never wins the compare (so the select vectorises). A NaN still reaches
    // the result through exp(NaN - m) in the sum below, except in a chunk whose other values
    // are all -inf: that rare chunk is scanned for NaN on its own.
    float mx[kLanes];
    for (int u = 0; u < kLanes; ++u) mx[u] = kNegInf;
    int64_t j = 0;
    for (; j + kLanes <= n; j += kLanes) {
      for (int u = 0; u < kLanes; ++u) mx[u] = xc[j + u] > mx[u] ? xc[j + u] : mx[u];
    }
    for (; j < n; ++j) mx[0] = xc[j] > mx[0] ? xc[j] : mx[0];
    float cm = mx[0];
    for (int u = 1; u < kLanes; ++u) cm = mx[u] > cm ? mx[u] : cm;
    if (cm == kNegInf) {
      for (j = 0; j < n; ++j)
        if (xc[j] != xc[j]) return xc[j];  // NaN anywhere: NaN
    }
    if (cm == kNegInf) continue;  // an all -inf chunk adds nothing
    if (cm > m) {
      s = m == kNegInf ? 0.0 : s * std::exp(double(m) - double(cm));
      m = cm;
    }
    float acc[kLanes];
    for (int u = 0; u < kLanes; ++u) acc[u] = 0.f;
    j = 0;
    for (; j + kLanes <= n; j += kLanes) {
      for (int u = 0; u < kLanes; ++u) acc[u] += vm::exp_f(xc[j + u] - m);
    }
    for (; j < n; ++j) acc[j & (kLanes - 1)] += vm::exp_f(xc[j] - m);
    double cs = 0.0;
    for (int u = 0; u < kLanes; ++u) cs += double(acc[u]);
    s += cs;
  }
  if (m == kNegInf) return m;  // every logit -inf
  return static_cast<float>(double(m) + std::log(s));
}

void k_ce_row_backward(float* dx, const float* x, int64_t V, float lse, float scale,
                       bool overwrite) {
  if (overwrite) {
    for (int64_t j = 0; j < V; ++j) dx[j] = vm::exp_f(x[j] - lse) * scale;
  } else {
    for (int64_t j = 0; j < V; ++j) dx[j] += vm::exp_f(x[j] - lse) * scale;
  }
}

// f32 -> bf16 bits, round to nearest even, NaN quieted: dtype.h's f32_to_bf16 as selects, so
// the loop vectorises.
inline uint16_t round_bf16(float f) {
  const uint32_t u = vm::float_to_bits(f);
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const uint32_t nan = (u >> 16) | 0x40u;
  return static_cast<uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}

// Rows in chunks through an fp32 stack buffer: the same vector code as k_ce_row_backward computes
// each value (so the bits before rounding are the fp32 path's), the label's -scale lands on the
// fp32 value, then the chunk is rounded out.
void k_ce_row_backward_bf16(uint16_t* dx, const float* x, int64_t V, float lse, float scale,
                            int64_t label) {
  float buf[kCeChunk];
  for (int64_t c0 = 0; c0 < V; c0 += kCeChunk) {
    const int64_t n = V - c0 < kCeChunk ? V - c0 : kCeChunk;
    k_ce_row_backward(buf, x + c0, n, lse, scale, true);
    if (label >= c0 && label < c0 + n) buf[label - c0] -= scale;
    for (int64_t j = 0; j < n; ++j) dx[c0 + j] = round_bf16(buf[j]);
  }
}

// Maximum of n scores (plain compares, so the loop vectorises; a NaN never wins one), and
// whether a NaN was seen where it could not reach the caller any other way: only when every other
// value is -inf is the row scanned for NaN (a finite or +inf max lets NaN through exp(s - m)).
float row_max_or_nan(const float* s, int64_t n) {
  const float kNegInf = -__builtin_inff();
  float mx[kLanes];
  for (int u = 0; u < kLanes; ++u) mx[u] = kNegInf;
  int64_t c = 0;
  for (; c + kLanes <= n; c += kLanes) {
    for (int u = 0; u < kLanes; ++u) mx[u] = s[c + u] > mx[u] ? s[c + u] : mx[u];
  }
  for (int u = 0; c < n; ++c, ++u) mx[u] = s[c] > mx[u] ? s[c] : mx[u];
  float m = mx[0];
  for (int u = 1; u < kLanes; ++u) m = mx[u] > m ? mx[u] : m;
  if (m == kNegInf) {
    for (c = 0; c < n; ++c)
      if (s[c] != s[c]) return s[c];
  }
  return m;
}

void k_attn_online_softmax(float* S, int64_t ld, int64_t nq, int64_t nk, float* m, float* l,
                           float* alpha) {
  const float kNegInf = -__builtin_inff();
  for (int64_t r = 0; r < nq; ++r) {
    float* s = S + r * ld;
    const float mx = row_max_or_nan(s, nk);
    const float m_new = (mx > m[r] || mx != mx) ? mx : m[r];  // NaN sticks
    if (m_new == kNegInf) {  // nothing allowed in this row so far
      for (int64_t c = 0; c < nk; ++c) s[c] = 0.f;
      alpha[r] = 1.f;
      continue;
    }
    alpha[r] = vm::exp_f(m[r] - m_new);  // 0 when m was -inf
    for (int64_t c = 0; c < nk; ++c) s[c] = vm::exp_f(s[c] - m_new);
    l[r] = l[r] * alpha[r] + lane_sum(s, nk);
    m[r] = m_new;
  }
}

void k_attn_probs_from_lse(float* S, int64_t ld, int64_t nq, int64_t nk, const float* lse) {
  for (int64_t r = 0; r < nq; ++r) {
    float* s = S + r * ld;
    const float x = lse[r];
    if (x == -__builtin_inff()) {
      for (int64_t c = 0; c < nk; ++c) s[c] = 0.f;
    } else {
      for (int64_t c = 0; c < nk; ++c) s[c] = vm::exp_f(s[c] - x);
    }
  }
}

void k_attn_ds_from_p(float* P, const float* dP, int64_t ld, int64_t nq, int64_t nk,
                      const float* Di) {
  for (int64_t r = 0; r < nq; ++r) {
    float* p = P + r * ld;
    const float* dp = dP + r * ld;
    const float d = Di[r];
    for (int64_t c = 0; c < nk; ++c) p[c] = p[c] * (dp[c] - d);
  }
}

// One cached f32 or f16 row as f32: in place, or widened into buf (through F16C where the build
// has it: the same values as f16_to_f32 but for a signalling NaN's quiet bit, which only feeds
// arithmetic here). bf16 rows are widened in registers by their readers instead (row_loader).
inline const float* cache_row(const void* rows, int64_t at, int64_t D, DType dtype,
                              float* __restrict buf) {
  if (dtype == DType::F32) return static_cast<const float*>(rows) + at;
  const uint16_t* __restrict h = static_cast<const uint16_t*>(rows) + at;
  int64_t d = 0;
#if defined(__F16C__) && defined(__AVX2__)
  for (; d + 8 <= D; d += 8) {
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(h + d));
    _mm256_storeu_ps(buf + d, _mm256_cvtph_ps(x));
  }
#endif
  for (; d < D; ++d) buf[d] = f16_to_f32(h[d]);
  return buf;
}

// Calls fn(load) with load(d) = element d of the cached row at `at` as f32: a bf16 row widened
// in registers (exact, and cheaper than a store), any other through cache_row.
template <typename Fn>
inline void with_row(const void* rows, int64_t at, int64_t D, DType dtype, float* widened,
                     Fn fn) {
  if (dtype == DType::BF16) {
    const uint16_t* __restrict h = static_cast<const uint16_t*>(rows) + at;
    fn([h](int64_t d) { return bf16_to_f32(h[d]); });
  } else {
    const float* __restrict v = cache_row(rows, at, D, dtype, widened);
    fn([v](int64_t d) { return v[d]; });
  }
}

// <a, b> over D floats in 8 interleaved lanes (vectorises; the same order on every ISA); b(d)
// loads element d of the other row.
template <typename Load>
inline float dot8(const float* __restrict a, Load b, int64_t D) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t d = 0;
  for (; d + 8 <= D; d += 8) {
    for (int u = 0; u < 8; ++u) acc[u] += a[d + u] * b(d + u);
  }
  for (; d < D; ++d) acc[d & 7] += a[d] * b(d);
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
// Decoding's cached attention with the head dim in registers (AVX2 + FMA + F16C): 8 floats per
// register, NV = D / 8 of them per row. The arithmetic is the generic loops' with every product
// contracted to FMA: a score is dot8's 8 lanes of FMA chains and its tree, a weighted sum one
// FMA per position in order. (That is how GCC compiles the generic loops in most but not all
// cases: the AVX-512 build left dot8 uncontracted on f32 rows of 128.) What changes is the
// work around it. Positions are still read in memory order, one after the other, every kv head
// of each (the walk the hardware prefetchers stream best; blocks of positions read head by head
// measured slower on GPT-2's wide rows). But a cached row is loaded and widened once for the G
// query heads that share it, where the generic dot widened it once per head; and the scores'
// lanes are kept (8 floats per position and head, in L1) and reduced 8 positions at a time,
// where the generic dot reduced every position's lanes on its own: most of a short dot's work.

// Elements [at, at + 8) of a cached f32 / bf16 / f16 row as f32 (exact; f16 through F16C, as
// cache_row).
template <DType kType>
inline __m256 load8_cached(const void* rows, int64_t at) {
  if (kType == DType::F32) return _mm256_loadu_ps(static_cast<const float*>(rows) + at);
  const __m128i h =
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(rows) + at));
  if (kType == DType::F16) return _mm256_cvtph_ps(h);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

// A cached row of 8 * NV elements from `at`, as NV registers of f32.
template <int NV, DType kType>
inline void load_cached_row(const void* rows, int64_t at, __m256* out) {
  #pragma GCC unroll 16
  for (int v = 0; v < NV; ++v) out[v] = load8_cached<kType>(rows, at + 8 * v);
}

// Eight positions' dot8 lanes (v[p]: position p's 8 lanes) to their sums in position order, each
// ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)) as dot8 adds them.
inline __m256 dot8_trees(const __m256* v) {
  const __m256 q = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
  const __m256 r = _mm256_hadd_ps(_mm256_hadd_ps(v[4], v[5]), _mm256_hadd_ps(v[6], v[7]));
  // q: positions 0-3's (l0+l1)+(l2+l3) in lanes 0-3, their (l4+l5)+(l6+l7) in lanes 4-7; r: 4-7.
  return _mm256_add_ps(_mm256_permute2f128_ps(q, r, 0x20), _mm256_permute2f128_ps(q, r, 0x31));
}

// lanes: per (query, head), 8 positions' 8 lanes. Writes the scores of positions
// [j0, j0 + count) from them.
inline void cache_scores_from_lanes(float* s, int64_t ld, const float* lanes, int64_t QH,
                                    int64_t j0, int count, float scale) {
  for (int64_t x = 0; x < QH; ++x) {
    __m256 v[8];
    for (int p = 0; p < 8; ++p) {  // the lanes of positions past the end were never written
      v[p] = p < count ? _mm256_loadu_ps(lanes + (x * 8 + p) * 8) : _mm256_setzero_ps();
    }
    const __m256 scores = _mm256_mul_ps(_mm256_set1_ps(scale), dot8_trees(v));
    float* dst = s + x * ld + j0;
    if (count == 8) {
      _mm256_storeu_ps(dst, scores);
    } else {
      alignas(32) float part[8];
      _mm256_store_ps(part, scores);
      for (int p = 0; p < count; ++p) dst[p] = part[p];
    }
  }
}

// lanes: 64 x nq x Hk x G floats of scratch.
template <int NV, DType kType>
void cache_scores_fast(float* s, int64_t ld, const float* q, int64_t q_stride, int64_t nq,
                       int64_t Hk, int64_t G, const void* rows, int64_t pos_stride, int64_t n,
                       float scale, float* lanes) {
  const int64_t H = Hk * G, QH = nq * H;
  for (int64_t j = 0; j < n; ++j) {
    const int p = int(j % 8);
    for (int64_t hk = 0; hk < Hk; ++hk) {
      __m256 key[NV];
      load_cached_row<NV, kType>(rows, j * pos_stride + hk * 8 * NV, key);
      for (int64_t i = 0; i < nq; ++i) {
        for (int64_t h = hk * G; h < (hk + 1) * G; ++h) {
          const float* qh = q + i * q_stride + h * 8 * NV;
          __m256 acc = _mm256_setzero_ps();
          #pragma GCC unroll 16
          for (int v = 0; v < NV; ++v) {
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(qh + 8 * v), key[v], acc);
          }
          _mm256_storeu_ps(lanes + ((i * H + h) * 8 + p) * 8, acc);
        }
      }
    }
    if (p == 7 || j == n - 1) cache_scores_from_lanes(s, ld, lanes, QH, j - p, p + 1, scale);
  }
}

// o (nq x Hk x G rows of D) = sum over positions in order of p * value row: each value row
// loaded and widened once for its G heads.
template <int NV, DType kType>
void cache_weighted_fast(float* o, const float* p, int64_t ld, int64_t nq, int64_t Hk, int64_t G,
                         const void* rows, int64_t pos_stride, int64_t n) {
  const int64_t H = Hk * G;
  for (int64_t x = 0; x < nq * H * 8 * NV; ++x) o[x] = 0.0f;
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t hk = 0; hk < Hk; ++hk) {
      __m256 value[NV];
      load_cached_row<NV, kType>(rows, j * pos_stride + hk * 8 * NV, value);
      for (int64_t i = 0; i < nq; ++i) {
        for (int64_t h = hk * G; h < (hk + 1) * G; ++h) {
          const __m256 pj = _mm256_set1_ps(p[(i * H + h) * ld + j]);
          float* oh = o + (i * H + h) * 8 * NV;
          #pragma GCC unroll 16
          for (int v = 0; v < NV; ++v) {
            const __m256 sum = _mm256_fmadd_ps(pj, value[v], _mm256_loadu_ps(oh + 8 * v));
            _mm256_storeu_ps(oh + 8 * v, sum);
          }
        }
      }
    }
  }
}

// The head dims with a register path: 32 and 64 (AVX2's 16 registers hold a row of 64 and
// what it multiplies), 128 on AVX-512's 32.
template <int N>
struct RowVectors {
  static constexpr int value = N;
};
template <template <int, DType> class Body, typename... Args>
inline bool cache_dispatch(int64_t D, DType dtype, Args... args) {
  auto by_type = [&](auto nv) {
    constexpr int NV = decltype(nv)::value;
    if (dtype == DType::F32) Body<NV, DType::F32>::run(args...);
    else if (dtype == DType::BF16) Body<NV, DType::BF16>::run(args...);
    else Body<NV, DType::F16>::run(args...);
    return true;
  };
  switch (D) {
    case 32: return by_type(RowVectors<4>{});
    case 64: return by_type(RowVectors<8>{});
#if defined(__AVX512F__)
    case 128: return by_type(RowVectors<16>{});
#endif
    default: return false;
  }
}
template <int NV, DType kType>
struct CacheScores {
  template <typename... Args>
  static void run(Args... args) { cache_scores_fast<NV, kType>(args...); }
};
template <int NV, DType kType>
struct CacheWeighted {
  template <typename... Args>
  static void run(Args... args) { cache_weighted_fast<NV, kType>(args...); }
};
#endif

void k_attn_cache_scores(float* s, int64_t ld, const float* q, int64_t q_stride, int64_t nq,
                         int64_t Hk, int64_t G, const void* rows, int64_t pos_stride, int64_t n,
                         int64_t D, DType dtype, float scale, float* widened) {
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
  // widened: the lanes' scratch here (act_kernels.h: 64 floats per query and head).
  if (cache_dispatch<CacheScores>(D, dtype, s, ld, q, q_stride, nq, Hk, G, rows, pos_stride, n,
                                  scale, widened)) {
    return;
  }
#endif
  const int64_t H = Hk * G;
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t hk = 0; hk < Hk; ++hk) {
      with_row(rows, j * pos_stride + hk * D, D, dtype, widened, [&](auto key) {
        for (int64_t i = 0; i < nq; ++i)
          for (int64_t h = hk * G; h < (hk + 1) * G; ++h)
            s[(i * H + h) * ld + j] = scale * dot8(q + i * q_stride + h * D, key, D);
      });
    }
  }
}

void k_attn_cache_weighted_sum(float* o, const float* p, int64_t ld, int64_t nq, int64_t Hk,
                               int64_t G, const void* rows, int64_t pos_stride, int64_t n,
                               int64_t D, DType dtype, float* widened) {
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
  if (cache_dispatch<CacheWeighted>(D, dtype, o, p, ld, nq, Hk, G, rows, pos_stride, n)) return;
#endif
  const int64_t H = Hk * G;
  for (int64_t i = 0; i < nq * H * D; ++i) o[i] = 0.0f;
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t hk = 0; hk < Hk; ++hk) {
      with_row(rows, j * pos_stride + hk * D, D, dtype, widened, [&](auto value) {
        for (int64_t i = 0; i < nq; ++i)
          for (int64_t h = hk * G; h < (hk + 1) * G; ++h) {
            const float pj = p[(i * H + h) * ld + j];
            float* __restrict oh = o + (i * H + h) * D;
            for (int64_t d = 0; d < D; ++d) oh[d] += pj * value(d);
          }
      });
    }
  }
}

}  // namespace

const ActKernels& S2S_ACT_KERNELS_NAME() {
  static const ActKernels k{S2S_ACT_KERNELS_LABEL, k_gelu_forward,    k_gelu_backward,
                            k_silu_forward,        k_silu_backward,   k_swiglu_forward,
                            k_swiglu_backward,     k_geglu_forward,   k_geglu_backward,
                            k_softmax_forward,     k_softmax_backward,
                            k_ce_row_lse,          k_ce_row_backward,
                            k_ce_row_backward_bf16,
                            k_attn_online_softmax, k_attn_probs_from_lse,
                            k_attn_ds_from_p,
                            k_attn_cache_scores,   k_attn_cache_weighted_sum};
  return k;
}

}  // namespace s2s
