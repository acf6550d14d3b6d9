// GEMM: every ISA path this CPU runs (s2s::supported_isas) at 1 and 2 threads, fp32 and bf16,
// against the double-accumulating reference loops; all transposes, betas, alpha != 1, padded
// leading dimensions, K = 0, NaN in C under beta = 0; bit-determinism; matmul() entry errors.
//
// Tolerance unit: max |ours - ref| / max(1, |ref|) (harness max_normalized_error). Inputs are
// uniform in [-1, 1], so |C| ~ sqrt(K / 9); a K-long fp32 sum has rounding error ~ eps *
// sqrt(K) * |terms| with eps = 6e-8, hence tolerances of the form c * 1e-7 * sqrt(K) + floor.
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "backends/cpu/gemm_internal.h"  // set_amx_enabled: reach vdpbf16ps on AMX CPUs
#include "harness.h"
#include "s2s/arena.h"
#include "s2s/cpu_features.h"
#include "s2s/dtype.h"
#include "s2s/error.h"
#include "s2s/gemm.h"
#include "s2s/tensor.h"
#include "s2s/thread_pool.h"

using namespace s2s;
using s2s_test::max_normalized_error;

namespace {

// Stated tolerances: fp32 kernels (and bf16 widened to fp32) accumulate in fp32 with FMA;
// vdpbf16ps adds one extra rounding per pair. Both well inside 1e-6 * sqrt(K) + 1e-6.
double tol_f32(int64_t K) { return 1e-6 * std::sqrt(double(K)) + 1e-6; }
double tol_bf16(int64_t K) { return 2e-6 * std::sqrt(double(K)) + 1e-6; }

// One GEMM case with operands stored with padded leading dimensions. Padding is NaN, so a
// kernel that reads outside op(A)/op(B) poisons C; padding of C is a sentinel that must
// survive untouched.
struct Case {
  bool ta, tb;
  int64_t M, N, K;
  int64_t lda, ldb, ldc;
  std::vector<float> A, B, C0;  // fp32 operands (bf16-representable when used for bf16)
  std::vector<uint16_t> A16, B16;
};

constexpr float kSentinel = 12345.f;

Case make_case(bool ta, bool tb, int64_t M, int64_t N, int64_t K, int pad, uint64_t seed,
               bool c_nan = false) {
  Case c{ta, tb, M, N, K, 0, 0, 0, {}, {}, {}, {}, {}};
  const int64_t a_rows = ta ? K : M, a_cols = ta ? M : K;
  const int64_t b_rows = tb ? N : K, b_cols = tb ? K : N;
  c.lda = a_cols + pad;
  c.ldb = b_cols + pad;
  c.ldc = N + pad;
  s2s_test::Rng rng(seed);
  auto fill = [&](std::vector<float>& v, std::vector<uint16_t>& v16, int64_t rows, int64_t cols,
                  int64_t ld) {
    v.assign(size_t(std::max<int64_t>(rows * ld, 1)), NAN);
    v16.assign(v.size(), f32_to_bf16(NAN));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t q = 0; q < cols; ++q) {
        // bf16-representable values so fp32 and bf16 runs see the same numbers.
        const uint16_t h = f32_to_bf16(rng.uniform());
        v[r * ld + q] = bf16_to_f32(h);
        v16[r * ld + q] = h;
      }
  };
  fill(c.A, c.A16, a_rows, a_cols, c.lda);
  fill(c.B, c.B16, b_rows, b_cols, c.ldb);
  c.C0.assign(size_t(M * c.ldc), kSentinel);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) c.C0[i * c.ldc + j] = c_nan ? NAN : rng.uniform();
  return c;
}

// Error over the M x N window; padding of C must still hold the sentinel.
double window_error(const Case& c, const std::vector<float>& got, const std::vector<float>& ref,
                    bool* pad_ok) {
  double worst = 0;
  *pad_ok = true;
  for (int64_t i = 0; i < c.M; ++i) {
    worst = std::max(worst, max_normalized_error(&got[i * c.ldc], &ref[i * c.ldc], c.N));
    for (int64_t j = c.N; j < c.ldc; ++j)
      if (got[i * c.ldc + j] != kSentinel) *pad_ok = false;
  }
  return worst;
}

std::vector<float> run_ours(const Case& c, bool bf16, float alpha, float beta) {
  std::vector<float> C = c.C0;
  if (bf16) {
    gemm_bf16(c.ta, c.tb, c.M, c.N, c.K, alpha, c.A16.data(), c.lda, c.B16.data(), c.ldb, beta,
              C.data(), c.ldc);
  } else {
    gemm_f32(c.ta, c.tb, c.M, c.N, c.K, alpha, c.A.data(), c.lda, c.B.data(), c.ldb, beta,
             C.data(), c.ldc);
  }
  return C;
}

std::vector<float> run_ref(const Case& c, bool bf16, float alpha, float beta) {
  std::vector<float> C = c.C0;
  if (bf16) {
    gemm_bf16_reference(c.ta, c.tb, c.M, c.N, c.K, alpha, c.A16.data(), c.lda, c.B16.data(),
                        c.ldb, beta, C.data(), c.ldc);
  } else {
    gemm_f32_reference(c.ta, c.tb, c.M, c.N, c.K, alpha, c.A.data(), c.lda, c.B.data(), c.ldb,
                       beta, C.data(), c.ldc);
  }
  return C;
}

std::string describe(const Case& c, bool bf16, float alpha, float beta) {
  return std::string(bf16 ? "bf16" : "f32") + " isa=" + isa_name(active_isa()) +
         " kernel='" + gemm_kernel_name(bf16 ? DType::BF16 : DType::F32) + "'" +
         " threads=" + std::to_string(num_threads()) + " ta=" + std::to_string(c.ta) +
         " tb=" + std::to_string(c.tb) + " M=" + std::to_string(c.M) +
         " N=" + std::to_string(c.N) + " K=" + std::to_string(c.K) +
         " alpha=" + std::to_string(alpha) + " beta=" + std::to_string(beta);
}

