// `npm run bench`: the benchmark suite (never part of `npm test`). Builds the native benches,
// runs them, and writes every result as JSON under bench/results/ next to the printed tables.
//
//   npm run bench                                  GEMM, N-API call costs, training, generation
//   npm run bench -- --only train                  one part: gemm | addon | train | generate (comma list)
//   npm run bench -- --quick --threads 1,2         --quick and --threads go to gemm and train
//   npm run bench -- --only train --configs gpt2-full,gpt2-lora --repeat 2
//
// GEMM options: --quick --threads --min-time --rounds. Training options (bench/train.bench.mjs):
// --quick --threads --configs --steps --warmup --repeat --no-torch --gradient-checkpointing
// --chunked-loss. Generation options (bench/generate.bench.mjs): --model (gpt2-124m |
// smollm-135m) --quick --threads --prompt --new --repeat --no-torch.
import { existsSync, mkdirSync } from "node:fs";
import path from "node:path";
import { buildNative, buildDir, root, run } from "./native-build.mjs";

const PARTS = ["gemm", "addon", "train", "generate"];
const GEMM_OPTS = { "--quick": 0, "--threads": 1, "--min-time": 1, "--rounds": 1 };
const TRAIN_OPTS = { "--quick": 0, "--threads": 1, "--configs": 1, "--steps": 1, "--warmup": 1, "--repeat": 1, "--no-torch": 0, "--gradient-checkpointing": 0, "--chunked-loss": 0 };
const GENERATE_OPTS = { "--model": 1, "--quick": 0, "--threads": 1, "--prompt": 1, "--new": 1, "--repeat": 1, "--no-torch": 0 };

const argv = process.argv.slice(2);
let only = PARTS;
const gemmArgs = [], trainArgs = [], generateArgs = [];
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === "--only") {
    only = (argv[++i] ?? "").split(",");
    const bad = only.filter((p) => !PARTS.includes(p));
    if (bad.length) {
      console.error(`bench: --only expects ${PARTS.join(", ")} (comma-separated), got '${bad.join(",")}'`);
      process.exit(2);
    }
    continue;
  }
  if (!(a in GEMM_OPTS) && !(a in TRAIN_OPTS) && !(a in GENERATE_OPTS)) {
    console.error(`bench: unknown option '${a}'. GEMM: ${Object.keys(GEMM_OPTS).join(" ")}; training: ${Object.keys(TRAIN_OPTS).join(" ")}; generation: ${Object.keys(GENERATE_OPTS).join(" ")}; --only ${PARTS.join("|")}`);
    process.exit(2);
  }
  const n = GEMM_OPTS[a] ?? TRAIN_OPTS[a] ?? GENERATE_OPTS[a];
  const value = argv.slice(i + 1, i + 1 + n);
  if (a in GEMM_OPTS) gemmArgs.push(a, ...value);
  if (a in TRAIN_OPTS) trainArgs.push(a, ...value);
  if (a in GENERATE_OPTS) generateArgs.push(a, ...value);
  i += n;
}

buildNative({ tests: true });
if (run(process.execPath, [path.join(root, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.json"]) !== 0) {
  process.exit(1);
}
const results = path.join(root, "bench", "results");
mkdirSync(results, { recursive: true });
const stamp = new Date().toISOString().replace(/[:.]/g, "-");

let status = 0;
const gemm = path.join(buildDir, "bench_gemm");
if (only.includes("gemm") && existsSync(gemm)) {
  status ||= run(gemm, ["--json", path.join(results, `gemm-${stamp}.json`), ...gemmArgs]);
}
if (only.includes("addon")) {
  status ||= run(process.execPath, [path.join(root, "bench", "addon.bench.mjs"), "--json", path.join(results, `addon-${stamp}.json`)]);
}
if (only.includes("train")) {
  status ||= run(process.execPath, [path.join(root, "bench", "train.bench.mjs"), "--json", path.join(results, `train-${stamp}.json`), ...trainArgs]);
}
if (only.includes("generate")) {
  status ||= run(process.execPath, [path.join(root, "bench", "generate.bench.mjs"), "--json", path.join(results, `generate-${stamp}.json`), ...generateArgs]);
}
process.exit(status);
