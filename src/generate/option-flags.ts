// Generation options under the names people type: command-line flags in transformers' names in
// kebab case (--max-new-tokens, --top-p, …) and YAML keys in transformers' snake_case (compare
// files). Both come from generateOptionsSchema, so a new option appears everywhere at once;
// values are checked by that schema, and errors name the flag or key the person wrote.
import { readFileSync } from "node:fs";
import type { Options } from "yargs";
import { z } from "zod";
import { describeOf } from "../config/schema-walk.js";
import { generateOptionsSchema, type GenerateOptions } from "./options.js";
import { GenerateOptionsError } from "./resolve.js";

/** Options that are not settings (the signal belongs to the caller). */
const NOT_SETTINGS = new Set(["signal"]);

/** Every setting of generateOptionsSchema, camelCase. */
export const GENERATION_SETTINGS = Object.keys(generateOptionsSchema.shape).filter((k) => !NOT_SETTINGS.has(k));

export function kebabCase(camel: string): string {
  return camel.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

export function snakeCase(camel: string): string {
  return camel.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

type FlagKind = "integer" | "number" | "boolean" | "earlyStopping" | "tokenIds" | "tokenIdLists" | "jsonFile";

/** How each setting is typed on the command line (zod checks the value afterwards). */
const FLAG_KINDS: Record<string, FlagKind> = {
  maxNewTokens: "integer", maxLength: "integer", minLength: "integer", minNewTokens: "integer",
  doSample: "boolean", temperature: "number", topK: "integer", topP: "number", seed: "integer",
  numBeams: "integer", lengthPenalty: "number", earlyStopping: "earlyStopping", numReturnSequences: "integer",
  repetitionPenalty: "number", noRepeatNgramSize: "integer", badWordsIds: "tokenIdLists",
  eosTokenId: "tokenIds", padTokenId: "integer", decoderStartTokenId: "integer",
  addSpecialTokens: "boolean", skipSpecialTokens: "boolean", jsonSchema: "jsonFile",
};

for (const key of GENERATION_SETTINGS) {
  if (!(key in FLAG_KINDS)) throw new Error(`[option-flags] generation option ${key} has no command-line type; add it to FLAG_KINDS`);
}

const KIND_HINTS: Record<FlagKind, string> = {
  integer: "", number: "", boolean: "",
  earlyStopping: " (true, false or never)",
  tokenIds: " (an id, ids separated by commas, or none)",
  tokenIdLists: " (JSON, e.g. [[12],[40,41]])",
  jsonFile: " (a file holding the JSON schema)",
};

/** Help text of the API's options with the settings named as flags ("maxLength" -> "--max-length"). */
function flagWords(text: string): string {
  return text.replace(/\b[a-z]+[A-Z]\w*\b/g, (word) => (GENERATION_SETTINGS.includes(word) ? `--${kebabCase(word)}` : word));
}

/** The yargs options of every generation setting, in a "Generation options" group. */
export function generationFlagOptions(): Record<string, Options> {
  const options: Record<string, Options> = {};
  const shape = generateOptionsSchema.shape as Record<string, z.ZodType>;
  for (const key of GENERATION_SETTINGS) {
    const kind = FLAG_KINDS[key]!;
    options[kebabCase(key)] = {
      type: kind === "boolean" ? "boolean" : kind === "integer" || kind === "number" ? "number" : "string",
      describe: `${flagWords(describeOf(shape[key]!) ?? "")}${KIND_HINTS[kind]}`,
      group: "Generation options (transformers' names; defaults from the model's generation_config.json):",
    };
  }
  return options;
}

function parseFlagValue(flag: string, kind: FlagKind, raw: unknown): unknown {
  if (kind === "earlyStopping") {
    if (raw === "true") return true;
    if (raw === "false") return false;
    if (raw === "never") return "never";
    throw new GenerateOptionsError(`--${flag}: expected true, false or never, got ${String(raw)}`);
  }
  if (kind === "tokenIds") {
    const text = String(raw).trim();
    if (text === "none" || text === "null") return null;
    const ids = text.split(",").map((s) => Number(s.trim()));
    if (ids.some((n) => !Number.isInteger(n) || n < 0) || text === "") {
      throw new GenerateOptionsError(`--${flag}: expected a token id, ids separated by commas, or none; got ${text}`);
    }
    return ids.length === 1 ? ids[0] : ids;
  }
  if (kind === "jsonFile") {
    const file = String(raw);
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (e) {
      throw new GenerateOptionsError(`--${flag}: cannot read ${file} (${(e as Error).message})`);
    }
    try {
      return JSON.parse(text);
    } catch (e) {
      throw new GenerateOptionsError(`--${flag}: ${file} is not JSON (${(e as Error).message})`);
    }
  }
  if (kind === "tokenIdLists") {
    try {
      return JSON.parse(String(raw));
    } catch {
      throw new GenerateOptionsError(`--${flag}: expected JSON lists of token ids, e.g. [[12],[40,41]]; got ${String(raw)}`);
    }
  }
  return raw;
}

/** Problems in a zod result, with each option spelled as `name(key)` does. */
function problems(error: z.ZodError, name: (key: string) => string): string {
  return error.issues.map((issue) => {
    const [key, ...rest] = issue.path.map(String);
    const field = key === undefined ? "(options)" : [name(key), ...rest].join(".");
    return `  ${field}: ${issue.message}`;
  }).join("\n");
}

/** The generation options the command line set (parsed yargs arguments in, camelCase out). */
export function generationOptionsFromFlags(args: Record<string, unknown>): GenerateOptions {
  const raw: Record<string, unknown> = {};
  for (const key of GENERATION_SETTINGS) {
    const flag = kebabCase(key);
    const value = args[flag];
    if (value === undefined) continue;
    if (Array.isArray(value)) throw new GenerateOptionsError(`--${flag}: given more than once`);
    raw[key] = parseFlagValue(flag, FLAG_KINDS[key]!, value);
  }
  const result = generateOptionsSchema.safeParse(raw);
  if (!result.success) {
    throw new GenerateOptionsError(`generation options invalid:\n${problems(result.error, (k) => `--${kebabCase(k)}`)}`);
  }
  return result.data;
}

/** A zod object of every setting under its snake_case name (YAML files, JSON bodies). */
export function snakeCaseSettingsShape(): Record<string, z.ZodType> {
  const shape = generateOptionsSchema.shape as Record<string, z.ZodType>;
  return Object.fromEntries(GENERATION_SETTINGS.map((k) => [snakeCase(k), shape[k]!]));
}

/** snake_case settings (already checked against snakeCaseSettingsShape) to camelCase options. */
export function optionsFromSnakeCase(settings: Record<string, unknown>): GenerateOptions {
  const out: Record<string, unknown> = {};
  for (const key of GENERATION_SETTINGS) {
    const v = settings[snakeCase(key)];
    if (v !== undefined) out[key] = v;
  }
  return out as GenerateOptions;
}
