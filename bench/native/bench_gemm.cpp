// bench_gemm: our CPU GEMM (fp32, bf16 and fp16) against this machine's measured FMA peak and, when
// present, OpenBLAS (dlopen'ed at run time: no link-time dependency) on the same shapes in the
// same run. Prints the machine, a table, and optionally JSON.
//
//   bench_gemm [--quick] [--threads 1,2] [--json PATH] [--min-time SECONDS]
//   bench_gemm --peak-only [--threads 1,2]    the peak lines, then one JSON line (for train.bench)
//
// Timing: per (shape, library, threads) one warm-up call, then repeated calls until both 3
// calls and --min-time seconds have passed; the best (fastest) call is reported. Noisy shared
// machines make the best of several the most stable statistic.
#include <dlfcn.h>
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "backends/cpu/gemm_internal.h"  // AMX switch, to time vdpbf16ps on AMX CPUs too
#include "s2s/cpu_features.h"
#include "s2s/dtype.h"
#include "s2s/gemm.h"
#include "s2s/thread_pool.h"

using namespace s2s;

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// ---- register-only peak loops ------------------------------------------------------------
// 24 independent accumulators: 2 FMA ports x 4-cycle latency needs >= 8 in flight; 24 leaves
// margin and no loads at all. Each iteration does 24 FMAs of 16 lanes = 768 flops.
#if defined(__x86_64__)
__attribute__((target("avx512f,fma"))) double fma_loop_avx512(int64_t iters) {
  __m512 acc[24];
  for (int i = 0; i < 24; ++i) acc[i] = _mm512_set1_ps(float(i) * 1e-3f);
  const __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
  for (int64_t n = 0; n < iters; ++n) {
#pragma GCC unroll 24
    for (int i = 0; i < 24; ++i) acc[i] = _mm512_fmadd_ps(acc[i], x, y);
  }
  __m512 s = acc[0];
  for (int i = 1; i < 24; ++i) s = _mm512_add_ps(s, acc[i]);
  return double(_mm512_reduce_add_ps(s));
}
constexpr double kFlopsPerIterAvx512 = 24 * 16 * 2;

// vdpbf16ps: 16 lanes x 2 pairs x 2 flops = 64 flops per instruction.
__attribute__((target("avx512f,avx512bf16"))) double dpbf16_loop(int64_t iters) {
  __m512 acc[24];
  for (int i = 0; i < 24; ++i) acc[i] = _mm512_set1_ps(float(i) * 1e-3f);
  const __m512bh x = (__m512bh)_mm512_set1_epi16(0x3f80), y = (__m512bh)_mm512_set1_epi16(0x3300);
  for (int64_t n = 0; n < iters; ++n) {
#pragma GCC unroll 24
    for (int i = 0; i < 24; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], x, y);
  }
  __m512 s = acc[0];
  for (int i = 1; i < 24; ++i) s = _mm512_add_ps(s, acc[i]);
  return double(_mm512_reduce_add_ps(s));
}
constexpr double kFlopsPerIterDpbf16 = 24 * 16 * 4;

__attribute__((target("avx2,fma"))) double fma_loop_avx2(int64_t iters) {
  __m256 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(float(i) * 1e-3f);
  const __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
  for (int64_t n = 0; n < iters; ++n) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], x, y);
  }
  float out[8];
  __m256 s = acc[0];
  for (int i = 1; i < 12; ++i) s = _mm256_add_ps(s, acc[i]);
  _mm256_storeu_ps(out, s);
  return double(out[0]);
}
constexpr double kFlopsPerIterAvx2 = 12 * 8 * 2;
#endif

volatile double g_sink;

// GFLOP/s of `loop` on `threads` threads (each runs the same loop), best of 40 short runs:
// on a shared machine the best short window is the closest to the true peak.
double measure_peak(double (*loop)(int64_t), double flops_per_iter, int threads) {
  set_num_threads(threads);
  const int64_t iters = 500000;  // ~2-4 ms per run
  double best = 0;
  for (int rep = 0; rep < 40; ++rep) {
    const double t0 = now_s();
    parallel_run(threads, [&](int) { g_sink = loop(iters); });
    const double dt = now_s() - t0;
    best = std::max(best, flops_per_iter * double(iters) * threads / dt / 1e9);
  }
  return best;
}

// ---- OpenBLAS, found at run time --------------------------------------------------------
enum { kRowMajor = 101, kNoTrans = 111, kTrans = 112 };
using SgemmFn = void (*)(int, int, int, int, int, int, float, const float*, int, const float*,
                         int, float, float*, int);
