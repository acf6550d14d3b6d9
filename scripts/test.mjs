// `npm test`: builds everything, runs the C++ tests (ctest) and the vitest suite, and ends with
// one line counting both: "tests: N passed, N failed".
//   --native-only   only the C++ tests
import { spawnSync } from "node:child_process";
import { readFileSync, mkdirSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { buildNative, buildDir, root, run } from "./native-build.mjs";

const nativeOnly = process.argv.includes("--native-only");
let passed = 0;
let failed = 0;

try {
  buildNative({ tests: true });
} catch (e) {
  console.error(`test: ${e.message}`);
  process.exit(1);
}

// C++: each ctest executable prints "N passed, N failed" for its own cases; add them up.
// Side by side on every core (the simulator's model tests come as shards for it: cmake/cuda_sim.cmake).
const jobs = String(Math.max(1, os.availableParallelism()));
const ctest = spawnSync("ctest", ["--test-dir", buildDir, "-V", "--timeout", "600", "--parallel", jobs], {
  cwd: root, encoding: "utf8", maxBuffer: 256 << 20,
});
process.stdout.write(ctest.stdout ?? "");
process.stderr.write(ctest.stderr ?? "");
for (const m of (ctest.stdout ?? "").matchAll(/^\d+: (\d+) passed, (\d+) failed$/gm)) {
  passed += Number(m[1]);
  failed += Number(m[2]);
}
if (ctest.status !== 0 && failed === 0) failed += 1;  // a crash prints no count line

if (!nativeOnly) {
  if (run(process.execPath, [path.join(root, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.json"]) !== 0 ||
      run(process.execPath, [path.join(root, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.check.json"]) !== 0) {
    console.error("test: TypeScript did not compile");
    failed += 1;
  }
  mkdirSync(buildDir, { recursive: true });
  const report = path.join(buildDir, "vitest.json");
  const vitest = run(process.execPath, [
    path.join(root, "node_modules/vitest/vitest.mjs"), "run",
    "--reporter=default", "--reporter=json", `--outputFile.json=${report}`,
  ]);
  try {
    const r = JSON.parse(readFileSync(report, "utf8"));
    passed += r.numPassedTests;
    failed += r.numFailedTests;
    if (vitest !== 0 && r.numFailedTests === 0) failed += 1;  // e.g. a file failed to load
  } catch {
    failed += 1;
  }
}

console.log(`\ntests: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
