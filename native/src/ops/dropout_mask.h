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

// Calls fn(c, keep) for c in [0, n), keep = dropout_keep(seed, counter0 + c, p), in order, making
// each Philox block once for the (up to) 4 consecutive counters it covers.
template <typename Fn>
inline void for_each_dropout_keep(uint64_t seed, uint64_t counter0, int64_t n, float p, Fn&& fn) {
  int64_t c = 0;
  while (c < n) {
    const uint64_t idx = counter0 + uint64_t(c);
    const Philox4x32 blk = philox_block(seed, idx >> 2);
    // The rest of this block of 4 words (or of the range, whichever ends first).
    const int64_t lane0 = int64_t(idx & 3);
    const int64_t m = n - c < 4 - lane0 ? n - c : 4 - lane0;
    for (int64_t j = 0; j < m; ++j) fn(c + j, philox_uniform(blk.v[lane0 + j]) >= p);
    c += m;
  }
}

}  // namespace s2s
