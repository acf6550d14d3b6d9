// `s2s-train eval` as a function: load the model (+ adapter, merged), read the examples, generate
// for every one in batches, score, write predictions.jsonl and metrics.json into the output
// folder, and return the scores with a printable table. The CLI handler only calls this.
import path from "node:path";
import type { ComputeDTypeName } from "../../bindings/native.js";
import type { GenerateOptions } from "../generate/options.js";
import { parseMetricNames } from "../metrics/compute.js";
import { FileFormatError } from "../models/json-file.js";
import { loadModelWithAdapter } from "../models/load-with-adapter.js";
import { setNumThreads } from "../system.js";
import { formatMetricsTable, generationSettings, writeEvalFiles } from "./eval-files.js";
import { evaluateGeneration, type GenerationEvaluation } from "./evaluate-generation.js";
import { readEvalRows } from "./read-eval-rows.js";

export const DEFAULT_EVAL_METRICS = "bleu,rouge,em,f1";
export const DEFAULT_EVAL_MAX_NEW_TOKENS = 128;

export interface RunEvalOptions {
  /** Hugging Face model folder. */
  model: string;
  /** PEFT LoRA adapter folder trained on `model` (merged into the weights before generating). */
  adapter?: string;
  /** JSON, JSONL or CSV file of examples. */
  data: string;
  /** Metric names or aliases, comma-separated (default bleu,rouge,em,f1). */
  metrics?: string | readonly string[];
  inputField?: string;
  targetField?: string;
  categoryField?: string;
  /** Prompts per generate call (default 8). */
  batchSize?: number;
  /** Evaluate only the first N examples. */
  maxSamples?: number;
  /** Generation options; maxNewTokens defaults to 128 (unless maxLength is given), the rest to generation_config.json. */
  generation?: GenerateOptions;
  /** Folder for predictions.jsonl and metrics.json. */
  output: string;
  dtype?: ComputeDTypeName;
  threads?: number;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
}

export interface RunEvalResult {
  evaluation: GenerationEvaluation;
  files: { predictions: string; metrics: string };
  table: string;
}

export async function runEval(o: RunEvalOptions): Promise<RunEvalResult> {
  // Everything that can be refused is checked before the weights are read.
  const metrics = parseMetricNames(o.metrics ?? DEFAULT_EVAL_METRICS);
  if (metrics.length === 0) throw new Error("--metrics: expected at least one metric name");
  if (o.maxSamples !== undefined && (!Number.isInteger(o.maxSamples) || o.maxSamples < 1)) {
    throw new Error(`--max-samples: expected an integer >= 1, got ${o.maxSamples}`);
  }
  const batchSize = o.batchSize ?? 8;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`--batch-size: expected an integer >= 1, got ${batchSize}`);
  let rows = readEvalRows(o.data, {
    input: o.inputField ?? "input",
    target: o.targetField ?? "target",
    ...(o.categoryField !== undefined ? { category: o.categoryField } : {}),
  });
  if (o.maxSamples !== undefined) rows = rows.slice(0, o.maxSamples);
  if (o.threads !== undefined) setNumThreads(o.threads);

  const model = await loadModelWithAdapter(o.model, o.adapter, o.dtype);
  const tokenizer = model.tokenizer;
  if (!tokenizer) throw new FileFormatError(o.model, "has no tokenizer.json; eval reads and writes text, so it needs one");
  // transformers' default (20 tokens in all) cuts most answers short; 128 unless a length is given.
  const lengthGiven = o.generation?.maxNewTokens !== undefined || o.generation?.maxLength !== undefined;
  const generation: GenerateOptions = { ...(lengthGiven ? {} : { maxNewTokens: DEFAULT_EVAL_MAX_NEW_TOKENS }), ...o.generation };
  const addSpecialTokens = generation.addSpecialTokens ?? true;
  const evaluation = await evaluateGeneration(
    model,
    rows.map((r) => ({
      promptIds: tokenizer.encode(r.input, { add_special_tokens: addSpecialTokens }).ids,
      input: r.input,
      reference: r.reference,
      ...(r.category !== undefined ? { category: r.category } : {}),
    })),
    {
      metrics, generation, batchSize,
      ...(o.signal ? { signal: o.signal } : {}),
      ...(o.onProgress ? { onProgress: o.onProgress } : {}),
    },
  );
  const files = writeEvalFiles(o.output, evaluation, {
    model: path.resolve(o.model),
    ...(o.adapter !== undefined ? { adapter: path.resolve(o.adapter) } : {}),
    data: path.resolve(o.data),
    metrics,
    generation: generationSettings(generation),
  });
  return { evaluation, files, table: formatMetricsTable(evaluation) };
}
