// `s2s-train build-native`: builds the addon from the sources this package ships (CMakeLists.txt,
// cmake/, native/) into <package root>/build/Release, which node-gyp-build loads before any
// prebuild. The way to the CUDA backend for npm users: no install script, so no allowScripts.
import { spawn, spawnSync } from "node:child_process";
import { accessSync, constants, existsSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { packageRoot } from "../bindings/native.js";
import { findOnPath } from "./util/find-on-path.js";

export type CudaChoice = "on" | "auto" | "off";

export interface BuildNativeOptions {
  /** S2S_CUDA for CMake; undefined: the environment's S2S_CUDA, else auto. */
  cuda?: CudaChoice;
  /** Parallel compile jobs; undefined: the build script's default (cores, at most 4). */
  jobs?: number;
  /** Print the commands and their folder; run nothing. */
  dryRun?: boolean;
  /** The package to build (default: this one's root). */
  root?: string;
  env?: NodeJS.ProcessEnv;
  out?: (text: string) => void;
}

/** What scripts/native-build.mjs exports that this command uses. */
interface NativeBuildScript {
  nativeBuildCommands(o: { cuda?: string; jobs?: number; env?: NodeJS.ProcessEnv }): {
    cwd: string;
    commands: { cmd: string; args: string[] }[];
  };
  cudaMode(cuda: string | undefined, env?: NodeJS.ProcessEnv): "AUTO" | "ON" | "OFF";
  cudaNeeds: string;
}

/** Checks before a build that would otherwise fail minutes in or with a less direct message. */
export interface Probe {
  findOnPath(name: string, env: NodeJS.ProcessEnv): string | undefined;
  /** Undefined when `dir` can be written to, else the error code (EACCES, EROFS...). */
  cannotWrite(dir: string): string | undefined;
}

const realProbe: Probe = {
  findOnPath,
  cannotWrite(dir) {
    try {
      accessSync(dir, constants.W_OK);
      return undefined;
    } catch (e) {
      return (e as NodeJS.ErrnoException).code ?? "not writable";
    }
  },
};

/** Problems that stop a build before it starts: each a sentence saying what to do. */
export function preflight(root: string, env: NodeJS.ProcessEnv, probe: Probe = realProbe): string[] {
  const problems: string[] = [];
  if (!probe.findOnPath("cmake", env)) {
    problems.push("cmake was not found on PATH: install cmake >= 3.18 (Debian/Ubuntu: sudo apt-get install cmake)");
  }
  const cxx = env.CXX?.trim();
  const compiler = cxx ? (path.isAbsolute(cxx) ? (existsSync(cxx) ? cxx : undefined) : probe.findOnPath(cxx, env))
    : ["c++", "g++", "clang++"].map((name) => probe.findOnPath(name, env)).find(Boolean);
  if (!compiler) {
    problems.push(cxx
      ? `the C++ compiler CXX=${cxx} was not found`
      : "no C++17 compiler (c++, g++ or clang++) was found on PATH: install one (Debian/Ubuntu: sudo apt-get install g++), or set CXX");
  }
  const build = path.join(root, "build");
  for (const dir of existsSync(build) ? [root, build] : [root]) {
    const code = probe.cannotWrite(dir);
    if (code) {
      problems.push(`cannot write to the package folder ${dir} (${code}): the addon is built into ${path.join(build, "Release")}; ` +
        "run build-native as the user who owns the package (or install s2s-train where you can write, e.g. a project's node_modules)");
      break;
    }
  }
  return problems;
}

function quote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** Runs a command with its output shown as it comes and its last 64 KiB kept. */
function runTeed(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<{ status: number; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    const keep = (chunk: Buffer, to: NodeJS.WriteStream) => {
      to.write(chunk);
      output = (output + chunk.toString("utf8")).slice(-65536);
    };
    child.stdout.on("data", (c: Buffer) => keep(c, process.stdout));
    child.stderr.on("data", (c: Buffer) => keep(c, process.stderr));
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ status: code ?? (signal ? 128 : 1), output }));
  });
}

/** CMake's first error block ("CMake Error at ...: <message>"), for the summary line. */
export function cmakeError(output: string): string | undefined {
  const lines = output.split("\n");
  const start = lines.findIndex((l) => l.startsWith("CMake Error"));
  if (start < 0) return undefined;
  const block: string[] = [];
  for (const line of lines.slice(start, start + 20)) {
    if (block.length > 1 && (line.startsWith("-- ") || line.startsWith("CMake ") || line.startsWith("Call Stack"))) break;
    block.push(line);
  }
  return block.join("\n").trim();
}

async function loadBuildScript(root: string): Promise<NativeBuildScript> {
  const script = path.join(root, "scripts", "native-build.mjs");
  if (!existsSync(script)) throw new Error(`this copy of s2s-train has no ${script}; reinstall the package`);
  return (await import(pathToFileURL(script).href)) as NativeBuildScript;
}

export async function runBuildNative(options: BuildNativeOptions = {}, probe: Probe = realProbe): Promise<void> {
  const root = options.root ?? packageRoot();
  const env = options.env ?? process.env;
  const out = options.out ?? ((text: string) => void process.stdout.write(text));
  const script = await loadBuildScript(root);
  const mode = script.cudaMode(options.cuda, env);
  const plan = script.nativeBuildCommands({ cuda: mode, env, ...(options.jobs !== undefined ? { jobs: options.jobs } : {}) });
  if (options.dryRun) {
    out(`cwd: ${plan.cwd}\n`);
    for (const c of plan.commands) out(`${[c.cmd, ...c.args].map(quote).join(" ")}\n`);
    return;
  }
  const problems = preflight(root, env, probe);
  if (problems.length > 0) throw new Error(`cannot build the native addon:\n  ${problems.join("\n  ")}`);

  out(`s2s-train: building the native addon in ${path.join(root, "build")} (S2S_CUDA=${mode})\n`);
  for (const c of plan.commands) {
    const step = `cmake-js ${c.args[1]}`;
    const r = await runTeed(c.cmd, c.args, plan.cwd, env);
    if (r.status !== 0) {
      const cause = cmakeError(r.output);
      throw new Error(`${step} failed (exit ${r.status})` + (cause ? `:\n${cause}` : "; its output is above") +
        (mode === "ON" ? `\n${script.cudaNeeds}` : ""));
    }
  }
  out(`s2s-train: built ${path.join(root, "build", "Release")}\n` + doctorLines(root, env));
}

/**
 * The new addon's addon/backends/gpu lines from `doctor`, in a fresh process: this one may have
 * loaded the old addon already.
 */
function doctorLines(root: string, env: NodeJS.ProcessEnv): string {
  const cli = path.join(root, "dist", "src", "cli", "main.js");
  if (!existsSync(cli)) return `(no ${cli} to run doctor with: compile the TypeScript with \`npm run build\`)\n`;
  const r = spawnSync(process.execPath, [cli, "doctor"], { cwd: root, env, encoding: "utf8" });
  if (r.status !== 0) return `doctor failed on the new addon (exit ${r.status}):\n${r.stderr}`;
  return r.stdout.split("\n").filter((l) => /^(addon|backends|gpu|hint)\b/.test(l)).map((l) => `${l}\n`).join("");
}
