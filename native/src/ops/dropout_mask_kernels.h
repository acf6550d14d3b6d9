// The CPU dropout mask in bulk: Philox4x32-10 blocks made several at a time (16 streams per
// instruction with AVX-512, 8 with AVX2, one at a time on the scalar path), then turned into
// keep factors and applied. Every path gives exactly dropout_keep(seed, counter, p) for every
// element (ops/dropout_mask.h), whatever the ISA, the counter's position inside its block of 4
// or the length; the tests compare them bit for bit. CPU only: the CUDA kernels call
// dropout_keep directly. Internal to src/ops.
#pragma once
#include <cstdint>

namespace s2s {

// What to do with each element's factor z = keep ? scale : 0.
enum class DropoutApply {
  kFactors,     // dst = z
  kMultiply,    // dst = src * z (src may be dst)
  kAccumulate,  // dst += src * z (one rounded product, then one rounded sum: no fused multiply-add)
};

// The per-ISA kernels, chosen by dropout_mask_kernels() for s2s::active_isa().
struct DropoutMaskKernels {
  const char* name;
  // words[4 b + j] = word j of the Philox block with counter (hi[b] << 32 | lo[b]) keyed by seed,
  // for b in [0, n) (philox_block in core/philox.h).
  void (*philox_blocks)(uint64_t seed, const uint32_t* lo, const uint32_t* hi, int64_t n,
                        uint32_t* words);
  // For i in [0, n): z = philox_uniform(words[i]) >= p ? scale : 0, used as `how` says.
  void (*apply)(DropoutApply how, float* dst, const float* src, const uint32_t* words, int64_t n,
                float p, float scale);
};

const DropoutMaskKernels& dropout_mask_kernels();  // for the active ISA
const DropoutMaskKernels& dropout_mask_kernels_base();
#if S2S_HAVE_X86_KERNELS
const DropoutMaskKernels& dropout_mask_kernels_avx2();
const DropoutMaskKernels& dropout_mask_kernels_avx512();
#endif

// The dropout of an (nq, n) tile of rows with stride ld (dst and src alike): element (r, c) has
// counter counter0 + r * row_stride + c and factor z = dropout_keep(seed, counter, p) ? scale : 0,
// applied as `how` says (src unused for kFactors). The blocks of several rows are made in one
// batch, so short rows (attention tiles) fill the vector lanes too. Serial; ops split the work.
void dropout_rows(DropoutApply how, float* dst, const float* src, int64_t ld, int64_t nq,
                  int64_t n, uint64_t seed, uint64_t counter0, uint64_t row_stride, float p,
                  float scale);

}  // namespace s2s
