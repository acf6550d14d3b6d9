// Multi-hop question answering data, Source2Synth's recipe (Lupidi et al. 2024, arXiv 2409.08239):
//   1. D1, a seed document; the LLM picks an entity E in it and writes Q1 whose answer is E.
//   2. D2, a document related to D1 (linked from it) that mentions E.
//   3. The LLM writes Q2 about E from D2; its answer A is a span of D2.
//   4. The LLM merges Q1 into Q2 in place of E: the two-hop question Q with answer A.
//   5. The training target is the reasoning chain "split Q into Q1 and Q2 → answer Q1 →
//      substitute → answer Q2" (prompts/synth/mhqa-chain.md).
// Every check that fails rejects the item with a named reason, counted in the report.
import { z } from "zod";
import type { DocumentSource, SourceDocument } from "../sources/document.js";
import { mentions, replaceMention } from "../sources/text-match.js";
import type { LlmBackend } from "../llm/types.js";
import { completeStructured, StructuredOutputError } from "../llm/structured.js";
import type { LlmConfig, MhqaConfig } from "./config.js";
import type { EvalSetIndex } from "./contamination.js";
import type { PromptLibrary } from "./prompts.js";
import { Rejection, type ItemContext } from "./job-runner.js";
import { normalizeAnswer } from "./answer-match.js";
import { hashSeed } from "../util/rng.js";

export const entityQ1Schema = z.strictObject({
  entity: z.string().trim().min(1),
  question: z.string().trim().min(1),
});
export const q2Schema = z.strictObject({
  question: z.string().trim().min(1),
  answer: z.string().trim().min(1),
});
export const mergeSchema = z.strictObject({
  question: z.string().trim().min(1),
});

export interface MhqaSeed {
  docId: string;
}

export interface DocumentRef {
  id: string;
  title: string;
  url?: string;
  text: string;
}

/** One generated example: train-ready input/target plus everything curation and audits need. */
export interface MhqaExample {
  input: string;
  target: string;
  question: string;
  answer: string;
  q1: string;
  q2: string;
  entity: string;
  d1: DocumentRef;
  d2: DocumentRef;
}

export interface MhqaDeps {
  source: DocumentSource;
  llm: LlmBackend;
  prompts: PromptLibrary;
  config: MhqaConfig;
  llmConfig: LlmConfig;
  evalSet?: EvalSetIndex;
}

/** Every reason an MHQA item can be rejected for (the report counts them by these names). */
export const mhqaRejections = [
  "d1_missing", "d1_too_short", "invalid_json", "schema_mismatch", "entity_not_in_d1", "entity_is_d1_title",
  "q1_contains_entity", "contaminated", "no_d2_mentions_entity", "q2_missing_entity", "answer_not_in_d2",
  "answer_is_entity", "q2_contains_answer", "merged_contains_entity", "merged_contains_answer",
] as const;

/** Fails early, naming the file, when an edited prompt uses a placeholder the pipeline lacks. */
export function checkMhqaPrompts(prompts: PromptLibrary): void {
  prompts.check("mhqa-entity-q1", ["title", "document"], ["document"]);
  prompts.check("mhqa-q2", ["title", "document", "entity"], ["document", "entity"]);
  prompts.check("mhqa-merge", ["q1", "q2", "entity"], ["q1", "q2"]);
  prompts.check("mhqa-chain", ["question", "q1", "q2", "q2_with_blank", "entity", "answer"], ["answer"]);
  answerMarker(prompts);
}

/**
 * The text that precedes the final answer in the chain ("So the answer is:"), taken from the
 * chain template's last line with {{answer}}, so an edited template still parses in curation.
 */
export function answerMarker(prompts: PromptLibrary): string {
  const t = prompts.get("mhqa-chain");
  const lines = t.user.split(/\r?\n/).filter((l) => /\{\{\s*answer\s*\}\}/.test(l));
  const marker = lines.at(-1)?.split(/\{\{\s*answer\s*\}\}/)[0]?.trim();
  if (!marker) throw new Error(`${t.file}: the last line with {{answer}} must start with a marker such as "So the answer is:"`);
  return marker;
}

/** The final answer of a generated chain: what follows the last marker, else the whole text. */
export function extractFinalAnswer(text: string, marker: string): string {
  const at = text.lastIndexOf(marker);
  const tail = at >= 0 ? text.slice(at + marker.length) : text;
  return tail.split(/\r?\n/).find((l) => l.trim())?.trim() ?? "";
}

export function reasoningChain(prompts: PromptLibrary, p: { question: string; q1: string; q2: string; entity: string; answer: string }): string {
  return prompts.renderText("mhqa-chain", {
    question: p.question, q1: p.q1, q2: p.q2, entity: p.entity, answer: p.answer,
    q2_with_blank: replaceMention(p.q2, p.entity, "[answer to Q1]"),
  }).trim();
}