// Every bf16 kernel this CPU runs under an ISA: on AMX machines Isa::Avx512Bf16 has two
// (tdpbf16ps by default, vdpbf16ps with AMX switched off).
std::vector<bool> amx_modes(Isa isa) {
#if defined(S2S_HAVE_X86_KERNELS)
  if (isa == Isa::Avx512Bf16 && gemm_detail::amx_bf16_desc() != nullptr) return {true, false};
#endif
  (void)isa;
  return {true};
}

// Runs `body` under every supported ISA (and bf16 kernel), restoring the ISA, the AMX switch and
// the thread count afterwards (body may change the thread count).
template <typename Fn>
void for_each_kernel(Fn body) {
  const Isa saved_isa = active_isa();
  const int saved_threads = num_threads();
  for (Isa isa : supported_isas()) {
    set_isa(isa);
    for (bool amx : amx_modes(isa)) {
      gemm_detail::set_amx_enabled(amx);
      body();
    }
  }
  gemm_detail::set_amx_enabled(true);
  set_isa(saved_isa);
  set_num_threads(saved_threads);
}

// for_each_kernel, at thread counts 1 and 2.
template <typename Fn>
void for_each_config(Fn body) {
  for_each_kernel([&] {
    for (int threads : {1, 2}) {
      set_num_threads(threads);
      body();
    }
  });
}

struct Worst {
  double err = 0;
  std::string where;
  void add(double e, const std::string& w) {
    if (e > err || std::isnan(e)) { err = e; where = w; }
  }
};

}  // namespace

// M, N, K over {1, 7, 33, 257} (64 shapes) x 4 transposes x beta {0, 1, 0.5}, alpha = -0.75,
// padded leading dimensions; the reference is computed once per case and reused for every
// ISA and thread count.
TEST(gemm_matches_reference_all_shapes_transposes_isas_threads) {
  const int64_t dims[] = {1, 7, 33, 257};
  const float betas[] = {0.f, 1.f, 0.5f};
  const float alpha = -0.75f;
  Worst worst_f32, worst_bf16;
  uint64_t seed = 1;
  int shape_index = 0;
  for (int64_t M : dims)
    for (int64_t N : dims)
      for (int64_t K : dims) {
        // Every shape runs all 4 transposes; the largest ones run one beta each (cycled) to
        // keep the test fast, the rest run all three.
        const bool big = M * N * K > 100000;
        for (int t = 0; t < 4; ++t) {
          const bool ta = t & 1, tb = t & 2;
          const Case c = make_case(ta, tb, M, N, K, 3, seed++);
          for (int bi = 0; bi < 3; ++bi) {
            if (big && bi != (shape_index + t) % 3) continue;
            const float beta = betas[bi];
            for (bool bf16 : {false, true}) {
              const std::vector<float> ref = run_ref(c, bf16, alpha, beta);
              for_each_config([&] {
                const std::vector<float> got = run_ours(c, bf16, alpha, beta);
                bool pad_ok;
                const double e = window_error(c, got, ref, &pad_ok);
                CHECK_MSG(pad_ok, "C padding written: " + describe(c, bf16, alpha, beta));
                const double tol = bf16 ? tol_bf16(K) : tol_f32(K);
                if (!(e <= tol)) CHECK_ERR(e, tol, describe(c, bf16, alpha, beta));
                (bf16 ? worst_bf16 : worst_f32).add(e / tol, describe(c, bf16, alpha, beta));
              });
            }
          }
        }
        ++shape_index;
      }
  std::printf("    worst error / tolerance: f32 %.3f (%s), bf16 %.3f (%s)\n", worst_f32.err,
              worst_f32.where.c_str(), worst_bf16.err, worst_bf16.where.c_str());
}

// Shapes that cross the cache blocks and thread splits: several K blocks (K > KC), M and N
// edges against the 14x32 / 6x16 / 4x16 tiles, an M-split and an N-split shape.
TEST(gemm_matches_reference_blocked_shapes) {
  struct Shape { int64_t M, N, K; };
  const Shape shapes[] = {{100, 300, 65}, {65, 100, 900}, {300, 40, 800}, {29, 1030, 70}};
  Worst worst;
  uint64_t seed = 1000;
  for (const Shape& s : shapes)
    for (int t = 0; t < 4; ++t) {
      const Case c = make_case(t & 1, t & 2, s.M, s.N, s.K, 5, seed++);
      for (bool bf16 : {false, true}) {
        const float beta = (t % 2) ? 0.5f : 0.f;
        const std::vector<float> ref = run_ref(c, bf16, 1.5f, beta);
        for_each_config([&] {
          const std::vector<float> got = run_ours(c, bf16, 1.5f, beta);
          bool pad_ok;
          const double e = window_error(c, got, ref, &pad_ok);
          CHECK_MSG(pad_ok, "C padding written: " + describe(c, bf16, 1.5f, beta));
          CHECK_ERR(e, bf16 ? tol_bf16(s.K) : tol_f32(s.K), describe(c, bf16, 1.5f, beta));
          worst.add(e, describe(c, bf16, 1.5f, beta));
        });
      }
    }
  std::printf("    worst normalised error: %.3g (%s)\n", worst.err, worst.where.c_str());
}

