// The scalar dropout mask kernels (one Philox block at a time, the mask as it always was made),
// the ISA dispatch, and dropout_rows' batching of counters into blocks.
#include "ops/dropout_mask_kernels.h"

#include <algorithm>

#include "core/philox.h"
#include "s2s/cpu_features.h"

namespace s2s {

namespace {

void base_philox_blocks(uint64_t seed, const uint32_t* lo, const uint32_t* hi, int64_t n,
                        uint32_t* words) {
  for (int64_t b = 0; b < n; ++b) {
    const Philox4x32 blk = philox_block(seed, uint64_t(hi[b]) << 32 | lo[b]);
    for (int j = 0; j < 4; ++j) words[4 * b + j] = blk.v[j];
  }
}

void base_apply(DropoutApply how, float* dst, const float* src, const uint32_t* words, int64_t n,
                float p, float scale) {
  for (int64_t i = 0; i < n; ++i) {
    const float z = philox_uniform(words[i]) >= p ? scale : 0.0f;
    switch (how) {
      case DropoutApply::kFactors: dst[i] = z; break;
      case DropoutApply::kMultiply: dst[i] = src[i] * z; break;
      case DropoutApply::kAccumulate: dst[i] += src[i] * z; break;
    }
  }
}

}  // namespace

const DropoutMaskKernels& dropout_mask_kernels_base() {
  static const DropoutMaskKernels k{"scalar", base_philox_blocks, base_apply};
  return k;
}

const DropoutMaskKernels& dropout_mask_kernels() {
#if S2S_HAVE_X86_KERNELS
  const Isa isa = active_isa();
  if (isa >= Isa::Avx512 && isa != Isa::Neon) return dropout_mask_kernels_avx512();
  if (isa == Isa::Avx2) return dropout_mask_kernels_avx2();
#endif
  return dropout_mask_kernels_base();
}

void dropout_rows(DropoutApply how, float* dst, const float* src, int64_t ld, int64_t nq,
                  int64_t n, uint64_t seed, uint64_t counter0, uint64_t row_stride, float p,
                  float scale) {
  const DropoutMaskKernels& k = dropout_mask_kernels();
  // One batch: up to kBlocks blocks (4 KiB of words, L1-resident) over one or more segments,
  // a segment being a run of one row's columns whose words lie contiguously in the batch.
  constexpr int64_t kBlocks = 256;
  // Element counter x lies in block x >> 2; a counter that wraps past 2^64 wraps its block
  // index at 2^62, which masking the block index reproduces.
  constexpr uint64_t kBlockMask = (uint64_t(1) << 62) - 1;
  struct Segment {
    int64_t at, n, word0;  // element offset in dst/src, length, first word in `words`
  };
  alignas(64) uint32_t lo[kBlocks], hi[kBlocks], words[4 * kBlocks];
  Segment segs[kBlocks];
  int64_t nblk = 0, nseg = 0;
  auto flush = [&] {
    k.philox_blocks(seed, lo, hi, nblk, words);
    for (int64_t s = 0; s < nseg; ++s) {
      const Segment& g = segs[s];
      k.apply(how, dst + g.at, src ? src + g.at : nullptr, words + g.word0, g.n, p, scale);
    }
    nblk = nseg = 0;
  };
  for (int64_t r = 0; r < nq; ++r) {
    for (int64_t c = 0; c < n;) {
      if (nblk == kBlocks) flush();
      const uint64_t ctr = counter0 + uint64_t(r) * row_stride + uint64_t(c);
      const int64_t lane0 = int64_t(ctr & 3);  // the first element's word in its block
      const int64_t m = std::min(n - c, 4 * (kBlocks - nblk) - lane0);
      const int64_t nb = (lane0 + m + 3) / 4;
      for (int64_t j = 0; j < nb; ++j) {
        const uint64_t blk = ((ctr >> 2) + uint64_t(j)) & kBlockMask;
        lo[nblk + j] = uint32_t(blk);
        hi[nblk + j] = uint32_t(blk >> 32);
      }
      segs[nseg++] = Segment{r * ld + c, m, 4 * nblk + lane0};
      nblk += nb;
      c += m;
    }
  }
  if (nblk > 0) flush();
}

}  // namespace s2s