using SbgemmFn = void (*)(int, int, int, int, int, int, float, const uint16_t*, int,
                          const uint16_t*, int, float, float*, int);
struct OpenBlas {
  void* handle = nullptr;
  std::string path;
  SgemmFn sgemm = nullptr;
  SbgemmFn sbgemm = nullptr;
  void (*set_threads)(int) = nullptr;
  char* (*config)() = nullptr;
  char* (*corename)() = nullptr;
  bool load() {
    for (const char* p : {"/usr/lib/x86_64-linux-gnu/libopenblas.so.0", "libopenblas.so.0"}) {
      handle = dlopen(p, RTLD_NOW | RTLD_LOCAL);
      if (handle) {
        path = p;
        break;
      }
    }
    if (!handle) return false;
    sgemm = reinterpret_cast<SgemmFn>(dlsym(handle, "cblas_sgemm"));
    sbgemm = reinterpret_cast<SbgemmFn>(dlsym(handle, "cblas_sbgemm"));
    set_threads = reinterpret_cast<void (*)(int)>(dlsym(handle, "openblas_set_num_threads"));
    config = reinterpret_cast<char* (*)()>(dlsym(handle, "openblas_get_config"));
    corename = reinterpret_cast<char* (*)()>(dlsym(handle, "openblas_get_corename"));
    return sgemm != nullptr && set_threads != nullptr;
  }
};

// ---- the shapes -------------------------------------------------------------------------
struct Shape {
  std::string name;
  int64_t M, N, K;
  bool ta, tb;
};

std::vector<Shape> make_shapes(bool quick) {
  std::vector<Shape> s;
  for (int64_t n : {256, 512, 1024, 2048}) {
    if (quick && (n == 256 || n == 2048)) continue;
    s.push_back({"square NN", n, n, n, false, false});
  }
  // Transformer linear layers, forward y (M, N) = x (M, K) W^T, W stored (N, K).
  for (int64_t M : {512, 1024, 2048})
    for (int64_t K : {768, 3072})
      for (int64_t N : {768, 2304, 3072}) {
        if (quick && (M != 1024 || N == 2304)) continue;
        if (K == 3072 && N == 3072 && M != 2048 && quick) continue;
        s.push_back({"fwd x W^T", M, N, K, false, true});
      }
  // Backward of the M=1024, K=768, N=3072 forward (an MLP up-projection):
  //   dx (1024, 768) = dy (1024, 3072) W (3072, 768)        -> NN, K = 3072
  //   dW (3072, 768) = dy^T (3072, 1024) x (1024, 768)       -> TN, K = 1024
  s.push_back({"bwd dx = dy W", 1024, 768, 3072, false, false});
  s.push_back({"bwd dW = dy^T x", 3072, 768, 1024, true, false});
  // Few rows (a small batch; a chunk of the chunked loss): the kernel may read B where it lies
  // instead of packing it (gemm.cpp's read_in_place).
  for (int64_t M : {16, 64, 256}) s.push_back({"few rows dx = dy W", M, 768, 3072, false, false});
  s.push_back({"LM head dx, 256 rows", 256, 768, 50257, false, false});
  return s;
}

struct Result {
  std::string lib, dtype, shape;
  int64_t M, N, K;
  bool ta, tb;
  int threads;
  double gflops, seconds, pct_peak;
};

template <typename Fn>
double best_time(Fn fn, double min_time) {
  fn();  // warm-up: page in, grow packing buffers, wake threads
  double best = 1e30, spent = 0;
  int reps = 0;
  while (reps < 3 || spent < min_time) {
    const double t0 = now_s();
    fn();
    const double dt = now_s() - t0;
    best = std::min(best, dt);
    spent += dt;
    ++reps;
    if (reps >= 50) break;
  }
  return best;
}

