// Relation extraction data: each document is cut into token windows with overlap; for each
// window the LLM writes a summary, then a JSON graph {section_description, list_of_entities,
// relations[{description, source_entities, target_entities, strength?}]} that is validated
// against that schema, repaired where the fault is mechanical, rejected with a reason otherwise,
// and exported as train-ready input/target pairs.
import { z } from "zod";
import type { LlmBackend } from "../llm/types.js";
import { completeStructured, StructuredOutputError } from "../llm/structured.js";
import type { RepairRule } from "../llm/json-repair.js";
import type { LlmConfig, RelationsConfig } from "./config.js";
import type { PromptLibrary } from "./prompts.js";
import { Rejection, type ItemContext } from "./job-runner.js";
import { hashSeed } from "../util/rng.js";

const name = z.string().trim().min(1);

export const relationSchema = z.strictObject({
  description: name,
  source_entities: z.array(name).min(1),
  target_entities: z.array(name).min(1),
  strength: z.enum(["strong", "moderate", "weak"]).optional(),
});

export const extractionSchema = z.strictObject({
  section_description: name,
  list_of_entities: z.array(name),
  relations: z.array(relationSchema),
});

export type Extraction = z.infer<typeof extractionSchema>;

export interface WindowItem {
  docId: string;
  title: string;
  window: number;
  windows: number;
  text: string;
}

export interface RelationsExample {
  input: string;
  target: string;
  task: "extraction" | "summary";
  doc_id: string;
  title: string;
  window: number;
}

export interface RelationsOutput {
  summary: string;
  extraction: Extraction;
  repairs: string[];
}

export const relationsRejections = ["empty_summary", "invalid_json", "schema_mismatch", "no_relations"] as const;

export function checkRelationsPrompts(prompts: PromptLibrary): void {
  prompts.check("relations-summary", ["title", "text"], ["text"]);
  prompts.check("relations-extract", ["title", "text", "summary"], ["text"]);
  prompts.check("relations-train-input", ["title", "text"], ["text"]);
  prompts.check("relations-summary-train-input", ["title", "text"], ["text"]);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * The relation-specific repairs, applied to parsed JSON before the schema check:
 *   truncated_array   output cut off inside the relations list: the incomplete last relation goes
 *   strength_case     "Strong" → "strong"
 *   missing_entities  entities a relation names that list_of_entities lacks are added to it
 */
export function fixExtraction(value: unknown, context: { repairs: readonly RepairRule[] }): { value: unknown; repairs: string[] } {
  const repairs: string[] = [];
  if (!isObject(value)) return { value, repairs };
  const out = { ...value };
  if (Array.isArray(out.relations)) {
    let relations = out.relations.map((r) => {
      if (isObject(r) && typeof r.strength === "string" && r.strength !== r.strength.toLowerCase().trim() &&
          ["strong", "moderate", "weak"].includes(r.strength.toLowerCase().trim())) {
        repairs.push("strength_case");
        return { ...r, strength: r.strength.toLowerCase().trim() };
      }
      return r;
    });
    if (context.repairs.includes("truncated") && relations.length > 0 && !relationSchema.safeParse(relations.at(-1)).success) {
      relations = relations.slice(0, -1);
      repairs.push("truncated_array");
    }
    out.relations = relations;
    if (Array.isArray(out.list_of_entities) && out.list_of_entities.every((e) => typeof e === "string")) {
      const listed = new Set((out.list_of_entities as string[]).map((e) => e.trim().toLowerCase()));
      const added: string[] = [];
      for (const r of relations) {
        if (!isObject(r)) continue;
        for (const e of [...(Array.isArray(r.source_entities) ? r.source_entities : []), ...(Array.isArray(r.target_entities) ? r.target_entities : [])]) {
          if (typeof e === "string" && e.trim() && !listed.has(e.trim().toLowerCase())) {
            listed.add(e.trim().toLowerCase());
            added.push(e.trim());
          }
        }
      }
      if (added.length) {
        out.list_of_entities = [...(out.list_of_entities as string[]), ...added];
        repairs.push("missing_entities");
      }
    }
  }
  return { value: out, repairs: [...new Set(repairs)] };
}

export interface RelationsDeps {
  llm: LlmBackend;
  prompts: PromptLibrary;
  config: RelationsConfig;
  llmConfig: LlmConfig;
}

export async function processRelationsItem(ctx: ItemContext<WindowItem>, deps: RelationsDeps): Promise<RelationsOutput> {
  const { llmConfig, prompts } = deps;
  const itemSeed = hashSeed(`${deps.config.seed}:${ctx.id}`);
  const sampling = {
    temperature: llmConfig.temperature,
    ...(llmConfig.top_p !== undefined ? { topP: llmConfig.top_p } : {}),
    maxTokens: llmConfig.max_tokens,
    signal: ctx.signal,
  };
  const { title, text } = ctx.input;

  const summary = await ctx.step("summary", async () => {
    const r = await deps.llm.complete({ ...sampling, messages: prompts.render("relations-summary", { title, text }), seed: hashSeed(`${itemSeed}:summary`) });
    return { value: r.text.trim(), usage: r.usage };
  });
  if (!summary) throw new Rejection("empty_summary");

  const extracted = await ctx.step("extract", async () => {
    try {
      const r = await completeStructured(deps.llm, {
        ...sampling, messages: prompts.render("relations-extract", { title, text, summary }), seed: hashSeed(`${itemSeed}:extract`),
      }, { name: "relations", schema: extractionSchema, fix: fixExtraction, repairRetries: llmConfig.repair_retries });
      return { value: { extraction: r.value, repairs: r.repairs }, usage: r.usage };
    } catch (e) {
      if (e instanceof StructuredOutputError) {
        const rejection = new Rejection(e.reason, `extract: ${e.message}`);
        rejection.usage = e.usage;
        throw rejection;
      }
      throw e;
    }
  });
  if (extracted.extraction.relations.length === 0 && !deps.config.keep_empty) {
    throw new Rejection("no_relations", undefined, { summary, ...extracted });
  }
  return { summary, ...extracted };
}

/** The train-ready rows of one kept window. */
export function relationsExamples(prompts: PromptLibrary, item: WindowItem, output: RelationsOutput, withSummaries: boolean): RelationsExample[] {
  const base = { doc_id: item.docId, title: item.title, window: item.window };
  const rows: RelationsExample[] = [{
    input: prompts.renderText("relations-train-input", { title: item.title, text: item.text }).trim(),
    target: JSON.stringify(output.extraction),
    task: "extraction",
    ...base,
  }];
  if (withSummaries) {
    rows.push({
      input: prompts.renderText("relations-summary-train-input", { title: item.title, text: item.text }).trim(),
      target: output.summary,
      task: "summary",
      ...base,
    });
  }
  return rows;
}
