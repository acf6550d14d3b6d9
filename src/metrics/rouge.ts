// ROUGE as Google's rouge-score computes it: its tokenizer (lowercase, anything but a-z0-9 is a
// separator, optional Porter stemming of tokens longer than 3 characters), ROUGE-N on clipped
// n-gram counts, ROUGE-L on the longest common subsequence, and ROUGE-Lsum as the summary-level
// union LCS over newline-separated sentences. Precision, recall and F1 on a 0–1 scale.
import { porterStem } from "./porter-stemmer.js";

export interface RougeScore {
  precision: number;
  recall: number;
  fmeasure: number;
}

export type RougeType = `rouge${number}` | "rougeL" | "rougeLsum";

export interface RougeOptions {
  /** Porter-stem tokens longer than 3 characters (rouge-score's `use_stemmer`); default false. */
  useStemmer?: boolean;
}

/** rouge-score's default tokenizer. */
export function rougeTokenize(text: string, useStemmer = false): string[] {
  const tokens = text.toLowerCase().replace(/[^a-z0-9]+/g, " ").split(" ");
  return tokens.filter((t) => t.length > 0).map((t) => (useStemmer && t.length > 3 ? porterStem(t) : t));
}

function fmeasure(precision: number, recall: number): number {
  return precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0;
}

const ZERO: RougeScore = { precision: 0, recall: 0, fmeasure: 0 };