// alpha == 1 with beta 0 / 1 / 0.5: the AMX kernel keeps full 32 x 32 tiles of C in its
// accumulator tiles (loaded when beta == 1 or for later K blocks) and writes edge tiles and other
// alpha / beta through the AVX-512 epilogue; shapes mix full and edge tiles and several K blocks
// (K > the 1024 AMX block).
TEST(gemm_matches_reference_alpha_one_full_and_edge_tiles) {
  struct Shape { int64_t M, N, K; };
  const Shape shapes[] = {{64, 96, 64}, {70, 100, 2100}, {33, 64, 1500}, {128, 33, 40}};
  uint64_t seed = 5000;
  for (const Shape& s : shapes)
    for (int t = 0; t < 4; ++t) {
      const Case c = make_case(t & 1, t & 2, s.M, s.N, s.K, 3, seed++);
      for (float beta : {0.f, 1.f, 0.5f}) {
        const std::vector<float> ref = run_ref(c, true, 1.f, beta);
        for_each_config([&] {
          const std::vector<float> got = run_ours(c, true, 1.f, beta);
          bool pad_ok;
          const double e = window_error(c, got, ref, &pad_ok);
          CHECK_MSG(pad_ok, "C padding written: " + describe(c, true, 1.f, beta));
          CHECK_ERR(e, tol_bf16(s.K), describe(c, true, 1.f, beta));
        });
      }
    }
}

// Narrow results (N far below the register tile's width, LoRA's rank-8 products) run as their
// transpose into scratch and are added into C with beta: reference agreement for every
// transpose, beta 0 (NaN already in C must not leak) / 1 / 0.5, C padding untouched.
TEST(gemm_narrow_results_via_the_transpose) {
  struct Shape { int64_t M, N, K; };
  const Shape shapes[] = {{300, 8, 100}, {1000, 1, 20}, {97, 5, 513}, {64, 16, 64}};
  uint64_t seed = 7000;
  for (const Shape& s : shapes)
    for (int t = 0; t < 4; ++t)
      for (bool bf16 : {false, true})
        for (float beta : {0.f, 1.f, 0.5f}) {
          const Case c = make_case(t & 1, t & 2, s.M, s.N, s.K, 3, seed++, /*c_nan=*/beta == 0.f);
          const std::vector<float> ref = run_ref(c, bf16, 0.75f, beta);
          for_each_config([&] {
            const std::vector<float> got = run_ours(c, bf16, 0.75f, beta);
            bool pad_ok;
            const double e = window_error(c, got, ref, &pad_ok);
            CHECK_MSG(pad_ok, "C padding written: " + describe(c, bf16, 0.75f, beta));
            CHECK_ERR(e, bf16 ? tol_bf16(s.K) : tol_f32(s.K), describe(c, bf16, 0.75f, beta));
          });
        }
}

// beta == 0 means C is write-only: NaN (and Inf) already in C must not leak into the result.
TEST(gemm_beta_zero_ignores_nan_in_c) {
  for_each_config([] {
    for (bool bf16 : {false, true})
      for (int64_t K : {int64_t(0), int64_t(5), int64_t(300)}) {
        const Case c = make_case(false, true, 37, 70, K, 2, 77 + K, /*c_nan=*/true);
        const std::vector<float> got = run_ours(c, bf16, 1.f, 0.f);
        bool finite = true;
        for (int64_t i = 0; i < c.M; ++i)
          for (int64_t j = 0; j < c.N; ++j) finite = finite && std::isfinite(got[i * c.ldc + j]);
        CHECK_MSG(finite, "NaN leaked from C with beta=0: " + describe(c, bf16, 1.f, 0.f));
      }
  });
}

// K == 0 (and alpha == 0, the BLAS convention): C = beta * C, A and B not read.
TEST(gemm_k_zero_scales_c) {
  for_each_config([] {
    for (float beta : {0.f, 1.f, 0.5f}) {
      const Case c = make_case(false, false, 9, 11, 0, 1, 5);
      std::vector<float> got = run_ours(c, false, 2.f, beta);
      bool ok = true;
      for (int64_t i = 0; i < c.M; ++i)
        for (int64_t j = 0; j < c.N; ++j)
          ok = ok && got[i * c.ldc + j] == beta * c.C0[i * c.ldc + j];
      CHECK_MSG(ok, "K=0 must give C = beta*C, beta=" + std::to_string(beta));
      const Case c2 = make_case(true, true, 9, 11, 4, 1, 6);
      got = run_ours(c2, true, 0.f, beta);
      ok = true;
      for (int64_t i = 0; i < c2.M; ++i)
        for (int64_t j = 0; j < c2.N; ++j)
          ok = ok && got[i * c2.ldc + j] == beta * c2.C0[i * c2.ldc + j];
      CHECK_MSG(ok, "alpha=0 must give C = beta*C, beta=" + std::to_string(beta));
    }
  });
  // M == 0 or N == 0 touches nothing, even with null pointers.
  gemm_f32(false, false, 0, 5, 5, 1.f, nullptr, 5, nullptr, 5, 0.f, nullptr, 5);
  gemm_bf16(false, false, 5, 0, 5, 1.f, nullptr, 5, nullptr, 5, 0.f, nullptr, 5);
}

// Same inputs, same thread count -> the same bits, over repeated runs. Our split keeps the
// tile grid and K blocking independent of the thread count, so 1 and 2 threads also agree
// bit for bit (a documented property of gemm.cpp; this test guards it).
TEST(gemm_is_bit_deterministic) {
  struct Shape { int64_t M, N, K; bool ta, tb; };
  const Shape shapes[] = {{257, 511, 777, false, true}, {600, 96, 500, false, false},
                          {96, 700, 450, true, false}};
  for_each_kernel([&] {
    for (const Shape& s : shapes) {
      const Case c = make_case(s.ta, s.tb, s.M, s.N, s.K, 0, 4242);
      for (bool bf16 : {false, true}) {
        std::vector<float> first[2];
        for (int threads : {1, 2}) {
          set_num_threads(threads);
          first[threads - 1] = run_ours(c, bf16, 0.5f, 0.25f);
          for (int rep = 0; rep < 3; ++rep) {
            const std::vector<float> again = run_ours(c, bf16, 0.5f, 0.25f);
            CHECK_MSG(std::memcmp(again.data(), first[threads - 1].data(),
                                  again.size() * sizeof(float)) == 0,
                      "not bit-identical on repeat: " + describe(c, bf16, 0.5f, 0.25f));
          }
        }
        CHECK_MSG(std::memcmp(first[0].data(), first[1].data(),
                              first[0].size() * sizeof(float)) == 0,
                  "1 vs 2 threads differ: " + describe(c, bf16, 0.5f, 0.25f));
      }
    }
  });
}

