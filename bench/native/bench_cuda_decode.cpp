// bench_cuda_decode: decoding on one GPU. Two measurements, one JSON object on stdout:
//   - "generate": greedy decoding of a GPT-2-shaped model (random GPT-2 initialisation) through
//     s2s::generate on the CUDA backend, what `s2s-train generate --device cuda` runs: prefill
//     time, decode tokens/s (batch rows counted; every step reads its logits back to the host,
//     as generation does). Its PyTorch anchor is bench/models/pytorch_generate.py --device cuda
//     --random (the same shapes, a plain concatenating KV cache, eager).
//     From the second step on, generation replays a recorded step (a CUDA graph); the same run
//     op by op (Graph::replay_decoding_steps off) is "generate_op_by_op", so the two side by
//     side show what the replay saves. Both report "replayed_steps".
//     In the simulator (bench_cuda_decode_sim) it also counts the work one decoding step queues
//     ("work_per_step": launches, GEMMs, uploads, downloads, device copies, fills; with
//     --work-detail by kernel and GEMM shape too), which does not depend on the channel count:
//     --layers 12 with small channels gives GPT-2 124M's.
//   - "attention_cached": the cached-attention op alone, one new query per row against caches
//     of growing length, in microseconds per call and as a fraction of the GPU's memory
//     bandwidth (the op reads every cached key and value once per query head: that is its
//     floor). Peak bandwidth: --peak-gbps, or the device's memory clock x bus width.
//
//   bench_cuda_decode [--batch 1] [--prompt 512] [--new 512] [--layers 12] [--channels 768]
//                     [--heads 12] [--vocab 50257] [--repeat 3] [--bf16] [--peak-gbps G]
//                     [--contexts 256,1024,4096] [--work-detail]
//
// --bf16: bf16 compute (the linears multiply bf16 copies of the weights, as `--dtype bfloat16`)
// and a bf16 KV cache, as generation keeps under bf16 compute on a GPU; the cached attention's
// arithmetic stays fp32 either way.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "bench_common.h"
#include "queued_work_json.h"
#include "s2s/device.h"
#include "s2s/error.h"

#if S2S_HAVE_CUDA
#include <cuda_runtime.h>

#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/cuda_ops.h"
#include "s2s/generate/generate.h"
#include "s2s/models/init_weights.h"
#include "s2s/models/model.h"

using namespace s2s;
using s2s_bench::now_s;
using s2s_bench::random_token_ids;

namespace {

struct Args {
  int64_t B = 1, prompt = 512, fresh = 512, L = 12, C = 768, H = 12, V = 50257;
  int repeat = 3;
  bool bf16 = false;
  bool work_detail = false;  // simulator: work per step by kernel and GEMM shape
  double peak_gbps = 0;  // 0: from the device
  std::vector<int64_t> contexts = {256, 1024, 4096};
};

std::vector<int64_t> parse_list(const char* s) {
  std::vector<int64_t> out;
  for (const char* p = s; *p != '\0';) {
    char* end = nullptr;
    const long long v = std::strtoll(p, &end, 10);
    if (end == p || v <= 0) {
      std::fprintf(stderr, "bench_cuda_decode: --contexts expects positive integers, got %s\n", s);
      std::exit(2);
    }
    out.push_back(v);
    p = *end == ',' ? end + 1 : end;
  }
  return out;
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto next = [&] { return s2s_bench::option_value("bench_cuda_decode", argc, argv, i); };
    if (k == "--batch") a.B = std::atoll(next());
    else if (k == "--prompt") a.prompt = std::atoll(next());
    else if (k == "--new") a.fresh = std::atoll(next());
    else if (k == "--work-detail") a.work_detail = true;
    else if (k == "--layers") a.L = std::atoll(next());
    else if (k == "--channels") a.C = std::atoll(next());
    else if (k == "--heads") a.H = std::atoll(next());
    else if (k == "--vocab") a.V = std::atoll(next());
    else if (k == "--repeat") a.repeat = std::atoi(next());
    else if (k == "--bf16") a.bf16 = true;
    else if (k == "--peak-gbps") a.peak_gbps = std::atof(next());
    else if (k == "--contexts") a.contexts = parse_list(next());
    else s2s_bench::unknown_option("bench_cuda_decode", k);
  }
  if (a.B < 1 || a.prompt < 1 || a.fresh < 2 || a.repeat < 1 || a.C % a.H != 0) {
    std::fprintf(stderr, "bench_cuda_decode: expected batch, prompt >= 1, new >= 2, repeat >= 1 "
                         "and channels divisible by heads\n");
    std::exit(2);
  }
  return a;
}

// HBM bandwidth from the memory clock (kHz, double data rate) and bus width (bits); 0 when the
// runtime does not say (the simulator).
double device_peak_gbps() {
  int device = 0, clock_khz = 0, bus_bits = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, device) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return 2.0 * double(clock_khz) * 1e3 * double(bus_bits) / 8.0 / 1e9;
}

