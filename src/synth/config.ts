// The synth config (YAML): where documents come from, which LLMs write the data, and the
// settings of each task (mhqa, relations, curate). One zod schema is the single definition: types
// by z.infer, help text by .describe(), unknown keys are errors that name the key.
import { readFileSync } from "node:fs";
import path from "node:path";
import { z } from "zod";
import YAML from "yaml";
import { FileFormatError, validate } from "../models/json-file.js";

const endpointSchema = z.strictObject({
  url: z.string().url().describe("Base URL with the version prefix, e.g. http://127.0.0.1:8080/v1"),
  model: z.string().default("default").describe("Model name sent in each request"),
  concurrency: z.number().int().positive().default(4).describe("Requests in flight on this endpoint at most"),
  api_key_env: z.string().optional().describe("Environment variable holding the API key (sent as a Bearer token)"),
  timeout_s: z.number().positive().default(120).describe("Seconds to wait for one completion"),
  structured_output: z.enum(["auto", "json_schema", "json_object", "none"]).default("auto")
    .describe("How to ask for schema-constrained JSON; auto drops to none if the server refuses"),
});

const llmSchema = z.strictObject({
  endpoints: z.array(endpointSchema).default([]).describe("OpenAI-compatible endpoints, used together"),
  local: z.strictObject({
    model: z.string().describe("Model folder for the local engine (no HTTP)"),
    adapter: z.string().optional().describe("LoRA adapter folder"),
  }).optional().describe("The local engine instead of endpoints"),
  max_attempts: z.number().int().positive().default(5).describe("Attempts per completion over all endpoints"),
  temperature: z.number().min(0).max(2).default(0.7),
  top_p: z.number().gt(0).max(1).optional(),
  max_tokens: z.number().int().positive().default(1024).describe("Tokens per completion at most"),
  repair_retries: z.number().int().min(0).default(1).describe("Corrective round trips after invalid JSON"),
}).describe("The LLMs that write the data");

export type LlmConfig = z.infer<typeof llmSchema>;
export type EndpointConfig = z.infer<typeof endpointSchema>;

const sourceSchema = z.discriminatedUnion("type", [
  z.strictObject({
    type: z.literal("wikipedia"),
    api_url: z.string().url().default("https://en.wikipedia.org/w/api.php").describe("MediaWiki api.php URL"),
    user_agent: z.string().default("s2s-train-synth/0.1 (https://www.npmjs.com/package/s2s-train)")
      .describe("User-Agent: Wikimedia asks for a tool name and a way to contact you"),
    maxlag: z.number().int().positive().default(5).describe("Replication lag (s) above which the API should refuse us"),
    concurrency: z.number().int().positive().default(2).describe("Requests in flight at most"),
    max_retries: z.number().int().min(0).default(5),
    timeout_s: z.number().positive().default(30),
    cache_dir: z.string().optional().describe("On-disk cache (default: $XDG_CACHE_HOME/s2s-train/wikipedia)"),
    cache_ttl_hours: z.number().positive().default(168),
    max_chars: z.number().int().positive().default(8000).describe("Characters of an article kept"),
  }),
  z.strictObject({
    type: z.literal("local"),
    path: z.string().describe("Folder of .txt/.md files, one such file, or a .jsonl file"),
    text_field: z.string().default("text"),
    title_field: z.string().default("title"),
    id_field: z.string().default("id"),
    links_field: z.string().default("links").describe("JSONL field listing related rows (ids or titles)"),
    max_chars: z.number().int().positive().default(8000),
  }),
]).describe("Where the documents come from");

export type SourceConfig = z.infer<typeof sourceSchema>;

const mhqaSchema = z.strictObject({
  count: z.number().int().positive().default(100).describe("Seed articles (D1) to try"),
  seed: z.number().int().default(1),
  min_chars: z.number().int().min(0).default(300).describe("Shorter D1 articles are rejected (d1_too_short)"),
  max_candidates: z.number().int().positive().default(40).describe("Linked articles examined when looking for D2"),
  input_template: z.string().default("{question}").describe("Training input; placeholders {question}, {d1_title}, {d2_title}"),
  contamination: z.strictObject({
    eval_file: z.string().describe("Evaluation set (JSONL or JSON array); questions whose entity appears in it are dropped"),
    fields: z.array(z.string()).optional().describe("Fields to search (default: every string field)"),
  }).optional(),
}).describe("Multi-hop question answering (Source2Synth)");

const relationsSchema = z.strictObject({
  count: z.number().int().positive().optional().describe("Documents to use (default: all local ones; required for wikipedia)"),
  seed: z.number().int().default(1),
  window_tokens: z.number().int().positive().default(1024),
  overlap_tokens: z.number().int().min(0).default(200),
  tokenizer: z.string().optional().describe("Model folder whose tokenizer.json counts tokens (default: words)"),
  keep_empty: z.boolean().default(false).describe("Keep windows where no relation was found"),
  export_summaries: z.boolean().default(false).describe("Also export window → summary pairs"),
}).describe("Entities and relations as JSON, per token window");

