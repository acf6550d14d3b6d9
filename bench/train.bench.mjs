// Training throughput: our engine (public API in dist/, `npm run build` first) against PyTorch
// (bench/models/pytorch_train.py, Debian's python3 + torch + OpenBLAS) in the same run, on the
// same random-weight model folders (bench/models/make_bench_models.py, cached in
// build/bench-models/). Every (engine, config, threads) runs in a fresh process, so peak RSS
// (VmHWM / ru_maxrss) is that job's own. Reported speed: tokens per second of the best timed
// step after warm-up; a run whose timed steps spread by more than 15% is flagged "disturbed"
// (others compile on this machine at times).
//
//   node bench/train.bench.mjs [--quick] [--threads 1,2] [--configs gpt2-full,gpt5m-lora]
//                              [--steps N] [--warmup N] [--repeat N] [--no-torch] [--json PATH]
//                              [--gradient-checkpointing] [--chunked-loss]
//
// Rows: fp32 and bf16 compute (Model.load(dir, { computeDtype })) for ours, fp32 for PyTorch;
// with --gradient-checkpointing also ours in fp32 with Model.setGradientCheckpointing(true)
// ("fp32+gc": its speed and RSS against the fp32 row above it; PyTorch's column stays plain);
// with --chunked-loss likewise "fp32+cl", Model.setChunkedLoss(true) (the LM head and the loss a
// chunk of tokens at a time);
// LoRA through Model.applyLora. build/bench_train runs the same step in C++ without Node, for
// profiling (see its header).
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { trainingFlopsPerStep } from "./train-flops.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const modelsDir = path.join(root, "build", "bench-models");
const python = process.env.S2S_BENCH_PYTHON ?? "/usr/bin/python3";

// name -> model folder, shapes, mode. Batch shapes are the issue's.
const CONFIGS = {
  "gpt2-full": { model: "gpt2-124m", mode: "full", batch: 4, seq: 256 },
  "gpt2-lora": { model: "gpt2-124m", mode: "lora", batch: 4, seq: 256 },
  "t5-full": { model: "t5-small", mode: "full", batch: 8, seq: 128, decSeq: 64 },
  "t5-lora": { model: "t5-small", mode: "lora", batch: 8, seq: 128, decSeq: 64 },
  "gpt5m-full": { model: "gpt-5m", mode: "full", batch: 8, seq: 128 },
  "gpt5m-lora": { model: "gpt-5m", mode: "lora", batch: 8, seq: 128 },
  "smollm-full": { model: "smollm-135m", mode: "full", batch: 4, seq: 256 },
  "smollm-lora": { model: "smollm-135m", mode: "lora", batch: 4, seq: 256 },
};
const LORA = {
  r: 8, alpha: 16,
  targets: {
    gpt2: ["c_attn", "c_proj", "c_fc"],
    llama: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    t5: ["q", "k", "v", "o", "wi", "wo"],
  },
};
const familyOf = (model) => (model.startsWith("t5") ? "t5" : model.startsWith("smollm") ? "llama" : "gpt2");