std::string generate_json(const Args& a, bool replay) {
  const std::string config = s2s_bench::gpt2_config_json(a.V, a.C, a.L, a.H, a.prompt + a.fresh);
  std::unique_ptr<Model> model = create_model(parse_model_config(config, "bench config"));
  init_weights(*model, 42);
  if (a.bf16) model->set_compute_dtype(ComputeDType::BF16);
  std::shared_ptr<Backend> backend = cuda::make_cuda_backend({}, "bench_cuda_decode");
  model->to_backend(backend);
  Graph g;
  g.set_backend(backend);
  g.replay_decoding_steps = replay;
  KVCache cache;
  std::vector<std::vector<int32_t>> inputs;
  for (int64_t b = 0; b < a.B; ++b) inputs.push_back(random_token_ids(a.prompt, a.V, 42 + uint64_t(b)));
  GenerationConfig gc;
  gc.max_new_tokens = a.fresh;
  gc.min_new_tokens = a.fresh;  // no EOS: every run decodes the same number of steps
  gc.pad_token_id = 0;

  // A short warm-up (kernels, cuBLASLt plans, arena blocks), then the fastest of `repeat` runs.
  GenerationConfig warm = gc;
  // 8 tokens: long enough to record a step too, so the timed runs' extra steps are all alike.
  warm.max_new_tokens = warm.min_new_tokens = std::min<int64_t>(8, a.fresh);
#if S2S_SIMT_SIM
  s2s::simt::queued_work() = s2s::simt::QueuedWork{};
#endif
  [[maybe_unused]] const int64_t warm_steps = generate(*model, g, cache, inputs, warm).steps;
#if S2S_SIMT_SIM
  const s2s::simt::QueuedWork warm_work = s2s::simt::queued_work();
  s2s::simt::queued_work() = s2s::simt::QueuedWork{};
#endif
  double best_prefill = 0, best_decode_s = 0;
  int64_t steps = 0, replayed = 0;
  std::string work_json;
  for (int r = 0; r < a.repeat; ++r) {
    const GenerateResult res = generate(*model, g, cache, inputs, gc);
#if S2S_SIMT_SIM
    if (r == 0 && res.steps > warm_steps) {  // the same prefill: the difference is the steps'
      work_json = s2s_bench::queued_work_json(warm_work, s2s::simt::queued_work(),
                                              double(res.steps - warm_steps), a.work_detail);
    }
#endif
    const double decode_s = res.decode_ms / 1e3;
    if (r == 0 || decode_s < best_decode_s) {
      best_decode_s = decode_s;
      best_prefill = res.prefill_ms;
      steps = res.steps;
      replayed = res.replayed_steps;
    }
  }
  char out[512];
  std::snprintf(out, sizeof out,
                "{\"batch\":%lld,\"prompt\":%lld,\"new_tokens\":%lld,\"compute\":\"%s\","
                "\"prefill_ms\":%.3f,\"decode_s\":%.4f,\"decode_steps\":%lld,"
                "\"replayed_steps\":%lld,\"decode_tokens_per_s\":%.1f,\"runs\":%d,"
                "\"kv_cache\":\"%s\",\"kv_cache_bytes\":%zu",
                (long long)a.B, (long long)a.prompt, (long long)a.fresh,
                a.bf16 ? "bfloat16" : "float32", best_prefill, best_decode_s, (long long)steps,
                (long long)replayed, double(a.B * steps) / best_decode_s, a.repeat,
                dtype_name(cache.dtype()), cache.bytes());
  return std::string(out) + work_json + "}";
}

