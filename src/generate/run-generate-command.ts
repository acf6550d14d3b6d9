// `s2s-train generate`: prompts from --prompt or a JSONL file, through model.generate in batches,
// printed or written as JSONL rows {input, output, tokens, score} (atomically: the whole file or
// none); --compare runs several settings side by side; --interactive is a session.
import { writeJsonlAtomic } from "../io/atomic-write.js";
import type { Model } from "../models/model.js";
import { readCompareFile, renderComparison, type CompareRun } from "./compare.js";
import { runInteractiveSession } from "./interactive.js";
import { loadModelForGeneration, type GenerationModelOptions } from "./load-for-generation.js";
import type { GenerateOptions, GenerateResult, GeneratedSequence } from "./options.js";
import { readPromptsFile } from "./prompts-file.js";
import { GenerateOptionsError } from "./resolve.js";

export interface GenerateCommandOptions extends GenerationModelOptions {
  /** Prompt texts (one or more). */
  prompts?: string[];
  /** A JSONL file of prompts. */
  input?: string;
  /** The field of each input row holding the prompt (default "input"). */
  inputField?: string;
  /** Where the rows go (JSONL, written atomically); without it, texts are printed. */
  output?: string;
  /** Prompts per model.generate call (default 8). */
  batchSize?: number;
  /** Generation settings (defaults: generation_config.json). */
  generation?: GenerateOptions;
  /** A YAML list of named settings to compare (each over `generation`). */
  compare?: string;
  interactive?: boolean;
  /** Where results and progress are printed (default process.stdout / process.stderr). */
  stdout?: NodeJS.WritableStream & { columns?: number };
  stderr?: NodeJS.WritableStream;
}

/** One output row: the prompt, one generated text, its token count and score. */
export interface GenerateRow {
  input: string;
  output: string;
  tokens: number;
  score: number;
  /** With --compare: the setting's name. */
  setting?: string;
}

function check(options: GenerateCommandOptions): void {
  const sources = [options.prompts?.length ? "--prompt" : "", options.input ? "--input" : "", options.interactive ? "--interactive" : ""]
    .filter(Boolean);
  if (sources.length !== 1) {
    throw new GenerateOptionsError(sources.length === 0
      ? "generate: give the prompts with --prompt TEXT, --input FILE.jsonl or --interactive"
      : `generate: ${sources.join(" and ")} cannot be combined; choose one`);
  }
  if (options.input && !options.output && !options.compare) {
    throw new GenerateOptionsError("generate: --input needs --output FILE.jsonl (where the generated rows go)");
  }
  if (options.interactive && (options.output || options.compare)) {
    throw new GenerateOptionsError("generate: --interactive prints as it goes; --output and --compare do not apply");
  }
  if (options.batchSize !== undefined && (!Number.isInteger(options.batchSize) || options.batchSize < 1)) {
    throw new GenerateOptionsError(`generate: --batch-size: expected an integer >= 1, got ${options.batchSize}`);
  }
}

/** Generates for every prompt, batchSize prompts per call; sequences keep the prompts' order. */
async function generateAll(
  model: Model, prompts: string[], options: GenerateOptions, batchSize: number, progress: (done: number) => void,
): Promise<GenerateResult> {
  const sequences: GeneratedSequence[] = [];
  const promptTokenIds: number[][] = [];
  const usage = { promptTokens: 0, completionTokens: 0 };
  const timings = { prefillMs: 0, decodeMs: 0, steps: 0, replayedSteps: 0 };
  for (let start = 0; start < prompts.length; start += batchSize) {
    const r = await model.generate(prompts.slice(start, start + batchSize), options);
    for (const s of r.sequences) sequences.push({ ...s, inputIndex: s.inputIndex + start });
    promptTokenIds.push(...r.promptTokenIds);
    usage.promptTokens += r.usage.promptTokens;
    usage.completionTokens += r.usage.completionTokens;
    timings.prefillMs += r.timings.prefillMs;
    timings.decodeMs += r.timings.decodeMs;
    timings.steps += r.timings.steps;
    timings.replayedSteps += r.timings.replayedSteps;
    progress(Math.min(start + batchSize, prompts.length));
  }
  return { sequences, promptTokenIds, usage, timings };
}

function rows(prompts: string[], result: GenerateResult, setting?: string): GenerateRow[] {
  return result.sequences.map((s) => ({
    input: prompts[s.inputIndex]!,
    output: s.text ?? s.tokenIds.join(" "),
    tokens: s.tokenIds.length,
    score: s.score,
    ...(setting !== undefined ? { setting } : {}),
  }));
}

export async function runGenerateCommand(options: GenerateCommandOptions): Promise<GenerateRow[]> {
  check(options);
  const stdout = options.stdout ?? process.stdout;
  const stderr = options.stderr ?? process.stderr;
  const settings = options.compare ? readCompareFile(options.compare) : undefined;
  const prompts = options.input ? readPromptsFile(options.input, options.inputField) : options.prompts ?? [];
  const model = await loadModelForGeneration(options);
  const generation = options.generation ?? {};

  if (options.interactive) {
    await runInteractiveSession({ model, options: generation, input: process.stdin, output: stdout, signals: process });
    return [];
  }

  const batchSize = options.batchSize ?? 8;
  const started = performance.now();
  let tokens = 0;
  const progress = (label: string) => (done: number) => {
    if (prompts.length > batchSize) stderr.write(`${label}${done}/${prompts.length} prompts\n`);
  };
  let out: GenerateRow[];
  if (settings) {
    const runs: CompareRun[] = [];
    for (const s of settings) {
      const result = await generateAll(model, prompts, { ...generation, ...s.options }, batchSize, progress(`${s.name}: `));
      tokens += result.usage.completionTokens;
      runs.push({ name: s.name, result });
    }
    stdout.write(renderComparison(prompts, runs, stdout.columns ?? (Number(process.env.COLUMNS) || 100)) + "\n");
    out = runs.flatMap((r) => rows(prompts, r.result, r.name));
  } else {
    const result = await generateAll(model, prompts, generation, batchSize, progress(""));
    tokens = result.usage.completionTokens;
    out = rows(prompts, result);
    if (!options.output) {
      const many = out.length > 1;
      out.forEach((r, i) => stdout.write(many ? `[${i + 1}] ${r.output}\n` : `${r.output}\n`));
    }
  }
  if (options.output) {
    writeJsonlAtomic(options.output, out);
    const seconds = (performance.now() - started) / 1000;
    stderr.write(`${out.length} rows written to ${options.output} (${tokens} tokens in ${seconds.toFixed(1)} s, ${(tokens / Math.max(seconds, 1e-9)).toFixed(1)} tok/s)\n`);
  }
  return out;
}
