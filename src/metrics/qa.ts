// Question-answering metrics as the official SQuAD v1.1 and HotpotQA evaluation scripts compute
// them: answers normalised (lowercase, ASCII punctuation removed, the articles a/an/the removed
// as whole words, whitespace collapsed), exact match, and bag-of-token F1. HotpotQA adds one rule:
// when either side normalises to yes/no/noanswer and the two differ, F1 is 0. Soft exact match
// (not in either script) asks whether the normalised gold answer occurs in the prediction.
import { PY_WORD_CHAR, pySplit, pySquashSpaces } from "./python-text.js";

// string.punctuation: only these ASCII characters are removed, as in the scripts.
const PUNCTUATION = new Set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~");

// Python's `\b(a|an|the)\b` on str: the boundaries are Unicode-aware ("éa" is one word there),
// which JavaScript's ASCII `\b` is not, hence the explicit look-arounds.
const ARTICLES = new RegExp(`(?<!${PY_WORD_CHAR})(a|an|the)(?!${PY_WORD_CHAR})`, "gu");

/** The scripts' `normalize_answer`. */
export function normalizeAnswer(s: string): string {
  let text = s.toLowerCase();
  text = Array.from(text).filter((ch) => !PUNCTUATION.has(ch)).join("");
  text = text.replace(ARTICLES, " ");
  return pySquashSpaces(text);
}

/** 1 when the normalised answers are equal, else 0. */
export function exactMatch(prediction: string, gold: string): number {
  return normalizeAnswer(prediction) === normalizeAnswer(gold) ? 1 : 0;
}

export interface TokenF1 {
  f1: number;
  precision: number;
  recall: number;
}

/** "squad": SQuAD v1.1's F1; "hotpot": HotpotQA's, with its yes/no/noanswer rule. */
export type QaRule = "squad" | "hotpot";

const SPECIAL_ANSWERS = new Set(["yes", "no", "noanswer"]);

/** Token-overlap F1 between normalised answers (0 when nothing overlaps, both empty included). */
export function tokenF1(prediction: string, gold: string, rule: QaRule = "squad"): TokenF1 {
  const pred = normalizeAnswer(prediction);
  const truth = normalizeAnswer(gold);
  const zero = { f1: 0, precision: 0, recall: 0 };
  if (rule === "hotpot" && pred !== truth && (SPECIAL_ANSWERS.has(pred) || SPECIAL_ANSWERS.has(truth))) return zero;

  const predTokens = pySplit(pred);
  const truthTokens = pySplit(truth);
  const truthCounts = new Map<string, number>();
  for (const t of truthTokens) truthCounts.set(t, (truthCounts.get(t) ?? 0) + 1);
  let same = 0;
  for (const t of predTokens) {
    const left = truthCounts.get(t) ?? 0;
    if (left > 0) {
      same++;
      truthCounts.set(t, left - 1);
    }
  }
  if (same === 0) return zero;
  const precision = same / predTokens.length;
  const recall = same / truthTokens.length;
  return { f1: (2 * precision * recall) / (precision + recall), precision, recall };
}

/**
 * 1 when the normalised gold answer occurs in the normalised prediction (on word boundaries, so
 * "1" is not found in "1990"), else 0. An empty gold answer matches only an empty prediction.
 */
export function softExactMatch(prediction: string, gold: string): number {
  const pred = normalizeAnswer(prediction);
  const truth = normalizeAnswer(gold);
  if (truth === "") return pred === "" ? 1 : 0;
  return ` ${pred} `.includes(` ${truth} `) ? 1 : 0;
}

/** SQuAD's `metric_max_over_ground_truths`: the best score over the gold answers. */
export function maxOverGold(score: (gold: string) => number, golds: readonly string[]): number {
  if (golds.length === 0) throw new Error("[qa] expected at least one gold answer, got none");
  return Math.max(...golds.map(score));
}