const curateSchema = z.strictObject({
  input: z.string().optional().describe("Generated JSONL to curate (default: <out>/synth/data.jsonl)"),
  slice0_ratio: z.number().gt(0).lt(1).default(0.5).describe("Share used to fine-tune the curation model"),
  seed: z.number().int().default(1),
  k: z.number().int().positive().default(3).describe("Answers per question; dropped when none is right"),
  temperature: z.number().min(0).max(2).default(0.7),
  max_tokens: z.number().int().positive().default(256),
  base_model: z.string().optional().describe("Model folder fine-tuned on slice 0"),
  train: z.record(z.string(), z.unknown()).default({})
    .describe("The slice-0 fine-tune: a training config's model, data and train sections (the paths are set by curation)"),
  answer_with: llmSchema.partial().optional()
    .describe("Skip the fine-tune and answer with this model (for example `s2s-train serve` on a model tuned on slice0.jsonl)"),
  imputation: z.strictObject({
    enabled: z.boolean().default(false),
    model: z.enum(["answer", "generator"]).default("answer").describe("Who rebuilds Q1: the curation model or the synth LLM"),
  }).default({ enabled: false, model: "answer" }),
  include_slice0: z.boolean().default(false).describe("Also put slice 0 into the curated set"),
}).describe("Curation by answerability (Source2Synth)");

const jobSchema = z.strictObject({
  concurrency: z.number().int().positive().optional().describe("Items in flight (default: the endpoints' total concurrency)"),
  max_item_attempts: z.number().int().positive().default(3).describe("Runs of an item that fails with an error before it is given up"),
}).describe("How the job runs");

export const synthConfigSchema = z.strictObject({
  source: sourceSchema.optional(),
  llm: llmSchema.default(() => llmSchema.parse({})),
  prompts_dir: z.string().optional().describe("Folder of prompt files overriding the bundled ones (same names)"),
  mhqa: mhqaSchema.default(() => mhqaSchema.parse({})),
  relations: relationsSchema.default(() => relationsSchema.parse({})),
  curate: curateSchema.default(() => curateSchema.parse({})),
  job: jobSchema.default(() => jobSchema.parse({})),
});

export type SynthConfig = z.infer<typeof synthConfigSchema>;
export type MhqaConfig = z.infer<typeof mhqaSchema>;
export type RelationsConfig = z.infer<typeof relationsSchema>;
export type CurateConfig = z.infer<typeof curateSchema>;

/** Paths in a config file are relative to the file; these are the keys holding paths. */
export function resolveSynthPaths(config: SynthConfig, baseDir: string): SynthConfig {
  const r = (p: string | undefined) => (p === undefined ? undefined : path.resolve(baseDir, p));
  const out = structuredClone(config);
  if (out.source?.type === "local") out.source.path = r(out.source.path)!;
  if (out.source?.type === "wikipedia" && out.source.cache_dir) out.source.cache_dir = r(out.source.cache_dir);
  if (out.prompts_dir) out.prompts_dir = r(out.prompts_dir);
  if (out.mhqa.contamination) out.mhqa.contamination.eval_file = r(out.mhqa.contamination.eval_file)!;
  if (out.relations.tokenizer) out.relations.tokenizer = r(out.relations.tokenizer);
  if (out.curate.input) out.curate.input = r(out.curate.input);
  if (out.curate.base_model) out.curate.base_model = r(out.curate.base_model);
  if (out.llm.local) {
    out.llm.local.model = r(out.llm.local.model)!;
    if (out.llm.local.adapter) out.llm.local.adapter = r(out.llm.local.adapter);
  }
  return out;
}

/** Reads a YAML config (or none) and validates it; errors name the file and the field. */
export function loadSynthConfig(file: string | undefined, overrides: Record<string, unknown> = {}): SynthConfig {
  let raw: unknown = {};
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch {
      throw new FileFormatError(file, "file not found");
    }
    try {
      raw = YAML.parse(text) ?? {};
    } catch (e) {
      throw new FileFormatError(file, `is not valid YAML (${(e as Error).message})`);
    }
  }
  const merged = deepMerge(raw, overrides);
  const config = validate(synthConfigSchema, merged, file ?? "synth config");
  return resolveSynthPaths(config, file ? path.dirname(path.resolve(file)) : process.cwd());
}

/** Objects merge key by key; anything else in `b` replaces `a`. */
export function deepMerge(a: unknown, b: unknown): unknown {
  if (isPlainObject(a) && isPlainObject(b)) {
    const out: Record<string, unknown> = { ...a };
    for (const [k, v] of Object.entries(b)) out[k] = k in out ? deepMerge(out[k], v) : v;
    return out;
  }
  return b === undefined ? a : b;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
