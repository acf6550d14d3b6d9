// `npm run bench`: the benchmark suite (never part of `npm test`). Builds the native benches,
// runs them, and writes every result as JSON under bench/results/ next to the printed tables.
// Extra arguments go to the native GEMM bench (e.g. `npm run bench -- --quick --threads 1,2`).
import { existsSync, mkdirSync } from "node:fs";
import path from "node:path";
import { buildNative, buildDir, root, run } from "./native-build.mjs";

const args = process.argv.slice(2);
buildNative({ tests: true });
if (run(process.execPath, [path.join(root, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.json"]) !== 0) {
  process.exit(1);
}
const results = path.join(root, "bench", "results");
mkdirSync(results, { recursive: true });
const stamp = new Date().toISOString().replace(/[:.]/g, "-");

let status = 0;
const gemm = path.join(buildDir, "bench_gemm");
if (existsSync(gemm)) {
  status ||= run(gemm, ["--json", path.join(results, `gemm-${stamp}.json`), ...args]);
}
status ||= run(process.execPath, [path.join(root, "bench", "addon.bench.mjs"), "--json", path.join(results, `addon-${stamp}.json`)]);
process.exit(status);
