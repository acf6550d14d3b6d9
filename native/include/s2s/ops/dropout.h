// dropout with a counter-based RNG (Philox4x32-10, native/src/core/philox.h): element i of a call
// is kept or dropped by (seed, offset + i) alone, so the mask does not depend on the thread
// count and the backward regenerates it instead of storing it. Forward, backward, references.
// Shapes: any; shown as (N,C), N rows = B*T, C channels.
#pragma once
#include <cstdint>

#include "s2s/tensor.h"

namespace s2s {

// The key of a dropout call's Philox stream: `value`, or, where `on_device` is set, the eight
// bytes it points to in the backend's memory, read when the work runs. A pass that reads its seed
// there queues the same calls whatever the seed, so its recording (Backend::record) replays with
// the next step's seed once that is written there (Graph::dropout_key, PassReplay). Converts
// from a plain seed.
struct DropoutSeed {
  DropoutSeed(uint64_t seed = 0) : value(seed) {}  // NOLINT: a plain seed is the common case
  // The key, for host memory (a host backend's ops, which take on_device as a host pointer).
  uint64_t read_on_host() const { return on_device != nullptr ? *on_device : value; }
  uint64_t value = 0;
  const uint64_t* on_device = nullptr;
};

// out (N,C) = inp * keep / (1 - p), keep_i = (uniform(seed, offset + i) >= p), where uniform is
// the top 24 bits of Philox word (offset + i) of the stream keyed by seed, times 2^-24.
// (Applied as x * (keep ? 1/(1-p) : 0), so a dropped NaN stays NaN, as in PyTorch.)
// p in [0, 1), else S2S_ARGUMENT; p == 0 is the identity (a copy). out may be inp.
// Callers advance offset by numel per call so no two calls share random words.
void dropout_forward(const Tensor& out, const Tensor& inp, float p, DropoutSeed seed,
                     uint64_t offset);

// dinp (N,C) += dout * keep / (1 - p) with the same (p, seed, offset) as the forward.
// ACCUMULATES; dinp.data == nullptr: nothing to do. overwrite = true: dinp is written (=)
// instead of accumulated and may hold garbage (a fresh gradient: no zero-fill pass, no read).
void dropout_backward(const Tensor& dinp, const Tensor& dout, float p, DropoutSeed seed,
                      uint64_t offset, bool overwrite = false);

// One Philox block per element, no batching: the test oracles.
void dropout_forward_reference(const Tensor& out, const Tensor& inp, float p, uint64_t seed,
                               uint64_t offset);
void dropout_backward_reference(const Tensor& dinp, const Tensor& dout, float p, uint64_t seed,
                                uint64_t offset);

}  // namespace s2s
