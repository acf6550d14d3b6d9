// bench_cuda_train: GPT-2 124M training steps on one GPU, composed directly from the CUDA ops
// (native/src/backends/cuda), or with --model through the model path (s2s::Model on the CUDA
// backend: nn layers, graph, ParamStore, optimizer_step, as `s2s-train train --device cuda` runs
// it), timed, with tokens/s and MFU printed as one JSON object ("path": "ops" or "model"; the
// ratio of the two is what the model path costs over the hand-composed step). Its PyTorch anchor
// is bench/models/pytorch_cuda_train.py (same shapes, eager and torch.compile); bench/README.md
// says how to run both on a GPU machine.
//
//   bench_cuda_train [--batch 16] [--seq 1024] [--layers 12] [--channels 768] [--heads 12]
//                    [--vocab 50257] [--warmup 3] [--steps 10] [--peak-tflops 989] [--tf32]
//                    [--profile] [--trace] [--unpadded-logits]
//                    [--model [--fp16] [--chunked-loss] [--lora R] [--no-replay] [--dry-runs N]]
//                    [--attention-fp32] [--work-detail]
//                    [--model --arch llama [--kv-heads K] [--intermediate F]]
//
// --model differs from the hand-composed step in what the model path does differently: the LM
// head's logits are a separate (N,V) activation and gradient as in every model, the weights are
// GPT-2's initialisation (init_weights) and the batch ids/labels are uploaded each step.
// --fp16 (with --model): fp16 compute instead of bf16, with the dynamic loss scaler (the
// trainer's float16); skipped steps are counted in "skipped_steps" and still timed.
// --chunked-loss (with --model): the LM head and the loss a chunk of rows at a time
// (Model::set_chunked_loss): no (N,V) logits or gradient (chunks of at least 4096 rows).
// --unpadded-logits: the logits and their gradient with rows of exactly V elements, as torch
// eager lays them out, instead of rows padded to a multiple of 64 (Backend::aligned_row_stride,
// which the model path uses where the caller reads the loss only, Graph::loss_only): at GPT-2's
// 50,257 columns the unpadded rows are 4-byte (f32) and 2-byte (bf16) aligned, and cuBLASLt's
// fast kernels want 16. The ratio of the two runs is what the padding gains (the head's three
// GEMMs are about a third of GPT-2 124M's flops).
// --lora R (with --model): LoRA fine-tuning instead, as PEFT's defaults for GPT-2 run it (rank R,
// alpha 2R, dropout 0.05, c_attn targeted, B zero at the start, everything else frozen): the base
// weights' bf16 copies multiply forward and for the input gradients only, and AdamW updates the
// adapters. Its flops per token are 4 * (parameters except wpe) + 6 * (adapter parameters) +
// 12 * L * C * T (no weight gradients of the base), "mfu" counted so; the anchor is
// pytorch_cuda_train.py --lora R.
//
// --no-replay (with --model): every step's forward and backward issued op by op, as on the first
// step; by default they are recorded and replayed as the trainer does (s2s::PassReplay: one
// launch per micro-step where the host issued every kernel and GEMM; LoRA's dropout too, its
// seed read from device memory). "replayed_steps" counts the timed steps that were replayed;
// "dry_run_ms" is the host's time per timed step in the dry runs that check each replay (the
// tape, allocations and fingerprint: what a replayed step still costs the host).
// --dry-runs N (with --model): after the timed steps, N dry runs of the step's pass back to back
// (PassReplay's: TracedBackend with the device work dropped), "dry_run_loop_ms" their mean (the
// fastest of five rounds of N / 5): the
// host's cost of a replayed micro-step undisturbed by the kernels' (in the simulator, or the
// GPU's) effect on the host's caches.
// --arch llama (with --model): a Llama-family model of the given shape instead of GPT-2
// (SmolLM's config: SiLU-gated MLP of width --intermediate, RMSNorm, rope, tied embeddings,
// --kv-heads grouped-query heads). SmolLM-135M: --arch llama --layers 30 --channels 576
// --heads 9 --kv-heads 3 --intermediate 1536 --vocab 49152. Flops per token are counted as
// for GPT-2 (6 per parameter, the tied head once, plus attention's 12 L C T).
// --attention-fp32 (hand-composed step only): attention's products in fp32 on the CUDA cores (the
// fp32 kernels) instead of bf16 on the tensor cores (attention_mma.cu, what autocast's SDPA and
// the model path under bf16 compute use), to measure what the tensor-core kernels gain.
//
// --profile synchronises around every op and adds "profile_ms": the mean time per step spent in
// each op family (linear, attention, layernorm, ...); the synchronisations make the step slower,
// so the throughput figures of a profiled run are not the ones to report.
// In the simulator (bench_cuda_train_sim) either path adds "work_per_step": the launches, GEMMs,
// uploads, downloads, device copies and fills a timed step queues (queued_work_json.h), and with
// --work-detail the launches by kernel and the GEMMs by shape. They do not depend on the channel
// count, so --layers 12 with small channels gives GPT-2 124M's counts.
// --trace records the timed steps' GPU activity with CUPTI (kernel_trace.h; either path, no
// synchronisation per op) and adds "trace": the GPU's busy time per step against the step's
// (the rest is the GPU waiting for the host) and the kernels that took it, by name.
// The step: embedding (wte + wpe) -> L x [ln1, qkv = linear, attention (causal, fused), proj,
// residual, ln2, fc, gelu (tanh), fc proj, residual] -> ln_f -> logits = x wte^T (tied) ->
// cross-entropy (mean) -> the whole backward -> grad norm, clip 1.0 -> fused AdamW (lr 1e-4,
// wd 0.1 on matrices) that also refreshes the bf16 compute copies. Mixed precision as PyTorch's
// autocast(bfloat16): the linear layers (and the LM head) multiply bf16 copies of the fp32 master
// weights on tensor cores with fp32 accumulation; activations, norms, softmax, attention and the
// loss are fp32; master weights, gradients and AdamW moments are fp32. Weights are random
// (N(0, 0.02)); token ids are random: throughput does not depend on the text. The loss is
// printed per step as a sanity check (it must fall on a repeated batch).
//
// Flops per token (PaLM appendix B, as llm.c counts them): 6 * (parameters except wpe, the LM
// head counted through the tied wte) + 12 * L * C * T. MFU = flops/token * tokens/s / peak, with
// peak = 989 TFLOP/s dense bf16 for an H100 SXM (--peak-tflops to change it).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bench_common.h"
#include "queued_work_json.h"
#include "kernel_trace.h"
#include "s2s/device.h"
#include "s2s/error.h"

