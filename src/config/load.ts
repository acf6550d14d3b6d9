// Resolving a training config: defaults < object from TypeScript < YAML file < command line (flags, then dotted overrides
// such as `train.lr=3e-5`). Every problem is collected and reported at once, each naming where the
// value came from (file:line or the command-line argument), the key and what was expected;
// an unknown key names the closest valid one.
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import YAML, { LineCounter } from "yaml";
import type { z } from "zod";
import { closest } from "./closest.js";
import { PATH_KEYS, trainConfigSchema, type TrainConfig } from "./schema.js";
import { objectShape, schemaAt } from "./schema-walk.js";

export class ConfigError extends Error {
  readonly code = "S2S_CONFIG";
  constructor(readonly problems: string[]) {
    super(problems.length === 1 ? `config: ${problems[0]}` : `config has ${problems.length} problems:\n  ${problems.join("\n  ")}`);
    this.name = "ConfigError";
  }
}

export interface ConfigSources {
  /** A config as an object (from TypeScript), under the file; relative paths are relative to `cwd`. */
  values?: object;
  /** A YAML file; relative paths in it are relative to its folder. */
  file?: string;
  /** Values of command-line flags by dotted key (`{"train.lr": 3e-5}`), applied after the file. */
  flags?: Record<string, unknown>;
  /** Dotted overrides as typed (`train.lr=3e-5`), applied last; values are read as YAML. */
  overrides?: readonly string[];
  /** Folder that command-line paths are relative to (default: the working folder). */
  cwd?: string;
}

/** Where a value came from, for messages and for resolving relative paths. */
interface Origin {
  where: string;
  base: string;
}

type Plain = Record<string, unknown>;

