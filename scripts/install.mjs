// `npm install` hook: use a prebuilt addon when one fits this platform, otherwise build from
// source with cmake-js. Never falls back to node-gyp.
import { createRequire } from "node:module";
import { buildNative, root } from "./native-build.mjs";

const require = createRequire(import.meta.url);

if (process.env.S2S_SKIP_NATIVE_BUILD) {
  console.log("s2s-train: S2S_SKIP_NATIVE_BUILD is set; not building the native addon.");
  process.exit(0);
}

try {
  const found = require("node-gyp-build").path(root);
  console.log(`s2s-train: using the native addon at ${found}`);
  process.exit(0);
} catch {
  // No prebuild and no earlier build: build from source below.
}

try {
  console.log("s2s-train: no prebuilt addon fits this platform; building from source with cmake-js.");
  buildNative();
} catch (e) {
  console.error(
    `s2s-train: building the native addon failed: ${e.message}\n` +
      "It needs cmake >= 3.18 and a C++17 compiler (g++ >= 9 or clang >= 10):\n" +
      "  Debian/Ubuntu: sudo apt-get install cmake g++\n" +
      "Then run `npm rebuild s2s-train`.",
  );
  process.exit(1);
}
