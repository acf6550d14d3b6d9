// `s2s-train inspect-data`: what the trainer will see — the data report and N examples, each
// decoded token by token with which tokens carry loss. Reads the model's config.json and
// tokenizer only (no weights), so it runs before any training.
import { readFileSync } from "node:fs";
import path from "node:path";
import { parse as parseYaml } from "yaml";
import { FileFormatError, validate } from "../models/json-file.js";
import { IGNORE_INDEX } from "./build-example.js";
import { dataConfigSchema, type DataConfig } from "./config.js";
import { dataContextForModel } from "./context.js";
import { loadData } from "./load-data.js";
import type { Example, PreparedData } from "./types.js";
import type { Tokenizer } from "../models/tokenizer.js";

export interface InspectDataOptions {
  /** A training config (YAML): its data: section, and its model folder unless `model` is given. */
  config?: string;
  /** The model folder (config.json + tokenizer.json); with `data`, or overriding the config's. */
  model?: string;
  /** A data file, read with the data: defaults (and the field options below). */
  data?: string;
  /** Examples to print (default 3). */
  n?: number;
  /** Which side of the split to print (default train). */
  split?: "train" | "valid";
  inputField?: string;
  targetField?: string;
  promptTemplate?: string;
  /** Overrides data.on_bad_row ("skip" lists what would be skipped). */
  onBadRow?: "error" | "skip";
}

/** The config's model folder: `model: DIR` or `model: { path: DIR }`. */
function modelDirOf(doc: Record<string, unknown>, file: string): string | undefined {
  const m = doc.model;
  if (typeof m === "string") return m;
  if (typeof m === "object" && m !== null && typeof (m as { path?: unknown }).path === "string") return (m as { path: string }).path;
  if (m === undefined) return undefined;
  throw new FileFormatError(file, "model: expected a model folder (model: DIR or model.path: DIR); or pass --model");
}

function readConfig(file: string): { data: DataConfig; baseDir: string; modelDir?: string } {
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(file, "utf8"));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new FileFormatError(file, code === "ENOENT" ? "file not found" : `is not valid YAML (${(e as Error).message})`);
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) throw new FileFormatError(file, "expected a YAML mapping");
  const record = doc as Record<string, unknown>;
  const baseDir = path.dirname(path.resolve(file));
  const data = validate(dataConfigSchema, record.data ?? {}, `${file} (data)`);
  const modelDir = modelDirOf(record, file);
  return { data, baseDir, ...(modelDir !== undefined ? { modelDir: path.resolve(baseDir, modelDir) } : {}) };
}

export async function inspectData(options: InspectDataOptions): Promise<{ data: PreparedData; tokenizer: Tokenizer; examples: Example[] }> {
  let config: DataConfig;
  let baseDir: string;
  let modelDir = options.model;
  const fieldOptions = {
    ...(options.inputField !== undefined ? { input_field: options.inputField } : {}),
    ...(options.targetField !== undefined ? { target_field: options.targetField } : {}),
    ...(options.promptTemplate !== undefined ? { prompt_template: options.promptTemplate } : {}),
    ...(options.onBadRow !== undefined ? { on_bad_row: options.onBadRow } : {}),
  };
  if (options.config !== undefined) {
    const read = readConfig(options.config);
    config = dataConfigSchema.parse({ ...read.data, ...fieldOptions, ...(options.data !== undefined ? { train_file: path.resolve(options.data) } : {}) });
    baseDir = read.baseDir;
    modelDir ??= read.modelDir;
    if (modelDir === undefined) throw new FileFormatError(options.config, "has no model folder (model: DIR); pass --model");
  } else {
    if (options.data === undefined || modelDir === undefined) {
      throw new Error("inspect-data needs --config FILE, or --model DIR with --data FILE");
    }
    config = dataConfigSchema.parse({ train_file: options.data, ...fieldOptions });
    baseDir = process.cwd();
  }
  const ctx = dataContextForModel(modelDir, baseDir);
  const data = await loadData(config, ctx);
  const pool = options.split === "valid" ? data.valid : data.train;
  return { data, tokenizer: ctx.tokenizer, examples: pool.slice(0, options.n ?? 3) };
}

/** Runs of tokens that do / do not carry loss, as "loss" / "no loss" lines. */
function lossRuns(tokenizer: Tokenizer, ids: Int32Array, labels: Int32Array | null): string[] {
  const lines: string[] = [];
  let run: string[] = [];
  let carries: boolean | undefined;
  ids.forEach((id, i) => {
    const c = labels === null ? true : labels[i] !== IGNORE_INDEX;
    if (carries !== undefined && c !== carries) {
      lines.push(`    ${carries ? "loss   " : "no loss"}  ${run.join(" ")}`);
      run = [];
    }
    carries = c;
    run.push(tokenizer.id_to_token(id) ?? `<${id}>`);
  });
  if (run.length) lines.push(`    ${carries ? "loss   " : "no loss"}  ${run.join(" ")}`);
  return lines;
}

export function formatInspection(r: { data: PreparedData; tokenizer: Tokenizer; examples: Example[] }, split = "train"): string {
  const { report, kind } = r.data;
  const out = [
    `data (${kind}): ${report.rows} rows -> ${report.train} train, ${report.valid} valid; ${report.skipped.length} skipped; ` +
      `truncated: ${report.truncatedInputs} inputs, ${report.truncatedTargets} targets`,
  ];
  for (const s of report.skipped.slice(0, 5)) out.push(`  skipped ${s.source}: ${s.reason}`);
  if (report.skipped.length > 5) out.push(`  ... and ${report.skipped.length - 5} more skipped`);
  r.examples.forEach((e, k) => {
    out.push("", `[${k + 1}] ${split} ${e.source}${e.category !== undefined ? ` (category ${e.category})` : ""}`);
    out.push(`  input:  ${JSON.stringify(e.text.input)}`, `  target: ${JSON.stringify(e.text.target)}`);
    if (kind === "seq2seq") {
      const tokens = (ids: Int32Array) => Array.from(ids, (id) => r.tokenizer.id_to_token(id) ?? `<${id}>`).join(" ");
      out.push(`  encoder (${e.inputIds.length} tokens, no loss):  ${tokens(e.inputIds)}`);
      out.push(`  labels  (${e.labels.length} tokens, all loss):  ${tokens(e.labels)}`);
    } else {
      const counted = e.labels.filter((l) => l !== IGNORE_INDEX).length;
      out.push(`  tokens (${e.inputIds.length}, loss on ${counted}; prompt ${e.promptLength}):`, ...lossRuns(r.tokenizer, e.inputIds, e.labels));
    }
  });
  return out.join("\n") + "\n";
}

/** The command: the report and the examples as text. */
export async function runInspectData(options: InspectDataOptions): Promise<string> {
  return formatInspection(await inspectData(options), options.split ?? "train");
}