// Thread splits that give each thread several cache blocks of its own (M over 2 x MC split by
// rows, the threads' last blocks of different sizes; N over 2 x NC split by columns), a thread
// count that does not divide the panels (3), several K blocks: the same bits as one thread, and
// the reference's values.
TEST(gemm_thread_splits_across_blocks_match_one_thread_bit_for_bit) {
  struct Shape { int64_t M, N, K; bool ta, tb; };
  const Shape shapes[] = {{2600, 40, 70, false, true}, {30, 1900, 600, true, false},
                          {1500, 1700, 40, false, false}};
  for_each_kernel([&] {
    for (const Shape& s : shapes) {
      const Case c = make_case(s.ta, s.tb, s.M, s.N, s.K, 3, 777);
      for (bool bf16 : {false, true}) {
        const std::vector<float> ref = run_ref(c, bf16, 0.5f, 0.25f);
        set_num_threads(1);
        const std::vector<float> one = run_ours(c, bf16, 0.5f, 0.25f);
        bool pad_ok;
        CHECK_ERR(window_error(c, one, ref, &pad_ok), bf16 ? tol_bf16(s.K) : tol_f32(s.K),
                  describe(c, bf16, 0.5f, 0.25f));
        for (int threads : {2, 3}) {
          set_num_threads(threads);
          const std::vector<float> got = run_ours(c, bf16, 0.5f, 0.25f);
          CHECK_MSG(std::memcmp(got.data(), one.data(), got.size() * sizeof(float)) == 0,
                    "differs from 1 thread: " + describe(c, bf16, 0.5f, 0.25f));
        }
      }
    }
  });
}

// GEMM called from inside a pool task (an op that parallelises over a batch and multiplies per
// item): must not deadlock, and must give the same bits as a top-level call (the nested call
// runs on its own thread alone; the result does not depend on the thread split).
TEST(gemm_nested_in_parallel_for_matches_top_level) {
  const int saved_threads = num_threads();
  set_num_threads(2);
  // Large enough (> kMinMacsForThreads) that a top-level call would use both threads.
  const Case c = make_case(false, true, 300, 200, 150, 0, 99);
  for (bool bf16 : {false, true}) {
    const std::vector<float> top = run_ours(c, bf16, 1.f, 0.f);
    std::vector<float> nested[2];
    bool inside[2] = {false, false};
    parallel_for(2, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        inside[i] = in_parallel_region();
        nested[i] = run_ours(c, bf16, 1.f, 0.f);
      }
    });
    for (int i = 0; i < 2; ++i) {
      CHECK_MSG(inside[i], "parallel_for body should run inside the pool");
      CHECK_MSG(std::memcmp(nested[i].data(), top.data(), top.size() * sizeof(float)) == 0,
                "nested GEMM differs from top-level: " + describe(c, bf16, 1.f, 0.f));
    }
  }
  set_num_threads(saved_threads);
}

TEST(gemm_kernel_names_follow_isa) {
  const Isa saved = active_isa();
  for (Isa isa : supported_isas())
    for (bool amx : amx_modes(isa)) {
      set_isa(isa);
      gemm_detail::set_amx_enabled(amx);
      const std::string f = gemm_kernel_name(DType::F32), b = gemm_kernel_name(DType::BF16);
      const std::string h = gemm_kernel_name(DType::F16);
      std::printf("    %-12s f32: %s | bf16: %s | f16: %s\n", isa_name(isa), f.c_str(), b.c_str(),
                  h.c_str());
      CHECK(!f.empty() && !b.empty() && h.find("f16") != std::string::npos);
      // fp16 runs on the fp32 kernel of the ISA: the name starts like the fp32 one.
      CHECK(h.compare(0, f.find(' '), f, 0, f.find(' ')) == 0);
      if (isa == Isa::Avx2) CHECK(h.find("f16c") != std::string::npos);
      if (isa == Isa::Avx512Bf16)
        CHECK(b.find(amx && amx_modes(isa).size() == 2 ? "tdpbf16ps" : "vdpbf16ps") !=
              std::string::npos);
      if (isa == Isa::Scalar) CHECK(f.find("scalar") != std::string::npos);
    }
  gemm_detail::set_amx_enabled(true);
  set_isa(saved);
}

TEST(gemm_rejects_bad_arguments) {
  float x[4] = {};
  CHECK_THROWS_CODE(gemm_f32(false, false, -1, 2, 2, 1.f, x, 2, x, 2, 0.f, x, 2),
                    code::kArgument);
  CHECK_THROWS_CODE(gemm_f32(false, false, 2, 2, 2, 1.f, x, 1, x, 2, 0.f, x, 2),
                    code::kArgument);
  CHECK_THROWS_CODE(gemm_f32(false, false, 2, 2, 2, 1.f, x, 2, x, 2, 0.f, x, 1),
                    code::kArgument);
}

