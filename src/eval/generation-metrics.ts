// The trainer's generation-metrics hook as the config sets it up (train.eval_metrics,
// max_eval_samples, eval_generation): at each evaluation, generate for the first
// max_eval_samples validation examples, score them, write the run's predictions.jsonl and
// metrics.json (the latest evaluation's, for the report) and return the scores for valid.csv.
import type { TrainConfig } from "../config/schema.js";
import type { GenerateOptions } from "../generate/options.js";
import type { Example, TaskKind } from "../data/types.js";
import type { GenerationMetrics } from "../train/evaluate.js";
import { generationSettings, writeEvalFiles } from "./eval-files.js";
import { evaluateGeneration, type GenerationExample } from "./evaluate-generation.js";

/** train.eval_generation as model.generate options; null settings are left to generation_config.json. */
export function evalGenerateOptions(config: TrainConfig): GenerateOptions {
  const g = config.train.eval_generation;
  const options: GenerateOptions = {
    maxNewTokens: g.max_new_tokens ?? config.data.max_target_length,
    seed: g.seed ?? config.train.seed,
  };
  if (g.num_beams !== null) options.numBeams = g.num_beams;
  if (g.do_sample !== null) options.doSample = g.do_sample;
  if (g.temperature !== null) options.temperature = g.temperature;
  if (g.top_k !== null) options.topK = g.top_k;
  if (g.top_p !== null) options.topP = g.top_p;
  if (g.repetition_penalty !== null) options.repetitionPenalty = g.repetition_penalty;
  if (g.no_repeat_ngram_size !== null) options.noRepeatNgramSize = g.no_repeat_ngram_size;
  if (g.length_penalty !== null) options.lengthPenalty = g.length_penalty;
  return options;
}

/** A prepared example as generation sees it: its prompt ids (not the completion), its texts. */
export function generationExample(e: Example, kind: TaskKind): GenerationExample {
  const ids = kind === "causal" ? e.inputIds.subarray(0, e.promptLength) : e.inputIds;
  return {
    promptIds: Array.from(ids),
    input: e.text.input,
    reference: e.text.target,
    ...(e.category !== undefined ? { category: e.category } : {}),
  };
}

/** The hook for train({ generationMetrics }), or undefined when train.eval_metrics is empty. */
export function generationMetricsFor(config: TrainConfig): GenerationMetrics | undefined {
  const t = config.train;
  if (t.eval_metrics.length === 0) return undefined;
  const generation = evalGenerateOptions(config);
  const batchSize = t.eval_batch_size ?? config.data.batch_size;
  return async ({ model, examples, kind, step }) => {
    const chosen = t.max_eval_samples === null ? examples : examples.slice(0, t.max_eval_samples);
    if (kind === "causal" && chosen.some((e) => e.promptLength < 1)) {
      throw new Error(`[eval] ${chosen.find((e) => e.promptLength < 1)!.source}: a causal example needs a prompt to generate from (promptLength is 0)`);
    }
    const evaluation = await evaluateGeneration(model, chosen.map((e) => generationExample(e, kind)), {
      metrics: t.eval_metrics, generation, batchSize,
    });
    writeEvalFiles(config.output.dir, evaluation, {
      step, max_eval_samples: t.max_eval_samples, generation: generationSettings(generation),
    });
    const scores: Record<string, number> = {};
    for (const [name, value] of Object.entries(evaluation.scores)) if (value !== undefined) scores[name] = value;
    return scores;
  };
}
