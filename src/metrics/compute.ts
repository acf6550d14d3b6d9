// One entry point for generation metrics: `computeMetrics(names, predictions, references, options)`
// scores a set of predictions overall, per category, and per example. Every score is on a 0–100
// scale (sacreBLEU's and the SQuAD script's convention; ROUGE F-measures are multiplied by 100).
// BLEU and chrF are corpus-level (statistics summed, then one score), as sacreBLEU defines them;
// ROUGE, EM, F1 and soft EM are means of per-example scores. With several references per example,
// each metric uses its reference's rule: BLEU and chrF count against all of them, ROUGE takes the
// reference with the best F-measure (rouge-score's score_multi), EM/F1 the best score (SQuAD's max
// over ground truths).
import { corpusBleu, sentenceBleu, type BleuOptions } from "./bleu.js";
import { corpusChrf, sentenceChrf, type ChrfOptions } from "./chrf.js";
import { exactMatch, maxOverGold, softExactMatch, tokenF1, type QaRule } from "./qa.js";
import { rougeScoreMulti, type RougeOptions } from "./rouge.js";

export const METRIC_NAMES = ["bleu", "chrf", "rouge1", "rouge2", "rougeL", "rougeLsum", "em", "f1", "soft_em"] as const;
export type MetricName = (typeof METRIC_NAMES)[number];

// Names people type that stand for one or more metrics.
const ALIASES: Record<string, readonly MetricName[]> = {
  rouge: ["rouge1", "rouge2", "rougeL", "rougeLsum"],
  exact_match: ["em"],
  sacrebleu: ["bleu"],
};

/** "bleu,rouge,em" -> ["bleu", "rouge1", "rouge2", "rougeL", "rougeLsum", "em"]; unknown names throw. */
export function parseMetricNames(list: string | readonly string[]): MetricName[] {
  const parts = (typeof list === "string" ? list.split(",") : list).map((s) => s.trim()).filter((s) => s.length > 0);
  const names: MetricName[] = [];
  for (const part of parts) {
    const expanded = ALIASES[part] ?? ((METRIC_NAMES as readonly string[]).includes(part) ? [part as MetricName] : undefined);
    if (!expanded) {
      throw new Error(`unknown metric '${part}': expected one of ${[...METRIC_NAMES, ...Object.keys(ALIASES)].join(", ")}`);
    }
    for (const name of expanded) if (!names.includes(name)) names.push(name);
  }
  return names;
}

export interface ComputeMetricsOptions {
  /** One category per example (null/undefined: none); adds a breakdown per category. */
  categories?: readonly (string | null | undefined)[];
  bleu?: BleuOptions;
  chrf?: ChrfOptions;
  rouge?: RougeOptions;
  /** F1's rule: "hotpot" (default; yes/no/noanswer must match exactly) or "squad". */
  qaRule?: QaRule;
}

export interface MetricScores {
  /** Examples scored. */
  count: number;
  /** Metric name -> score (0–100). */
  scores: Partial<Record<MetricName, number>>;
}

export interface MetricsResult extends MetricScores {
  /** Category -> the same metrics over that category's examples, categories sorted by name. */
  byCategory: Record<string, MetricScores>;
  /** Per example, metric name -> score (0–100; sentence-level BLEU and chrF). */
  perExample: Partial<Record<MetricName, number>>[];
}

type References = readonly (readonly string[])[];

const ROUGE_TYPES = ["rouge1", "rouge2", "rougeL", "rougeLsum"] as const;

function mean(values: readonly number[]): number {
  return values.length === 0 ? 0 : values.reduce((a, b) => a + b, 0) / values.length;
}

function perExampleScores(names: readonly MetricName[], prediction: string, refs: readonly string[], o: ComputeMetricsOptions) {
  const scores: Partial<Record<MetricName, number>> = {};
  const rougeTypes = ROUGE_TYPES.filter((t) => names.includes(t));
  const rouge = rougeTypes.length > 0 ? rougeScoreMulti(rougeTypes, refs, prediction, o.rouge) : {};
  for (const name of names) {
    switch (name) {
      case "bleu":
        scores.bleu = sentenceBleu(prediction, refs, o.bleu).score;
        break;
      case "chrf":
        scores.chrf = sentenceChrf(prediction, refs, o.chrf);
        break;
      case "em":
        scores.em = 100 * maxOverGold((g) => exactMatch(prediction, g), refs);
        break;
      case "f1":
        scores.f1 = 100 * maxOverGold((g) => tokenF1(prediction, g, o.qaRule ?? "hotpot").f1, refs);
        break;
      case "soft_em":
        scores.soft_em = 100 * maxOverGold((g) => softExactMatch(prediction, g), refs);
        break;
      default:
        scores[name] = 100 * rouge[name]!.fmeasure;
    }
  }
  return scores;
}

function aggregate(
  names: readonly MetricName[],
  indices: readonly number[],
  predictions: readonly string[],
  refs: References,
  perExample: readonly Partial<Record<MetricName, number>>[],
  o: ComputeMetricsOptions,
): MetricScores {
  const scores: Partial<Record<MetricName, number>> = {};
  const preds = indices.map((i) => predictions[i]!);
  const golds = indices.map((i) => refs[i]!);
  for (const name of names) {
    if (name === "bleu") scores.bleu = corpusBleu(preds, golds, o.bleu).score;
    else if (name === "chrf") scores.chrf = corpusChrf(preds, golds, o.chrf);
    else scores[name] = mean(indices.map((i) => perExample[i]![name]!));
  }
  return { count: indices.length, scores };
}

/**
 * Scores `predictions` against `references` (one string or a list of strings per example) with
 * the named metrics (see parseMetricNames for the names and aliases).
 */
export function computeMetrics(
  names: string | readonly string[],
  predictions: readonly string[],
  references: readonly (string | readonly string[])[],
  options: ComputeMetricsOptions = {},
): MetricsResult {
  const metricNames = parseMetricNames(names);
  if (references.length !== predictions.length) {
    throw new Error(`[metrics] expected one reference per prediction, got ${predictions.length} predictions and ${references.length} references`);
  }
  const categories = options.categories;
  if (categories && categories.length !== predictions.length) {
    throw new Error(`[metrics] expected one category per prediction, got ${predictions.length} predictions and ${categories.length} categories`);
  }
  const refs: References = references.map((r, i) => {
    const list = typeof r === "string" ? [r] : r;
    if (list.length === 0) throw new Error(`[metrics] example ${i} has no reference`);
    return list;
  });
  const perExample = predictions.map((p, i) => perExampleScores(metricNames, p, refs[i]!, options));
  const all = predictions.map((_, i) => i);
  const overall = aggregate(metricNames, all, predictions, refs, perExample, options);

  const byCategory: Record<string, MetricScores> = {};
  if (categories) {
    const names = [...new Set(categories.filter((c): c is string => typeof c === "string"))].sort();
    for (const category of names) {
      const indices = all.filter((i) => categories[i] === category);
      byCategory[category] = aggregate(metricNames, indices, predictions, refs, perExample, options);
    }
  }
  return { ...overall, byCategory, perExample };
}