TEST(matmul_tensor_entry_checks_and_computes) {
  std::vector<float> a(6 * 4), b(5 * 4), c(6 * 5), ref(6 * 5);
  for (size_t i = 0; i < a.size(); ++i) a[i] = float(i % 7) - 3.f;
  for (size_t i = 0; i < b.size(); ++i) b[i] = float(i % 5) - 2.f;
  Tensor ta = Tensor::contiguous(a.data(), DType::F32, {6, 4});
  Tensor tb = Tensor::contiguous(b.data(), DType::F32, {5, 4});
  Tensor tc = Tensor::contiguous(c.data(), DType::F32, {6, 5});
  matmul(tc, ta, tb, false, true, 1.f, 0.f);  // (6,4) x (5,4)^T -> (6,5)
  gemm_f32_reference(false, true, 6, 5, 4, 1.f, a.data(), 4, b.data(), 4, 0.f, ref.data(), 5);
  CHECK(max_normalized_error(c.data(), ref.data(), c.size()) == 0);

  // Shapes: inner dimensions disagree, wrong rank, wrong c.
  CHECK_THROWS_CODE(matmul(tc, ta, tb, false, false, 1.f, 0.f), code::kShape);
  Tensor t3 = Tensor::contiguous(a.data(), DType::F32, {2, 3, 4});
  CHECK_THROWS_CODE(matmul(tc, t3, tb, false, true, 1.f, 0.f), code::kShape);
  Tensor tc_bad = Tensor::contiguous(c.data(), DType::F32, {5, 6});
  CHECK_THROWS_CODE(matmul(tc_bad, ta, tb, false, true, 1.f, 0.f), code::kShape);
  // Dtypes: mixed operands, f16 operands, bf16 output.
  std::vector<uint16_t> h(6 * 5);
  Tensor tb16 = Tensor::contiguous(h.data(), DType::BF16, {5, 4});
  CHECK_THROWS_CODE(matmul(tc, ta, tb16, false, true, 1.f, 0.f), code::kDType);
  Tensor ta_f16 = Tensor::contiguous(h.data(), DType::F16, {6, 4});
  Tensor tb_f16 = Tensor::contiguous(h.data(), DType::F16, {5, 4});
  CHECK_THROWS_CODE(matmul(tc, ta_f16, tb_f16, false, true, 1.f, 0.f), code::kDType);
  Tensor tc16 = Tensor::contiguous(h.data(), DType::BF16, {6, 5});
  Tensor ta16 = Tensor::contiguous(h.data(), DType::BF16, {6, 4});
  CHECK_THROWS_CODE(matmul(tc16, ta16, tb16, false, true, 1.f, 0.f), code::kDType);
}

// gemm_bf16_rounding: fp32 operands rounded to bf16 while packing give exactly the bits of
// gemm_bf16 on rounded copies (f32_to_bf16), for every ISA / bf16 kernel / thread count, all
// transposes, every dtype combination, padded leading dimensions (NaN padding must not be read),
// shapes across the block edges, and values that exercise the rounding: ties to even, carries
// into the exponent, subnormals, infinities, NaN.
TEST(gemm_bf16_rounding_matches_gemm_bf16_on_rounded_copies) {
  struct Shape { int64_t M, N, K; };
  const Shape shapes[] = {{1, 1, 1}, {7, 33, 5}, {33, 7, 65}, {50, 70, 1100}, {257, 40, 33}};
  // Bit patterns that stress round-to-nearest-even (low halves 0x8000 exactly, just below,
  // just above; odd and even kept bits), carry into the exponent, subnormals, Inf, NaN.
  const uint32_t specials[] = {0x3f808000u, 0x3f818000u, 0x3f807fffu, 0x3f808001u, 0x3fffffffu,
                               0x7f7fffffu, 0x00008000u, 0x00018000u, 0x80000001u, 0x7f800000u,
                               0xff800000u, 0x7fc00001u, 0xffa00000u};
  int cases = 0;
  for (const Shape& s : shapes)
    for (int t = 0; t < 4; ++t) {
      const bool ta = t & 1, tb = t & 2;
      const int64_t a_rows = ta ? s.K : s.M, a_cols = ta ? s.M : s.K;
      const int64_t b_rows = tb ? s.N : s.K, b_cols = tb ? s.K : s.N;
      const int64_t lda = a_cols + 3, ldb = b_cols + 1, ldc = s.N + 2;
      s2s_test::Rng rng(uint64_t(1000 + s.M * 7 + s.N * 13 + s.K + t));
      auto fill = [&](std::vector<float>& v, int64_t rows, int64_t cols, int64_t ld, bool special) {
        v.assign(size_t(rows * ld), NAN);
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t c = 0; c < cols; ++c) {
            float x = rng.uniform();  // not bf16-representable: the rounding matters
            if (special && rng.next() % 5 == 0) {
              const uint32_t u = specials[rng.next() % (sizeof specials / sizeof specials[0])];
              std::memcpy(&x, &u, 4);
            }
            v[r * ld + c] = x;
          }
      };
      // Specials only in the smaller shapes' A (Inf/NaN then reach whole rows of C; the
      // comparison is bitwise, NaN included).
      const bool special = s.K < 100;
      std::vector<float> A, B;
      fill(A, a_rows, a_cols, lda, special);
      fill(B, b_rows, b_cols, ldb, false);
      std::vector<uint16_t> A16(A.size()), B16(B.size());
      for (size_t i = 0; i < A.size(); ++i) A16[i] = f32_to_bf16(A[i]);
      for (size_t i = 0; i < B.size(); ++i) B16[i] = f32_to_bf16(B[i]);
      std::vector<float> C0(size_t(s.M * ldc));
      for (float& c : C0) c = rng.uniform();
      for (float beta : {0.f, 1.f}) {
        for_each_config([&] {
          std::vector<float> want = C0;
          gemm_bf16(ta, tb, s.M, s.N, s.K, 0.5f, A16.data(), lda, B16.data(), ldb, beta,
                    want.data(), ldc);
          for (int combo = 0; combo < 3; ++combo) {  // f32 x bf16, bf16 x f32, f32 x f32
            const bool a32 = combo != 1, b32 = combo != 0;
            std::vector<float> got = C0;
            gemm_bf16_rounding(ta, tb, s.M, s.N, s.K, 0.5f,
                               a32 ? static_cast<const void*>(A.data()) : A16.data(),
                               a32 ? DType::F32 : DType::BF16, lda,
                               b32 ? static_cast<const void*>(B.data()) : B16.data(),
                               b32 ? DType::F32 : DType::BF16, ldb, beta, got.data(), ldc);
            CHECK_MSG(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) == 0,
                      "not the bits of gemm_bf16 on rounded copies: combo " +
                          std::to_string(combo) + " " +
                          describe(Case{ta, tb, s.M, s.N, s.K, lda, ldb, ldc, {}, {}, {}, {}, {}},
                                   true, 0.5f, beta));
            ++cases;
          }
        });
      }
    }
  CHECK(cases > 0);
  float x[4] = {};
  CHECK_THROWS_CODE(gemm_bf16_rounding(false, false, 2, 2, 2, 1.f, x, DType::F16, 2, x,
                                       DType::F32, 2, 0.f, x, 2),
                    code::kDType);
  CHECK_THROWS_CODE(gemm_bf16_rounding(false, false, 2, 2, 2, 1.f, x, DType::F32, 1, x,
                                       DType::F32, 2, 0.f, x, 2),
                    code::kArgument);
}

