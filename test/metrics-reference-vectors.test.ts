// Our metrics against the reference implementations on edge cases their own tests do not cover
// (empty text, punctuation only, unicode, Python-only whitespace, several references). The
// expected values were computed by the references themselves — sacreBLEU 2.6.0, rouge-score,
// NLTK's PorterStemmer, the official SQuAD v1.1 and HotpotQA scripts — with
// scripts/fixtures/make_metric_vectors.py into test/fixtures/metrics/reference_vectors.json.
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import path from "node:path";
import { corpusBleu, sentenceBleu, type BleuOptions } from "../src/metrics/bleu.js";
import { bleuTokenize } from "../src/metrics/bleu-tokenizers.js";
import { corpusChrf, sentenceChrf } from "../src/metrics/chrf.js";
import { porterStem } from "../src/metrics/porter-stemmer.js";
import { exactMatch, normalizeAnswer, tokenF1 } from "../src/metrics/qa.js";
import { rougeScoreMulti } from "../src/metrics/rouge.js";

interface Vectors {
  tokenize: { text: string; "13a": string; intl: string }[];
  corpus_bleu: { hypotheses: string[]; references: string[][]; options: Record<string, unknown>; score: number; counts: number[]; totals: number[]; sys_len: number; ref_len: number }[];
  sentence_bleu: { hypothesis: string; references: string[]; score: number }[];
  corpus_chrf: { hypotheses: string[]; references: string[][]; options: Record<string, unknown>; score: number }[];
  sentence_chrf: { hypothesis: string; references: string[]; score: number }[];
  rouge: { prediction: string; targets: string[]; use_stemmer: boolean; scores: Record<string, [number, number, number]> }[];
  qa: { prediction: string; gold: string; normalized_prediction: string; normalized_gold: string; em: boolean; squad_f1: number; hotpot_f1: number; hotpot_precision: number; hotpot_recall: number }[];
  qa_normalize: { text: string; normalized: string }[];
  porter: Record<string, string>;
}

const vectors = JSON.parse(
  readFileSync(path.resolve(import.meta.dirname, "fixtures/metrics/reference_vectors.json"), "utf8"),
) as Vectors;

// Python keyword arguments -> our options
function bleuOptions(o: Record<string, unknown>): BleuOptions {
  return { tokenize: o.tokenize as BleuOptions["tokenize"], lowercase: o.lowercase as boolean | undefined };
}

const close = (actual: number, expected: number) => expect(Math.abs(actual - expected), `${actual} vs ${expected}`).toBeLessThan(1e-9);

describe("sacreBLEU reference vectors", () => {
  it.each(vectors.tokenize)("13a and intl tokenisation of %j", ({ text, "13a": t13a, intl }) => {
    expect(bleuTokenize(text, "13a")).toBe(t13a);
    expect(bleuTokenize(text, "intl")).toBe(intl);
  });

  it.each(vectors.corpus_bleu)("corpus BLEU %#", (c) => {
    const s = corpusBleu(c.hypotheses, c.references, bleuOptions(c.options));
    close(s.score, c.score);
    expect(s.counts).toEqual(c.counts);
    expect(s.totals).toEqual(c.totals);
    expect([s.sysLen, s.refLen]).toEqual([c.sys_len, c.ref_len]);
  });

  it.each(vectors.sentence_bleu)("sentence BLEU %#: %j", (c) => close(sentenceBleu(c.hypothesis, c.references).score, c.score));

  it.each(vectors.corpus_chrf)("corpus chrF %#", (c) => {
    const o = c.options;
    close(corpusChrf(c.hypotheses, c.references, {
      wordOrder: o.word_order as number | undefined,
      lowercase: o.lowercase as boolean | undefined,
      whitespace: o.whitespace as boolean | undefined,
      epsSmoothing: o.eps_smoothing as boolean | undefined,
    }), c.score);
  });

  it.each(vectors.sentence_chrf)("sentence chrF %#: %j", (c) => close(sentenceChrf(c.hypothesis, c.references), c.score));
});

describe("rouge-score reference vectors", () => {
  it.each(vectors.rouge)("%# %j", (c) => {
    const ours = rougeScoreMulti(Object.keys(c.scores), c.targets, c.prediction, { useStemmer: c.use_stemmer });
    for (const [type, [p, r, f]] of Object.entries(c.scores)) {
      close(ours[type]!.precision, p);
      close(ours[type]!.recall, r);
      close(ours[type]!.fmeasure, f);
    }
  });
});

describe("NLTK PorterStemmer reference vectors", () => {
  const words = Object.entries(vectors.porter);
  it(`stems all ${words.length} words as NLTK does`, () => {
    const wrong = words.filter(([w, stem]) => porterStem(w) !== stem).map(([w, stem]) => `${w}: ${porterStem(w)} != ${stem}`);
    expect(wrong).toEqual([]);
    expect(words.length).toBeGreaterThan(5000);
  });
});

describe("SQuAD v1.1 / HotpotQA script reference vectors", () => {
  it.each(vectors.qa_normalize)("normalize_answer(%j)", ({ text, normalized }) => expect(normalizeAnswer(text)).toBe(normalized));

  it.each(vectors.qa)("%# %j", (c) => {
    expect(normalizeAnswer(c.prediction)).toBe(c.normalized_prediction);
    expect(normalizeAnswer(c.gold)).toBe(c.normalized_gold);
    expect(exactMatch(c.prediction, c.gold)).toBe(c.em ? 1 : 0);
    close(tokenF1(c.prediction, c.gold, "squad").f1, c.squad_f1);
    const hotpot = tokenF1(c.prediction, c.gold, "hotpot");
    close(hotpot.f1, c.hotpot_f1);
    close(hotpot.precision, c.hotpot_precision);
    close(hotpot.recall, c.hotpot_recall);
  });
});
