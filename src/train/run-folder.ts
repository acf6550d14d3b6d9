// The files of a run (DESIGN.md "Files a run leaves"), and getting the folder ready: a fresh run,
// a fresh run over an old one (overwrite), or a resumed one.
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import path from "node:path";
import YAML from "yaml";
import type { TrainConfig } from "../config/schema.js";
import { renderConfigYaml } from "../config/render.js";
import { writeFileAtomic } from "../io/atomic-write.js";
import { isCheckpointFolder, listCheckpoints } from "./checkpoint.js";

export interface RunPaths {
  dir: string;
  config: string;
  checkpoints: string;
  logs: string;
  runLog: string;
  trainCsv: string;
  validCsv: string;
  final: string;
  /** The initial weights of a run trained from scratch (model.from_scratch). */
  init: string;
}

export function runPaths(dir: string): RunPaths {
  const logs = path.join(dir, "logs");
  return {
    dir,
    config: path.join(dir, "config.yaml"),
    checkpoints: path.join(dir, "checkpoints"),
    logs,
    runLog: path.join(logs, "run.jsonl"),
    trainCsv: path.join(logs, "train.csv"),
    validCsv: path.join(logs, "valid.csv"),
    final: path.join(dir, "final"),
    init: path.join(dir, "init"),
  };
}

export class RunFolderError extends Error {
  readonly code = "S2S_RUN_FOLDER";
}

/**
 * The checkpoint to resume from: `true` is the run's latest, a string a checkpoint folder (or a
 * run folder, meaning its latest). Errors name the folder and what is missing.
 */
export function findResumeCheckpoint(paths: RunPaths, resume: true | string): string {
  if (resume === true) {
    const latest = listCheckpoints(paths.checkpoints).at(-1);
    if (!latest) throw new RunFolderError(`${paths.checkpoints}: no checkpoint to resume from (start without --resume)`);
    return latest.path;
  }
  const dir = path.resolve(resume);
  if (isCheckpointFolder(dir)) return dir;
  const inRun = listCheckpoints(path.join(dir, "checkpoints")).at(-1);
  if (inRun) return inRun.path;
  throw new RunFolderError(`${dir}: not a checkpoint folder (expected trainer_state.json in it, or a run folder with checkpoints/)`);
}

/** What an earlier run left in the folder (checkpoints/, logs/, final/). */
function earlierRun(paths: RunPaths): string[] {
  return [paths.checkpoints, paths.logs, paths.final, paths.init].filter((p) => existsSync(p));
}

/** Refuses to start from step 0 over an earlier run unless told to overwrite it. Writes nothing. */
export function checkFreshRun(paths: RunPaths, overwrite: boolean): void {
  const used = earlierRun(paths);
  if (used.length > 0 && !overwrite) {
    throw new RunFolderError(
      `${paths.dir} already holds a run (${used.map((p) => path.basename(p)).join(", ")}); ` +
        "resume it with --resume, start over with --overwrite, or choose another output.dir",
    );
  }
}

/** Deletes an earlier run's checkpoints, logs and final model (after checkFreshRun allowed it). */
export function clearEarlierRun(paths: RunPaths): void {
  for (const p of earlierRun(paths)) rmSync(p, { recursive: true, force: true });
}

/** Dotted keys whose values differ between two configs (plain data). */
export function configDifferences(a: unknown, b: unknown, prefix = ""): string[] {
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
  if (isObject(a) && isObject(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    return keys.flatMap((k) => configDifferences(a[k], b[k], prefix ? `${prefix}.${k}` : k));
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [prefix || "(config)"];
}

/**
 * Keys that differ from the config.yaml a previous session of the run wrote ([] when none).
 * The tracking section is left out: where metrics are sent changes no training number.
 */
export function changedSinceLastSession(paths: RunPaths, config: TrainConfig): string[] {
  if (!existsSync(paths.config)) return [];
  try {
    return configDifferences(YAML.parse(readFileSync(paths.config, "utf8")), config).filter((k) => k !== "tracking" && !k.startsWith("tracking."));
  } catch {
    return ["(config.yaml could not be read)"];
  }
}

export function writeRunConfig(paths: RunPaths, config: TrainConfig): void {
  writeFileAtomic(paths.config, renderConfigYaml(config, "The resolved config of this run, exactly as used (written by s2s-train)."));
}
