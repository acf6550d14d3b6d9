// `s2s-train inspect-data`: what the trainer will see — the data report and N examples, each
// decoded token by token with which tokens carry loss. Reads the model's config.json and
// tokenizer only (no weights), so it runs before any training.
import { resolveConfig } from "../config/load.js";
import { IGNORE_INDEX } from "./build-example.js";
import { dataContextForModel } from "./context.js";
import { loadData } from "./load-data.js";
import type { Example, PreparedData } from "./types.js";
import type { Tokenizer } from "../models/tokenizer.js";

export interface InspectDataOptions {
  /** A training config (YAML): its data: section and model.path; the options below override them. */
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

/** The data: section and model folder from the config file and options, through the trainer's
 *  config loader (same precedence and errors as `s2s-train train`). */
export async function inspectData(options: InspectDataOptions): Promise<{ data: PreparedData; tokenizer: Tokenizer; examples: Example[] }> {
  if (options.config === undefined && (options.model === undefined || options.data === undefined)) {
    throw new Error("inspect-data needs --config FILE, or --model DIR with --data FILE");
  }
  const flags: Record<string, unknown> = {
    "model.path": options.model,
    "data.train_file": options.data,
    "data.input_field": options.inputField,
    "data.target_field": options.targetField,
    "data.prompt_template": options.promptTemplate,
    "data.on_bad_row": options.onBadRow,
  };
  const config = resolveConfig({ ...(options.config !== undefined ? { file: options.config } : {}), flags });
  const ctx = dataContextForModel(config.model.path, process.cwd());
  const data = await loadData(config.data, ctx);
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