// ---- fp16 (gemm_f16_rounding) ---------------------------------------------------------------

namespace {

float f32_from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
// What gemm_f16_rounding multiplies for an fp32 operand value.
float rounded_f16(float x) { return f16_to_f32(f32_to_f16(x)); }

// fp32 values that exercise f32 -> f16 rounding: for every fp32 exponent and both signs, the
// mantissas around each possible rounding point (normal f16: the 13 dropped bits at, just below
// and just above the tie, with an even and an odd kept bit; f16 subnormals: the tie of every
// shift 14..24), carries into the exponent and into Inf, the 65504 / 65520 overflow boundary,
// the smallest subnormal and half of it, fp32 subnormals, Inf, NaNs with several payloads
// (quiet, signalling, all ones); then `random_count` random bit patterns.
std::vector<float> f16_rounding_probe_values(size_t random_count) {
  std::vector<uint32_t> mants = {0, 1, 0x7fffff, 0x400000, 0x3fffff, 0x400001, 0x7fe000, 0x7ff000,
                                 0x7fefff, 0x7ff001, 0x000fff, 0x001000, 0x001001, 0x001fff,
                                 0x002000, 0x003000, 0x002fff, 0x003001, 0x555555, 0x2aaaaa};
  for (uint32_t shift = 14; shift <= 24; ++shift) {
    const uint32_t tie = 1u << (shift - 1);
    for (uint32_t m : {tie, tie - 1, tie + 1, tie | (1u << shift), (tie | (1u << shift)) - 1})
      mants.push_back(m & 0x7fffff);
  }
  std::vector<uint32_t> bits;
  for (uint32_t sign : {0u, 0x80000000u})
    for (uint32_t e = 0; e < 256; ++e)
      for (uint32_t m : mants) bits.push_back(sign | (e << 23) | m);
  const uint32_t named[] = {
      0x477fe000u /* 65504 */, 0x477fefffu /* just below 65520 */, 0x477ff000u /* 65520 */,
      0x477ff001u, 0x47800000u /* 65536 */, 0x47c35000u /* 1e5 */, 0x33800000u /* 2^-24 */,
      0x33000000u /* 2^-25: tie to 0 */, 0x33000001u, 0x33400000u /* 1.5 * 2^-25 */,
      0x38800000u /* 2^-14, smallest normal */, 0x387fc000u, 0x387fe000u /* tie to 2^-14 */,
      0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00000u, 0x7f800001u, 0x7fa00000u, 0xffbfffffu,
      0x7fffffffu, 0xffffffffu, 0x7f802000u, 0x00000001u, 0x80000001u, 0x00000000u, 0x80000000u};
  bits.insert(bits.end(), std::begin(named), std::end(named));
  s2s_test::Rng rng(0xf16);
  for (size_t i = 0; i < random_count; ++i) bits.push_back(uint32_t(rng.next()));
  std::vector<float> out(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) out[i] = f32_from_bits(bits[i]);
  return out;
}

// The f16 packing table of each ISA this CPU runs.
std::vector<std::pair<const char*, const gemm_detail::KernelDesc*>> f16_tables() {
  std::vector<std::pair<const char*, const gemm_detail::KernelDesc*>> out;
  out.emplace_back("scalar", &gemm_detail::scalar_f16_desc());
  for (Isa isa : supported_isas()) {
#if defined(S2S_HAVE_X86_KERNELS)
    if (isa == Isa::Avx2) out.emplace_back("avx2", &gemm_detail::avx2_f16_desc());
    if (isa == Isa::Avx512) out.emplace_back("avx512", &gemm_detail::avx512_f16_desc());
#endif
#if defined(S2S_HAVE_NEON_KERNELS)
    if (isa == Isa::Neon) out.emplace_back("neon", &gemm_detail::neon_f16_desc());
#endif
    (void)isa;
  }
  return out;
}

// Packs `vals` (of element type Src) through `pack` with panel height R in both source layouts
// (k contiguous or not), from an offset (r0 = 1, k0 = 2) in a larger source, and checks every
// packed value bitwise against want(i) and the panel padding against 0. Returns mismatches.
template <typename Src, typename Want>
int64_t check_pack(gemm_detail::PackFn pack, int R, const std::vector<Src>& vals, int64_t rows,
                   Want want, const std::string& what) {
  const int64_t n = int64_t(vals.size());
  const int64_t kc = (n + rows - 1) / rows;
  const int64_t panels = (rows + R - 1) / R;
  int64_t bad = 0;
  for (bool k_contig : {true, false}) {
    // Logical X(r, k) = vals[r * kc + k] (zero past the end), stored at offset (1, 2).
    const int64_t src_rows = k_contig ? rows + 1 : kc + 2, src_cols = k_contig ? kc + 2 : rows + 1;
    std::vector<Src> src(size_t(src_rows * src_cols), Src{});
    auto at = [&](int64_t r, int64_t k) -> Src& {
      return k_contig ? src[size_t((r + 1) * src_cols + k + 2)] : src[size_t((k + 2) * src_cols + r + 1)];
    };
    for (int64_t i = 0; i < n; ++i) at(i / kc, i % kc) = vals[size_t(i)];
    // Packed panels are aligned to 64 bytes (the driver's buffers; AVX-512 stores aligned).
    const size_t dst_n = size_t(panels * R * kc);
    AlignedPtr<float> dst_buf = make_aligned<float>(dst_n);
    float* dst = dst_buf.get();
    std::fill(dst, dst + dst_n, -7.f);
    pack(src.data(), src_cols, k_contig, 1, rows, 2, kc, dst);
    for (int64_t r = 0; r < panels * R; ++r)
      for (int64_t k = 0; k < kc; ++k) {
        const float got = dst[size_t((r / R) * R * kc + k * R + r % R)];
        const int64_t i = r * kc + k;
        const uint32_t w = r >= rows ? 0u : (i < n ? bits_of(want(i)) : 0u);
        if (bits_of(got) != w) {
          if (bad < 3)
            std::printf("    %s k_contig=%d value %lld: got %08x want %08x\n", what.c_str(),
                        int(k_contig), (long long)i, bits_of(got), w);
          ++bad;
        }
      }
  }
  return bad;
}

}  // namespace