// ---- child: one configuration of our engine through the public API --------------------------
if (process.argv[2] === "--child") {
  const job = JSON.parse(process.argv[3]);
  const { Model, setNumThreads } = await import("../dist/src/index.js");
  setNumThreads(job.threads);
  const t0 = performance.now();
  const model = await Model.load(path.join(modelsDir, job.model), {
    trainable: job.mode !== "lora",
    ...(job.computeDtype ? { computeDtype: job.computeDtype } : {}),
  });
  if (job.lora) model.applyLora(job.lora);
  if (job.gradientCheckpointing) model.setGradientCheckpointing(true);
  if (job.chunkedLoss) model.setChunkedLoss(true);
  const loadS = (performance.now() - t0) / 1e3;
  const V = model.config.vocab_size ?? model.config.vocabSize;
  const t5 = model.info().modelType === "t5";
  let seed = 12345;
  const rand = (n) => Int32Array.from({ length: n }, () => 2 + ((seed = (seed * 1103515245 + 12345) >>> 0) % (V - 2)));
  const ids = rand(job.batch * job.seq);
  const batch = t5
    ? { batchSize: job.batch, seqLen: job.seq, inputIds: ids, decoderLen: job.decSeq, labels: rand(job.batch * job.decSeq) }
    : { batchSize: job.batch, seqLen: job.seq, inputIds: ids, labels: ids };
  const tokens = job.batch * (job.seq + (t5 ? job.decSeq : 0));
  const steps = [];
  let loss = NaN;
  for (let s = 1; s <= job.warmup + job.steps; s++) {
    const a = performance.now();
    const r = await model.trainStep(batch, { step: s, lr: 1e-4, weightDecay: 0.01, maxGradNorm: 1 });
    const dt = (performance.now() - a) / 1e3;
    loss = r.loss;
    process.stderr.write(`step ${s}: ${dt.toFixed(3)} s loss ${loss.toFixed(4)}\n`);
    if (s > job.warmup) steps.push(dt);
  }
  const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"));
  const info = model.info();
  process.stdout.write(JSON.stringify({
    engine: "ours", via: "n-api", parameters: info.parameters, trainable: info.trainableParameters,
    threads: job.threads, tokens_per_step: tokens, load_s: loadS, step_s: steps,
    tokens_per_s: tokens / Math.min(...steps), last_loss: loss,
    peak_rss_bytes: hwm ? Number(hwm[1]) * 1024 : null,
  }) + "\n");
  process.exit(0);
}

// ---- parent ----------------------------------------------------------------------------------
function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : fallback;
}
const flag = (name) => process.argv.includes(name);
const quick = flag("--quick");
const threadsList = arg("--threads", "1,2").split(",").map(Number);
const configNames = arg("--configs", quick ? "gpt5m-full,gpt5m-lora,t5-full" : Object.keys(CONFIGS).join(",")).split(",");
const steps = Number(arg("--steps", quick ? 2 : 3));
const warmup = Number(arg("--warmup", 1));
const repeat = Number(arg("--repeat", 1));
const jsonPath = arg("--json", undefined);
for (const c of configNames) if (!CONFIGS[c]) throw new Error(`train bench: unknown config '${c}'; expected one of ${Object.keys(CONFIGS).join(", ")}`);

const { nativeInfo } = await import("../dist/src/index.js");
const info = nativeInfo();

