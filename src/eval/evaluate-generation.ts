// Generation-based evaluation, shared by `s2s-train eval` and the trainer's evaluation hook:
// generate a prediction for every example in batches (prompts of similar length together, so
// little padding), score the predictions with computeMetrics, and keep each example's record as
// predictions.jsonl holds it.
import type { GenerateOptions } from "../generate/options.js";
import { GenerateOptionsError } from "../generate/resolve.js";
import { computeMetrics, parseMetricNames, type MetricScores } from "../metrics/compute.js";
import type { Model } from "../models/model.js";

export interface GenerationExample {
  /** The prompt as token ids (decoder-only: the prompt the completion follows; T5: the encoder input). */
  promptIds: readonly number[];
  /** The input as text, for predictions.jsonl. */
  input: string;
  reference: string | readonly string[];
  category?: string;
}

/** One line of predictions.jsonl (the report reads these fields). */
export interface PredictionRecord {
  input: string;
  reference: string | string[];
  prediction: string;
  /** Metric name -> this example's score (sentence-level BLEU and chrF). */
  scores: Record<string, number>;
  category?: string;
}

export interface GenerationEvaluation extends MetricScores {
  /** Category -> the metrics over its examples (empty when no example has a category). */
  byCategory: Record<string, MetricScores>;
  /** In the order of the examples. */
  predictions: PredictionRecord[];
  /** Generated tokens over all examples, and the time generation took. */
  generatedTokens: number;
  generationSeconds: number;
}

export interface EvaluateGenerationOptions {
  /** Metric names or aliases ("bleu,rouge,em"). */
  metrics: string | readonly string[];
  /** How to generate (defaults: the model folder's generation_config.json). One sequence per example. */
  generation?: GenerateOptions;
  /** Prompts per model.generate call. */
  batchSize: number;
  signal?: AbortSignal;
  /** After each batch: examples done so far, and how many there are. */
  onProgress?: (done: number, total: number) => void;
}

/** Batches of example indices, shortest prompts first (the order of equal lengths is kept). */
function batchesByLength(examples: readonly GenerationExample[], batchSize: number): number[][] {
  const order = examples.map((_, i) => i).sort((a, b) => examples[a]!.promptIds.length - examples[b]!.promptIds.length || a - b);
  const batches: number[][] = [];
  for (let i = 0; i < order.length; i += batchSize) batches.push(order.slice(i, i + batchSize));
  return batches;
}

export async function evaluateGeneration(
  model: Model, examples: readonly GenerationExample[], options: EvaluateGenerationOptions,
): Promise<GenerationEvaluation> {
  const names = parseMetricNames(options.metrics);
  if (names.length === 0) throw new Error("[eval] expected at least one metric name");
  if (!Number.isInteger(options.batchSize) || options.batchSize < 1) {
    throw new Error(`[eval] expected a batch size >= 1, got ${options.batchSize}`);
  }
  const generation = options.generation ?? {};
  if ((generation.numReturnSequences ?? 1) !== 1) {
    throw new GenerateOptionsError("eval generates one prediction per example: numReturnSequences must be 1");
  }
  if (!model.tokenizer) throw new Error(`[eval] ${model.folder.dir} has no tokenizer.json, so predictions cannot be decoded to text`);

  const texts = new Array<string>(examples.length);
  let generatedTokens = 0;
  let done = 0;
  const started = performance.now();
  for (const batch of batchesByLength(examples, options.batchSize)) {
    const r = await model.generate(batch.map((i) => examples[i]!.promptIds), {
      ...generation,
      numReturnSequences: 1,
      ...(options.signal ? { signal: options.signal } : {}),
    });
    options.signal?.throwIfAborted();
    r.sequences.forEach((s) => {
      // transformers' evaluation scripts strip predictions before scoring; so do we.
      texts[batch[s.inputIndex]!] = (s.text ?? "").trim();
    });
    generatedTokens += r.usage.completionTokens;
    done += batch.length;
    options.onProgress?.(done, examples.length);
  }
  const generationSeconds = (performance.now() - started) / 1000;

  const categories = examples.some((e) => e.category !== undefined) ? examples.map((e) => e.category) : undefined;
  const result = computeMetrics(names, texts, examples.map((e) => e.reference), categories ? { categories } : {});
  const predictions = examples.map((e, i): PredictionRecord => ({
    input: e.input,
    reference: typeof e.reference === "string" ? e.reference : [...e.reference],
    prediction: texts[i]!,
    scores: result.perExample[i] as Record<string, number>,
    ...(e.category !== undefined ? { category: e.category } : {}),
  }));
  return {
    count: result.count, scores: result.scores, byCategory: result.byCategory, predictions, generatedTokens, generationSeconds,
  };
}
