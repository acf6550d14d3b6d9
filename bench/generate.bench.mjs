// Generation speed: our engine (public API in dist/, `npm run build` first) on a GPT-2 124M-shaped
// random-weight folder, or SmolLM-135M's (Llama: grouped-query attention, rope, SiLU-gated MLP;
// --model smollm-135m), made by bench/models/make_bench_models.py and cached in
// build/bench-models/, against PyTorch with a plain KV cache (bench/models/pytorch_generate.py)
// in the same run. Every job runs in a fresh process. Greedy, no EOS (exactly --new tokens),
// 128-token random prompt by default.
//
//   node bench/generate.bench.mjs [--model gpt2-124m|smollm-135m] [--threads 1,2] [--prompt 128]
//                                 [--new 128] [--repeat 2] [--quick] [--no-torch] [--json PATH]
//
// Rows: batch 1 fp32 and bf16 weights (Model.load computeDtype "bfloat16": the linear layers read
// bf16 copies), batch 8, 4-beam search; time to first token (the prompt's prefill) and decode
// tokens/s (decoding steps x rows / decode time, after the first token) are reported apart.
// Napkin: at batch 1 every step reads all weights once: GPT-2 124M x 4 B = 497 MB (fp32) or
// 249 MB (bf16, embeddings-as-head included), so memory bandwidth B GB/s bounds decoding at
// B / 0.497 tokens/s in fp32; the bench measures this machine's read bandwidth and prints that
// bound (the weights' bytes from the folder's model.safetensors).
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const modelsDir = path.join(root, "build", "bench-models");
const python = process.env.S2S_BENCH_PYTHON ?? "/usr/bin/python3";
const MODELS = ["gpt2-124m", "smollm-135m"];  // make_bench_models.py's names
const modelArg = process.argv.indexOf("--model");
const MODEL = modelArg > 0 ? process.argv[modelArg + 1] : "gpt2-124m";
if (!MODELS.includes(MODEL)) {
  console.error(`generate bench: --model expects one of ${MODELS.join(", ")}, got ${MODEL}`);
  process.exit(2);
}

// ---- child: one job of our engine through the public API -------------------------------------
if (process.argv[2] === "--child") {
  const job = JSON.parse(process.argv[3]);
  const { Model, setNumThreads } = await import("../dist/src/index.js");
  setNumThreads(job.threads);
  const model = await Model.load(path.join(modelsDir, job.model), job.computeDtype ? { computeDtype: job.computeDtype } : {});
  const V = model.config.vocab_size;
  let seed = 12345;
  const prompt = () => Array.from({ length: job.prompt }, () => (seed = (seed * 1103515245 + 12345) >>> 0) % (V - 1));
  const inputs = Array.from({ length: job.batch }, prompt);
  const options = { maxNewTokens: job.newTokens, eosTokenId: null, numBeams: job.beams, numReturnSequences: 1 };
  await model.generate(inputs.map((p) => p.slice(0, 8)), { ...options, maxNewTokens: 4 });  // warm-up
  const runs = [];
  for (let i = 0; i < job.repeat; i++) {
    const t0 = performance.now();
    const r = await model.generate(inputs, options);
    const total = performance.now() - t0;
    const rows = job.batch * job.beams;
    runs.push({
      ttft_ms: r.timings.prefillMs, decode_ms: r.timings.decodeMs, total_ms: total, steps: r.timings.steps,
      decode_tokens_per_s: (rows * r.timings.steps) / (r.timings.decodeMs / 1e3),
      new_tokens_per_s: (job.batch * job.newTokens) / (total / 1e3),
    });
  }
  const best = runs.reduce((a, b) => (b.decode_tokens_per_s > a.decode_tokens_per_s ? b : a));
  const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"));
  process.stdout.write(JSON.stringify({ engine: "ours", ...job, ...best, runs, peak_rss_bytes: hwm ? Number(hwm[1]) * 1024 : null }) + "\n");
  process.exit(0);
}

// ---- parent ----------------------------------------------------------------------------------
const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const flag = (name) => process.argv.includes(name);
const quick = flag("--quick");
const threadsList = arg("--threads", "1,2").split(",").map(Number);
const promptLen = Number(arg("--prompt", 128));
const newTokens = Number(arg("--new", quick ? 32 : 128));
const repeat = Number(arg("--repeat", quick ? 1 : 3));
const jsonPath = arg("--json", undefined);

