// The small-M product (s2s/gemv.h) on GPT-2 124M's decoding shapes against this machine's
// streaming read bandwidth: achieved GB/s of weights read vs the peak a plain read loop gets.
//
//   build/bench_gemv [--threads N] [--read-bandwidth] [--attention]
//
// --read-bandwidth prints only the read loop's GB/s (bench/generate.bench.mjs uses it for the
// decoding bound). Otherwise, per (threads, M, weight dtype f32 / bf16 / f16): one "token" = the 48 block layers
// (c_attn 768x2304, attn c_proj 768x768, c_fc 768x3072, mlp c_proj 3072x768, Conv1D in_out
// layout) + the tied head (50257x768, out_in), ~124M weights: ms per token and GB/s.
// --attention: decoding's other read-bound op instead, attention_cached (one new query per row
// against a full cache of t positions, a cache per layer) for GPT-2 124M's heads (12 x 64) and
// SmolLM-135M's (9 query heads over 3 key/value heads x 64), batch 1 and 8, t = 256 and 1,024,
// an f32 and a bf16 cache: us per layer and the cache's GB/s (every key and value read once).
#include <algorithm>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "s2s/arena.h"
#include "s2s/cpu_features.h"
#include "s2s/dtype.h"
#include "s2s/gemv.h"
#include "s2s/ops/attention_cached.h"
#include "s2s/tensor.h"
#include "s2s/thread_pool.h"

using namespace s2s;
using Clock = std::chrono::steady_clock;

namespace {

double seconds(Clock::time_point a) { return std::chrono::duration<double>(Clock::now() - a).count(); }

#if defined(__x86_64__)
// Sums [b, e) with 4 independent zmm accumulators: as close to the memory's streaming read
// rate as a loop gets (the portable loop below is add-latency bound on some machines).
__attribute__((target("avx512f"))) float sum_avx512(const float* p, int64_t b, int64_t e) {
  __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  for (int64_t i = b; i < e; i += 64) {
    s0 = _mm512_add_ps(s0, _mm512_loadu_ps(p + i));
    s1 = _mm512_add_ps(s1, _mm512_loadu_ps(p + i + 16));
    s2 = _mm512_add_ps(s2, _mm512_loadu_ps(p + i + 32));
    s3 = _mm512_add_ps(s3, _mm512_loadu_ps(p + i + 48));
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}
#endif

float sum_portable(const float* p, int64_t b, int64_t e) {
  float acc[16] = {};
  for (int64_t i = b; i < e; i += 16)
    for (int u = 0; u < 16; ++u) acc[u] += p[i + u];
  float s = 0;
  for (float a : acc) s += a;
  return s;
}

// GB/s of summing a 512 MB buffer, split over the pool's threads; best of 5.
double read_bandwidth() {
  const size_t n = size_t(128) << 20;  // floats
  AlignedPtr<float> buf = make_aligned<float>(n);
  parallel_for(int64_t(n), 1 << 20, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) buf[size_t(i)] = 1.0f;
  });
  double best = 1e30;
  std::vector<float> sink(64);
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = Clock::now();
    parallel_for(int64_t(n / 64), 1 << 14, [&](int64_t b, int64_t e) {
#if defined(__x86_64__)
      if (cpu_features().avx512f && cpu_features().os_saves_zmm) {
        sink[size_t(b % 64)] = sum_avx512(buf.get(), b * 64, e * 64);
        return;
      }
#endif
      sink[size_t(b % 64)] = sum_portable(buf.get(), b * 64, e * 64);
    });
    best = std::min(best, seconds(t0));
  }
  return double(n) * 4 / best / 1e9;
}

struct Layer {
  bool out_in;
  int64_t N, K;
};