// Every f16 packing routine (the scalar, F16C and AVX-512 conversions) against the portable
// f16_to_f32 / f32_to_f16: all 65536 fp16 bit patterns widened, and the rounding probe values
// (ties, subnormals, the 65504 / 65520 boundary, Inf, NaN payloads; plus 200k random fp32
// patterns) rounded, bit for bit, through A and B panels, both source layouts, run lengths that
// cross the vector widths and the F16C line buffer. (The hardware vcvtps2ph with nearest-even
// rounding agrees with f32_to_f16 on all 2^32 non-NaN inputs, checked once outside the suite;
// NaNs differ by design, so the packers substitute f32_to_f16's canonical NaN.)
TEST(gemm_f16_packing_converts_exactly_like_the_scalar_conversions) {
  std::vector<gemm_detail::F16Bits> halves(65536);
  for (uint32_t h = 0; h < 65536; ++h) halves[h].bits = uint16_t(h);
  const std::vector<float> probe = f16_rounding_probe_values(200000);
  std::vector<gemm_detail::F32RoundedToF16> probe_src(probe.size());
  for (size_t i = 0; i < probe.size(); ++i) probe_src[i].value = probe[i];
  for (const auto& [name, d] : f16_tables()) {
    for (int64_t rows : {int64_t(37), int64_t(300)}) {
      for (bool a_side : {true, false}) {
        const int R = a_side ? d->mr : d->nr;
        const std::string what = std::string(name) + (a_side ? " A" : " B") + " rows=" +
                                 std::to_string(rows);
        const int64_t bad_widen =
            check_pack(a_side ? d->pack_a : d->pack_b, R, halves, rows,
                       [&](int64_t i) { return f16_to_f32(uint16_t(i)); }, what + " widen");
        CHECK_MSG(bad_widen == 0, what + ": f16 widening differs from f16_to_f32 in " +
                                      std::to_string(bad_widen) + " values");
        const int64_t bad_round =
            check_pack(a_side ? d->pack_a_f32 : d->pack_b_f32, R, probe_src, rows,
                       [&](int64_t i) { return rounded_f16(probe[size_t(i)]); }, what + " round");
        CHECK_MSG(bad_round == 0, what + ": f32 -> f16 rounding differs from f32_to_f16 in " +
                                      std::to_string(bad_round) + " values");
      }
    }
  }
  // Spot checks of the scalar definition itself (IEEE binary16, nearest even).
  CHECK(f32_to_f16(65504.f) == 0x7bff && f32_to_f16(65519.99f) == 0x7bff &&
        f32_to_f16(65520.f) == 0x7c00 && f32_to_f16(-1e5f) == 0xfc00);
  CHECK(f32_to_f16(f32_from_bits(0x33000000u)) == 0 &&       // 2^-25 ties to even (0)
        f32_to_f16(f32_from_bits(0x33400000u)) == 0x0001 &&  // 1.5 * 2^-25 rounds up
        f32_to_f16(f32_from_bits(0x33c00000u)) == 0x0002);   // 3 * 2^-25 ties to even (2)
  CHECK(f32_to_f16(1.f + 1.f / 2048.f) == 0x3c00 && f32_to_f16(1.f + 3.f / 2048.f) == 0x3c02);
  CHECK(f32_to_f16(f32_from_bits(0x7fa00001u)) == 0x7e00 &&
        f32_to_f16(f32_from_bits(0xffffffffu)) == 0xfe00);
}

