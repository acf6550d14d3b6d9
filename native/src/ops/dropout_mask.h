// The dropout mask as a function of (seed, counter) alone, shared by every op that drops
// (dropout, the attention probabilities) on the CPU and on CUDA, so that all of them keep or drop
// exactly the same elements for the same (seed, counter): element `counter` is kept when the
// uniform made from Philox word `counter` of the stream keyed by seed (core/philox.h) is >= p.
#pragma once
#include <cstdint>

#include "core/philox.h"

namespace s2s {

// Whether element `counter` survives dropout with probability p (one Philox block per call).
S2S_HOST_DEVICE inline bool dropout_keep(uint64_t seed, uint64_t counter, float p) {
  return philox_uniform(philox_word(seed, counter)) >= p;
}

// The CPU ops make the mask in bulk with vector Philox (ops/dropout_mask_kernels.h), bit for bit
// this function's.

}  // namespace s2s
