// The path to a CUDA build for npm users: `s2s-train build-native` (its commands, checks and
// errors; no test runs a real build, which takes minutes), the install hook's decision, and
// doctor's hint when a GPU is there but the addon has no CUDA backend.
import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { cmakeError, preflight, runBuildNative, type BuildNativeOptions, type Probe } from "../src/build-native.js";
import { formatDoctor, runDoctor } from "../src/index.js";

const root = path.resolve(import.meta.dirname, "..");
const cli = path.join(root, "dist/src/cli/main.js");
const cmakeJs = /\S*cmake-js\/bin\/cmake-js/;

async function dryRun(options: BuildNativeOptions): Promise<string[]> {
  let text = "";
  await runBuildNative({ env: {}, ...options, dryRun: true, out: (t) => void (text += t) });
  return text.trimEnd().split("\n");
}

function s2s(args: string[], env: NodeJS.ProcessEnv = process.env) {
  return spawnSync(process.execPath, [cli, ...args], { encoding: "utf8", env });
}

describe("build-native --dry-run", () => {
  it("prints the folder and the configure and build commands with S2S_CUDA for each --cuda value", async () => {
    for (const [cuda, define] of [["on", "ON"], ["auto", "AUTO"], ["off", "OFF"]] as const) {
      const [cwd, configure, build, ...rest] = await dryRun({ cuda });
      expect(cwd).toBe(`cwd: ${root}`);
      expect(configure).toMatch(cmakeJs);
      expect(configure!.replace(cmakeJs, "CMAKE_JS")).toBe(`${process.execPath} CMAKE_JS configure --out build --CDS2S_CUDA=${define}`);
      expect(build!.replace(cmakeJs, "CMAKE_JS")).toMatch(new RegExp(`^${process.execPath} CMAKE_JS build --out build --parallel [1-4]$`));
      expect(rest).toEqual([]);
    }
  });

  it("passes --jobs as the build's parallelism", async () => {
    const [, , build] = await dryRun({ cuda: "off", jobs: 7 });
    expect(build).toMatch(/ build --out build --parallel 7$/);
  });

  it("takes S2S_CUDA (any case) from the environment when --cuda is absent, else AUTO, and passes S2S_CUBLAS_ROOT", async () => {
    expect((await dryRun({}))[1]).toMatch(/ --CDS2S_CUDA=AUTO$/);
    expect((await dryRun({ env: { S2S_CUDA: "on" } }))[1]).toMatch(/ --CDS2S_CUDA=ON$/);
    expect((await dryRun({ env: { S2S_CUDA: "on" }, cuda: "off" }))[1]).toMatch(/ --CDS2S_CUDA=OFF$/);
    expect((await dryRun({ env: { S2S_CUBLAS_ROOT: "/opt/cublas dir" }, cuda: "on" }))[1])
      .toMatch(/ --CDS2S_CUDA=ON '--CDS2S_CUBLAS_ROOT=\/opt\/cublas dir'$/);
    await expect(dryRun({ env: { S2S_CUDA: "yes" } })).rejects.toThrow("S2S_CUDA: expected AUTO, ON or OFF, got 'yes'");
  });

  it("is a CLI command: --dry-run prints without building, bad arguments fail with exit 1", () => {
    const ok = s2s(["build-native", "--dry-run", "--cuda", "ON", "--jobs", "3"]);
    expect(ok.status).toBe(0);
    expect(ok.stdout).toContain(`cwd: ${root}\n`);
    expect(ok.stdout).toMatch(/configure --out build --CDS2S_CUDA=ON\n.* build --out build --parallel 3\n$/);
    for (const [args, message] of [
      [["--cuda", "maybe"], "--cuda: expected on, auto or off, got 'maybe'"],
      [["--jobs", "0"], "--jobs: expected a whole number >= 1, got '0'"],
      [["--jobs", "two"], "--jobs: expected a whole number >= 1, got 'two'"],
      [["--cudaa", "on"], "Unknown argument: --cudaa (did you mean --cuda?)"],
    ] as const) {
      const r = s2s(["build-native", "--dry-run", ...args]);
      expect(r.status, args.join(" ")).toBe(1);
      expect(r.stderr).toContain(message);
      expect(r.stdout).toBe("");
    }
  });
});

