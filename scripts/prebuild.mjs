// Copies the built addon to prebuilds/<platform>-<arch>/s2s-train.napi.node, where the loader
// looks first, so a published package needs no compiler on the user's machine. The x86-64 build
// carries every kernel path and picks one at run time, so one prebuild serves every x86-64 CPU.
import { copyFileSync, mkdirSync, renameSync } from "node:fs";
import path from "node:path";
import { buildNative, buildDir, root } from "./native-build.mjs";

buildNative();
const dir = path.join(root, "prebuilds", `${process.platform}-${process.arch}`);
mkdirSync(dir, { recursive: true });
const target = path.join(dir, "s2s-train.napi.node");
copyFileSync(path.join(buildDir, "Release", "s2s_train.node"), target + ".tmp");
renameSync(target + ".tmp", target);
console.log(`prebuild: wrote ${target}`);
