// The configs that ship with the package (configs/<name>.yaml): `s2s-train train` with no --config
// runs "default", and `--example NAME` runs another. Their paths are relative to the configs folder
// (so they point into the package's examples/), except what a user's run owns: the run folder
// defaults to runs/<name> under the working folder.
import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ConfigError } from "./load.js";

export const DEFAULT_EXAMPLE = "default";

/** <package root>/configs, found from src/ (vitest) or dist/src/ (built). */
export function bundledConfigsDir(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = path.join(dir, "configs");
    if (existsSync(path.join(candidate, `${DEFAULT_EXAMPLE}.yaml`))) return candidate;
    dir = path.dirname(dir);
  }
  throw new Error("the bundled configs (configs/*.yaml) are missing from the package");
}

export function bundledExampleNames(): string[] {
  return readdirSync(bundledConfigsDir())
    .filter((f) => f.endsWith(".yaml"))
    .map((f) => f.slice(0, -".yaml".length))
    .sort();
}

/** The file of a bundled config, or an error listing the ones there are. */
export function bundledConfigFile(name: string): string {
  const names = bundledExampleNames();
  if (!names.includes(name)) {
    throw new ConfigError([`--example ${name}: no such bundled config (there are: ${names.join(", ")})`]);
  }
  return path.join(bundledConfigsDir(), `${name}.yaml`);
}