// gemm_f16_rounding: the bits of gemm_f32 on copies of the operands rounded with f32_to_f16 (or
// widened with f16_to_f32), for every ISA / thread count, all transposes, every operand dtype
// mix, both betas, padded leading dimensions (NaN padding must not be read), shapes from 1 to
// several K blocks and thread-split sizes, a narrow result (the transposed route), and values
// that exercise the rounding (ties, subnormals, overflow to Inf, NaN).
TEST(gemm_f16_rounding_matches_gemm_f32_on_rounded_copies) {
  struct Shape { int64_t M, N, K; };
  const Shape shapes[] = {{1, 1, 1},   {7, 33, 5},    {33, 7, 65},    {1, 300, 7},
                          {300, 33, 310}, {50, 70, 1100}, {257, 40, 33}, {300, 8, 100}};
  const std::vector<float> specials = f16_rounding_probe_values(0);
  int cases = 0;
  for (const Shape& s : shapes)
    for (int t = 0; t < 4; ++t) {
      const bool ta = t & 1, tb = t & 2;
      const int64_t a_rows = ta ? s.K : s.M, a_cols = ta ? s.M : s.K;
      const int64_t b_rows = tb ? s.N : s.K, b_cols = tb ? s.K : s.N;
      const int64_t lda = a_cols + 3, ldb = b_cols + 1, ldc = s.N + 2;
      s2s_test::Rng rng(uint64_t(2000 + s.M * 7 + s.N * 13 + s.K + t));
      // Specials only in the smaller shapes' B (Inf/NaN then reach whole columns of C; the
      // comparison is bitwise, NaN included); values in [-4, 4] so products are not tiny.
      const bool special = s.K < 100;
      auto fill = [&](std::vector<float>& v, int64_t rows, int64_t cols, int64_t ld, bool sp) {
        v.assign(size_t(rows * ld), NAN);
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t c = 0; c < cols; ++c) {
            float x = 4.f * rng.uniform();  // not f16-representable: the rounding matters
            if (sp && rng.next() % 7 == 0) x = specials[rng.next() % specials.size()];
            v[size_t(r * ld + c)] = x;
          }
      };
      std::vector<float> A, B;
      fill(A, a_rows, a_cols, lda, false);
      fill(B, b_rows, b_cols, ldb, special);
      std::vector<uint16_t> A16(A.size()), B16(B.size());
      std::vector<float> Ar(A.size()), Br(B.size());
      for (size_t i = 0; i < A.size(); ++i) { A16[i] = f32_to_f16(A[i]); Ar[i] = f16_to_f32(A16[i]); }
      for (size_t i = 0; i < B.size(); ++i) { B16[i] = f32_to_f16(B[i]); Br[i] = f16_to_f32(B16[i]); }
      std::vector<float> C0(size_t(s.M * ldc));
      for (float& c : C0) c = rng.uniform();
      for (float beta : {0.f, 1.f}) {
        for_each_config([&] {
          std::vector<float> want = C0;
          gemm_f32(ta, tb, s.M, s.N, s.K, 0.5f, Ar.data(), lda, Br.data(), ldb, beta,
                   want.data(), ldc);
          for (int combo = 0; combo < 4; ++combo) {  // f32 x f32, f32 x f16, f16 x f32, f16 x f16
            const bool a32 = !(combo & 2), b32 = !(combo & 1);
            std::vector<float> got = C0;
            gemm_f16_rounding(ta, tb, s.M, s.N, s.K, 0.5f,
                              a32 ? static_cast<const void*>(A.data()) : A16.data(),
                              a32 ? DType::F32 : DType::F16, lda,
                              b32 ? static_cast<const void*>(B.data()) : B16.data(),
                              b32 ? DType::F32 : DType::F16, ldb, beta, got.data(), ldc);
            CHECK_MSG(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) == 0,
                      "not the bits of gemm_f32 on rounded copies: combo " +
                          std::to_string(combo) + " " + gemm_kernel_name(DType::F16) + " " +
                          describe(Case{ta, tb, s.M, s.N, s.K, lda, ldb, ldc, {}, {}, {}, {}, {}},
                                   false, 0.5f, beta));
            ++cases;
          }
        });
      }
    }
  CHECK(cases > 0);
  // The double-accumulating oracle on the rounded operands agrees within fp32 rounding.
  const Case c = make_case(false, true, 45, 70, 300, 2, 31);
  std::vector<uint16_t> A16(c.A.size()), B16(c.B.size());
  for (size_t i = 0; i < c.A.size(); ++i) A16[i] = f32_to_f16(c.A[i]);
  for (size_t i = 0; i < c.B.size(); ++i) B16[i] = f32_to_f16(c.B[i]);
  std::vector<float> got = c.C0, ref = c.C0;
  gemm_f16_rounding(false, true, c.M, c.N, c.K, 1.f, c.A.data(), DType::F32, c.lda, B16.data(),
                    DType::F16, c.ldb, 0.5f, got.data(), c.ldc);
  gemm_f16_reference(false, true, c.M, c.N, c.K, 1.f, A16.data(), c.lda, B16.data(), c.ldb, 0.5f,
                     ref.data(), c.ldc);
  bool pad_ok;
  CHECK_ERR(window_error(c, got, ref, &pad_ok), tol_f32(c.K), "gemm_f16_rounding vs reference");
  CHECK(pad_ok);
  // Errors: bf16 operands are not this entry's; sizes are checked as for the others.
  float x[4] = {};
  try {
    gemm_f16_rounding(false, false, 2, 2, 2, 1.f, x, DType::BF16, 2, x, DType::F32, 2, 0.f, x, 2);
    CHECK_MSG(false, "bf16 operand must throw");
  } catch (const Error& e) {
    CHECK(e.code() == std::string(code::kDType) &&
          std::string(e.what()).find("float32 or float16") != std::string::npos);
  }
  CHECK_THROWS_CODE(gemm_f16_rounding(false, false, 2, 2, 2, 1.f, x, DType::F32, 1, x,
                                      DType::F16, 2, 0.f, x, 2),
                    code::kArgument);
  gemm_f16_rounding(false, false, 0, 5, 5, 1.f, nullptr, DType::F16, 5, nullptr, DType::F16, 5,
                    0.f, nullptr, 5);
}