function ngramCounts(tokens: readonly string[], n: number): Map<string, number> {
  const counts = new Map<string, number>();
  // Tokens are [a-z0-9]+, so a space cannot occur inside one.
  for (let i = 0; i + n <= tokens.length; i++) {
    const key = tokens.slice(i, i + n).join(" ");
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

function scoreNgrams(target: readonly string[], prediction: readonly string[], n: number): RougeScore {
  const targetCounts = ngramCounts(target, n);
  const predictionCounts = ngramCounts(prediction, n);
  let overlap = 0;
  for (const [ngram, count] of targetCounts) overlap += Math.min(count, predictionCounts.get(ngram) ?? 0);
  const targetTotal = Math.max(0, target.length - n + 1);
  const predictionTotal = Math.max(0, prediction.length - n + 1);
  const precision = overlap / Math.max(predictionTotal, 1);
  const recall = overlap / Math.max(targetTotal, 1);
  return { precision, recall, fmeasure: fmeasure(precision, recall) };
}

/** table[i][j] = LCS length of ref[0:i] and can[0:j]. */
export function lcsTable(ref: readonly unknown[], can: readonly unknown[]): number[][] {
  const table = Array.from({ length: ref.length + 1 }, () => new Array<number>(can.length + 1).fill(0));
  for (let i = 1; i <= ref.length; i++) {
    for (let j = 1; j <= can.length; j++) {
      table[i]![j] = ref[i - 1] === can[j - 1] ? table[i - 1]![j - 1]! + 1 : Math.max(table[i - 1]![j]!, table[i]![j - 1]!);
    }
  }
  return table;
}

/**
 * Indices into `ref` of one LCS, read back from the table. Which LCS (when there are several)
 * matters for ROUGE-Lsum, so the tie-breaking is rouge-score's: move left only when strictly better.
 */
export function lcsIndices(ref: readonly unknown[], can: readonly unknown[]): number[] {
  const t = lcsTable(ref, can);
  const indices: number[] = [];
  let i = ref.length;
  let j = can.length;
  while (i > 0 && j > 0) {
    if (ref[i - 1] === can[j - 1]) {
      indices.push(i - 1);
      i--;
      j--;
    } else if (t[i]![j - 1]! > t[i - 1]![j]!) {
      j--;
    } else {
      i--;
    }
  }
  return indices.reverse();
}

function scoreLcs(target: readonly string[], prediction: readonly string[]): RougeScore {
  if (target.length === 0 || prediction.length === 0) return ZERO;
  const lcs = lcsTable(target, prediction)[target.length]![prediction.length]!;
  const precision = lcs / prediction.length;
  const recall = lcs / target.length;
  return { precision, recall, fmeasure: fmeasure(precision, recall) };
}

/** Sorted union of the LCS indices of `ref` against each candidate sentence. */
export function unionLcs(ref: readonly unknown[], candidates: readonly (readonly unknown[])[]): number[] {
  const union = new Set<number>();
  for (const can of candidates) for (const i of lcsIndices(ref, can)) union.add(i);
  return [...union].sort((a, b) => a - b);
}

/** Summary-level LCS (ROUGE paper section 3.2), each token counted at most as often as it occurs. */
export function summaryLevelLcs(refSentences: readonly (readonly string[])[], canSentences: readonly (readonly string[])[]): RougeScore {
  if (refSentences.length === 0 || canSentences.length === 0) return ZERO;
  const m = refSentences.reduce((sum, s) => sum + s.length, 0);
  const n = canSentences.reduce((sum, s) => sum + s.length, 0);
  if (m === 0 || n === 0) return ZERO;

  const count = (sentences: readonly (readonly string[])[]) => {
    const counts = new Map<string, number>();
    for (const s of sentences) for (const t of s) counts.set(t, (counts.get(t) ?? 0) + 1);
    return counts;
  };
  const refLeft = count(refSentences);
  const canLeft = count(canSentences);
  let hits = 0;
  for (const ref of refSentences) {
    for (const i of unionLcs(ref, canSentences)) {
      const token = ref[i]!;
      if ((canLeft.get(token) ?? 0) > 0 && (refLeft.get(token) ?? 0) > 0) {
        hits++;
        canLeft.set(token, canLeft.get(token)! - 1);
        refLeft.set(token, refLeft.get(token)! - 1);
      }
    }
  }
  const precision = hits / n;
  const recall = hits / m;
  return { precision, recall, fmeasure: fmeasure(precision, recall) };
}

const ROUGE_N = /^rouge([0-9])$/;

/** Throws unless `type` is one rouge-score accepts: rouge1..rouge9, rougeL, rougeLsum. */
export function checkRougeType(type: string): asserts type is RougeType {
  const n = ROUGE_N.exec(type);
  if (type === "rougeL" || type === "rougeLsum" || (n && Number(n[1]) > 0)) return;
  throw new Error(`[rouge] invalid rouge type '${type}': expected rouge1..rouge9, rougeL or rougeLsum`);
}

/** rouge-score's `RougeScorer(types, use_stemmer).score(target, prediction)`. */
export function rougeScore(
  types: readonly string[],
  target: string,
  prediction: string,
  options: RougeOptions = {},
): Record<string, RougeScore> {
  const stem = options.useStemmer ?? false;
  types.forEach(checkRougeType);
  const targetTokens = rougeTokenize(target, stem);
  const predictionTokens = rougeTokenize(prediction, stem);
  const result: Record<string, RougeScore> = {};
  for (const type of types) {
    if (type === "rougeL") {
      result[type] = scoreLcs(targetTokens, predictionTokens);
    } else if (type === "rougeLsum") {
      // Sentences are the non-empty lines (split on "\n" only, as rouge-score does).
      const sentences = (text: string) => text.split("\n").filter((s) => s.length > 0).map((s) => rougeTokenize(s, stem));
      result[type] = summaryLevelLcs(sentences(target), sentences(prediction));
    } else {
      result[type] = scoreNgrams(targetTokens, predictionTokens, Number(type.slice(5)));
    }
  }
  return result;
}

/** rouge-score's `score_multi`: per type, the target with the highest F-measure (the first on a tie). */
export function rougeScoreMulti(
  types: readonly string[],
  targets: readonly string[],
  prediction: string,
  options: RougeOptions = {},
): Record<string, RougeScore> {
  if (targets.length === 0) throw new Error("[rouge] expected at least one target, got none");
  const all = targets.map((t) => rougeScore(types, t, prediction, options));
  const best: Record<string, RougeScore> = {};
  for (const type of types) {
    best[type] = all.reduce((a, b) => (b[type]!.fmeasure > a[type]!.fmeasure ? b : a))[type]!;
  }
  return best;
}
