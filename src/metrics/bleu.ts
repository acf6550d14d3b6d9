// BLEU as sacreBLEU (2.x) computes it: its tokenizers (13a by default), clipped n-gram counts
// against every reference of a segment, the closest reference length (the shorter on a tie),
// corpus-level sums, the brevity penalty and the smoothing methods of Chen & Cherry (2014) —
// `exp` by default. Scores are on sacreBLEU's 0–100 scale.
import { bleuTokenize, type BleuTokenizerName } from "./bleu-tokenizers.js";
import { pyRstrip, pySplit } from "./python-text.js";

export type BleuSmoothMethod = "exp" | "floor" | "add-k" | "none";

export interface BleuOptions {
  /** sacreBLEU's `tokenize`; default "13a". */
  tokenize?: BleuTokenizerName;
  /** Lowercase hypotheses and references first; default false. */
  lowercase?: boolean;
  /** Default "exp" (the NIST geometric sequence used by mteval-v13a). */
  smoothMethod?: BleuSmoothMethod;
  /** For "floor" (default 0.1) and "add-k" (default 1). */
  smoothValue?: number;
  /** Highest n-gram order; default 4. */
  maxNgramOrder?: number;
  /** Average only the orders the hypothesis has n-grams of; corpusBleu default false, sentenceBleu true. */
  effectiveOrder?: boolean;
}

export interface BleuScore {
  /** 0–100 */
  score: number;
  /** Clipped n-gram matches per order (after add-k smoothing, as sacreBLEU reports them). */
  counts: number[];
  /** Hypothesis n-grams per order. */
  totals: number[];
  /** Per-order precisions, 0–100. */
  precisions: number[];
  /** Brevity penalty. */
  bp: number;
  sysLen: number;
  refLen: number;
}

const SMOOTH_DEFAULTS: Record<BleuSmoothMethod, number> = { exp: 0, floor: 0.1, "add-k": 1, none: 0 };

// sacreBLEU floors log(0) at this value instead of -Infinity, so a zero precision gives a score of
// (practically) zero rather than NaN.
function flooredLog(x: number): number {
  return x === 0 ? -9999999999 : Math.log(x);
}

/** BLEU from sufficient statistics (sacreBLEU's `BLEU.compute_bleu`). */
export function bleuFromStatistics(
  correct: readonly number[],
  total: readonly number[],
  sysLen: number,
  refLen: number,
  options: Omit<BleuOptions, "tokenize" | "lowercase"> = {},
): BleuScore {
  const smoothMethod = options.smoothMethod ?? "exp";
  const smoothValue = options.smoothValue ?? SMOOTH_DEFAULTS[smoothMethod];
  const maxOrder = options.maxNgramOrder ?? 4;
  const counts = [...correct];
  const totals = [...total];
  const bp = sysLen < refLen ? (sysLen > 0 ? Math.exp(1 - refLen / sysLen) : 0) : 1;
  const precisions = new Array<number>(maxOrder).fill(0);
  const result = (score: number): BleuScore => ({ score, counts, totals, precisions, bp, sysLen, refLen });

  if (!counts.some((c) => c !== 0)) return result(0);

  let smoothMteval = 1;
  let effectiveOrder = maxOrder;
  for (let n = 1; n <= maxOrder; n++) {
    if (smoothMethod === "add-k" && n > 1) {
      counts[n - 1]! += smoothValue;
      totals[n - 1]! += smoothValue;
    }
    if (totals[n - 1] === 0) break;
    // Without effective order, orders the hypothesis is too short for still count (as zeros).
    if (options.effectiveOrder) effectiveOrder = n;
    if (counts[n - 1] === 0) {
      if (smoothMethod === "exp") {
        smoothMteval *= 2;
        precisions[n - 1] = 100 / (smoothMteval * totals[n - 1]!);
      } else if (smoothMethod === "floor") {
        precisions[n - 1] = (100 * smoothValue) / totals[n - 1]!;
      }
    } else {
      precisions[n - 1] = (100 * counts[n - 1]!) / totals[n - 1]!;
    }
  }
  let logSum = 0;
  for (let n = 0; n < effectiveOrder; n++) logSum += flooredLog(precisions[n]!);
  return result(bp * Math.exp(logSum / effectiveOrder));
}

