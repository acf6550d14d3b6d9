// Curation by answerability (Source2Synth): the generated set is split into slice 0 and slice 1;
// a model fine-tuned on slice 0 answers each slice-1 question up to k times, and an entry it never
// answers right (soft exact match on the chain's final answer) is dropped. Optional imputation:
// the model rebuilds Q1 from Q, Q2, E and D1, then answers the rebuilt Q1 from D1; the entry stays
// only if that answer is still E.
//
// Plug-in points (the lead wires them at merge time):
//   FineTune            the trainer (issue 5): fine-tune baseModel on slice0.jsonl
//   LocalBackendLoader  generation (issue 4): the fine-tuned model as an LlmBackend
//   softExactMatch      metrics (issue 6): answer-match.ts is a local stand-in
import { readFileSync } from "node:fs";
import type { LlmBackend } from "../llm/types.js";
import type { CurateConfig } from "./config.js";
import type { PromptLibrary } from "./prompts.js";
import { Rejection, type ItemContext } from "./job-runner.js";
import { extractFinalAnswer } from "./mhqa.js";
import { softExactMatch } from "./answer-match.js";
import { FileFormatError } from "../models/json-file.js";
import { hashSeed, seededRandom, shuffled } from "../util/rng.js";

export interface FineTuneRequest {
  baseModel: string;
  /** JSONL with input/target rows (slice 0). */
  trainFile: string;
  /** Where the trainer writes its run (the result's folders are inside it). */
  outputDir: string;
  /** curate.train from the config: trainer settings as the trainer's config names them. */
  settings: Record<string, unknown>;
  signal?: AbortSignal;
}

export interface FineTunedModel {
  modelDir: string;
  adapterDir?: string;
}

export type FineTune = (request: FineTuneRequest) => Promise<FineTunedModel>;
export type LocalBackendLoader = (modelDir: string, adapterDir?: string) => Promise<LlmBackend>;

/** Until the trainer lands on main, curation without curate.answer_with stops here with this message. */
export const fineTuneNotAvailable: FineTune = async (request) => {
  throw new Error(
    `curation fine-tunes ${request.baseModel} on ${request.trainFile} with the trainer (s2s-train train), which this build ` +
    "does not have yet; fine-tune a model on that file elsewhere, serve it with an OpenAI-compatible server and give it as " +
    "curate.answer_with.endpoints");
};

/** A row of the generated set as curation needs it (other fields are carried through). */
export interface CurateRow {
  input: string;
  target: string;
  answer: string;
  question?: string;
  q1?: string;
  q2?: string;
  entity?: string;
  d1?: { text: string };
  [field: string]: unknown;
}

export const curateRejections = ["never_answered", "imputation_changed_answer"] as const;

export function readCurateInput(file: string, needImputationFields: boolean): CurateRow[] {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    throw new FileFormatError(file, "file not found (curate.input: the generated JSONL, e.g. <out>/synth/data.jsonl)");
  }
  const rows: CurateRow[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    if (!line.trim()) return;
    const where = `${file}:${i + 1}`;
    let row: Record<string, unknown>;
    try {
      row = JSON.parse(line) as Record<string, unknown>;
    } catch (e) {
      throw new FileFormatError(where, `is not valid JSON (${(e as Error).message})`);
    }
    for (const field of ["input", "target", "answer"]) {
      if (typeof row[field] !== "string") throw new FileFormatError(where, `field "${field}": expected a string`);
    }
    if (needImputationFields) {
      for (const field of ["q2", "entity"]) {
        if (typeof row[field] !== "string") throw new FileFormatError(where, `field "${field}": expected a string (imputation needs it)`);
      }
      if (typeof (row.d1 as { text?: unknown } | undefined)?.text !== "string") {
        throw new FileFormatError(where, 'field "d1.text": expected a string (imputation needs D1)');
      }
    }
    rows.push(row as CurateRow);
  });
  if (rows.length < 2) throw new FileFormatError(file, `expected at least 2 rows to split into two slices, found ${rows.length}`);
  return rows;
}

/** Seeded split: slice 0 gets round(ratio × n) rows (at least 1), slice 1 the rest (at least 1). */
export function splitSlices<T>(rows: readonly T[], ratio: number, seed: number): { slice0: T[]; slice1: T[]; slice1Index: number[] } {
  const order = shuffled(rows.map((_, i) => i), seededRandom(seed));
  const n0 = Math.min(rows.length - 1, Math.max(1, Math.round(ratio * rows.length)));
  const in0 = new Set(order.slice(0, n0));
  const slice1Index = rows.map((_, i) => i).filter((i) => !in0.has(i));
  return { slice0: rows.filter((_, i) => in0.has(i)), slice1: slice1Index.map((i) => rows[i]!), slice1Index };
}

export interface CurateDeps {
  answerLlm: LlmBackend;
  /** Who rebuilds Q1 in imputation (the curation model, or the synth LLM). */
  imputeLlm?: LlmBackend;
  prompts: PromptLibrary;
  config: CurateConfig;
  /** The chain's final-answer marker (see mhqa.answerMarker). */
  marker: string;
}

export async function processCurateItem(ctx: ItemContext<{ row: CurateRow }>, deps: CurateDeps): Promise<CurateRow> {
  const { row } = ctx.input;
  const { config } = deps;
  const seed = hashSeed(`${config.seed}:${ctx.id}`);
  let answeredAt = 0;
  let last = "";
  for (let attempt = 1; attempt <= config.k && !answeredAt; attempt++) {
    const text = await ctx.step(`answer_${attempt}`, async () => {
      const r = await deps.answerLlm.complete({
        messages: [{ role: "user", content: row.input }],
        temperature: config.temperature,
        maxTokens: config.max_tokens,
        seed: hashSeed(`${seed}:${attempt}`),
        signal: ctx.signal,
      });
      return { value: r.text, usage: r.usage };
    });
    last = extractFinalAnswer(text, deps.marker);
    if (softExactMatch(last, row.answer)) answeredAt = attempt;
  }
  if (!answeredAt) throw new Rejection("never_answered", `gold "${row.answer}", last answer "${last.slice(0, 200)}"`);

  const curation: Record<string, unknown> = { answered_at: answeredAt };
  if (config.imputation.enabled) {
    const llm = deps.imputeLlm ?? deps.answerLlm;
    const d1 = row.d1!.text;
    const q1 = await ctx.step("impute_q1", async () => {
      const r = await llm.complete({
        messages: deps.prompts.render("curate-impute-q1", { d1, question: row.question ?? row.input, q2: row.q2!, entity: row.entity! }),
        temperature: 0, maxTokens: config.max_tokens, signal: ctx.signal,
      });
      return { value: r.text.trim(), usage: r.usage };
    });
    const answer = await ctx.step("impute_answer", async () => {
      const r = await llm.complete({
        messages: deps.prompts.render("curate-impute-answer", { d1, q1 }),
        temperature: 0, maxTokens: config.max_tokens, signal: ctx.signal,
      });
      return { value: r.text.trim(), usage: r.usage };
    });
    if (!softExactMatch(answer, row.entity!)) {
      throw new Rejection("imputation_changed_answer", `rebuilt Q1 "${q1}" answered "${answer}", expected "${row.entity}"`);
    }
    curation.q1_imputed = q1;
  }
  return { ...row, curation };
}

export function checkCuratePrompts(prompts: PromptLibrary): void {
  prompts.check("curate-impute-q1", ["d1", "question", "q2", "entity"], ["entity"]);
  prompts.check("curate-impute-answer", ["d1", "q1"], ["q1"]);
}
