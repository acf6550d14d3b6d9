// What an evaluation leaves in its folder, each file written atomically: predictions.jsonl (one
// {input, reference, prediction, scores, category?} per example) and metrics.json ({count,
// scores, byCategory} plus what was evaluated). The report (src/report) reads exactly these.
import path from "node:path";
import { writeFileAtomic, writeJsonlAtomic } from "../io/atomic-write.js";
import { snakeCase } from "../generate/option-flags.js";
import type { GenerateOptions } from "../generate/options.js";
import type { GenerationEvaluation } from "./evaluate-generation.js";

export const PREDICTIONS_FILE = "predictions.jsonl";
export const METRICS_FILE = "metrics.json";

/** Generation options as a file records them: transformers' snake_case names, no AbortSignal. */
export function generationSettings(options: GenerateOptions): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(options)) {
    if (key === "signal" || key === "onToken" || value === undefined) continue;
    out[snakeCase(key)] = value;
  }
  return out;
}

/** metrics.json: the scores, and whatever says what produced them (model, data, step, ...). */
export function metricsJson(e: GenerationEvaluation, about: Record<string, unknown>): Record<string, unknown> {
  return {
    count: e.count,
    scores: e.scores,
    byCategory: e.byCategory,
    ...about,
    generated_tokens: e.generatedTokens,
    generation_seconds: e.generationSeconds,
  };
}

/** Writes predictions.jsonl and metrics.json into `dir`; returns their paths. */
export function writeEvalFiles(dir: string, e: GenerationEvaluation, about: Record<string, unknown> = {}) {
  const predictions = path.join(dir, PREDICTIONS_FILE);
  const metrics = path.join(dir, METRICS_FILE);
  writeJsonlAtomic(predictions, e.predictions);
  writeFileAtomic(metrics, JSON.stringify(metricsJson(e, about), null, 2) + "\n");
  return { predictions, metrics };
}

/** The scores as a plain-text table: one row for all examples, then one per category. */
export function formatMetricsTable(e: Pick<GenerationEvaluation, "count" | "scores" | "byCategory">): string {
  const names = Object.keys(e.scores);
  const rows: string[][] = [["", "count", ...names]];
  const cells = (label: string, s: { count: number; scores: Record<string, number | undefined> }) =>
    [label, String(s.count), ...names.map((n) => (s.scores[n] === undefined ? "" : s.scores[n]!.toFixed(2)))];
  rows.push(cells("all", e));
  for (const [category, s] of Object.entries(e.byCategory)) rows.push(cells(category, s));
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  // The label column is left-aligned, the numbers right-aligned.
  return rows.map((r) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join("  ").trimEnd()).join("\n");
}