#if S2S_HAVE_CUDA
#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/cuda_ops.h"
#include "backends/cuda/gemm.h"
#include "s2s/models/init_weights.h"
#include "s2s/models/lora.h"
#include "s2s/models/model.h"
#include "nn/traced_backend.h"
#include "s2s/nn/pass_replay.h"
#include "s2s/ops/grad_norm.h"
#include "s2s/train/optimizer.h"

using namespace s2s;
using s2s_bench::now_s;
using s2s_bench::random_token_ids;

namespace {

struct Args {
  int64_t B = 16, T = 1024, L = 12, C = 768, H = 12, V = 50257;
  int warmup = 3, steps = 10;
  double peak_tflops = 989.0;
  bool tf32 = false;
  bool profile = false;
  bool trace = false;  // CUPTI's record of the timed steps (kernel_trace.h)
  bool model = false;  // time the model path instead of the hand-composed step
  bool fp16 = false;   // --model only: fp16 compute with loss scaling
  bool chunked_loss = false;  // --model only: Model::set_chunked_loss
  bool unpadded_logits = false;  // logits rows of exactly V elements (no Graph::loss_only)
  bool no_replay = false;     // --model only: no PassReplay
  int dry_runs = 0;           // --model only: dry runs timed back to back after the steps
  int64_t lora_rank = 0;      // --model only: LoRA of this rank on c_attn instead of full training
  bool attention_fp32 = false;  // ops path: fp32 attention kernels instead of the tensor cores
  bool work_detail = false;     // simulator: work per step by kernel and GEMM shape
  bool llama = false;           // --model only: a Llama-family model instead of GPT-2
  int64_t kv_heads = 0;         // --arch llama: grouped-query heads (0: as --heads)
  int64_t intermediate = 0;     // --arch llama: the MLP's width (0: 4 x channels)
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto next = [&] { return s2s_bench::option_value("bench_cuda_train", argc, argv, i); };
    if (k == "--batch") a.B = std::atoll(next());
    else if (k == "--seq") a.T = std::atoll(next());
    else if (k == "--layers") a.L = std::atoll(next());
    else if (k == "--channels") a.C = std::atoll(next());
    else if (k == "--heads") a.H = std::atoll(next());
    else if (k == "--vocab") a.V = std::atoll(next());
    else if (k == "--warmup") a.warmup = std::atoi(next());
    else if (k == "--steps") a.steps = std::atoi(next());
    else if (k == "--peak-tflops") a.peak_tflops = std::atof(next());
    else if (k == "--tf32") a.tf32 = true;
    else if (k == "--profile") a.profile = true;
    else if (k == "--trace") a.trace = true;
    else if (k == "--model") a.model = true;
    else if (k == "--fp16") a.fp16 = true;
    else if (k == "--chunked-loss") a.chunked_loss = true;
    else if (k == "--unpadded-logits") a.unpadded_logits = true;
    else if (k == "--no-replay") a.no_replay = true;
    else if (k == "--dry-runs") a.dry_runs = std::atoi(next());
    else if (k == "--lora") a.lora_rank = std::atoll(next());
    else if (k == "--attention-fp32") a.attention_fp32 = true;
    else if (k == "--work-detail") a.work_detail = true;
    else if (k == "--arch") {
      const std::string arch = next();
      if (arch != "gpt2" && arch != "llama") {
        std::fprintf(stderr, "bench_cuda_train: --arch expects gpt2 or llama, got %s\n",
                     arch.c_str());
        std::exit(2);
      }
      a.llama = arch == "llama";
    }
    else if (k == "--kv-heads") a.kv_heads = std::atoll(next());
    else if (k == "--intermediate") a.intermediate = std::atoll(next());
    else s2s_bench::unknown_option("bench_cuda_train", k);
  }
  return a;
}

// A device fp32 tensor with its gradient, AdamW moments and (for matrices) a bf16 compute copy.
struct OpsParam {
  std::string name;
  std::vector<int64_t> shape;
  int64_t n = 0;
  bool decay = false, compute = false;
  cuda::DeviceBuffer w, g, m, v, w16;
  Tensor t(const cuda::DeviceBuffer& b, DType dt = DType::F32) const {
    return Tensor::contiguous(b.data(), dt, int(shape.size()), shape.data());
  }
  Tensor W() const { return t(w); }
  Tensor G() const { return t(g); }
  Tensor W16() const { return t(w16, DType::BF16); }
};