function isPlain(v: unknown): v is Plain {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Sets `value` at `keys` of `root`, creating sections on the way; records the origin of every leaf. */
function assign(root: Plain, keys: string[], value: unknown, origin: (keys: string[]) => Origin,
                origins: Map<string, Origin>, problems: string[]): void {
  let node = root;
  for (let i = 0; i < keys.length - 1; i++) {
    const k = keys[i]!;
    if (!isPlain(node[k])) {
      if (node[k] !== undefined) {
        problems.push(`${origin(keys).where}: ${keys.slice(0, i + 1).join(".")} is a value, not a section, so it has no key "${keys[i + 1]}"`);
        return;
      }
      node[k] = {};
    }
    node = node[k] as Plain;
  }
  const last = keys[keys.length - 1]!;
  if (isPlain(value)) {
    // A section merges key by key into what is there.
    if (!isPlain(node[last])) node[last] = {};
    if (Object.keys(value).length === 0) origins.set(keys.join("."), origin(keys));
    for (const [k, v] of Object.entries(value)) assign(root, [...keys, k], v, origin, origins, problems);
    return;
  }
  node[last] = value;
  origins.set(keys.join("."), origin(keys));
}

function readYamlFile(file: string, problems: string[]): { value: Plain; lineOf: (keys: string[]) => number | undefined } | undefined {
  if (!existsSync(file)) {
    problems.push(`${file}: file not found`);
    return undefined;
  }
  const text = readFileSync(file, "utf8");
  const lineCounter = new LineCounter();
  const doc = YAML.parseDocument(text, { lineCounter, uniqueKeys: true });
  if (doc.errors.length > 0) {
    for (const e of doc.errors) {
      const at = e.linePos?.[0];
      problems.push(`${file}${at ? `:${at.line}:${at.col}` : ""}: not valid YAML (${e.message.split("\n")[0]})`);
    }
    return undefined;
  }
  const value: unknown = doc.toJS();
  if (value === null || value === undefined) return { value: {}, lineOf: () => undefined };
  if (!isPlain(value)) {
    problems.push(`${file}: expected a mapping of sections (model:, data:, train:, output:), got ${Array.isArray(value) ? "a list" : typeof value}`);
    return undefined;
  }
  const lineOf = (keys: string[]) => {
    const node = doc.getIn(keys, true) as { range?: [number, number, number] } | undefined;
    const pair = node?.range ? node : (doc.getIn(keys.slice(0, -1), true) as { range?: [number, number, number] } | undefined);
    return pair?.range ? lineCounter.linePos(pair.range[0]).line : undefined;
  };
  return { value, lineOf };
}

/** Parses one `key=value` override. */
function parseOverride(text: string, problems: string[]): { keys: string[]; value: unknown } | undefined {
  const eq = text.indexOf("=");
  const key = eq >= 0 ? text.slice(0, eq).trim() : "";
  if (eq < 0 || key === "" || key.split(".").some((k) => k === "")) {
    problems.push(`command line: "${text}" is not an override; expected section.key=value, e.g. train.lr=3e-5`);
    return undefined;
  }
  const raw = text.slice(eq + 1);
  let value: unknown;
  try {
    value = raw.trim() === "" ? "" : YAML.parse(raw);
  } catch (e) {
    problems.push(`command line: ${key}: the value "${raw}" is not valid YAML (${(e as Error).message.split("\n")[0]})`);
    return undefined;
  }
  return { keys: key.split("."), value };
}

function valueAt(root: unknown, keys: readonly PropertyKey[]): unknown {
  let v = root;
  for (const k of keys) v = isPlain(v) ? v[k as string] : undefined;
  return v;
}

/** The origin of a key, or of the nearest thing set above or below it. */
function originOf(origins: Map<string, Origin>, key: string): Origin | undefined {
  if (origins.has(key)) return origins.get(key);
  for (const [k, o] of origins) if (k.startsWith(key + ".")) return o;
  const parts = key.split(".");
  for (let i = parts.length - 1; i > 0; i--) {
    const o = origins.get(parts.slice(0, i).join("."));
    if (o) return o;
  }
  return undefined;
}

/** The keys under a missing section that have no default (the section itself when none). */
function requiredLeaves(schema: z.ZodType, keys: string[]): string[] {
  const shape = objectShape(schema);
  if (!shape) return [keys.join(".")];
  const leaves = Object.entries(shape)
    .filter(([, child]) => !child.safeParse(undefined).success)
    .flatMap(([k, child]) => requiredLeaves(child, [...keys, k]));
  return leaves.length > 0 ? leaves : [keys.join(".")];
}

function describeIssue(issue: z.core.$ZodIssue, merged: Plain, origins: Map<string, Origin>): string[] {
  const keys = issue.path.map(String);
  const field = keys.join(".");
  if (issue.code === "unrecognized_keys") {
    const valid = Object.keys(objectShape(schemaAt(trainConfigSchema, keys) ?? trainConfigSchema) ?? {});
    return issue.keys.map((k) => {
      const full = [...keys, k].join(".");
      const where = originOf(origins, full)?.where ?? "config";
      const suggestion = closest(k, valid);
      const prefix = keys.length ? `${field}.` : "";
      return `${where}: unknown key ${full}${suggestion ? ` (did you mean ${prefix}${suggestion}?)` : ""}`;
    });
  }
  const where = originOf(origins, field)?.where ?? "defaults";
  const value = valueAt(merged, keys);
  if (issue.code === "invalid_type" && value === undefined) {
    const schema = schemaAt(trainConfigSchema, keys);
    return (schema ? requiredLeaves(schema, keys) : [field]).map((key) =>
      `${key}: required, but not set (set it in the config file, or on the command line as ${key}=...)`);
  }
  const shown = value === undefined || isPlain(value) ? "" : ` (got ${JSON.stringify(value)})`;
  return [`${where}: ${field || "(top level)"}: ${issue.message}${shown}`];
}

/**
 * The config from defaults, a file and the command line. Paths come back absolute: file paths
 * relative to the file's folder, command-line and default paths relative to `cwd`.
 */
export function resolveConfig(sources: ConfigSources = {}): TrainConfig {
  const cwd = sources.cwd ?? process.cwd();
  const problems: string[] = [];
  const origins = new Map<string, Origin>();
  const merged: Plain = {};

  if (sources.values !== undefined) {
    if (!isPlain(sources.values)) problems.push("options: expected the config as an object of sections");
    else for (const [k, v] of Object.entries(sources.values)) assign(merged, [k], v, () => ({ where: "options", base: cwd }), origins, problems);
  }
  if (sources.file !== undefined) {
    const file = path.resolve(cwd, sources.file);
    const shown = path.relative(cwd, file) || file;
    const read = readYamlFile(file, problems);
    if (read) {
      const origin = (keys: string[]) => {
        const line = read.lineOf(keys);
        return { where: line ? `${shown}:${line}` : shown, base: path.dirname(file) };
      };
      for (const [k, v] of Object.entries(read.value)) assign(merged, [k], v, origin, origins, problems);
    }
  }
  for (const [key, value] of Object.entries(sources.flags ?? {})) {
    if (value === undefined) continue;
    assign(merged, key.split("."), value, () => ({ where: `command line (${key})`, base: cwd }), origins, problems);
  }
  for (const text of sources.overrides ?? []) {
    const parsed = parseOverride(text, problems);
    if (parsed) assign(merged, parsed.keys, parsed.value, () => ({ where: `command line (${text})`, base: cwd }), origins, problems);
  }
  if (problems.length > 0) throw new ConfigError(problems);

  const result = trainConfigSchema.safeParse(merged);
  if (!result.success) {
    throw new ConfigError(result.error.issues.flatMap((issue) => describeIssue(issue, merged, origins)));
  }
  const config = result.data;

  // LoRA settings other than the defaults mean nothing under full fine-tuning: say so.
  if (config.model.method === "full") {
    const defaults = trainConfigSchema.shape.model.shape.lora.parse(undefined) as Plain;
    const changed = Object.keys(defaults).find((k) => JSON.stringify((config.model.lora as Plain)[k]) !== JSON.stringify(defaults[k]));
    if (changed) {
      const key = `model.lora.${changed}`;
      throw new ConfigError([`${originOf(origins, key)?.where ?? "config"}: ${key} is set, but model.method is full (LoRA settings apply only to method: lora)`]);
    }
  }

  for (const key of PATH_KEYS) {
    const keys = key.split(".");
    const value = valueAt(config, keys);
    if (typeof value !== "string") continue;
    const base = origins.get(key)?.base ?? cwd;
    const section = valueAt(config, keys.slice(0, -1)) as Plain;
    section[keys[keys.length - 1]!] = path.resolve(base, value);
  }
  return config;
}
