// bench_train: training steps of one model folder through the C++ API (the same calls the N-API
// Model makes: forward with the summed loss, backward, optimizer_step with 1/count scaling,
// AdamW + clip 1.0), timed per phase. It exists for what the N-API surface cannot do yet (LoRA)
// and for profiling without Node in the way (perf record on this binary). bench/train.bench.mjs
// runs it in a fresh process per configuration; it prints one JSON object on stdout.
//
//   bench_train --model DIR [--lora R,ALPHA,target1+target2...] [--threads N] [--batch B]
//               [--seq T] [--dec-seq Td] [--warmup W] [--steps S] [--keep-frozen-in-file-dtype]
//               [--compute-dtype float32|bfloat16|float16] [--gradient-checkpointing]
//               [--chunked-loss]
// float16 trains as the N-API layer does: the backward from loss scale / count (the dynamic loss
// scaler, torch GradScaler's defaults), the optimizer step unscales.
//
// Tokens per step: B*T (decoder-only), B*(T+Td) (T5: encoder + decoder tokens).
// Peak RSS: VmHWM from /proc/self/status at the end (the whole process: weights, moments,
// activations, allocator slack). Activation peak: the graph arenas' high-water mark over the
// timed steps (activations, activation gradients, saved statistics; with
// --gradient-checkpointing the pass's arena plus the one-segment arena). --chunked-loss: the LM
// head and the loss a chunk of rows at a time (Model::set_chunked_loss); --chunk-rows N: that,
// with chunks of at most N rows. --late-seed: the backward's seed not promised before the forward
// (Graph::known_dloss, as the trainer does), so the chunked loss makes its logits twice.
#include <sys/resource.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "s2s/error.h"
#include "s2s/models/lora.h"
#include "s2s/models/model.h"
#include "s2s/models/weights.h"
#include "s2s/nn/graph.h"
#include "s2s/thread_pool.h"
#include "s2s/train/optimizer.h"

using namespace s2s;

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "bench_train: cannot open %s\n", path.c_str());
    std::exit(2);
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int64_t status_kb(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const size_t n = std::strlen(key);
  while (std::getline(in, line)) {
    if (line.compare(0, n, key) == 0) return std::strtoll(line.c_str() + n + 1, nullptr, 10);
  }
  return -1;
}

// Deterministic token ids in [lo, hi) (xorshift; speed does not depend on the values).
std::vector<int32_t> tokens(size_t n, int32_t lo, int32_t hi, uint64_t seed) {
  std::vector<int32_t> v(n);
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& x : v) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    x = lo + static_cast<int32_t>(s % static_cast<uint64_t>(hi - lo));
  }
  return v;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) out.push_back(cur), cur.clear();
    else cur += c;
  }
  out.push_back(cur);
  return out;
}

long minor_faults() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}

