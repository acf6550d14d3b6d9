// What a call through N-API costs: matmul from JS (Promise, worker thread, thread pool) at
// sizes from tiny (overhead-bound) to large (compute-bound), with benchmark.js statistics.
// Compare the large sizes with bench_gemm's native GFLOP/s from the same run.
import Benchmark from "benchmark";
import { writeFileSync } from "node:fs";
import { matmul, nativeInfo, Tensor } from "../dist/src/index.js";

const jsonAt = process.argv.indexOf("--json");
const jsonPath = jsonAt > 0 ? process.argv[jsonAt + 1] : undefined;

function random(shape) {
  const t = Tensor.zeros(shape);
  for (let i = 0; i < t.numel; i++) t.data[i] = Math.random() - 0.5;
  return t;
}

const info = nativeInfo();
console.log(`\naddon: ${info.cpu.brand}, ${info.activeIsa}, ${info.threads} threads, gemm ${info.kernels.gemm_f32}`);
const suite = new Benchmark.Suite("matmul through N-API");
const rows = [];
for (const n of [16, 128, 512, 1024]) {
  const a = random([n, n]), b = random([n, n]), out = Tensor.zeros([n, n]);
  suite.add(`matmul ${n}x${n}x${n} fp32`, {
    defer: true,
    fn: (deferred) => matmul(a, b, { out }).then(() => deferred.resolve()),
    onComplete: (e) => {
      const t = e.target.stats.mean;
      rows.push({ n, seconds: t, gflops: (2 * n ** 3) / t / 1e9, rme: e.target.stats.rme });
    },
  });
}
suite
  .on("cycle", (e) => console.log(String(e.target)))
  .on("complete", () => {
    console.table(rows.map((r) => ({ n: r.n, "µs/call": (r.seconds * 1e6).toFixed(1), "GFLOP/s": r.gflops.toFixed(1), "±%": r.rme.toFixed(1) })));
    if (jsonPath) writeFileSync(jsonPath, JSON.stringify({ machine: info, results: rows }, null, 2));
  })
  .run({ async: true });