std::vector<int> parse_threads(const char* s) {
  std::vector<int> out;
  const char* p = s;
  while (*p) {
    char* end;
    const long v = std::strtol(p, &end, 10);
    if (end == p || v < 1 || v > 1024) return {};  // main reports the bad flag
    out.push_back(int(v));
    p = *end == ',' ? end + 1 : end;
  }
  return out;
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    o += c;
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  bool peak_only = false;
  std::vector<int> thread_counts = {1, 2};
  const char* json_path = nullptr;
  double min_time = 0.25;
  int rounds = 3;  // alternating ours/OpenBLAS fp32 rounds per shape
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") quick = true;
    else if (a == "--peak-only") peak_only = true;
    else if (a == "--threads" && i + 1 < argc) {
      thread_counts = parse_threads(argv[++i]);
      if (thread_counts.empty()) {
        std::fprintf(stderr, "bench_gemm: --threads expects a list like 1,2, got '%s'\n", argv[i]);
        return 2;
      }
    }
    else if (a == "--json" && i + 1 < argc) json_path = argv[++i];
    else if (a == "--min-time" && i + 1 < argc) min_time = std::atof(argv[++i]);
    else if (a == "--rounds" && i + 1 < argc) rounds = std::max(1, std::atoi(argv[++i]));
    else {
      std::fprintf(stderr, "usage: bench_gemm [--quick] [--threads 1,2] [--json PATH] "
                           "[--min-time SECONDS] [--rounds N] [--peak-only]\n");
      return 2;
    }
  }
  if (quick) {
    min_time = std::min(min_time, 0.1);
    rounds = 1;
  }

  // ---- machine ----
  const CpuFeatures& f = cpu_features();
  std::string feats;
  for (const auto& n : cpu_feature_names()) feats += (feats.empty() ? "" : " ") + n;
  std::printf("cpu:      %s (%s), %u hardware threads\n", f.brand.c_str(), f.vendor.c_str(),
              std::thread::hardware_concurrency());
  std::printf("features: %s\n", feats.c_str());
  std::printf("isa:      %s\n", isa_name(active_isa()));
  std::printf("kernels:  fp32: %s\n          bf16: %s\n          fp16: %s\n",
              gemm_kernel_name(DType::F32), gemm_kernel_name(DType::BF16),
              gemm_kernel_name(DType::F16));
  OpenBlas ob;
  const bool have_ob = ob.load();
  if (have_ob) {
    std::printf("openblas: %s | %s | core %s | sbgemm %s\n", ob.path.c_str(),
                ob.config ? ob.config() : "?", ob.corename ? ob.corename() : "?",
                ob.sbgemm ? "yes" : "no (bf16 column compares nothing)");
  } else {
    std::printf("openblas: not found (libopenblas.so.0), ours only\n");
  }

  // ---- peak ----
  std::vector<double> peak_f32(thread_counts.size(), 0), peak_bf16(thread_counts.size(), 0);
  const Isa isa = active_isa();
  for (size_t t = 0; t < thread_counts.size(); ++t) {
#if defined(__x86_64__)
    if (isa >= Isa::Avx512 && isa != Isa::Neon) {
      peak_f32[t] = measure_peak(fma_loop_avx512, kFlopsPerIterAvx512, thread_counts[t]);
    } else if (isa == Isa::Avx2) {
      peak_f32[t] = measure_peak(fma_loop_avx2, kFlopsPerIterAvx2, thread_counts[t]);
    }
    if (isa == Isa::Avx512Bf16) {
      peak_bf16[t] = measure_peak(dpbf16_loop, kFlopsPerIterDpbf16, thread_counts[t]);
    }
#endif
    std::printf("peak:     %d thread(s): fp32 FMA %.1f GFLOP/s, bf16 vdpbf16ps %.1f GFLOP/s "
                "(register-only loops)\n",
                thread_counts[t], peak_f32[t], peak_bf16[t]);
  }
  if (peak_bf16[0] == 0) peak_bf16 = peak_f32;  // bf16 runs on the fp32 kernel elsewhere
  if (peak_only) {
    std::printf("{\"threads\":[");
    for (size_t t = 0; t < thread_counts.size(); ++t) std::printf("%s%d", t ? "," : "", thread_counts[t]);
    std::printf("],\"peak_fp32_gflops\":[");
    for (size_t t = 0; t < thread_counts.size(); ++t) std::printf("%s%.1f", t ? "," : "", peak_f32[t]);
    std::printf("],\"peak_bf16_dot_gflops\":[");
    for (size_t t = 0; t < thread_counts.size(); ++t) std::printf("%s%.1f", t ? "," : "", peak_bf16[t]);
    std::printf("]}\n");
    return 0;
  }

  // ---- GEMMs ----
  const std::vector<Shape> shapes = make_shapes(quick);
  int64_t max_elems = 0;
  for (const Shape& s : shapes)
    max_elems = std::max({max_elems, s.M * s.K, s.K * s.N, s.M * s.N});
  std::vector<float> A(max_elems), B(max_elems), C(max_elems);
  std::vector<uint16_t> A16(max_elems), B16(max_elems), Bh(max_elems);
  {
    uint64_t x = 88172645463325252ull;
    auto rnd = [&] {
      x ^= x << 13; x ^= x >> 7; x ^= x << 17;
      return float((x >> 40) * (1.0 / 16777216.0)) * 2.f - 1.f;
    };
    for (int64_t i = 0; i < max_elems; ++i) {
      A[i] = rnd(); B[i] = rnd(); C[i] = 0.f;
      A16[i] = f32_to_bf16(A[i]); B16[i] = f32_to_bf16(B[i]); Bh[i] = f32_to_f16(B[i]);
    }
  }

  std::vector<Result> results;
