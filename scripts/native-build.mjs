// Shared by the install, test and bench scripts and `s2s-train build-native`: build the addon
// with cmake-js (never node-gyp), optionally with the C++ tests and benchmarks in the same tree.
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

/**
 * The CUDA mode for CMake's S2S_CUDA (cmake/cuda.cmake): the given one, else the environment's
 * S2S_CUDA, else AUTO; upper-cased. Throws on anything but AUTO, ON or OFF.
 */
export function cudaMode(cuda, env = process.env) {
  const given = cuda ?? (env.S2S_CUDA?.trim() ? env.S2S_CUDA.trim() : "AUTO");
  const mode = String(given).toUpperCase();
  if (!["AUTO", "ON", "OFF"].includes(mode)) {
    throw new Error(`S2S_CUDA: expected AUTO, ON or OFF, got '${given}'`);
  }
  return mode;
}

/** What S2S_CUDA=ON needs, for the failure messages of the install hook and `build-native`. */
export const cudaNeeds =
  "Building the CUDA backend needs the CUDA toolkit's compiler (its static runtime comes with it):\n" +
  "  nvcc on PATH (or CUDACXX=/path/to/nvcc)\n" +
  "Running it needs an NVIDIA driver and the cuBLASLt library, looked for when a model goes on the GPU:\n" +
  "  the CUDA toolkit's, or `pip install nvidia-cublas` (CUDA 13; nvidia-cublas-cu12 for 12), or\n" +
  "  S2S_CUBLASLT=<path of libcublasLt.so.13> / S2S_CUBLAS_ROOT=<folder with lib/libcublasLt.so*>";

export function defaultJobs() {
  return Math.max(1, Math.min(4, globalThis.navigator?.hardwareConcurrency ?? 2));
}

/**
 * The commands that build build/Release/s2s_train.node, run in `root`: cmake-js configure, then
 * cmake-js build. Two steps because `cmake-js compile` skips configuring when build/CMakeCache.txt
 * exists, so a changed S2S_CUDA would be ignored; configuring again keeps the cache (and what is
 * already compiled) and applies the definitions. S2S_CUDA is always passed so the mode is the one
 * asked for now, not whatever an earlier run left in the cache; S2S_CUBLAS_ROOT is passed when the
 * environment sets it, for the same reason.
 */
export function nativeBuildCommands({ cuda, jobs, env = process.env } = {}) {
  const cmakeJs = require.resolve("cmake-js/bin/cmake-js");
  const definitions = [`--CDS2S_CUDA=${cudaMode(cuda, env)}`];
  if (env.S2S_CUBLAS_ROOT?.trim()) definitions.push(`--CDS2S_CUBLAS_ROOT=${env.S2S_CUBLAS_ROOT.trim()}`);
  const parallel = String(jobs ?? defaultJobs());
  return {
    cwd: root,
    commands: [
      { cmd: process.execPath, args: [cmakeJs, "configure", "--out", "build", ...definitions] },
      { cmd: process.execPath, args: [cmakeJs, "build", "--out", "build", "--parallel", parallel] },
    ],
  };
}

/**
 * Builds build/Release/s2s_train.node with S2S_CUDA = `cuda` (see cudaMode); with tests, also the
 * ctest executables and benches.
 */
export function buildNative({ tests = false, cuda, jobs } = {}) {
  const plan = nativeBuildCommands({ cuda, jobs });
  // cmake-js writes the cache entries the addon needs (Node-API headers, output folder).
  for (const { cmd, args } of plan.commands) must(run(cmd, args, { cwd: plan.cwd }), `cmake-js ${args[1]}`);
  if (tests) {
    // Same build tree, tests switched on: the core is compiled once for addon and tests.
    must(run("cmake", ["-S", ".", "-B", "build", "-DS2S_TESTS=ON"], { stdio: ["inherit", "ignore", "inherit"] }), "cmake configure");
    must(run("cmake", ["--build", "build", "--parallel", String(jobs ?? defaultJobs())]), "cmake --build");
  }
}
