// The pipeline config (YAML): one file for documents → synthetic data → curation → training →
// evaluation. It adds no settings of its own to the stages: `synth` is a synth config (the schema
// of src/synth/config.ts), `train` is a training config's sections (model, data, train; checked by
// resolveConfig against the training schema) without the two paths the pipeline sets
// (data.train_file and output.dir), and `eval` holds what `s2s-train eval` takes.
import { readFileSync } from "node:fs";
import path from "node:path";
import { z } from "zod";
import YAML from "yaml";
import { FileFormatError, validate } from "../models/json-file.js";
import { resolveSynthPaths, synthConfigSchema, type SynthConfig } from "./config.js";
import { DEFAULT_EVAL_METRICS } from "../eval/run-eval.js";

const evalSchema = z.strictObject({
  data: z.string().describe("Held-out JSON, JSONL or CSV examples to score the trained model on (relative to the config file)"),
  metrics: z.string().default(DEFAULT_EVAL_METRICS).describe("Comma-separated metric names, as `s2s-train eval --metrics`"),
  input_field: z.string().default("input"),
  target_field: z.string().default("target"),
  batch_size: z.number().int().positive().default(8).describe("Prompts generated together"),
  max_samples: z.number().int().positive().optional().describe("Evaluate only the first N examples"),
  max_new_tokens: z.number().int().positive().optional().describe("Tokens generated at most per example (default 128)"),
}).describe("Evaluation of the trained model (`s2s-train eval`), into <run>/eval");

export const pipelineConfigSchema = z.strictObject({
  task: z.enum(["mhqa", "relations"]).default("mhqa").describe("What synth makes: multi-hop QA or relation-extraction pairs"),
  run_dir: z.string().optional().describe("The run folder (relative to the config file; default: runs/<config file name>)"),
  curate: z.boolean().optional()
    .describe("Curate by answerability before training (default: true for mhqa; relations rows have no answer to check)"),
  synth: z.record(z.string(), z.unknown()).default({}).describe("A synth config: source, llm, prompts_dir, mhqa/relations/curate, job"),
  train: z.record(z.string(), z.unknown())
    .describe("A training config's model, data and train sections; data.train_file and output.dir are set by the pipeline"),
  eval: evalSchema.optional(),
});

export type PipelineEvalConfig = z.infer<typeof evalSchema>;

export interface PipelineConfig {
  task: "mhqa" | "relations";
  curate: boolean;
  runDir: string;
  synth: SynthConfig;
  /** The training sections as written; resolved (paths relative to baseDir) by the pipeline. */
  train: Record<string, unknown>;
  eval?: PipelineEvalConfig;
  /** The folder relative paths in `train` and `eval` are relative to. */
  baseDir: string;
  /** Where the config came from, for messages. */
  source: string;
}

/**
 * Validates a pipeline config given as an object (from YAML or TypeScript). `source` names it in
 * errors; relative paths are relative to `baseDir`.
 */
export function parsePipelineConfig(raw: unknown, source: string, baseDir: string, defaultName = "pipeline"): PipelineConfig {
  const top = validate(pipelineConfigSchema, raw ?? {}, source);
  const synth = resolveSynthPaths(validate(synthConfigSchema, top.synth, `${source} (section synth)`), baseDir);
  const curate = top.curate ?? top.task === "mhqa";
  if (curate && top.task === "relations") {
    throw new FileFormatError(source, "curate: curation checks answers, and relations rows have none; set curate: false (or leave it out) for task relations");
  }
  for (const key of Object.keys(top.train)) {
    if (!["model", "data", "train"].includes(key)) {
      throw new FileFormatError(source, `train.${key}: expected the sections of a training config (model, data, train); the run folder is run_dir`);
    }
  }
  const data = top.train.data as Record<string, unknown> | undefined;
  if (data?.train_file !== undefined) {
    throw new FileFormatError(source, "train.data.train_file: set by the pipeline (the synth or curated data); leave it out");
  }
  if (synth.curate.input !== undefined) {
    throw new FileFormatError(source, "synth.curate.input: set by the pipeline (the synth stage's data.jsonl); leave it out");
  }
  const runDir = path.resolve(baseDir, top.run_dir ?? path.join("runs", defaultName));
  const evalConfig = top.eval ? { ...top.eval, data: path.resolve(baseDir, top.eval.data) } : undefined;
  return { task: top.task, curate, runDir, synth, train: top.train, ...(evalConfig ? { eval: evalConfig } : {}), baseDir, source };
}

/** Reads and validates a pipeline YAML file; errors name the file and the field. */
export function loadPipelineConfig(file: string): PipelineConfig {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    throw new FileFormatError(file, "file not found");
  }
  let raw: unknown;
  try {
    raw = YAML.parse(text) ?? {};
  } catch (e) {
    throw new FileFormatError(file, `is not valid YAML (${(e as Error).message})`);
  }
  const name = path.basename(file).replace(/\.(ya?ml)$/i, "");
  return parsePipelineConfig(raw, file, path.dirname(path.resolve(file)), name);
}