// Fills with N(0, std) (Box-Muller on a fixed xorshift stream) or a constant.
std::vector<float> init_values(int64_t n, double std, float constant, uint64_t seed) {
  std::vector<float> v(size_t(n), constant);
  if (std == 0) return v;
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  auto uni = [&]() {
    s ^= s << 13; s ^= s >> 7; s ^= s << 17;
    return (double((s >> 11) + 1)) / 9007199254740993.0;
  };
  for (int64_t i = 0; i < n; ++i) {
    v[i] = float(std * std::sqrt(-2 * std::log(uni())) * std::cos(6.283185307179586 * uni()));
  }
  return v;
}

struct OpsModel {
  Args a;
  cuda::Context& ctx;
  std::vector<OpsParam> params;
  size_t wte = 0, wpe = 0, lnf_w = 0, lnf_b = 0;
  struct Layer { size_t ln1_w, ln1_b, qkv_w, qkv_b, proj_w, proj_b, ln2_w, ln2_b, fc_w, fc_b, fc2_w, fc2_b; };
  std::vector<Layer> layers;

  size_t add(const std::string& name, std::vector<int64_t> shape, double std, float constant,
             bool decay, bool compute) {
    OpsParam p;
    p.name = name;
    p.shape = shape;
    p.n = 1;
    for (int64_t d : shape) p.n *= d;
    p.decay = decay;
    p.compute = compute;
    const size_t bytes = size_t(p.n) * 4;
    p.w = cuda::DeviceBuffer(ctx, bytes);
    p.g = cuda::DeviceBuffer(ctx, bytes);
    p.m = cuda::DeviceBuffer(ctx, bytes);
    p.v = cuda::DeviceBuffer(ctx, bytes);
    const std::vector<float> init = init_values(p.n, std, constant, params.size() + 1);
    cuda::upload(ctx, p.w.data(), init.data(), bytes);
    cuda::fill_zero(ctx, p.g.data(), bytes);
    cuda::fill_zero(ctx, p.m.data(), bytes);
    cuda::fill_zero(ctx, p.v.data(), bytes);
    if (compute) {
      p.w16 = cuda::DeviceBuffer(ctx, size_t(p.n) * 2);
      cuda::cast_forward(ctx, p.W16(), p.W());
    }
    params.push_back(std::move(p));
    ctx.synchronize();  // `init` is host memory going out of scope
    return params.size() - 1;
  }

  OpsModel(const Args& args, cuda::Context& c) : a(args), ctx(c) {
    const int64_t C = a.C;
    const double proj_std = 0.02 / std::sqrt(2.0 * double(a.L));  // GPT-2's scaled residual init
    wte = add("wte", {a.V, C}, 0.02, 0, true, true);
    wpe = add("wpe", {a.T, C}, 0.01, 0, true, false);
    for (int64_t l = 0; l < a.L; ++l) {
      const std::string p = "h." + std::to_string(l) + ".";
      Layer y;
      y.ln1_w = add(p + "ln_1.weight", {C}, 0, 1, false, false);
      y.ln1_b = add(p + "ln_1.bias", {C}, 0, 0, false, false);
      y.qkv_w = add(p + "attn.c_attn.weight", {3 * C, C}, 0.02, 0, true, true);
      y.qkv_b = add(p + "attn.c_attn.bias", {3 * C}, 0, 0, false, false);
      y.proj_w = add(p + "attn.c_proj.weight", {C, C}, proj_std, 0, true, true);
      y.proj_b = add(p + "attn.c_proj.bias", {C}, 0, 0, false, false);
      y.ln2_w = add(p + "ln_2.weight", {C}, 0, 1, false, false);
      y.ln2_b = add(p + "ln_2.bias", {C}, 0, 0, false, false);
      y.fc_w = add(p + "mlp.c_fc.weight", {4 * C, C}, 0.02, 0, true, true);
      y.fc_b = add(p + "mlp.c_fc.bias", {4 * C}, 0, 0, false, false);
      y.fc2_w = add(p + "mlp.c_proj.weight", {C, 4 * C}, proj_std, 0, true, true);
      y.fc2_b = add(p + "mlp.c_proj.bias", {C}, 0, 0, false, false);
      layers.push_back(y);
    }
    lnf_w = add("ln_f.weight", {C}, 0, 1, false, false);
    lnf_b = add("ln_f.bias", {C}, 0, 0, false, false);
  }

  int64_t count(bool without_wpe) const {
    int64_t n = 0;
    for (size_t i = 0; i < params.size(); ++i) {
      if (without_wpe && i == wpe) continue;
      n += params[i].n;
    }
    return n;
  }
};

// Activations of one step: fp32 device buffers, allocated once and reused by every step.
struct Acts {
  struct Layer {
    cuda::DeviceBuffer ln1, ln1_mean, ln1_rstd, qkv, q, k, v, att, lse, proj, res1;
    cuda::DeviceBuffer ln2, ln2_mean, ln2_rstd, fc, gelu, fc2, res2;
  };
  cuda::DeviceBuffer emb, lnf, lnf_mean, lnf_rstd, logits, lse_loss, ids, labels;
  std::vector<Layer> layers;
  // Gradient scratch.
  cuda::DeviceBuffer dres, dx, dqkv, dq, dk, dv, datt, dfc, dgelu, dln, dlogits;
};

