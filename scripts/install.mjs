// `npm install` hook: use a prebuilt addon when one fits this platform, otherwise build from
// source with cmake-js. Never falls back to node-gyp. S2S_CUDA=ON builds from source with the
// CUDA backend even when a prebuild (CPU only) fits.
import { createRequire } from "node:module";
import { realpathSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { buildNative, cudaNeeds, root } from "./native-build.mjs";

const require = createRequire(import.meta.url);

/**
 * What the install hook does, from the environment and whether node-gyp-build found an addon:
 *   "skip"          S2S_SKIP_NATIVE_BUILD is set
 *   "build-cuda"    S2S_CUDA=ON (any case): a found addon may lack the CUDA backend, so build anyway
 *   "use-found"     an addon (build/Release or a prebuild) fits this platform
 *   "build"         nothing fits: build with the environment's S2S_CUDA (default AUTO)
 */
export function installPlan({ env, found }) {
  if (env.S2S_SKIP_NATIVE_BUILD) return "skip";
  if (env.S2S_CUDA?.trim().toUpperCase() === "ON") return "build-cuda";
  return found ? "use-found" : "build";
}

function findAddon() {
  try {
    return require("node-gyp-build").path(root);
  } catch {
    return undefined;  // no prebuild and no earlier build
  }
}

function main() {
  const found = findAddon();
  const plan = installPlan({ env: process.env, found: found !== undefined });
  if (plan === "skip") {
    console.log("s2s-train: S2S_SKIP_NATIVE_BUILD is set; not building the native addon.");
    return 0;
  }
  if (plan === "use-found") {
    console.log(`s2s-train: using the native addon at ${found}`);
    return 0;
  }
  if (plan === "build-cuda") {
    console.log("s2s-train: S2S_CUDA=ON; building the native addon from source with the CUDA backend.");
    try {
      buildNative({ cuda: "ON" });
      return 0;
    } catch (e) {
      console.error(
        `s2s-train: building the native addon with CUDA failed: ${e.message} (CMake's message above says what is missing)\n` +
          `${cudaNeeds}\n` +
          "Then run `S2S_CUDA=ON npm rebuild s2s-train`, or `npx s2s-train build-native --cuda on`.",
      );
      return 1;
    }
  }
  try {
    console.log("s2s-train: no prebuilt addon fits this platform; building from source with cmake-js.");
    buildNative();
    return 0;
  } catch (e) {
    console.error(
      `s2s-train: building the native addon failed: ${e.message}\n` +
        "It needs cmake >= 3.18 and a C++17 compiler (g++ >= 9 or clang >= 10):\n" +
        "  Debian/Ubuntu: sudo apt-get install cmake g++\n" +
        "Then run `npm rebuild s2s-train`.",
    );
    return 1;
  }
}

// Run as the install hook; imported (by the tests), only define installPlan. realpath: the module
// URL has symlinks resolved, argv[1] may not (a linked package).
if (process.argv[1] && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) process.exit(main());
