// Evaluation during training: the loss summed over every counted token of the validation set
// (then divided once, so batching does not change it), its perplexity, and a hook through which
// generation-based metrics (exact match, BLEU, ...) computed elsewhere join the same record.
import type { Model } from "../models/model.js";
import type { Collate, Example, TaskKind } from "../data/types.js";

export interface GenerationMetricsContext {
  model: Model;
  /** The validation examples (the hook decides how many to generate for). */
  examples: readonly Example[];
  kind: TaskKind;
  /** The optimizer step just taken. */
  step: number;
}

/** Metrics by name (higher or lower is better as train.greater_is_better says for the chosen one). */
export type GenerationMetrics = (context: GenerationMetricsContext) => Promise<Record<string, number>>;

export interface LossEvaluation {
  evalLoss: number;
  /** exp(evalLoss); null where that overflows. */
  perplexity: number | null;
  /** Counted (label) tokens. */
  tokens: number;
}

/** Sum of the token losses over `examples` in batches of `batchSize`, in order. */
export async function evaluateLoss(model: Model, examples: readonly Example[], collate: Collate,
                                   batchSize: number): Promise<LossEvaluation> {
  let lossSum = 0;
  let tokens = 0;
  for (let i = 0; i < examples.length; i += batchSize) {
    const r = await model.forward(collate(examples.slice(i, i + batchSize)), { reduction: "sum" });
    if (r.count > 0 && r.loss !== null) {
      lossSum += r.loss;
      tokens += r.count;
    }
  }
  const evalLoss = tokens > 0 ? lossSum / tokens : Number.NaN;
  const perplexity = Math.exp(evalLoss);
  return { evalLoss, perplexity: Number.isFinite(perplexity) ? perplexity : null, tokens };
}