// Python + torch present? Then make sure the model folders exist (cached; generated once).
let torchVersion = null;
const probe = spawnSync(python, ["-c", "import torch; print(torch.__version__)"], { encoding: "utf8" });
if (probe.status === 0) torchVersion = probe.stdout.trim();
const noTorch = flag("--no-torch") || !torchVersion;
const models = [...new Set(configNames.map((c) => CONFIGS[c].model))];
if (models.some((m) => !existsSync(path.join(modelsDir, m, "config.json")))) {
  if (!torchVersion) {
    console.error(`train bench: skipped — the model folders in ${modelsDir} are missing and ${python} has no torch to generate them`);
    process.exit(0);
  }
  const r = spawnSync(python, [path.join(root, "bench", "models", "make_bench_models.py"), "--out", modelsDir, ...models], { stdio: "inherit" });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

function loadavg() {
  return os.loadavg()[0];
}

// Runs one job in a fresh process; returns its JSON (plus timing spread) or an error record.
function runJob(cmd, args) {
  const before = loadavg();
  const r = spawnSync(cmd, args, { cwd: root, encoding: "utf8", maxBuffer: 1 << 24, env: { ...process.env, OMP_NUM_THREADS: undefined } });
  const line = (r.stdout ?? "").trim().split("\n").pop() ?? "";
  if (r.status !== 0 || !line.startsWith("{")) {
    return { error: `${path.basename(cmd)} exited ${r.status}: ${(r.stderr ?? "").trim().split("\n").slice(-3).join(" | ")}` };
  }
  const out = JSON.parse(line);
  const s = out.step_s ?? [];
  out.spread = s.length > 1 ? Math.max(...s) / Math.min(...s) - 1 : 0;
  out.loadavg_before = before;
  out.disturbed = out.spread > 0.15;
  return out;
}

function bestOf(cmd, args) {
  let best;
  const runs = [];
  for (let i = 0; i < repeat; i++) {
    const r = runJob(cmd, args);
    runs.push(r);
    if (r.error) continue;
    if (!best || r.tokens_per_s > best.tokens_per_s) best = r;
  }
  if (!best) return runs[runs.length - 1];
  return { ...best, runs: runs.map((r) => r.tokens_per_s ?? null), peak_rss_bytes: Math.min(...runs.filter((r) => !r.error).map((r) => r.peak_rss_bytes)) };
}

// The machine's fp32 FMA peak per thread count (bench_gemm's register-only loop, best of many
// short windows), measured before and after the rows; the higher of the two is the peak a busy
// moment did not hide. Absent when bench_gemm is not built or the CPU has no FMA loop for it.
function measurePeaks() {
  const exe = path.join(root, "build", "bench_gemm");
  if (!existsSync(exe)) return null;
  const r = spawnSync(exe, ["--peak-only", "--threads", threadsList.join(",")], { encoding: "utf8" });
  const line = (r.stdout ?? "").trim().split("\n").pop() ?? "";
  if (r.status !== 0 || !line.startsWith("{")) return null;
  const p = JSON.parse(line);
  return Object.fromEntries(p.threads.map((t, i) => [t, p.peak_fp32_gflops[i]]));
}

function flopsPerStep(name) {
  const c = CONFIGS[name];
  const config = JSON.parse(readFileSync(path.join(modelsDir, c.model, "config.json"), "utf8"));
  const family = familyOf(c.model);
  return trainingFlopsPerStep(config, { batch: c.batch, seq: c.seq, decSeq: c.decSeq ?? 0, mode: c.mode, loraR: LORA.r, loraTargets: LORA.targets[family] });
}

function oursJob(name, threads, { computeDtype, gradientCheckpointing = false, chunkedLoss = false }) {
  const c = CONFIGS[name];
  const family = familyOf(c.model);
  const job = {
    model: c.model, mode: c.mode, threads, batch: c.batch, seq: c.seq, decSeq: c.decSeq ?? 0, warmup, steps, computeDtype,
    gradientCheckpointing, chunkedLoss,
    ...(c.mode === "lora" ? { lora: { r: LORA.r, alpha: LORA.alpha, targetModules: LORA.targets[family] } } : {}),
  };
  return bestOf(process.execPath, [fileURLToPath(import.meta.url), "--child", JSON.stringify(job)]);
}

function torchJob(name, threads) {
  const c = CONFIGS[name];
  return bestOf(python, [
    path.join(root, "bench", "models", "pytorch_train.py"), "--model", path.join(modelsDir, c.model), "--mode", c.mode,
    "--threads", String(threads), "--batch", String(c.batch), "--seq", String(c.seq), "--dec-seq", String(c.decSeq ?? 64),
    "--warmup", String(warmup), "--steps", String(steps), "--lora-r", String(LORA.r), "--lora-alpha", String(LORA.alpha),
  ]);
}

console.log(`\ntraining throughput: ${info.cpu.brand}, ${os.cpus().length} logical cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB`);
console.log(`  features: ${info.cpu.features.join(" ")}`);
console.log(`  ours: s2s-train ${info.version}, ${info.compiler}, active ISA ${info.activeIsa}; kernels: ` +
  Object.entries(info.kernels).map(([k, v]) => `${k}=${v}`).join(", "));
console.log(`  torch: ${noTorch ? "not run" : `${torchVersion} (${python})`}; warm-up ${warmup} + ${steps} timed steps, best step; best of ${repeat} process(es)`);
console.log(`  LoRA r=${LORA.r} alpha=${LORA.alpha}, targets ${Object.entries(LORA.targets).map(([f, t]) => `${f} ${t.join(",")}`).join("; ")}; ours through N-API (Model.applyLora)`);

const peaksBefore = measurePeaks();
if (peaksBefore) console.log(`  fp32 FMA peak (bench_gemm --peak-only): ${Object.entries(peaksBefore).map(([t, g]) => `${g} GFLOP/s at ${t} thread(s)`).join(", ")}`);
const results = [];
const mb = (b) => (b == null ? "—" : `${(b / 2 ** 20).toFixed(0)} MiB`);
const fmt = (r) => (r?.error ? "error" : r?.skipped ? "skipped" : r?.tokens_per_s != null ? `${r.tokens_per_s.toFixed(1)}${r.disturbed ? "*" : ""}` : "—");
const dtypes = ["fp32", "bf16", ...(flag("--gradient-checkpointing") ? ["fp32+gc"] : []),
  ...(flag("--chunked-loss") ? ["fp32+cl"] : [])];
for (const name of configNames) {
  for (const threads of threadsList) {
    const torch = noTorch ? null : torchJob(name, threads);
    for (const dt of dtypes) {
      const ours = oursJob(name, threads, {
        computeDtype: dt === "bf16" ? "bfloat16" : undefined, gradientCheckpointing: dt === "fp32+gc", chunkedLoss: dt === "fp32+cl",
      });
      const row = { config: name, ...CONFIGS[name], threads, dtype: dt, ours, torch };
      row.ratio = ours?.tokens_per_s && torch?.tokens_per_s ? ours.tokens_per_s / torch.tokens_per_s : null;
      row.flops_per_token = flopsPerStep(name) / (ours?.tokens_per_step ?? torch?.tokens_per_step ?? 1);
      results.push(row);
      const note = [ours?.error, ours?.skipped, torch?.error].filter(Boolean).join("; ");
      console.log(`  ${name.padEnd(11)} ${dt} ${threads}t  ours ${fmt(ours).padStart(8)} tok/s  ` +
        `torch ${fmt(torch).padStart(8)} tok/s  ratio ${row.ratio ? row.ratio.toFixed(2) + "x" : "—"}  ` +
        `RSS ours ${mb(ours?.peak_rss_bytes)} torch ${mb(torch?.peak_rss_bytes)}${note ? "  " + note : ""}`);
    }
  }
}

// % of the fp32 FMA peak at the row's thread count: model FLOPs (train-flops.mjs) x tokens/s.
const peaksAfter = measurePeaks();
const peaks = peaksBefore && peaksAfter ? Object.fromEntries(threadsList.map((t) => [t, Math.max(peaksBefore[t], peaksAfter[t])])) : peaksBefore ?? peaksAfter;
const ofPeak = (r, side) => {
  const tps = r[side]?.tokens_per_s;
  if (!tps || !peaks?.[r.threads] || !r.dtype.startsWith("fp32") && side === "ours") return null;
  return (tps * r.flops_per_token) / (peaks[r.threads] * 1e9);
};
const pct = (x) => (x == null ? "—" : `${(100 * x).toFixed(0)}%`);
for (const r of results) {
  r.ours_of_fp32_peak = ofPeak(r, "ours");
  r.torch_of_fp32_peak = ofPeak(r, "torch");
}
console.log("\n| config | dtype | threads | ours tok/s | torch tok/s | ratio | ours % of fp32 peak | torch % of fp32 peak | our peak RSS | torch peak RSS |");
console.log("|---|---|---|---|---|---|---|---|---|---|");
for (const r of results) {
  console.log(`| ${r.config} | ${r.dtype} | ${r.threads} | ${fmt(r.ours)} | ${fmt(r.torch)} | ` +
    `${r.ratio ? r.ratio.toFixed(2) + "×" : "—"} | ${pct(r.ours_of_fp32_peak)} | ${pct(r.torch_of_fp32_peak)} | ` +
    `${mb(r.ours?.peak_rss_bytes)} | ${mb(r.torch?.peak_rss_bytes)} |`);
}
console.log("(* = timed steps spread > 15%: the machine looked busy)");
if (peaks) {
  console.log(`% of fp32 peak: model FLOPs per step (bench/train-flops.mjs: matmuls fwd + dX + trainable dW, attention 12·Tq·Tk·inner per layer) x steps/s, ` +
    `over the register-only FMA peak (${threadsList.map((t) => `${peaks[t]} GFLOP/s at ${t}t`).join(", ")}); shown for fp32 compute only (bf16 runs on AMX, whose peak is another unit's).`);
}
if (jsonPath) {
  writeFileSync(jsonPath, JSON.stringify({
    machine: { ...info, loadavg: os.loadavg(), totalmem: os.totalmem() }, torch: torchVersion, python,
    settings: { warmup, steps, repeat, lora: LORA }, fp32_peak_gflops: peaks, results,
  }, null, 2));
  console.log(`results: ${path.relative(root, jsonPath)}`);
}