#if defined(S2S_HAVE_X86_KERNELS)
  const bool have_amx = active_isa() == Isa::Avx512Bf16 && gemm_detail::amx_bf16_desc() != nullptr;
#else
  const bool have_amx = false;
#endif
  std::printf("\n%-16s %5s %5s %5s %2s | %7s %6s | %7s %6s | %5s | %7s %6s | %7s | %5s | %7s"
              " | %7s %5s\n",
              "shape", "M", "N", "K", "T", "ours32", "%pk", "oblas32", "%pk", "o/ob",
              "ours16", "%pk16", "oblas16", "16/32", "dpbf16", "oursh", "h/32");
  for (size_t ti = 0; ti < thread_counts.size(); ++ti) {
    const int T = thread_counts[ti];
    for (const Shape& s : shapes) {
      const double flops = 2.0 * double(s.M) * double(s.N) * double(s.K);
      const int64_t lda = s.ta ? s.M : s.K, ldb = s.tb ? s.K : s.N, ldc = s.N;
      auto record = [&](const char* lib, const char* dt, double sec, double peak) {
        const double gf = flops / sec / 1e9;
        results.push_back({lib, dt, s.name, s.M, s.N, s.K, s.ta, s.tb, T, gf, sec,
                           peak > 0 ? 100.0 * gf / peak : 0.0});
        return results.back();
      };
      set_num_threads(T);
      // fp32 ours vs OpenBLAS is the comparison that matters: time them in alternating rounds
      // (ours, OpenBLAS, ours, ...) and keep each one's best, so a slow spell of this shared
      // machine cannot land on one library only.
      const int ta_ob = s.ta ? kTrans : kNoTrans, tb_ob = s.tb ? kTrans : kNoTrans;
      double ours32_sec = 1e30, ob32_sec = 1e30;
      for (int round = 0; round < rounds; ++round) {
        set_num_threads(T);
        ours32_sec = std::min(ours32_sec, best_time([&] {
          gemm_f32(s.ta, s.tb, s.M, s.N, s.K, 1.f, A.data(), lda, B.data(), ldb, 0.f, C.data(), ldc);
        }, min_time));
        if (!have_ob) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        ob.set_threads(T);
        ob32_sec = std::min(ob32_sec, best_time([&] {
          ob.sgemm(kRowMajor, ta_ob, tb_ob, int(s.M), int(s.N), int(s.K), 1.f, A.data(),
                   int(lda), B.data(), int(ldb), 0.f, C.data(), int(ldc));
        }, min_time));
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      set_num_threads(T);
      const Result ours32 = record("s2s", "f32", ours32_sec, peak_f32[ti]);
      auto run16 = [&] {
        gemm_bf16(s.ta, s.tb, s.M, s.N, s.K, 1.f, A16.data(), lda, B16.data(), ldb, 0.f,
                  C.data(), ldc);
      };
      const Result ours16 = record("s2s", "bf16", best_time(run16, min_time), peak_bf16[ti]);
      double dp16 = 0;  // our vdpbf16ps kernel, timed separately when AMX is the default
      if (have_amx) {
        gemm_detail::set_amx_enabled(false);
        dp16 = record("s2s-vdpbf16ps", "bf16", best_time(run16, min_time), peak_bf16[ti]).gflops;
        gemm_detail::set_amx_enabled(true);
      }
      // fp16 as linear runs it under fp16 compute: A fp32 rounded to fp16 while packing (the
      // activation or gradient), B fp16 bits (the weight's compute copy); fp32 kernel.
      const Result oursh = record("s2s", "f16", best_time([&] {
        gemm_f16_rounding(s.ta, s.tb, s.M, s.N, s.K, 1.f, A.data(), DType::F32, lda, Bh.data(),
                          DType::F16, ldb, 0.f, C.data(), ldc);
      }, min_time), peak_f32[ti]);
      double ob32 = 0, ob16 = 0, ob32_pct = 0;
      if (have_ob) {
        // Let our pool's threads settle before OpenBLAS's OpenMP team runs, and vice versa.
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        ob.set_threads(T);
        const int ta = ta_ob, tb = tb_ob;
        const Result r = record("openblas", "f32", ob32_sec, peak_f32[ti]);
        ob32 = r.gflops;
        ob32_pct = r.pct_peak;
        if (ob.sbgemm) {
          ob16 = record("openblas", "bf16", best_time([&] {
            ob.sbgemm(kRowMajor, ta, tb, int(s.M), int(s.N), int(s.K), 1.f, A16.data(),
                      int(lda), B16.data(), int(ldb), 0.f, C.data(), int(ldc));
          }, min_time), peak_bf16[ti]).gflops;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      std::printf("%-16s %5lld %5lld %5lld %2d | %7.1f %5.1f%% | %7.1f %5.1f%% | %5.2f | %7.1f "
                  "%5.1f%% | %7.1f | %5.2f | %7.1f | %7.1f %5.2f\n",
                  s.name.c_str(), (long long)s.M, (long long)s.N, (long long)s.K, T,
                  ours32.gflops, ours32.pct_peak, ob32, ob32_pct,
                  ob32 > 0 ? ours32.gflops / ob32 : 0.0, ours16.gflops, ours16.pct_peak, ob16,
                  ours16.gflops / ours32.gflops, dp16, oursh.gflops, oursh.gflops / ours32.gflops);
      std::fflush(stdout);
    }
  }
  std::printf("\ncolumns: GFLOP/s; %%pk = %% of the measured register-only peak at T threads "
              "(bf16 against the vdpbf16ps peak, so AMX exceeds 100%%); o/ob = ours / OpenBLAS "
              "fp32; 16/32 = our bf16 / our fp32; dpbf16 = our vdpbf16ps kernel with AMX off; oursh = "
              "our fp16 (A fp32 rounded to fp16 in packing, B fp16; fp32 kernel), h/32 = oursh / "
              "ours32 (time ratio f16/f32 = 1 / h/32)\n");

  if (json_path) {
    FILE* fp = std::fopen(json_path, "w");
    if (!fp) {
      std::fprintf(stderr, "bench_gemm: cannot write %s\n", json_path);
      return 1;
    }
    std::fprintf(fp, "{\n  \"cpu\": \"%s\",\n  \"features\": \"%s\",\n  \"isa\": \"%s\",\n",
                 json_escape(f.brand).c_str(), feats.c_str(), isa_name(active_isa()));
    std::fprintf(fp, "  \"kernel_f32\": \"%s\",\n  \"kernel_bf16\": \"%s\",\n",
                 json_escape(gemm_kernel_name(DType::F32)).c_str(),
                 json_escape(gemm_kernel_name(DType::BF16)).c_str());
    std::fprintf(fp, "  \"kernel_f16\": \"%s\",\n",
                 json_escape(gemm_kernel_name(DType::F16)).c_str());
    std::fprintf(fp, "  \"openblas\": \"%s\",\n  \"peak\": [",
                 have_ob ? json_escape(ob.path).c_str() : "");
    for (size_t t = 0; t < thread_counts.size(); ++t)
      std::fprintf(fp, "%s{\"threads\": %d, \"fp32_gflops\": %.2f, \"bf16_gflops\": %.2f}",
                   t ? ", " : "", thread_counts[t], peak_f32[t], peak_bf16[t]);
    std::fprintf(fp, "],\n  \"results\": [\n");
    for (size_t i = 0; i < results.size(); ++i) {
      const Result& r = results[i];
      std::fprintf(fp,
                   "    {\"lib\": \"%s\", \"dtype\": \"%s\", \"shape\": \"%s\", \"M\": %lld, "
                   "\"N\": %lld, \"K\": %lld, \"trans_a\": %s, \"trans_b\": %s, \"threads\": %d, "
                   "\"gflops\": %.2f, \"seconds\": %.6f, \"pct_peak\": %.1f}%s\n",
                   r.lib.c_str(), r.dtype.c_str(), json_escape(r.shape).c_str(),
                   (long long)r.M, (long long)r.N, (long long)r.K, r.ta ? "true" : "false",
                   r.tb ? "true" : "false", r.threads, r.gflops, r.seconds, r.pct_peak,
                   i + 1 < results.size() ? "," : "");
    }
    std::fprintf(fp, "  ]\n}\n");
    std::fclose(fp);
    std::printf("json:     %s\n", json_path);
  }
  return 0;
}