// CPU seconds (user + system) of the whole process so far: on a machine shared with other
// work, a step's CPU time moves far less than its wall time (it still counts spin-waits).
double cpu_s() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * double(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

double best(const std::vector<double>& v) {
  double b = v.empty() ? 0 : v[0];
  for (double x : v) b = x < b ? x : b;
  return b;
}

std::string json_list(const std::vector<double>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%s%.4f", i ? "," : "", v[i]);
    s += buf;
  }
  return s + "]";
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_dir, lora_spec;
  int threads = 0, warmup = 1, steps = 3;
  int64_t B = 4, T = 256, Td = 64;
  bool keep_frozen = false, checkpointing = false, chunked_loss = false;
  int64_t chunk_rows = 0;
  bool late_seed = false;
  std::string compute_dtype = "float32";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_train: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--model") model_dir = next();
    else if (a == "--lora") lora_spec = next();
    else if (a == "--threads") threads = std::atoi(next().c_str());
    else if (a == "--batch") B = std::atoll(next().c_str());
    else if (a == "--seq") T = std::atoll(next().c_str());
    else if (a == "--dec-seq") Td = std::atoll(next().c_str());
    else if (a == "--warmup") warmup = std::atoi(next().c_str());
    else if (a == "--steps") steps = std::atoi(next().c_str());
    else if (a == "--keep-frozen-in-file-dtype") keep_frozen = true;
    else if (a == "--compute-dtype") compute_dtype = next();
    else if (a == "--gradient-checkpointing") checkpointing = true;
    else if (a == "--chunked-loss") chunked_loss = true;
    else if (a == "--late-seed") late_seed = true;
    else if (a == "--chunk-rows") chunked_loss = true, chunk_rows = std::atoll(next().c_str());
    else {
      std::fprintf(stderr, "bench_train: unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  if (model_dir.empty()) {
    std::fprintf(stderr, "usage: bench_train --model DIR [--lora R,ALPHA,t1+t2] [--threads N] ...\n");
    return 2;
  }
  try {
    if (threads > 0) set_num_threads(threads);
    const double t_load = now_s();
    const std::string cfg_path = model_dir + "/config.json";
    const ModelConfig config = parse_model_config(read_file(cfg_path), cfg_path);
    std::unique_ptr<Model> model = create_model(config);
    auto files = open_weight_files(model_dir);
    LoadOptions lo;
    lo.keep_frozen_in_file_dtype = keep_frozen;
    load_weights(*model, files, lo);
    if (!keep_frozen) files.clear();
    if (compute_dtype != "float32" && compute_dtype != "bfloat16" && compute_dtype != "float16") {
      std::fprintf(stderr, "bench_train: --compute-dtype expects float32, bfloat16 or float16\n");
      return 2;
    }
    // As Model.load(dir, {computeDtype}) does: before LoRA is applied.
    model->set_compute_dtype(compute_dtype == "bfloat16"  ? ComputeDType::BF16
                             : compute_dtype == "float16" ? ComputeDType::F16
                                                          : ComputeDType::F32);
    LoraAdapter adapter;
    if (!lora_spec.empty()) {
      const auto parts = split(lora_spec, ',');
      if (parts.size() != 3) {
        std::fprintf(stderr, "bench_train: --lora expects R,ALPHA,target1+target2\n");
        return 2;
      }
      LoraConfig lc;
      lc.r = std::atoll(parts[0].c_str());
      lc.lora_alpha = std::atof(parts[1].c_str());
      lc.target_modules = split(parts[2], '+');
      adapter = apply_lora(*model, lc, 1234);
    } else {
      for (Param* p : model->params().all()) model->params().set_trainable(*p, true);
    }
    model->set_gradient_checkpointing(checkpointing);
    model->set_chunked_loss(chunked_loss, chunk_rows);
    const double load_s = now_s() - t_load;

    const bool t5 = config.arch == Architecture::T5;
    const int32_t V = static_cast<int32_t>(config.vocab_size);
    std::vector<int32_t> ids = tokens(size_t(B * T), 2, V, 1), labels, dec_ids;
    Batch batch;
    batch.B = B;
    batch.T = T;
    batch.input_ids = ids.data();
    if (t5) {
      labels = tokens(size_t(B * Td), 2, V, 2);
      batch.Td = Td;
      batch.labels = labels.data();  // decoder inputs: labels shifted right inside
    } else {
      batch.labels = ids.data();  // causal LM: labels = inputs, shifted inside
    }
    const double tokens_per_step = double(B) * double(t5 ? T + Td : T);

    OptimizerConfig oc;
    oc.adamw.weight_decay = 0.01;
    oc.max_grad_norm = 1.0;
    Graph g;
    LossScalerOptions so;
    so.enabled = compute_dtype == "float16";
    DynamicLossScaler scaler(so);
    std::vector<double> fwd, bwd, opt, total, step_faults, step_cpu;
    double last_loss = 0;
    for (int s = 0; s < warmup + steps; ++s) {
      if (s == warmup) g.reset_peaks();
      const long f0 = minor_faults();
      const double c0 = cpu_s();
      const double t0 = now_s();
      g.reset();
      g.training = true;
      // As the trainer does: the seed known before the forward (fp16's from the label count).
      const int64_t count = model->counted_labels(batch);
      const float inv_count = count > 0 ? float(1.0 / double(count)) : 1.0f;
      const float dloss = so.enabled ? scaler.scale() * inv_count : 1.0f;
      if (!late_seed && count > 0) g.known_dloss = dloss;
      ForwardResult r = model->forward(g, batch, LossReduction::Sum);
      const double t1 = now_s();
      g.backward(r.loss, dloss);
      const double t2 = now_s();
      const int64_t applied = s + 1 - scaler.skipped_steps();
      optimizer_step(model->params(), oc, applied, 1e-4, so.enabled ? 1.0f : inv_count, &scaler);
      const double t3 = now_s();
      last_loss = r.loss->value.f32()[0] / double(r.count);
      if (s >= warmup) {
        fwd.push_back(t1 - t0), bwd.push_back(t2 - t1), opt.push_back(t3 - t2), total.push_back(t3 - t0);
      }
      const long faults = minor_faults() - f0;
      if (s >= warmup) step_faults.push_back(double(faults)), step_cpu.push_back(cpu_s() - c0);
      std::fprintf(stderr, "step %d: %.3f s (fwd %.3f bwd %.3f opt %.3f) loss %.4f, %ld page faults\n", s + 1,
                   t3 - t0, t1 - t0, t2 - t1, t3 - t2, last_loss, faults);
    }
    const Graph::MemoryPeaks peaks = g.memory_peaks();
    std::printf(
        "{\"model_type\":\"%s\",\"compute_dtype\":\"%s\",\"parameters\":%lld,\"trainable\":%lld,\"threads\":%d,"
        "\"tokens_per_step\":%.0f,\"load_s\":%.3f,\"step_s\":%s,\"forward_s\":%s,\"backward_s\":%s,"
        "\"optimizer_s\":%s,\"cpu_s\":%s,\"page_faults\":%s,\"tokens_per_s\":%.3f,\"last_loss\":%.6f,\"peak_rss_bytes\":%lld,"
        "\"gradient_checkpointing\":%s,\"chunked_loss\":%s,\"activation_peak_bytes\":%zu,"
        "\"segment_peak_bytes\":%zu}\n",
        config.model_type.c_str(), compute_dtype.c_str(), (long long)model->params().count_elements(false),
        (long long)model->params().count_elements(true), num_threads(), tokens_per_step, load_s,
        json_list(total).c_str(), json_list(fwd).c_str(), json_list(bwd).c_str(), json_list(opt).c_str(),
        json_list(step_cpu).c_str(), json_list(step_faults).c_str(), tokens_per_step / best(total), last_loss, (long long)status_kb("VmHWM:") * 1024,
        checkpointing ? "true" : "false", chunked_loss ? "true" : "false", peaks.main_bytes + peaks.segment_bytes, peaks.segment_bytes);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_train: %s\n", e.what());
    return 1;
  }
}