// ",\"profile_ms\":{\"linear\":12.3,...}" (mean per timed step), or "" without --profile.
std::string profile_json(const std::map<std::string, double>& profile, size_t steps) {
  if (profile.empty() || steps == 0) return "";
  std::string s = ",\"profile_ms\":{";
  char buf[96];
  bool first = true;
  for (const auto& [family, seconds] : profile) {
    std::snprintf(buf, sizeof buf, "%s\"%s\":%.3f", first ? "" : ",", family.c_str(),
                  seconds * 1e3 / double(steps));
    s += buf;
    first = false;
  }
  return s + "}";
}

// Starts CUPTI's record for --trace (null without it, or where CUPTI is missing: *why says).
std::unique_ptr<s2s_bench::KernelTrace> start_trace(const Args& a, std::string* why) {
  return a.trace ? s2s_bench::KernelTrace::start(why) : nullptr;
}

// ",\"trace\":{...}" for --trace (or why there is none), "" without it.
std::string trace_json(const Args& a, s2s_bench::KernelTrace* trace, const std::string& why) {
  if (!a.trace) return "";
  if (trace == nullptr) return ",\"trace\":{\"unavailable\":" + s2s_bench::json_string(why) + "}";
  return trace->json();
}

// The same training step through s2s::Model on the CUDA backend: what the trainer runs.
int run_model_path(const Args& a, const CudaStatus& st) {
  const int64_t B = a.B, T = a.T, N = B * T;
  const std::string config =
      a.llama ? s2s_bench::llama_config_json(a.V, a.C, a.L, a.H, a.kv_heads > 0 ? a.kv_heads : a.H,
                                             a.intermediate > 0 ? a.intermediate : 4 * a.C, T)
              : s2s_bench::gpt2_config_json(a.V, a.C, a.L, a.H, T);
  std::unique_ptr<s2s::Model> model = create_model(parse_model_config(config, "bench config"));
  for (s2s::Param* p : model->params().all()) model->params().set_trainable(*p, true);
  init_weights(*model, 42);
  LoraAdapter adapter;  // owns the adapters' params: alive while training
  if (a.lora_rank > 0) {
    LoraConfig lc;  // PEFT's default targets for GPT-2 (c_attn)
    lc.r = a.lora_rank;
    lc.lora_alpha = 2.0 * double(a.lora_rank);
    lc.lora_dropout = 0.05;
    adapter = apply_lora(*model, lc, 42);
  }
  // As the hand-composed step: bf16 linears (or fp16 with --fp16, loss-scaled as the trainer does).
  model->set_compute_dtype(a.fp16 ? ComputeDType::F16 : ComputeDType::BF16);
  model->set_chunked_loss(a.chunked_loss);
  LossScalerOptions so;
  so.enabled = a.fp16;
  DynamicLossScaler scaler(so);
  cuda::ContextOptions co;
  co.allow_tf32 = a.tf32;
  std::shared_ptr<Backend> backend = cuda::make_cuda_backend(co, "bench_cuda_train");
  model->to_backend(backend);
  Graph g;
  g.set_backend(backend);
  // Training mode as the trainer runs it: the config has no dropout, but LoRA's (0.05) applies,
  // as PEFT's does in the anchor's train mode.
  g.training = true;

  const std::vector<int32_t> ids = random_token_ids(N, a.V, 42);
  Batch batch;
  batch.B = B;
  batch.T = T;
  batch.input_ids = ids.data();
  batch.labels = ids.data();  // the causal LM shifts them inside
  OptimizerConfig oc;
  oc.adamw.weight_decay = 0.1;
  oc.max_grad_norm = 1.0;

  // The micro-step recorded and replayed as the trainer runs it (accumulate), unless --no-replay.
  PassReplay replay;
  replay.set_enabled(!a.no_replay);
  int64_t replayed_steps = 0;

  // The micro-step's forward and backward, as the trainer queues them.
  auto pass = [&](uint64_t dropout_seed) {
    g.training = true;
    g.dropout_seed = dropout_seed;   // a fresh dropout mask each step (LoRA's)
    g.known_dloss = scaler.scale();  // as the trainer: the seed known before the forward
    g.loss_on_device = true;         // and the loss read after the backward
    g.loss_only = !a.unpadded_logits;  // the logits' rows padded for the GEMMs (as the trainer)
    ForwardResult r = model->forward(g, batch, LossReduction::Mean);
    g.backward(r.loss, scaler.scale());
    return r;
  };
  std::string why_no_trace;
  std::unique_ptr<s2s_bench::KernelTrace> trace = start_trace(a, &why_no_trace);
  std::vector<double> times, losses;
  std::string work_json;
  double dry_run_s = 0;  // the timed steps' host time in PassReplay's dry runs
  for (int i = 0; i < a.warmup + a.steps; ++i) {
    if (trace && i >= a.warmup) trace->begin_step();
    const double dry_before = replay.counts().dry_run_seconds;
#if S2S_SIMT_SIM
    if (i == a.warmup) s2s::simt::queued_work() = s2s::simt::QueuedWork{};
#endif
    const double t0 = now_s();
    ForwardResult r;
    const bool replayed = replay.run(g, [&] { r = pass(uint64_t(i + 1)); });
    if (replayed && i >= a.warmup) ++replayed_steps;
    if (i >= a.warmup) dry_run_s += replay.counts().dry_run_seconds - dry_before;
    // As trainStep: the update queued behind the backward, then one wait for the step's
    // outcome (the synchronize raising bad inputs, the norm, the loss).
    const int64_t applied = i + 1 - scaler.skipped_steps();  // AdamW's step: applied ones
    queue_optimizer_step(model->params(), oc, applied, 1e-4, 1.0f, &scaler);
    const OptimizerStepStats stats = finish_optimizer_step(model->params(), &scaler);
    const double loss = g.read_scalar(r.loss);
    const double dt = now_s() - t0;
    if (trace && i >= a.warmup) trace->end_step();
    losses.push_back(loss);
    if (i >= a.warmup) times.push_back(dt);
    std::fprintf(stderr, "step %d: loss %.4f, grad norm %.3f, %.1f ms\n", i, loss, stats.grad_norm,
                 dt * 1e3);
  }
#if S2S_SIMT_SIM
  work_json = s2s_bench::queued_work_json(s2s::simt::QueuedWork{}, s2s::simt::queued_work(),
                                          double(a.steps), a.work_detail);
#endif
  double dry_loop_s = 0;
  if (a.dry_runs > 0) {
    // Five rounds of a fifth each, the fastest round's mean: another process's burst on a shared
    // host then spoils a round, not the figure.
    const int per_round = std::max(1, a.dry_runs / 5);
    dry_loop_s = 1e30;
    for (int round = 0; round < 5; ++round) {
      const double t0 = now_s();
      for (int i = 0; i < per_round; ++i) {
        TracedBackend dry(*backend, /*dry=*/true);
        g.reset();
        g.route_through(&dry);
        pass(uint64_t(i + 1));
        g.route_through(nullptr);
      }
      dry_loop_s = std::min(dry_loop_s, (now_s() - t0) / double(per_round));
    }
    backend->synchronize();  // the dry runs' uploads
  }
  char dry_loop_json[64] = "";
  if (a.dry_runs > 0) {
    std::snprintf(dry_loop_json, sizeof dry_loop_json, ",\"dry_run_loop_ms\":%.4f",
                  dry_loop_s * 1e3);
  }
  double total = 0;
  for (double t : times) total += t;
  const double step_s = total / double(times.size());
  const double tokens_s = double(N) / step_s;
  // Parameters except wpe (the LM head counted through the tied wte): 6 flops a token each when
  // trained, 4 when frozen (forward and input gradient; wte's gather and wpe's are not GEMMs).
  double param_flops = 0;
  for (s2s::Param* p : model->params().all()) {
    if (p->name != "transformer.wpe.weight") {
      param_flops += (p->trainable ? 6.0 : 4.0) * double(p->value.numel());
    }
  }
  const double flops_per_token = param_flops + 12.0 * double(a.L * a.C * T);
  const double mfu = flops_per_token * tokens_s / (a.peak_tflops * 1e12);
  std::printf("{\"bench\":\"cuda_train\",\"path\":\"model\",\"arch\":\"%s\","
              "\"device\":\"%s\",\"batch\":%lld,"
              "\"seq\":%lld,\"layers\":%lld,\"channels\":%lld,\"vocab\":%lld,\"parameters\":%lld,"
              "\"step_ms\":%.3f,\"tokens_per_s\":%.1f,\"mfu\":%.4f,\"peak_tflops\":%.1f,"
              "\"tf32\":%s,\"compute\":\"%s\",\"skipped_steps\":%lld,\"first_loss\":%.5f,"
              "\"last_loss\":%.5f,\"chunked_loss\":%s,\"padded_logits\":%s,\"lora_rank\":%lld,"
              "\"trainable_parameters\":%lld,\"arena_peak_bytes\":%zu,"
              "\"gemm_rounded_through_scratch\":%lld,\"gemm_onto_through_add\":%lld,"
              "\"replayed_steps\":%lld,\"dry_run_ms\":%.3f%s%s%s}\n",
              a.llama ? "llama" : "gpt2", st.devices[0].name.c_str(), (long long)B, (long long)T,
              (long long)a.L, (long long)a.C, (long long)a.V,
              (long long)model->params().count_elements(false),
              step_s * 1e3, tokens_s, mfu, a.peak_tflops, a.tf32 ? "true" : "false",
              a.fp16 ? "float16" : "bfloat16", (long long)scaler.skipped_steps(), losses.front(),
              losses.back(), a.chunked_loss ? "true" : "false",
              a.unpadded_logits ? "false" : "true", (long long)a.lora_rank,
              (long long)model->params().count_elements(true),
              cuda::cuda_context(*backend).arena().peak_bytes_in_use(),
              (long long)cuda::gemm_rounded_through_scratch(cuda::cuda_context(*backend)),
              (long long)cuda::gemm_onto_through_add(cuda::cuda_context(*backend)),
              (long long)replayed_steps, dry_run_s * 1e3 / double(times.size()), dry_loop_json,
              trace_json(a, trace.get(), why_no_trace).c_str(), work_json.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  try {
    const CudaStatus st = cuda_status();
    if (st.devices.empty()) {
      std::fprintf(stderr, "bench_cuda_train: no CUDA device: %s\n", st.problem.c_str());
      return 2;
    }
    S2S_REQUIRE(a.C % a.H == 0, code::kArgument, "bench_cuda_train", "expected channels divisible by heads");
    S2S_REQUIRE(a.model || !a.llama, code::kArgument, "bench_cuda_train",
                "expected --model with --arch llama (the hand-composed step is GPT-2's)");
    if (a.model) return run_model_path(a, st);
    cuda::ContextOptions co;
    co.allow_tf32 = a.tf32;
    cuda::Context ctx(co);
    OpsModel model(a, ctx);
    const int64_t B = a.B, T = a.T, C = a.C, H = a.H, D = C / H, V = a.V, N = B * T;
    auto buf = [&](int64_t floats) { return cuda::DeviceBuffer(ctx, size_t(floats) * 4); };
    Acts x;
    x.emb = buf(N * C);
    for (int64_t l = 0; l < a.L; ++l) {
      Acts::Layer y;
      y.ln1 = buf(N * C); y.ln1_mean = buf(N); y.ln1_rstd = buf(N); y.qkv = buf(N * 3 * C);
      y.q = buf(N * C); y.k = buf(N * C); y.v = buf(N * C); y.att = buf(N * C); y.lse = buf(N * H);
      y.proj = buf(N * C); y.res1 = buf(N * C); y.ln2 = buf(N * C); y.ln2_mean = buf(N);
      y.ln2_rstd = buf(N); y.fc = buf(N * 4 * C); y.gelu = buf(N * 4 * C); y.fc2 = buf(N * C);
      y.res2 = buf(N * C);
      x.layers.push_back(std::move(y));
    }
    // The logits' rows, padded as the model path pads them (Backend::aligned_row_stride).
    const int64_t ldv = a.unpadded_logits ? V : (V + 63) / 64 * 64;
    x.lnf = buf(N * C); x.lnf_mean = buf(N); x.lnf_rstd = buf(N); x.logits = buf(N * ldv);
    x.lse_loss = buf(N); x.ids = buf(N); x.labels = buf(N);
    x.dres = buf(N * C); x.dx = buf(N * C); x.dqkv = buf(N * 3 * C); x.dq = buf(N * C);
    x.dk = buf(N * C); x.dv = buf(N * C); x.datt = buf(N * C); x.dfc = buf(N * 4 * C);
    x.dgelu = buf(N * 4 * C); x.dln = buf(N * C); x.dlogits = buf(N * ldv);

    // One fixed random batch; labels are the next token (the last one ignored).
    const std::vector<int32_t> ids = random_token_ids(N, V, 42);
    std::vector<int32_t> labels(N);
    for (int64_t i = 0; i < N; ++i) labels[i] = (i % T == T - 1) ? -100 : ids[i + 1];
    cuda::upload(ctx, x.ids.data(), ids.data(), N * 4);
    cuda::upload(ctx, x.labels.data(), labels.data(), N * 4);
    ctx.synchronize();

    auto t2 = [&](const cuda::DeviceBuffer& b, int64_t r, int64_t c) {
      return Tensor::contiguous(b.data(), DType::F32, {r, c});
    };
    auto tv = [&](const cuda::DeviceBuffer& b) {  // (N, V) logits or their gradient, rows ldv apart
      Tensor t = Tensor::contiguous(b.data(), DType::F32, {N, V});
      t.strides[0] = ldv;
      return t;
    };
    auto t4 = [&](const cuda::DeviceBuffer& b) { return Tensor::contiguous(b.data(), DType::F32, {B, T, H, D}); };
    auto t1 = [&](const cuda::DeviceBuffer& b, int64_t n) { return Tensor::contiguous(b.data(), DType::F32, {n}); };
    auto P = [&](size_t i) -> OpsParam& { return model.params[i]; };
    const int32_t* d_ids = static_cast<const int32_t*>(x.ids.data());
    const int32_t* d_labels = static_cast<const int32_t*>(x.labels.data());
    AttentionOptions causal;
    causal.causal = true;
    causal.products = a.attention_fp32 ? DType::F32 : DType::BF16;
    std::map<std::string, double> profile;  // seconds per op family, summed over timed steps
    bool timing = false;
    auto timed = [&](const char* family, auto&& run) {
      if (!a.profile) {
        run();
        return;
      }
      ctx.synchronize();
      const double t0 = now_s();
      run();
      ctx.synchronize();
      if (timing) profile[family] += now_s() - t0;
    };

    auto step = [&](int64_t t) -> std::pair<double, double> {
      // ---- forward ----
      const Tensor emb3 = Tensor::contiguous(x.emb.data(), DType::F32, {B, T, C});
      timed("embedding", [&] { cuda::embedding_forward(ctx, emb3, P(model.wte).W(), P(model.wpe).W(), d_ids, N); });
      const cuda::DeviceBuffer* resid = &x.emb;
      for (int64_t l = 0; l < a.L; ++l) {
        const OpsModel::Layer& w = model.layers[l];
        Acts::Layer& y = x.layers[l];
        timed("layernorm", [&] { cuda::layernorm_forward(ctx, t2(y.ln1, N, C), t1(y.ln1_mean, N), t1(y.ln1_rstd, N), t2(*resid, N, C),
                                P(w.ln1_w).W(), P(w.ln1_b).W(), 1e-5f); });
        timed("linear", [&] { cuda::linear_forward(ctx, t2(y.qkv, N, 3 * C), t2(y.ln1, N, C), P(w.qkv_w).W16(), P(w.qkv_b).W()); });
        float* qkv = static_cast<float*>(y.qkv.data());
        timed("copies and adds", [&] { cuda::copy_columns(ctx, static_cast<float*>(y.q.data()), qkv, N, 3 * C, 0, C); });
        timed("copies and adds", [&] { cuda::copy_columns(ctx, static_cast<float*>(y.k.data()), qkv, N, 3 * C, C, C); });
        timed("copies and adds", [&] { cuda::copy_columns(ctx, static_cast<float*>(y.v.data()), qkv, N, 3 * C, 2 * C, C); });
        timed("attention", [&] { cuda::attention_forward(ctx, t4(y.att), Tensor::contiguous(y.lse.data(), DType::F32, {B, H, T}),
                                t4(y.q), t4(y.k), t4(y.v), Tensor{}, nullptr, 0, causal); });
        timed("linear", [&] { cuda::linear_forward(ctx, t2(y.proj, N, C), t2(y.att, N, C), P(w.proj_w).W16(), P(w.proj_b).W()); });
        timed("copies and adds", [&] { cuda::add_forward(ctx, t2(y.res1, N, C), t2(*resid, N, C), t2(y.proj, N, C)); });
        timed("layernorm", [&] { cuda::layernorm_forward(ctx, t2(y.ln2, N, C), t1(y.ln2_mean, N), t1(y.ln2_rstd, N), t2(y.res1, N, C),
                                P(w.ln2_w).W(), P(w.ln2_b).W(), 1e-5f); });
        timed("linear", [&] { cuda::linear_forward(ctx, t2(y.fc, N, 4 * C), t2(y.ln2, N, C), P(w.fc_w).W16(), P(w.fc_b).W()); });
        timed("gelu", [&] { cuda::gelu_forward(ctx, t2(y.gelu, N, 4 * C), t2(y.fc, N, 4 * C), GeluApprox::Tanh); });
        timed("linear", [&] { cuda::linear_forward(ctx, t2(y.fc2, N, C), t2(y.gelu, N, 4 * C), P(w.fc2_w).W16(), P(w.fc2_b).W()); });
        timed("copies and adds", [&] { cuda::add_forward(ctx, t2(y.res2, N, C), t2(y.res1, N, C), t2(y.fc2, N, C)); });
        resid = &y.res2;
      }
      timed("layernorm", [&] { cuda::layernorm_forward(ctx, t2(x.lnf, N, C), t1(x.lnf_mean, N), t1(x.lnf_rstd, N), t2(*resid, N, C),
                              P(model.lnf_w).W(), P(model.lnf_b).W(), 1e-5f); });
      timed("linear", [&] { cuda::linear_forward(ctx, tv(x.logits), t2(x.lnf, N, C), P(model.wte).W16(), Tensor{}); });
      // The loss and, its seed (1) known, the logits' gradient with it (one read of the logits).
      CrossEntropyResult loss{};
      timed("loss", [&] { loss = cuda::cross_entropy_forward(ctx, t1(x.lse_loss, N), tv(x.logits), d_labels, N,
                                                             {}, tv(x.dlogits), 1.0f); });

      // ---- backward (gradients accumulate into the zeroed param grads) ----
      timed("linear", [&] { cuda::linear_backward(ctx, t2(x.dln, N, C), P(model.wte).G(), Tensor{}, tv(x.dlogits),
                            t2(x.lnf, N, C), P(model.wte).W16(), WeightLayout::OutIn, /*overwrite_dinp=*/true); });
      // Fresh gradients are overwritten (no zero-fill pass), as the model path's do.
      timed("layernorm", [&] { cuda::layernorm_backward(ctx, t2(x.dres, N, C), P(model.lnf_w).G(), P(model.lnf_b).G(), t2(x.dln, N, C),
                               t2(*resid, N, C), P(model.lnf_w).W(), t1(x.lnf_mean, N), t1(x.lnf_rstd, N),
                               /*overwrite_dinp=*/true); });
      for (int64_t l = a.L - 1; l >= 0; --l) {
        const OpsModel::Layer& w = model.layers[l];
        Acts::Layer& y = x.layers[l];
        const cuda::DeviceBuffer& inp = l == 0 ? x.emb : x.layers[l - 1].res2;
        // res2 = res1 + fc2: dres flows to both.
        timed("linear", [&] { cuda::linear_backward(ctx, t2(x.dgelu, N, 4 * C), P(w.fc2_w).G(), P(w.fc2_b).G(), t2(x.dres, N, C),
                              t2(y.gelu, N, 4 * C), P(w.fc2_w).W16(), WeightLayout::OutIn, true); });
        timed("gelu", [&] { cuda::gelu_backward(ctx, t2(x.dfc, N, 4 * C), t2(x.dgelu, N, 4 * C), t2(y.fc, N, 4 * C), GeluApprox::Tanh,
                            /*overwrite=*/true); });
        timed("linear", [&] { cuda::linear_backward(ctx, t2(x.dln, N, C), P(w.fc_w).G(), P(w.fc_b).G(), t2(x.dfc, N, 4 * C),
                              t2(y.ln2, N, C), P(w.fc_w).W16(), WeightLayout::OutIn, true); });
        timed("layernorm", [&] { cuda::layernorm_backward(ctx, t2(x.dres, N, C), P(w.ln2_w).G(), P(w.ln2_b).G(), t2(x.dln, N, C),
                                 t2(y.res1, N, C), P(w.ln2_w).W(), t1(y.ln2_mean, N), t1(y.ln2_rstd, N)); });
        // res1 = inp + proj.
        timed("linear", [&] { cuda::linear_backward(ctx, t2(x.datt, N, C), P(w.proj_w).G(), P(w.proj_b).G(), t2(x.dres, N, C),
                              t2(y.att, N, C), P(w.proj_w).W16(), WeightLayout::OutIn, true); });
        timed("attention", [&] { cuda::attention_backward(ctx, t4(x.dq), t4(x.dk), t4(x.dv), Tensor{}, t4(x.datt), t4(y.q), t4(y.k),
                                 t4(y.v), t4(y.att), Tensor::contiguous(y.lse.data(), DType::F32, {B, H, T}),
                                 Tensor{}, nullptr, 0, causal, /*overwrite=*/true); });
        timed("copies and adds", [&] { cuda::fill_zero(ctx, x.dqkv.data(), size_t(N * 3 * C) * 4); });
        float* dqkv = static_cast<float*>(x.dqkv.data());
        timed("copies and adds", [&] { cuda::add_to_columns(ctx, dqkv, static_cast<float*>(x.dq.data()), N, 3 * C, 0, C); });
        timed("copies and adds", [&] { cuda::add_to_columns(ctx, dqkv, static_cast<float*>(x.dk.data()), N, 3 * C, C, C); });
        timed("copies and adds", [&] { cuda::add_to_columns(ctx, dqkv, static_cast<float*>(x.dv.data()), N, 3 * C, 2 * C, C); });
        timed("linear", [&] { cuda::linear_backward(ctx, t2(x.dln, N, C), P(w.qkv_w).G(), P(w.qkv_b).G(), t2(x.dqkv, N, 3 * C),
                              t2(y.ln1, N, C), P(w.qkv_w).W16(), WeightLayout::OutIn, true); });
        timed("layernorm", [&] { cuda::layernorm_backward(ctx, t2(x.dres, N, C), P(w.ln1_w).G(), P(w.ln1_b).G(), t2(x.dln, N, C),
                                 t2(inp, N, C), P(w.ln1_w).W(), t1(y.ln1_mean, N), t1(y.ln1_rstd, N)); });
      }
      timed("embedding", [&] { cuda::embedding_backward(ctx, P(model.wte).G(), P(model.wpe).G(),
                               Tensor::contiguous(x.dres.data(), DType::F32, {B, T, C}), d_ids, N); });

      // ---- optimizer ----
      std::vector<Tensor> grads;
      std::vector<AdamWFusedTensor> opt;
      for (OpsParam& p : model.params) {
        grads.push_back(p.G());
        AdamWFusedTensor f;
        f.param = p.W();
        f.grad = p.G();
        f.exp_avg = p.t(p.m);
        f.exp_avg_sq = p.t(p.v);
        f.compute = p.compute ? p.W16() : Tensor{};
        f.decay = p.decay;
        opt.push_back(f);
      }
      double norm{};
      timed("grad_norm", [&] { norm = cuda::grad_norm(ctx, grads); });
      const float clip = std::isfinite(norm) ? clip_coefficient(norm, 1.0) : 1.0f;
      AdamWOptions ao;
      ao.lr = 1e-4;
      ao.weight_decay = 0.1;
      timed("adamw", [&] { cuda::adamw_fused_update(ctx, opt, t + 1, ao, 1.0f, clip); });
      ctx.synchronize();
      return {loss.loss, norm};
    };

    std::string why_no_trace;
    std::unique_ptr<s2s_bench::KernelTrace> trace = start_trace(a, &why_no_trace);
    std::vector<double> times, losses;
    for (int i = 0; i < a.warmup + a.steps; ++i) {
      timing = i >= a.warmup;
#if S2S_SIMT_SIM
      if (i == a.warmup) s2s::simt::queued_work() = s2s::simt::QueuedWork{};
#endif
      if (trace && timing) trace->begin_step();
      const double t0 = now_s();
      const auto [loss, norm] = step(i);
      const double dt = now_s() - t0;
      if (trace && timing) trace->end_step();
      losses.push_back(loss);
      if (i >= a.warmup) times.push_back(dt);
      std::fprintf(stderr, "step %d: loss %.4f, grad norm %.3f, %.1f ms\n", i, loss, norm, dt * 1e3);
    }
    std::string work_json;
#if S2S_SIMT_SIM
    work_json = s2s_bench::queued_work_json(s2s::simt::QueuedWork{}, s2s::simt::queued_work(),
                                            double(a.steps), a.work_detail);
#endif
    double total = 0;
    for (double t : times) total += t;
    const double step_s = total / double(times.size());
    const double tokens_s = double(N) / step_s;
    const double flops_per_token = 6.0 * double(model.count(true)) + 12.0 * double(a.L * C * T);
    const double mfu = flops_per_token * tokens_s / (a.peak_tflops * 1e12);
    std::printf("{\"bench\":\"cuda_train\",\"path\":\"ops\",\"device\":\"%s\",\"batch\":%lld,\"seq\":%lld,"
                "\"layers\":%lld,\"channels\":%lld,\"vocab\":%lld,\"parameters\":%lld,"
                "\"step_ms\":%.3f,\"tokens_per_s\":%.1f,\"mfu\":%.4f,\"peak_tflops\":%.1f,"
                "\"tf32\":%s,\"attention\":\"%s\",\"padded_logits\":%s,"
                "\"first_loss\":%.5f,\"last_loss\":%.5f,"
                "\"arena_peak_bytes\":%zu%s%s%s}\n",
                st.devices[0].name.c_str(), (long long)B, (long long)T, (long long)a.L,
                (long long)C, (long long)V, (long long)model.count(false), step_s * 1e3, tokens_s,
                mfu, a.peak_tflops, a.tf32 ? "true" : "false",
                a.attention_fp32 ? "float32" : "bfloat16", a.unpadded_logits ? "false" : "true",
                losses.front(), losses.back(),
                ctx.arena().peak_bytes_in_use(), profile_json(profile, times.size()).c_str(),
                trace_json(a, trace.get(), why_no_trace).c_str(), work_json.c_str());
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_cuda_train: %s: %s\n", e.code().c_str(), e.what());
    return 1;
  }
}

#else

int main() {
  std::fprintf(stderr, "bench_cuda_train: the CUDA backend is not built into this binary (%s)\n",
               s2s::cuda_status().problem.c_str());
  return 2;
}

#endif