export function renderInput(template: string, variables: Record<string, string>): string {
  return template.replace(/\{([a-zA-Z_][a-zA-Z0-9_]*)\}/g, (whole, key: string) => {
    const value = variables[key];
    if (value === undefined) throw new Error(`mhqa.input_template: unknown placeholder ${whole}; use ${Object.keys(variables).map((k) => `{${k}}`).join(", ")}`);
    return value;
  });
}

function ref(doc: SourceDocument): DocumentRef {
  return { id: doc.id, title: doc.title, ...(doc.url ? { url: doc.url } : {}), text: doc.text };
}

function sameAnswer(a: string, b: string): boolean {
  return normalizeAnswer(a) === normalizeAnswer(b);
}

export async function processMhqaItem(ctx: ItemContext<MhqaSeed>, deps: MhqaDeps): Promise<MhqaExample> {
  const { config, prompts } = deps;
  const itemSeed = hashSeed(`${config.seed}:${ctx.id}`);

  const structured = async <T>(step: string, name: Parameters<PromptLibrary["render"]>[0], variables: Record<string, string>, schema: z.ZodType<T>) =>
    ctx.step(step, async () => {
      try {
        const r = await completeStructured(deps.llm, {
          messages: prompts.render(name, variables),
          temperature: deps.llmConfig.temperature,
          ...(deps.llmConfig.top_p !== undefined ? { topP: deps.llmConfig.top_p } : {}),
          maxTokens: deps.llmConfig.max_tokens,
          seed: hashSeed(`${itemSeed}:${step}`),
          signal: ctx.signal,
        }, { name: step, schema, repairRetries: deps.llmConfig.repair_retries });
        return { value: r.value, usage: r.usage };
      } catch (e) {
        if (e instanceof StructuredOutputError) {
          const rejection = new Rejection(e.reason, `${step}: ${e.message}`);
          rejection.usage = e.usage;
          throw rejection;
        }
        throw e;
      }
    });

  const d1 = await ctx.step("d1", async () => ({ value: (await deps.source.get(ctx.input.docId)) ?? null }));
  if (!d1) throw new Rejection("d1_missing", ctx.input.docId);
  if (d1.text.length < config.min_chars) throw new Rejection("d1_too_short", `${d1.title}: ${d1.text.length} characters`);

  const eq = await structured("entity_q1", "mhqa-entity-q1", { title: d1.title, document: d1.text }, entityQ1Schema);
  if (!mentions(d1.text, eq.entity)) throw new Rejection("entity_not_in_d1", eq.entity);
  if (sameAnswer(eq.entity, d1.title)) throw new Rejection("entity_is_d1_title", eq.entity);
  if (mentions(eq.question, eq.entity)) throw new Rejection("q1_contains_entity", eq.question);
  if (deps.evalSet?.contains(eq.entity)) throw new Rejection("contaminated", eq.entity);

  const d2 = await ctx.step("d2", async () => ({
    value: (await deps.source.findRelated(d1, { mention: eq.entity, maxCandidates: config.max_candidates, seed: itemSeed })) ?? null,
  }));
  if (!d2) throw new Rejection("no_d2_mentions_entity", `${d1.title} → ${eq.entity}`);

  const q2 = await structured("q2", "mhqa-q2", { title: d2.title, document: d2.text, entity: eq.entity }, q2Schema);
  if (!mentions(q2.question, eq.entity)) throw new Rejection("q2_missing_entity", q2.question);
  if (sameAnswer(q2.answer, eq.entity)) throw new Rejection("answer_is_entity", q2.answer);
  if (!mentions(d2.text, q2.answer)) throw new Rejection("answer_not_in_d2", q2.answer);
  if (mentions(q2.question, q2.answer)) throw new Rejection("q2_contains_answer", q2.question);

  const merged = await structured("merge", "mhqa-merge", { q1: eq.question, q2: q2.question, entity: eq.entity }, mergeSchema);
  if (mentions(merged.question, eq.entity)) throw new Rejection("merged_contains_entity", merged.question);
  if (mentions(merged.question, q2.answer)) throw new Rejection("merged_contains_answer", merged.question);

  const parts = { question: merged.question, q1: eq.question, q2: q2.question, entity: eq.entity, answer: q2.answer };
  return {
    input: renderInput(config.input_template, { question: merged.question, d1_title: d1.title, d2_title: d2.title }),
    target: reasoningChain(prompts, parts),
    ...parts,
    d1: ref(d1),
    d2: ref(d2),
  };
}
