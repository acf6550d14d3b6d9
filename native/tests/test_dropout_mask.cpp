// The bulk dropout mask (ops/dropout_mask_kernels.h) on every instruction-set path this CPU runs
// against the scalar definition dropout_keep(seed, counter, p), bit for bit: the Philox blocks
// themselves, the factors and both ways of applying them, counters starting anywhere in their
// block of 4 (and near the 2^32 and 2^64 wraps), lengths 1..100 and long ones, and tiles of
// rows as the attention op asks for them.
#include <cstring>
#include <string>
#include <vector>

#include "core/philox.h"
#include "harness.h"
#include "ops/dropout_mask.h"
#include "ops/dropout_mask_kernels.h"
#include "ops_test_util.h"

using namespace s2s;

namespace {

const char* expected_table(Isa isa) {
  switch (isa) {
    case Isa::Avx2: return "avx2";
    case Isa::Avx512:
    case Isa::Avx512Bf16: return "avx512";
    default: return "scalar";
  }
}

// The three modes computed element by element from dropout_keep; out holds dst's values before.
std::vector<float> expected(DropoutApply how, std::vector<float> out, const std::vector<float>& src,
                            uint64_t seed, uint64_t counter0, float p, float scale) {
  for (size_t i = 0; i < out.size(); ++i) {
    const float z = dropout_keep(seed, counter0 + i, p) ? scale : 0.0f;
    if (how == DropoutApply::kFactors) out[i] = z;
    else if (how == DropoutApply::kMultiply) out[i] = src[i] * z;
    else out[i] += src[i] * z;
  }
  return out;
}

const DropoutApply kModes[] = {DropoutApply::kFactors, DropoutApply::kMultiply,
                               DropoutApply::kAccumulate};

}  // namespace

TEST(dropout_mask_dispatch_follows_the_isa) {
  opt::for_each_isa([](Isa isa) {
    CHECK_MSG(std::string(dropout_mask_kernels().name) == expected_table(isa),
              opt::where(isa, "dropout mask table"));
  });
}

TEST(philox_blocks_match_scalar_on_every_isa) {
  s2s_test::Rng rng(11);
  opt::for_each_isa([&](Isa isa) {
    const DropoutMaskKernels& k = dropout_mask_kernels();
    for (int64_t n = 0; n <= 70; ++n) {
      const uint64_t seed = rng.next();
      std::vector<uint32_t> lo(n), hi(n), words(4 * n + 4, 0xdeadbeefu);
      for (int64_t b = 0; b < n; ++b) {
        lo[b] = uint32_t(rng.next());
        hi[b] = b % 3 == 0 ? 0u : uint32_t(rng.next());
      }
      k.philox_blocks(seed, lo.data(), hi.data(), n, words.data());
      bool same = true;
      for (int64_t b = 0; b < n; ++b) {
        const Philox4x32 ref = philox_block(seed, uint64_t(hi[b]) << 32 | lo[b]);
        for (int j = 0; j < 4; ++j) same = same && words[4 * b + j] == ref.v[j];
      }
      for (int j = 0; j < 4; ++j) same = same && words[4 * n + j] == 0xdeadbeefu;  // no overrun
      CHECK_MSG(same, opt::where(isa, "philox_blocks n", n));
    }
  });
}

TEST(dropout_rows_one_row_matches_dropout_keep_on_every_isa) {
  s2s_test::Rng rng(12);
  std::vector<int64_t> lengths;
  for (int64_t n = 1; n <= 100; ++n) lengths.push_back(n);
  for (int64_t n : {1023, 1024, 1025, 4099, 70001}) lengths.push_back(n);  // > one 1024-word batch
  opt::for_each_isa([&](Isa isa) {
    for (int64_t n : lengths) {
      const uint64_t seed = rng.next();
      const float p = n % 4 == 0 ? 0.5f : rng.uniform(0.0f, 0.99f);  // 0.5: uniforms hit p exactly
      const float scale = 1.0f / (1.0f - p);
      // Offsets inside the block of 4, far ones, across the 2^32-block carry and the 2^64 wrap.
      const uint64_t counters[] = {uint64_t(n % 4), rng.next() >> 3, (uint64_t(1) << 34) - 3,
                                   ~uint64_t(0) - uint64_t(n % 7), rng.next()};
      for (uint64_t c0 : counters) {
        const std::vector<float> src = s2s_test::random_vector(n, rng.next() % 1000);
        const std::vector<float> before = s2s_test::random_vector(n, rng.next() % 1000 + 1000);
        for (DropoutApply how : kModes) {
          std::vector<float> out = before;
          dropout_rows(how, out.data(), src.data(), 0, 1, n, seed, c0, 0, p, scale);
          CHECK_MSG(opt::bit_equal(out, expected(how, before, src, seed, c0, p, scale)),
                    opt::where(isa, "dropout_rows mode/n", long(how), n) + " counter " +
                        std::to_string(c0));
        }
      }
    }
  });
}

TEST(dropout_rows_tiles_match_dropout_keep_on_every_isa) {
  // A (Tq, Tk) probability matrix's tile of rows [i0, i0+nq), keys [j0, j0+nk), row stride ld:
  // what the attention op asks for. Columns beyond nk must stay untouched.
  s2s_test::Rng rng(13);
  struct Tile {
    int64_t Tk, j0, nk, nq, ld;
  };
  const Tile tiles[] = {{64, 0, 64, 64, 64},   {256, 0, 256, 17, 256}, {77, 5, 13, 9, 16},
                        {130, 64, 66, 64, 256}, {3, 1, 2, 40, 5},       {1, 0, 1, 300, 1},
                        {1000, 3, 997, 5, 1001}};
  opt::for_each_isa([&](Isa isa) {
    for (const Tile& t : tiles) {
      for (int trial = 0; trial < 3; ++trial) {
        const uint64_t seed = rng.next(), base = rng.next() >> (trial * 20);
        const float p = 0.1f, scale = 1.0f / (1.0f - p);
        const std::vector<float> src = s2s_test::random_vector(t.nq * t.ld, 40 + trial);
        const std::vector<float> before = s2s_test::random_vector(t.nq * t.ld, 50 + trial);
        for (DropoutApply how : kModes) {
          std::vector<float> out = before;
          dropout_rows(how, out.data(), src.data(), t.ld, t.nq, t.nk, seed, base + t.j0,
                       uint64_t(t.Tk), p, scale);
          std::vector<float> want = before;
          for (int64_t r = 0; r < t.nq; ++r) {
            const std::vector<float> s(src.begin() + r * t.ld, src.begin() + r * t.ld + t.nk);
            const std::vector<float> b(before.begin() + r * t.ld, before.begin() + r * t.ld + t.nk);
            const std::vector<float> row =
                expected(how, b, s, seed, base + uint64_t(r * t.Tk + t.j0), p, scale);
            std::memcpy(want.data() + r * t.ld, row.data(), row.size() * sizeof(float));
          }
          CHECK_MSG(opt::bit_equal(out, want),
                    opt::where(isa, "dropout_rows tile Tk/nk", t.Tk, t.nk) + " mode " +
                        std::to_string(int(how)));
        }
      }
    }
  });
}
