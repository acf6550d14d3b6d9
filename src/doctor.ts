// `s2s-train doctor`: everything a bug report needs about this install, as data and as text.
import { existsSync } from "node:fs";
import os from "node:os";
import type { CudaInfo } from "../bindings/native.js";
import { nativeInfo, type NativeInfo } from "./system.js";
import { findOnPath } from "./util/find-on-path.js";

export interface DoctorReport {
  package: string;
  node: string;
  platform: string;
  addonPath: string;
  native: NativeInfo;
}

export function runDoctor(): DoctorReport {
  const { addonPath, ...native } = nativeInfo();
  return {
    package: `s2s-train ${native.version}`,
    node: process.version,
    platform: `${process.platform}-${process.arch} (${os.release()})`,
    addonPath,
    native,
  };
}

/** Whether an NVIDIA driver is visible: the kernel module's /proc file, or nvidia-smi on PATH. */
export function nvidiaDriverVisible(): boolean {
  return existsSync("/proc/driver/nvidia/version") || findOnPath("nvidia-smi") !== undefined;
}

/** `driverVisible` is asked only when the addon has no CUDA backend (tests pass their own). */
export function formatDoctor(r: DoctorReport, driverVisible: () => boolean = nvidiaDriverVisible): string {
  const n = r.native;
  const rows: [string, string][] = [
    ["package", r.package],
    ["node", `${r.node} (N-API ${n.napiVersion})`],
    ["platform", r.platform],
    ["addon", r.addonPath],
    ["compiler", n.compiler],
    ["backends", n.backends.join(", ")],
    ["cpu", `${n.cpu.brand || n.cpu.vendor} (${n.cpu.logicalCores} logical cores)`],
    ["cpu features", n.cpu.features.join(" ") || "(none detected)"],
    ["kernel paths", n.supportedIsas.join(", ")],
    ["active path", n.activeIsa + (n.activeIsa === n.bestIsa ? " (best available)" : ` (best: ${n.bestIsa})`)],
    ...Object.entries(n.kernels).map(([family, name]): [string, string] => [`kernel ${family}`, name]),
    ["threads", String(n.threads)],
    ...gpuRows(n.cuda),
    ...(!n.cuda.built && driverVisible() ? [unusedGpuHint] : []),
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join("\n");
}

const unusedGpuHint: [string, string] = [
  "hint",
  "an NVIDIA driver is visible but this addon has no CUDA backend, so the GPU is unused; build one with " +
    "`npx s2s-train build-native --cuda on` (needs nvcc; see README, GPUs)",
];

/** "gpu" rows: whether the CUDA backend is in this binary, each device the runtime sees, the
 *  cuBLASLt it loaded, and why a model cannot use the GPU when it cannot. */
function gpuRows(cuda: CudaInfo): [string, string][] {
  if (!cuda.built) return [["gpu", "CUDA backend not built into this binary (CPU only)"]];
  const version = (v: number) => `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}`;
  const head = `CUDA backend built (runtime ${version(cuda.runtimeVersion)}` +
    (cuda.driverVersion > 0 ? `, driver supports ${version(cuda.driverVersion)})` : ", no driver)");
  if (cuda.devices.length === 0) return [["gpu", `${head}; no usable device: ${cuda.problem ?? "none found"}`]];
  const gib = (b: number) => (b / 2 ** 30).toFixed(1);
  const rows: [string, string][] = [
    ["gpu", head],
    ...cuda.devices.map((d): [string, string] => [
      `gpu ${d.index}`,
      `${d.name} (compute ${d.computeCapability}, ${d.multiprocessors} SMs, ` +
        `${gib(d.totalBytes)} GiB, ${gib(d.freeBytes)} GiB free)` +
        (d.supported === false ? `: not supported, the kernels need compute ${cuda.minComputeCapability}+` : ""),
    ]),
  ];
  if (cuda.cublasLt) {
    rows.push(["cublasLt", `${cuda.cublasLt.library}${cuda.cublasLt.version ? ` (${cuda.cublasLt.version})` : ""}`]);
  } else if (cuda.cublasLtProblem) {
    rows.push(["cublasLt", `not found: ${cuda.cublasLtProblem}`]);
  }
  if (cuda.problem && cuda.problem !== cuda.cublasLtProblem) rows.push(["gpu unusable", cuda.problem]);
  if (cuda.devices.length > 1) {
    rows.push(["gpu choice", "models run on GPU 0 unless told otherwise: --device cuda:N (model.device: cuda:N) picks GPU N"]);
  }
  return rows;
}
