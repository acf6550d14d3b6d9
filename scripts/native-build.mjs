// Shared by the install, test and bench scripts: build the addon with cmake-js (never
// node-gyp), optionally with the C++ tests and benchmarks in the same build tree.
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const buildDir = path.join(root, "build");
const require = createRequire(import.meta.url);

export function run(cmd, args, options = {}) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: "inherit", ...options });
  if (r.error) throw new Error(`could not run ${cmd}: ${r.error.message}`);
  return r.status ?? 1;
}

function must(status, what) {
  if (status !== 0) {
    const err = new Error(`${what} failed (exit ${status})`);
    err.exitCode = status;
    throw err;
  }
}

/** Builds build/Release/s2s_train.node; with tests, also the ctest executables and benches. */
export function buildNative({ tests = false } = {}) {
  const cmakeJs = require.resolve("cmake-js/bin/cmake-js");
  const jobs = String(Math.max(1, Math.min(4, (globalThis.navigator?.hardwareConcurrency ?? 2))));
  // cmake-js writes the cache entries the addon needs (Node-API headers, output folder).
  must(run(process.execPath, [cmakeJs, "compile", "--out", "build", "--parallel", jobs]), "cmake-js compile");
  if (tests) {
    // Same build tree, tests switched on: the core is compiled once for addon and tests.
    must(run("cmake", ["-S", ".", "-B", "build", "-DS2S_TESTS=ON"], { stdio: ["inherit", "ignore", "inherit"] }), "cmake configure");
    must(run("cmake", ["--build", "build", "--parallel", jobs]), "cmake --build");
  }
}