/** Counts of every n-gram of order 1..maxOrder; keys are the tokens joined by one space. */
function ngramCounts(tokens: readonly string[], maxOrder: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (let n = 1; n <= maxOrder; n++) {
    for (let i = 0; i + n <= tokens.length; i++) {
      const key = tokens.slice(i, i + n).join(" ");
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
  }
  return counts;
}

function preprocess(segment: string, tokenizer: BleuTokenizerName, lowercase: boolean): string[] {
  return pySplit(bleuTokenize(pyRstrip(lowercase ? segment.toLowerCase() : segment), tokenizer));
}

// Of the reference lengths, the one closest to the hypothesis length; the shorter on a tie.
function closestRefLength(hypLen: number, refLens: readonly number[]): number {
  let best = -1;
  let bestDiff = -1;
  for (const len of refLens) {
    const diff = Math.abs(hypLen - len);
    if (bestDiff === -1 || diff < bestDiff || (diff === bestDiff && len < best)) {
      bestDiff = diff;
      best = len;
    }
  }
  return best;
}

/** One segment's statistics: [hypLen, refLen, correct_1..N, total_1..N]. */
export function bleuSegmentStatistics(hypothesis: string, references: readonly string[], options: BleuOptions = {}): number[] {
  const tokenizer = options.tokenize ?? "13a";
  const lowercase = options.lowercase ?? false;
  const maxOrder = options.maxNgramOrder ?? 4;
  if (references.length === 0) throw new Error("[bleu] expected at least one reference per hypothesis, got none");

  // The reference n-gram counts a hypothesis may match: the maximum over the references.
  const refCounts = new Map<string, number>();
  const refLens: number[] = [];
  for (const ref of references) {
    const tokens = preprocess(ref, tokenizer, lowercase);
    refLens.push(tokens.length);
    for (const [ngram, count] of ngramCounts(tokens, maxOrder)) {
      refCounts.set(ngram, Math.max(refCounts.get(ngram) ?? 0, count));
    }
  }

  const hypTokens = preprocess(hypothesis, tokenizer, lowercase);
  const correct = new Array<number>(maxOrder).fill(0);
  const total = new Array<number>(maxOrder).fill(0);
  for (const [ngram, count] of ngramCounts(hypTokens, maxOrder)) {
    const n = ngram.split(" ").length - 1;
    total[n]! += count;
    correct[n]! += Math.min(count, refCounts.get(ngram) ?? 0);
  }
  return [hypTokens.length, closestRefLength(hypTokens.length, refLens), ...correct, ...total];
}

function scoreFromSummedStatistics(stats: readonly number[], options: BleuOptions): BleuScore {
  const maxOrder = options.maxNgramOrder ?? 4;
  return bleuFromStatistics(stats.slice(2, 2 + maxOrder), stats.slice(2 + maxOrder), stats[0]!, stats[1]!, options);
}

/**
 * Corpus BLEU (sacreBLEU's `corpus_score`): statistics summed over all segments, then one score.
 * `references[i]` lists the references of `hypotheses[i]` (one or more; the count may vary).
 */
export function corpusBleu(
  hypotheses: readonly string[],
  references: readonly (readonly string[])[],
  options: BleuOptions = {},
): BleuScore {
  if (hypotheses.length !== references.length) {
    throw new Error(`[bleu] expected one reference list per hypothesis, got ${hypotheses.length} hypotheses and ${references.length} reference lists`);
  }
  const maxOrder = options.maxNgramOrder ?? 4;
  const sums = new Array<number>(2 + 2 * maxOrder).fill(0);
  hypotheses.forEach((hyp, i) => {
    bleuSegmentStatistics(hyp, references[i]!, options).forEach((v, k) => (sums[k]! += v));
  });
  return scoreFromSummedStatistics(sums, options);
}

/** Sentence BLEU (sacreBLEU's `sentence_bleu`): exp smoothing and effective order by default. */
export function sentenceBleu(hypothesis: string, references: readonly string[], options: BleuOptions = {}): BleuScore {
  const withDefaults = { effectiveOrder: true, ...options };
  return scoreFromSummedStatistics(bleuSegmentStatistics(hypothesis, references, withDefaults), withDefaults);
}