describe("build-native checks before building", () => {
  const probe = (onPath: string[], unwritable: string[] = []): Probe => ({
    findOnPath: (name) => (onPath.includes(name) ? `/usr/bin/${name}` : undefined),
    cannotWrite: (dir) => (unwritable.includes(dir) ? "EACCES" : undefined),
  });

  it("passes with cmake, a compiler and a writable package folder", () => {
    expect(preflight(root, {}, probe(["cmake", "g++"]))).toEqual([]);
    expect(preflight(root, { CXX: "clang++" }, probe(["cmake", "clang++"]))).toEqual([]);
  });

  it("names what is missing: cmake, the compiler, CXX", () => {
    const problems = preflight(root, {}, probe([]));
    expect(problems).toHaveLength(2);
    expect(problems[0]).toMatch(/^cmake was not found on PATH: install cmake >= 3\.18/);
    expect(problems[1]).toMatch(/^no C\+\+17 compiler \(c\+\+, g\+\+ or clang\+\+\) was found on PATH/);
    expect(preflight(root, { CXX: "clang++-17" }, probe(["cmake", "g++"])))
      .toEqual(["the C++ compiler CXX=clang++-17 was not found"]);
  });

  it("names the package folder it cannot write", () => {
    const [problem, ...rest] = preflight(root, {}, probe(["cmake", "c++"], [root]));
    expect(rest).toEqual([]);
    expect(problem).toContain(`cannot write to the package folder ${root} (EACCES)`);
    expect(problem).toContain(path.join(root, "build", "Release"));
  });

  it("stops the real command before any build when cmake is not on PATH", () => {
    const empty = mkdtempSync(path.join(os.tmpdir(), "s2s-nopath-"));
    const r = s2s(["build-native", "--cuda", "off"], { ...process.env, PATH: empty });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("s2s-train: cannot build the native addon:\n  cmake was not found on PATH");
    expect(r.stdout).not.toContain("building the native addon");
  });

  it("quotes CMake's error block in the failure message", () => {
    const output = [
      "-- The CXX compiler identification is GNU 12.2.0",
      "CMake Error at cmake/cuda.cmake:97 (message):",
      "  S2S_CUDA=ON: nvcc was found but not the cuBLASLt library/header (searched",
      "  /usr/local;/usr/local/cuda); set S2S_CUBLAS_ROOT",
      "Call Stack (most recent call first):",
      "  CMakeLists.txt:94 (include)",
      "",
      "-- Configuring incomplete, errors occurred!",
    ].join("\n");
    expect(cmakeError(output)).toBe(output.split("\n").slice(1, 4).join("\n"));
    expect(cmakeError("ninja: build stopped")).toBeUndefined();
  });
});

describe("the install hook's decision (scripts/install.mjs)", async () => {
  const { installPlan } = (await import(pathToFileURL(path.join(root, "scripts/install.mjs")).href)) as {
    installPlan(o: { env: Record<string, string | undefined>; found: boolean }): string;
  };

  it("uses a found addon, builds when there is none, builds with CUDA when S2S_CUDA=ON", () => {
    expect(installPlan({ env: {}, found: true })).toBe("use-found");
    expect(installPlan({ env: {}, found: false })).toBe("build");
    expect(installPlan({ env: { S2S_CUDA: "AUTO" }, found: true })).toBe("use-found");
    expect(installPlan({ env: { S2S_CUDA: "off" }, found: false })).toBe("build");
    for (const on of ["ON", "on", " On "]) {
      expect(installPlan({ env: { S2S_CUDA: on }, found: true })).toBe("build-cuda");
      expect(installPlan({ env: { S2S_CUDA: on }, found: false })).toBe("build-cuda");
    }
    expect(installPlan({ env: { S2S_SKIP_NATIVE_BUILD: "1", S2S_CUDA: "ON" }, found: false })).toBe("skip");
  });
});

describe("doctor's hint when an NVIDIA driver is visible but the addon has no CUDA backend", () => {
  const base = runDoctor();
  const cpuOnly = { ...base, native: { ...base.native, cuda: { built: false, runtimeVersion: 0, driverVersion: 0, devices: [] } } };
  const hint = /^hint\s+an NVIDIA driver is visible but this addon has no CUDA backend, so the GPU is unused; build one with `npx s2s-train build-native --cuda on`/m;

  it("shows the hint only with a driver and a CPU-only addon", () => {
    expect(formatDoctor(cpuOnly, () => true)).toMatch(hint);
    expect(formatDoctor(cpuOnly, () => false)).not.toMatch(/^hint/m);
    const built = { ...base, native: { ...base.native, cuda: { built: true, runtimeVersion: 13000, driverVersion: 13000, devices: [] } } };
    let asked = false;
    expect(formatDoctor(built, () => (asked = true))).not.toMatch(/^hint/m);
    expect(asked).toBe(false);
  });
});
