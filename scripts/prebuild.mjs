// Copies the built addon to prebuilds/<platform>-<arch>/s2s-train.napi.node, where the loader
// looks first, so a published package needs no compiler on the user's machine. The x86-64 build
// carries every kernel path and picks one at run time, so one prebuild serves every x86-64 CPU.
//
// On Linux with nvcc on PATH the prebuild carries the CUDA backend too (S2S_CUDA=ON): the CUDA
// runtime is linked statically and cuBLASLt is loaded when a model goes on a GPU, so the same
// file loads on machines without a GPU, driver or cuBLAS and runs on the CPU there.
//   npm run make-prebuild                 # CUDA where nvcc is found, else CPU only
//   npm run make-prebuild -- --cuda off   # CPU only (or on: fail without nvcc)
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, renameSync, statSync } from "node:fs";
import path from "node:path";
import { buildNative, buildDir, root } from "./native-build.mjs";

const hasNvcc = () => spawnSync(process.env.CUDACXX || "nvcc", ["--version"]).status === 0;

function cudaChoice(argv) {
  const i = argv.indexOf("--cuda");
  const given = i >= 0 ? argv[i + 1] : process.env.S2S_CUDA;
  if (given?.trim()) return given.trim().toUpperCase();
  return process.platform === "linux" && hasNvcc() ? "ON" : "OFF";
}

const cuda = cudaChoice(process.argv.slice(2));
buildNative({ cuda });
const dir = path.join(root, "prebuilds", `${process.platform}-${process.arch}`);
mkdirSync(dir, { recursive: true });
const target = path.join(dir, "s2s-train.napi.node");
copyFileSync(path.join(buildDir, "Release", "s2s_train.node"), target + ".tmp");
renameSync(target + ".tmp", target);
const mib = (statSync(target).size / 2 ** 20).toFixed(1);
console.log(`prebuild: wrote ${target} (${mib} MiB, S2S_CUDA=${cuda})`);