const { nativeInfo } = await import("../dist/src/index.js");
const info = nativeInfo();
let torchVersion = null;
const probe = spawnSync(python, ["-c", "import torch; print(torch.__version__)"], { encoding: "utf8" });
if (probe.status === 0) torchVersion = probe.stdout.trim();
const noTorch = flag("--no-torch") || !torchVersion;
if (!existsSync(path.join(modelsDir, MODEL, "config.json"))) {
  if (!torchVersion) {
    console.error(`generate bench: skipped — ${path.join(modelsDir, MODEL)} is missing and ${python} has no torch to make it`);
    process.exit(0);
  }
  const r = spawnSync(python, [path.join(root, "bench", "models", "make_bench_models.py"), "--out", modelsDir, MODEL], { stdio: "inherit" });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

function runJob(cmd, args) {
  const r = spawnSync(cmd, args, { cwd: root, encoding: "utf8", maxBuffer: 1 << 24, env: { ...process.env, OMP_NUM_THREADS: undefined } });
  const line = (r.stdout ?? "").trim().split("\n").pop() ?? "";
  if (r.status !== 0 || !line.startsWith("{")) {
    return { error: `${path.basename(cmd)} exited ${r.status}: ${(r.stderr ?? "").trim().split("\n").slice(-3).join(" | ")}` };
  }
  return JSON.parse(line);
}

const ours = (threads, batch, beams, computeDtype) =>
  runJob(process.execPath, [fileURLToPath(import.meta.url), "--child",
    JSON.stringify({ model: MODEL, threads, batch, beams, computeDtype, prompt: promptLen, newTokens, repeat })]);
const torch = (threads, batch) => (noTorch ? null : runJob(python, [
  path.join(root, "bench", "models", "pytorch_generate.py"), "--model", path.join(modelsDir, MODEL),
  "--threads", String(threads), "--batch", String(batch), "--prompt", String(promptLen), "--new", String(newTokens),
  "--repeat", String(repeat),
]));

// This machine's streaming read bandwidth (bench_gemv's triad-free read loop), for the bound.
const bwTool = path.join(root, "build", "bench_gemv");
const bandwidth = {};
if (existsSync(bwTool)) {
  for (const t of threadsList) {
    const r = spawnSync(bwTool, ["--read-bandwidth", "--threads", String(t)], { encoding: "utf8" });
    const m = /([\d.]+) GB\/s/.exec(r.stdout ?? "");
    if (m) bandwidth[t] = Number(m[1]);
  }
}

console.log(`\ngeneration: ${info.cpu.brand}, ${os.cpus().length} logical cores; ${MODEL} shape, prompt ${promptLen}, ${newTokens} new tokens, greedy, no EOS`);
console.log(`  ours: s2s-train ${info.version}, active ISA ${info.activeIsa}; kernels: ` +
  Object.entries(info.kernels).map(([k, v]) => `${k}=${v}`).join(", "));
console.log(`  torch: ${noTorch ? "not run" : `${torchVersion} (${python}), plain KV cache (bench/models/pytorch_generate.py)`}; best of ${repeat} timed run(s) per row on both sides`);
// The weights a batch-1 step reads: the fp32 file (a tied head read once), half of it in bf16.
const weightGB = statSync(path.join(modelsDir, MODEL, "model.safetensors")).size / 1e9;
for (const [t, bw] of Object.entries(bandwidth)) {
  console.log(`  read bandwidth ${t} thread(s): ${bw.toFixed(1)} GB/s -> decode bound ${(bw / weightGB).toFixed(0)} tok/s fp32, ${(bw / (weightGB / 2)).toFixed(0)} tok/s bf16`);
}

const rows = [];
const f1 = (x) => (x == null ? "—" : x.toFixed(1));
const show = (label, r, t) => {
  rows.push({ label, threads: t, result: r });
  const err = r?.error ? `  ${r.error}` : "";
  console.log(`  ${label.padEnd(22)} ${t}t  decode ${f1(r?.decode_tokens_per_s).padStart(7)} tok/s  ` +
    `TTFT ${f1(r?.ttft_ms ?? (r?.ttft_s != null ? r.ttft_s * 1e3 : null)).padStart(7)} ms${err}`);
  return r;
};
const summary = [];
for (const t of threadsList) {
  const pt = show("torch fp32 batch 1", torch(t, 1), t);
  const o32 = show("ours fp32 batch 1", ours(t, 1, 1), t);
  const o16 = show("ours bf16 batch 1", ours(t, 1, 1, "bfloat16"), t);
  summary.push({ threads: t, torch: pt?.decode_tokens_per_s, fp32: o32?.decode_tokens_per_s, bf16: o16?.decode_tokens_per_s });
}
const tMax = Math.max(...threadsList);
if (!quick) {
  show("torch fp32 batch 8", torch(tMax, 8), tMax);
  show("ours fp32 batch 8", ours(tMax, 8, 1), tMax);
  show("ours bf16 batch 8", ours(tMax, 8, 1, "bfloat16"), tMax);
  show("ours fp32 4 beams", ours(tMax, 1, 4), tMax);
  show("ours bf16 4 beams", ours(tMax, 1, 4, "bfloat16"), tMax);
}
console.log("\n| threads | torch fp32 tok/s | ours fp32 tok/s | ratio | ours bf16 tok/s | ratio |");
console.log("|---|---|---|---|---|---|");
for (const s of summary) {
  const ratio = (x) => (x && s.torch ? `${(x / s.torch).toFixed(1)}×` : "—");
  console.log(`| ${s.threads} | ${f1(s.torch)} | ${f1(s.fp32)} | ${ratio(s.fp32)} | ${f1(s.bf16)} | ${ratio(s.bf16)} |`);
}
console.log("(decode tok/s: tokens per second after the first token, all rows of the batch counted; beams: steps x beams)");
if (jsonPath) {
  writeFileSync(jsonPath, JSON.stringify({
    machine: { ...info, loadavg: os.loadavg() }, torch: torchVersion, bandwidth,
    settings: { model: MODEL, prompt: promptLen, newTokens, repeat }, results: rows,
  }, null, 2));
  console.log(`results: ${path.relative(root, jsonPath)}`);
}
