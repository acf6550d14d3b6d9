// Internal to the small-M product (s2s/gemv.h): the kernel table one ISA path fills in, shared by
// the driver (gemv.cpp) and the per-ISA files (gemv_avx2.cpp, gemv_avx512.cpp,
// gemv_avx512bf16.cpp). Nothing here is public API.
// W element types the kernel templates take: float, uint16_t (bf16 bits), F16Bits (fp16 bits).
// Legend: M rows of x (<= kGemvMaxRows), K inner dimension, N outputs.
#pragma once
#include <cstdint>

namespace s2s {
namespace gemv_detail {

// IEEE binary16 bits: a distinct type so the per-ISA loaders overload on it (uint16_t already
// means bf16 bits).
struct F16Bits { uint16_t bits; };
static_assert(sizeof(F16Bits) == 2, "element-sized wrapper");

struct Args {
  int64_t M, K;
  const float* x;       // (M,K) rows strided by ldx: x itself (f32 W), or x rounded to bf16
                        // / fp16 and widened back to f32 (bf16 / f16 W, kernels that widen W)
  const uint16_t* xb;   // the same rounded x as bf16 bits, rows strided by K (bf16 W only)
  int64_t ldx;
  const void* W;        // f32, bf16 bits or fp16 bits, (N,K) out_in or (K,N) in_out, rows strided by ldw
  int64_t ldw;
  const float* bias;    // (N,) or null
  float* y;             // (M,N) rows strided by ldy
  int64_t ldy;
};

// The out_in tiles fetch the W rows of the next tile (NR rows on) as they read their own, and
// AVX-512's in_out blocks the next column chunk of each row. With the hardware prefetchers
// alone, a tile's first pass over its W (the later passes, for more rows of x, hit L1) waited
// on memory instead of overlapping the previous tile's FMAs: on SmolLM-135M's decoding shapes
// (all out_in), 8 rows of x over bf16 weights took 26-31 ms a step without the hint and 17-18
// with it. (AVX2's in_out measured no better with it, and keeps none.) Integer address
// arithmetic: the last tile's hint points past W, which a prefetch may.
template <typename T>
inline void prefetch_next_tile(const T* W, int64_t offset) {
  const uintptr_t at = reinterpret_cast<uintptr_t>(W) + uintptr_t(offset) * sizeof(T);
  __builtin_prefetch(reinterpret_cast<const void*>(at), 0, 3);
}

// Computes y[:, n0:n1] completely (bias included). n0 is a multiple of the table's block for
// the layout; n1 is a multiple of it or N.
using KernelFn = void (*)(const Args& a, int64_t n0, int64_t n1);

struct Kernels {
  const char* name_f32;
  const char* name_bf16;
  const char* name_f16;
  KernelFn f32_out_in, f32_in_out, bf16_out_in, bf16_in_out, f16_out_in, f16_in_out;
  int64_t block_out_in;  // outputs per task in the out_in layout
  int64_t block_in_out;  // columns per task in the in_out layout
};

const Kernels& scalar_kernels();
#if defined(S2S_HAVE_X86_KERNELS)
const Kernels& avx2_kernels();
const Kernels& avx512_kernels();
// avx512_kernels() with vdpbf16ps for bf16 W in the out_in layout when M <= 2.
const Kernels& avx512bf16_kernels();
// The vdpbf16ps out_in kernel (gemv_avx512bf16.cpp).
void bf16_out_in_dpbf16(const Args& a, int64_t n0, int64_t n1);
#endif

}  // namespace gemv_detail
}  // namespace s2s
