// chrF and chrF++ as sacreBLEU (2.x) computes them: character n-grams (orders 1..6, whitespace
// removed unless asked), optional word n-grams (chrF++), per-segment statistics against the
// reference with the best F-score, corpus sums, F-beta with beta 2. Scores are 0–100.
import { codePoints, pySplit } from "./python-text.js";

export interface ChrfOptions {
  /** Character n-gram order; default 6. */
  charOrder?: number;
  /** Word n-gram order; default 0 (chrF). 2 gives chrF++. */
  wordOrder?: number;
  /** Weight of recall against precision; default 2. */
  beta?: number;
  lowercase?: boolean;
  /** Keep whitespace inside character n-grams; default false. */
  whitespace?: boolean;
  /** chrF++.py/NLTK epsilon smoothing instead of sacreBLEU's default effective-order average. */
  epsSmoothing?: boolean;
}

type Counts = Map<string, number>;

function countNgrams(items: readonly string[], n: number, joiner: string): Counts {
  const counts: Counts = new Map();
  for (let i = 0; i + n <= items.length; i++) {
    const key = items.slice(i, i + n).join(joiner);
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

// String.punctuation, which chrF++ splits off the ends of words.
const PUNCTUATION = new Set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~");

// chrF++'s word split: a punctuation mark at the end of a word (else at its start) becomes its
// own word; one-character words stay as they are.
function wordsWithoutEdgePunctuation(sentence: string): string[] {
  const words: string[] = [];
  for (const word of pySplit(sentence)) {
    const chars = codePoints(word);
    if (chars.length === 1) words.push(word);
    else if (PUNCTUATION.has(chars[chars.length - 1]!)) words.push(chars.slice(0, -1).join(""), chars[chars.length - 1]!);
    else if (PUNCTUATION.has(chars[0]!)) words.push(chars[0]!, chars.slice(1).join(""));
    else words.push(word);
  }
  return words;
}

function allNgrams(segment: string, o: Required<ChrfOptions>): Counts[] {
  const text = o.lowercase ? segment.toLowerCase() : segment;
  const chars = codePoints(o.whitespace ? text : pySplit(text).join(""));
  const result: Counts[] = [];
  for (let n = 1; n <= o.charOrder; n++) result.push(countNgrams(chars, n, ""));
  if (o.wordOrder > 0) {
    const words = wordsWithoutEdgePunctuation(text);
    for (let n = 1; n <= o.wordOrder; n++) result.push(countNgrams(words, n, " "));
  }
  return result;
}

// [hyp n-grams, ref n-grams, matches] for one order.
function matchStatistics(hyp: Counts, ref: Counts): [number, number, number] {
  let hypCount = 0;
  let matches = 0;
  for (const [ngram, count] of hyp) {
    hypCount += count;
    matches += Math.min(count, ref.get(ngram) ?? 0);
  }
  let refCount = 0;
  for (const count of ref.values()) refCount += count;
  // A hypothesis n-gram counts only where the reference has n-grams of that order at all.
  return [ref.size > 0 ? hypCount : 0, refCount, matches];
}

/** chrF (0–100) from statistics laid out as [hyp, ref, match] per order (sacreBLEU's `_compute_f_score`). */
export function chrfFromStatistics(stats: readonly number[], options: ChrfOptions = {}): number {
  const o = withDefaults(options);
  const orders = o.charOrder + o.wordOrder;
  const eps = 1e-16;
  const factor = o.beta ** 2;
  let epsScore = 0;
  let avgPrec = 0;
  let avgRec = 0;
  let effectiveOrder = 0;
  for (let i = 0; i < orders; i++) {
    const nHyp = stats[3 * i]!;
    const nRef = stats[3 * i + 1]!;
    const nMatch = stats[3 * i + 2]!;
    const prec = nHyp > 0 ? nMatch / nHyp : eps;
    const rec = nRef > 0 ? nMatch / nRef : eps;
    const denom = factor * prec + rec;
    epsScore += denom > 0 ? ((1 + factor) * prec * rec) / denom : eps;
    if (nHyp > 0 && nRef > 0) {
      avgPrec += prec;
      avgRec += rec;
      effectiveOrder += 1;
    }
  }
  if (o.epsSmoothing) return (100 * epsScore) / orders;
  if (effectiveOrder === 0) return 0;
  avgPrec /= effectiveOrder;
  avgRec /= effectiveOrder;
  if (avgPrec + avgRec === 0) return 0;
  return (100 * (1 + factor) * avgPrec * avgRec) / (factor * avgPrec + avgRec);
}

function withDefaults(options: ChrfOptions): Required<ChrfOptions> {
  return {
    charOrder: options.charOrder ?? 6,
    wordOrder: options.wordOrder ?? 0,
    beta: options.beta ?? 2,
    lowercase: options.lowercase ?? false,
    whitespace: options.whitespace ?? false,
    epsSmoothing: options.epsSmoothing ?? false,
  };
}

/** One segment's statistics against the reference that gives it the best chrF. */
export function chrfSegmentStatistics(hypothesis: string, references: readonly string[], options: ChrfOptions = {}): number[] {
  if (references.length === 0) throw new Error("[chrf] expected at least one reference per hypothesis, got none");
  const o = withDefaults(options);
  const hyp = allNgrams(hypothesis, o);
  let best: number[] = [];
  let bestScore = -1;
  for (const reference of references) {
    const ref = allNgrams(reference, o);
    const stats = hyp.flatMap((h, k) => matchStatistics(h, ref[k]!));
    const score = chrfFromStatistics(stats, o);
    if (score > bestScore) {
      bestScore = score;
      best = stats;
    }
  }
  return best;
}

/** Corpus chrF: statistics summed over segments. `references[i]` lists the references of hypothesis i. */
export function corpusChrf(hypotheses: readonly string[], references: readonly (readonly string[])[], options: ChrfOptions = {}): number {
  if (hypotheses.length !== references.length) {
    throw new Error(`[chrf] expected one reference list per hypothesis, got ${hypotheses.length} hypotheses and ${references.length} reference lists`);
  }
  const o = withDefaults(options);
  const sums = new Array<number>(3 * (o.charOrder + o.wordOrder)).fill(0);
  hypotheses.forEach((hyp, i) => chrfSegmentStatistics(hyp, references[i]!, o).forEach((v, k) => (sums[k]! += v)));
  return chrfFromStatistics(sums, o);
}

/** Sentence chrF (sacreBLEU's `sentence_chrf`). */
export function sentenceChrf(hypothesis: string, references: readonly string[], options: ChrfOptions = {}): number {
  return chrfFromStatistics(chrfSegmentStatistics(hypothesis, references, options), options);
}
