// `s2s-train init <run-name>`: a run folder with an editable copy of the default config, every
// key present with its default and its help text above it.
import { existsSync, mkdirSync } from "node:fs";
import path from "node:path";
import { writeFileAtomic } from "../io/atomic-write.js";
import { ConfigError } from "./load.js";
import { renderConfigYaml } from "./render.js";
import { trainConfigSchema, type TrainConfig } from "./schema.js";

export interface InitRunOptions {
  name: string;
  /** Parent of run folders (default "runs"). */
  runsDir?: string;
  /** Model folder and training file to put in the config (default: placeholders to edit). */
  model?: string;
  trainFile?: string;
  /** Replace an existing config.yaml. */
  force?: boolean;
  cwd?: string;
}

export interface InitRunResult {
  dir: string;
  configFile: string;
}

/** The default config as written by init: paths are relative to the config file's folder. */
export function defaultConfig(model = "path/to/model-folder", trainFile = "path/to/train.jsonl"): TrainConfig {
  const config = trainConfigSchema.parse({ model: { path: model }, data: { train_file: trainFile } });
  config.output.dir = ".";  // the folder holding config.yaml
  return config;
}

export function runInit(o: InitRunOptions): InitRunResult {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(o.name)) {
    throw new ConfigError([`run name "${o.name}": expected letters, digits, '.', '_' or '-' (it becomes a folder name)`]);
  }
  const cwd = o.cwd ?? process.cwd();
  const dir = path.resolve(cwd, o.runsDir ?? "runs", o.name);
  const configFile = path.join(dir, "config.yaml");
  if (existsSync(configFile) && !o.force) {
    throw new ConfigError([`${configFile} already exists (edit it, or pass --force to replace it with the default)`]);
  }
  // A path given relative to the working folder is rewritten relative to the config file; an
  // absolute one stays absolute.
  const relativeToRun = (p: string | undefined) =>
    p === undefined || path.isAbsolute(p) ? p : path.relative(dir, path.resolve(cwd, p)) || ".";
  const config = defaultConfig(relativeToRun(o.model), relativeToRun(o.trainFile));
  mkdirSync(dir, { recursive: true });
  writeFileAtomic(configFile, renderConfigYaml(config, [
    `s2s-train run "${o.name}". Edit this file, then: s2s-train train --config ${path.relative(cwd, configFile)}`,
    "Paths are relative to this file's folder; any key can also be set on the command line (train.lr=3e-5).",
  ].join("\n")));
  return { dir, configFile };
}