// attention_cached over full caches of t positions for R rows, as a decoding step runs it: one
// call per layer, each layer's own cache (30 of them, more than the last-level cache holds at
// every size here), best of 15 steps (a shared machine's bursts spoil single steps), in us per
// layer call, and the caches' GB/s.
void bench_attention(double bw) {
  struct Heads {
    const char* model;
    int64_t Hq, Hkv;
  };
  const int64_t D = 64, layers = 30;
  for (const Heads& h : {Heads{"gpt2", 12, 12}, Heads{"smollm", 9, 3}}) {
    for (const int64_t R : {1, 8}) {
      for (const int64_t t : {256, 1024}) {
        for (const DType dt : {DType::F32, DType::BF16}) {
          const size_t elems = size_t(R * t * h.Hkv * D), bytes = elems * dtype_size(dt);
          AlignedPtr<float> cache = make_aligned<float>(2 * size_t(layers) * bytes / 4);
          const float fill = 0.01f;
          const uint16_t fill16 = f32_to_bf16(fill);
          uint8_t* base = reinterpret_cast<uint8_t*>(cache.get());
          for (size_t i = 0; i < 2 * size_t(layers) * elems; ++i) {
            if (dt == DType::F32) std::memcpy(base + 4 * i, &fill, 4);
            else std::memcpy(base + 2 * i, &fill16, 2);
          }
          std::vector<float> q(size_t(R * h.Hq * D), 0.5f), out(q.size());
          const int64_t shape[4] = {R, t, h.Hkv, D}, qshape[4] = {R, 1, h.Hq, D};
          const Tensor qt = Tensor::contiguous(q.data(), DType::F32, 4, qshape);
          const Tensor ot = Tensor::contiguous(out.data(), DType::F32, 4, qshape);
          const size_t rows = static_cast<size_t>(R);
          std::vector<int32_t> slot(rows), begin(rows, 0), end(rows, static_cast<int32_t>(t));
          for (int64_t r = 0; r < R; ++r) slot[size_t(r)] = int32_t(r);
          AttentionOptions o;
          o.causal = true;
          double best = 1e30;
          for (int rep = 0; rep < 15; ++rep) {
            const auto t0 = Clock::now();
            for (int64_t l = 0; l < layers; ++l) {
              const Tensor kc = Tensor::contiguous(base + size_t(2 * l) * bytes, dt, 4, shape);
              const Tensor vc = Tensor::contiguous(base + size_t(2 * l + 1) * bytes, dt, 4, shape);
              attention_cached_forward(ot, qt, kc, vc, slot.data(), begin.data(), end.data(),
                                       Tensor{}, o);
            }
            best = std::min(best, seconds(t0) / double(layers));
          }
          const double gb = 2.0 * double(bytes) / 1e9;
          std::printf("  %-6s batch %ld, t %4ld, %-4s cache %8.1f us/layer  %6.1f GB/s (%3.0f%% of "
                      "read bandwidth)\n",
                      h.model, long(R), long(t), dt == DType::F32 ? "f32" : "bf16", best * 1e6,
                      gb / best, 100 * gb / best / bw);
        }
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 0;
  bool bw_only = false, attention = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
    else if (a == "--read-bandwidth") bw_only = true;
    else if (a == "--attention") attention = true;
    else {
      std::fprintf(stderr, "usage: bench_gemv [--threads N] [--read-bandwidth] [--attention]\n");
      return 2;
    }
  }
  std::vector<int> thread_list = threads > 0 ? std::vector<int>{threads} : std::vector<int>{1, 2};
  if (bw_only) {
    set_num_threads(thread_list[0]);
    std::printf("read bandwidth %d thread(s): %.1f GB/s\n", thread_list[0], read_bandwidth());
    return 0;
  }
  if (attention) {
    std::printf("attention_cached (decoding, head dim 64), ISA %s\n", isa_name(active_isa()));
    for (int t : thread_list) {
      set_num_threads(t);
      const double bw = read_bandwidth();
      std::printf("threads %d: read bandwidth %.1f GB/s\n", t, bw);
      bench_attention(bw);
    }
    return 0;
  }
  std::vector<Layer> layers;
  for (int i = 0; i < 12; ++i) {
    layers.push_back({false, 2304, 768});
    layers.push_back({false, 768, 768});
    layers.push_back({false, 3072, 768});
    layers.push_back({false, 768, 3072});
  }
  layers.push_back({true, 50257, 768});
  std::vector<std::vector<float>> W32;
  std::vector<std::vector<uint16_t>> W16, Wh;  // bf16, f16
  int64_t weights = 0;
  for (const Layer& l : layers) {
    W32.emplace_back(size_t(l.N * l.K), 0.01f);
    W16.emplace_back(size_t(l.N * l.K), f32_to_bf16(0.01f));
    Wh.emplace_back(size_t(l.N * l.K), f32_to_f16(0.01f));
    weights += l.N * l.K;
  }
  std::vector<float> x(size_t(kGemvMaxRows * 3072), 0.5f), y(size_t(kGemvMaxRows * 50257));
  std::printf("gemv on GPT-2 124M decoding shapes (%.1fM weights), ISA %s\n", weights / 1e6,
              isa_name(active_isa()));
  for (int t : thread_list) {
    set_num_threads(t);
    const double bw = read_bandwidth();
    std::printf("threads %d: read bandwidth %.1f GB/s\n", t, bw);
    for (int64_t M : {1, 4, 8}) {
      for (DType wt : {DType::F32, DType::BF16, DType::F16}) {
        double best = 1e30;
        for (int rep = 0; rep < 5; ++rep) {
          const auto t0 = Clock::now();
          for (size_t i = 0; i < layers.size(); ++i) {
            const Layer& l = layers[i];
            const int64_t ldw = l.out_in ? l.K : l.N;
            if (wt == DType::BF16) {
              gemv_bf16(l.out_in, M, l.N, l.K, x.data(), l.K, W16[i].data(), ldw, nullptr, y.data(), l.N);
            } else if (wt == DType::F16) {
              gemv_f16(l.out_in, M, l.N, l.K, x.data(), l.K, Wh[i].data(), ldw, nullptr, y.data(), l.N);
            } else {
              gemv_f32(l.out_in, M, l.N, l.K, x.data(), l.K, W32[i].data(), ldw, nullptr, y.data(), l.N);
            }
          }
          best = std::min(best, seconds(t0));
        }
        const double gb = double(weights) * (wt == DType::F32 ? 4 : 2) / 1e9;
        std::printf("  M %ld %-4s %7.2f ms/token  %6.1f GB/s (%3.0f%% of read bandwidth)  [%s]\n",
                    long(M), wt == DType::BF16 ? "bf16" : wt == DType::F16 ? "f16" : "f32",
                    best * 1e3, gb / best, 100 * gb / best / bw, gemv_kernel_name(wt));
      }
    }
  }
  return 0;
}