// The op at GPT-2's decoding shape: R rows, one query each, Hq = Hkv heads, every row's cache
// filled to `keys` positions. Bytes: the keys and values read once per query head (the floor),
// plus q and out.
std::string attention_json(const Args& a, double peak_gbps) {
  cuda::Context ctx{cuda::ContextOptions{}};
  const int64_t R = a.B, H = a.H, D = a.C / a.H;
  std::string s = "[";
  for (size_t item_index = 0; item_index < 2 * a.contexts.size(); ++item_index) {
    const size_t n = item_index / 2;
    // Each context with an f32 cache, then a bf16 one (decoding's under bf16 compute).
    const DType cache_dtype = item_index % 2 == 0 ? DType::F32 : DType::BF16;
    const size_t elem = dtype_size(cache_dtype);
    const int64_t Tc = a.contexts[n];
    const int64_t cache_floats = R * Tc * H * D, q_floats = R * H * D;
    cuda::DeviceBuffer k(ctx, size_t(cache_floats) * elem), v(ctx, size_t(cache_floats) * elem);
    cuda::DeviceBuffer q(ctx, size_t(q_floats) * 4), out(ctx, size_t(q_floats) * 4);
    std::vector<float> host(static_cast<size_t>(cache_floats));
    uint64_t st = 7;
    for (float& x : host) {
      st ^= st << 13; st ^= st >> 7; st ^= st << 17;
      x = float(int64_t(st % 2001) - 1000) * 1e-3f;
    }
    std::vector<uint16_t> host16(cache_dtype == DType::BF16 ? host.size() : 0);
    for (size_t i = 0; i < host16.size(); ++i) host16[i] = f32_to_bf16(host[i]);
    const void* cache_src = host16.empty() ? static_cast<const void*>(host.data()) : host16.data();
    cuda::upload(ctx, k.data(), cache_src, size_t(cache_floats) * elem);
    cuda::upload(ctx, v.data(), cache_src, size_t(cache_floats) * elem);
    cuda::upload(ctx, q.data(), host.data(), size_t(q_floats) * 4);
    const size_t rows = static_cast<size_t>(R);
    std::vector<int32_t> slot(rows), begin(rows, 0), end(rows, int32_t(Tc));
    for (int64_t r = 0; r < R; ++r) slot[size_t(r)] = int32_t(r);
    cuda::DeviceBuffer dslot(ctx, size_t(R) * 4), dbegin(ctx, size_t(R) * 4),
        dend(ctx, size_t(R) * 4);
    cuda::upload(ctx, dslot.data(), slot.data(), size_t(R) * 4);
    cuda::upload(ctx, dbegin.data(), begin.data(), size_t(R) * 4);
    cuda::upload(ctx, dend.data(), end.data(), size_t(R) * 4);
    const Tensor tq = Tensor::contiguous(q.data(), DType::F32, {R, 1, H, D});
    const Tensor to = Tensor::contiguous(out.data(), DType::F32, {R, 1, H, D});
    const Tensor tk = Tensor::contiguous(k.data(), cache_dtype, {R, Tc, H, D});
    const Tensor tv = Tensor::contiguous(v.data(), cache_dtype, {R, Tc, H, D});
    AttentionOptions o;
    o.causal = true;
    auto call = [&] {
      cuda::attention_cached_forward(ctx, to, tq, tk, tv, static_cast<int32_t*>(dslot.data()),
                                     static_cast<int32_t*>(dbegin.data()),
                                     static_cast<int32_t*>(dend.data()), Tensor{}, o);
    };
    call();  // loads the kernels (lazily loaded modules) and sizes the arena
    ctx.synchronize();
    // Three calls to estimate, then enough back-to-back calls for about 50 ms (3 to 2000).
    double t0 = now_s();
    for (int c = 0; c < 3; ++c) call();
    ctx.synchronize();
    const double estimate = (now_s() - t0) / 3;
    const int calls = int(std::clamp(0.05 / std::max(estimate, 1e-9), 3.0, 2000.0));
    const double bytes = double(2 * cache_floats) * double(elem) + double(2 * q_floats) * 4;
    t0 = now_s();
    for (int c = 0; c < calls; ++c) call();
    ctx.synchronize();
    const double per_call = (now_s() - t0) / calls;
    const double gbps = bytes / per_call / 1e9;
    char item[256];
    std::snprintf(item, sizeof item,
                  "%s{\"cache\":\"%s\",\"rows\":%lld,\"heads\":%lld,\"head_dim\":%lld,"
                  "\"keys\":%lld,\"calls\":%d,"
                  "\"us_per_call\":%.2f,\"gb_per_s\":%.1f,\"fraction_of_peak\":%.3f}",
                  item_index == 0 ? "" : ",", dtype_name(cache_dtype), (long long)R, (long long)H,
                  (long long)D, (long long)Tc,
                  calls, per_call * 1e6, gbps, peak_gbps > 0 ? gbps / peak_gbps : 0.0);
    s += item;
  }
  return s + "]";
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  try {
    const CudaStatus st = cuda_status();
    if (st.devices.empty()) {
      std::fprintf(stderr, "bench_cuda_decode: no CUDA device: %s\n", st.problem.c_str());
      return 2;
    }
    const double peak = a.peak_gbps > 0 ? a.peak_gbps : device_peak_gbps();
    const std::string gen = generate_json(a, true);
    const std::string op_by_op = generate_json(a, false);
    const std::string att = attention_json(a, peak);
    std::printf("{\"bench\":\"cuda_decode\",\"device\":\"%s\",\"layers\":%lld,\"channels\":%lld,"
                "\"heads\":%lld,\"vocab\":%lld,\"peak_gbps\":%.0f,\"generate\":%s,"
                "\"generate_op_by_op\":%s,\"attention_cached\":%s}\n",
                st.devices[0].name.c_str(), (long long)a.L, (long long)a.C, (long long)a.H,
                (long long)a.V, peak, gen.c_str(), op_by_op.c_str(), att.c_str());
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_cuda_decode: %s: %s\n", e.code().c_str(), e.what());
    return 1;
  }
}

#else

int main() {
  std::fprintf(stderr, "bench_cuda_decode: the CUDA backend is not built into this binary (%s)\n",
               s2s::cuda_status().problem.c_str());
  return 2;
}

#endif
