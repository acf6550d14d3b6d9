// Philox4x32-10 (Salmon et al., SC'11, the Random123 generator PyTorch and cuRAND use): a
// counter-based RNG, i.e. a pure function of (counter, key), so any element's random number
// can be made by any thread in any order. Header-only so loops can inline it.
// philox_word(seed, i) is the i-th 32-bit word of the stream keyed by seed.
#pragma once
#include <cstdint>

// The CUDA dropout kernels include this file too, so a GPU mask is the CPU mask bit for bit.
#if defined(__CUDACC__)
#define S2S_HOST_DEVICE __host__ __device__
#else
#define S2S_HOST_DEVICE
#endif

namespace s2s {

struct Philox4x32 {
  uint32_t v[4];
};

// One Philox4x32-10 block: 10 rounds of the multiply/xor Feistel network, key bumped by the
// Weyl constants between rounds. Matches Random123's kat_vectors.
S2S_HOST_DEVICE inline Philox4x32 philox4x32_10(Philox4x32 ctr, uint32_t k0, uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += kW0;
      k1 += kW1;
    }
    const uint64_t p0 = uint64_t(kM0) * ctr.v[0];
    const uint64_t p1 = uint64_t(kM1) * ctr.v[2];
    const uint32_t hi0 = uint32_t(p0 >> 32), lo0 = uint32_t(p0);
    const uint32_t hi1 = uint32_t(p1 >> 32), lo1 = uint32_t(p1);
    ctr = Philox4x32{{hi1 ^ ctr.v[1] ^ k0, lo1, hi0 ^ ctr.v[3] ^ k1, lo0}};
  }
  return ctr;
}

// Block index (i / 4) as the 128-bit counter (low 64 bits used), seed as the 64-bit key.
S2S_HOST_DEVICE inline Philox4x32 philox_block(uint64_t seed, uint64_t block) {
  return philox4x32_10(Philox4x32{{uint32_t(block), uint32_t(block >> 32), 0u, 0u}},
                       uint32_t(seed), uint32_t(seed >> 32));
}

// The i-th 32-bit word of the stream: word (i % 4) of block (i / 4).
S2S_HOST_DEVICE inline uint32_t philox_word(uint64_t seed, uint64_t i) {
  return philox_block(seed, i >> 2).v[i & 3];
}

// A uniform float in [0, 1) from a word: its top 24 bits times 2^-24 (exact in float).
S2S_HOST_DEVICE inline float philox_uniform(uint32_t word) {
  return static_cast<float>(word >> 8) * (1.0f / 16777216.0f);
}

}  // namespace s2s
