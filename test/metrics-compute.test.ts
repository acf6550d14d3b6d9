// computeMetrics: names and aliases, corpus vs mean aggregation, several references, per-category
// breakdown, edge cases; and the QA metrics' documented rules (SQuAD v1.1 evaluate-v1.1.py and
// hotpotqa/hotpot hotpot_evaluate_v1.py for normalisation, EM, F1 and the yes/no/noanswer rule).
import { describe, expect, it } from "vitest";
import { computeMetrics, parseMetricNames } from "../src/metrics/compute.js";
import { corpusBleu, sentenceBleu } from "../src/metrics/bleu.js";
import { perplexity } from "../src/metrics/perplexity.js";
import { exactMatch, normalizeAnswer, softExactMatch, tokenF1 } from "../src/metrics/qa.js";
import { rougeScore } from "../src/metrics/rouge.js";

describe("QA metrics (SQuAD v1.1 / HotpotQA rules)", () => {
  it("normalises as normalize_answer does: lowercase, ASCII punctuation, whole-word articles, spaces", () => {
    expect(normalizeAnswer("The  Eiffel-Tower!")).toBe("eiffeltower");
    expect(normalizeAnswer("An apple, a pear and THE plum.")).toBe("apple pear and plum");
    expect(normalizeAnswer("theater anathema")).toBe("theater anathema");
    // Python's \b is Unicode-aware: "éa" is one word, so its "a" is not an article.
    expect(normalizeAnswer("éa b")).toBe("éa b");
    // Non-ASCII punctuation is kept, as string.punctuation is ASCII only.
    expect(normalizeAnswer("« the cat »")).toBe("« cat »");
  });

  it("EM and F1 of evaluate-v1.1.py", () => {
    expect(exactMatch("the Eiffel Tower", "Eiffel tower.")).toBe(1);
    expect(exactMatch("Eiffel", "Eiffel tower")).toBe(0);
    const f = tokenF1("the big red barn", "red barn door", "squad");
    expect(f.precision).toBeCloseTo(2 / 3, 12);
    expect(f.recall).toBeCloseTo(2 / 3, 12);
    expect(f.f1).toBeCloseTo(2 / 3, 12);
    // Both empty after normalisation: 0 in v1.1 (no tokens in common), though EM is 1.
    expect(tokenF1("the", "a", "squad").f1).toBe(0);
    expect(exactMatch("the", "a")).toBe(1);
  });

  it("HotpotQA's rule: yes/no/noanswer must match exactly for any F1", () => {
    expect(tokenF1("yes", "yes it is", "squad").f1).toBeCloseTo(0.5, 12);
    expect(tokenF1("yes", "yes it is", "hotpot").f1).toBe(0);
    expect(tokenF1("Yes.", "yes", "hotpot").f1).toBe(1);
    expect(tokenF1("no answer here", "noanswer", "hotpot").f1).toBe(0);
  });

  it("soft EM: the normalised gold answer occurs in the prediction, on word boundaries", () => {
    expect(softExactMatch("It was built by Gustave Eiffel in 1889.", "Gustave Eiffel")).toBe(1);
    expect(softExactMatch("In 1990.", "1")).toBe(0);
    expect(softExactMatch("Paris", "Paris, France")).toBe(0);
    expect(softExactMatch("", "")).toBe(1);
    expect(softExactMatch("anything", "...")).toBe(0);
  });
});

describe("computeMetrics", () => {
  const predictions = ["The cat sat on the mat.", "Paris", "yes", ""];
  const references = ["The cat is on the mat.", ["Paris, France", "Paris"], "no", "Something"];

  it("expands aliases and rejects unknown names", () => {
    expect(parseMetricNames("bleu,rouge,em,f1")).toEqual(["bleu", "rouge1", "rouge2", "rougeL", "rougeLsum", "em", "f1"]);
    expect(parseMetricNames(["exact_match", "em", "soft_em"])).toEqual(["em", "soft_em"]);
    expect(() => parseMetricNames("bleu,meteor")).toThrow(/unknown metric 'meteor'.*bleu.*rouge/);
  });

  it("BLEU and chrF are corpus-level; the others are means of per-example scores, all 0–100", () => {
    const r = computeMetrics("bleu,rougeL,em,f1,soft_em", predictions, references);
    expect(r.count).toBe(4);
    const refLists = references.map((x) => (typeof x === "string" ? [x] : x));
    expect(r.scores.bleu).toBeCloseTo(corpusBleu(predictions, refLists).score, 12);
    expect(r.perExample[0]!.bleu).toBeCloseTo(sentenceBleu(predictions[0]!, refLists[0]!).score, 12);
    expect(r.perExample.map((e) => e.em)).toEqual([0, 100, 0, 0]);
    expect(r.scores.em).toBe(25);
    expect(r.perExample[0]!.rougeL).toBeCloseTo(100 * rougeScore(["rougeL"], refLists[0]![0]!, predictions[0]!).rougeL!.fmeasure, 12);
    expect(r.scores.rougeL).toBeCloseTo(r.perExample.reduce((a, e) => a + e.rougeL!, 0) / 4, 12);
    // several references: the best one counts ("Paris" matches the second exactly)
    expect(r.perExample[1]!.f1).toBe(100);
    expect(r.perExample[1]!.soft_em).toBe(100);
  });

  it("breaks scores down by category, each computed on that category's examples only", () => {
    const r = computeMetrics(["bleu", "em"], predictions, references, { categories: ["b", "a", "a", null] });
    expect(Object.keys(r.byCategory)).toEqual(["a", "b"]);
    expect(r.byCategory.a!.count).toBe(2);
    expect(r.byCategory.a!.scores.em).toBe(50);
    expect(r.byCategory.b!.scores.bleu).toBeCloseTo(corpusBleu([predictions[0]!], [[references[0] as string]]).score, 12);
    expect(r.count).toBe(4);
  });

  it("handles empty predictions, empty references, unicode and punctuation-only text", () => {
    const r = computeMetrics("bleu,chrf,rouge,em,f1,soft_em", ["", "...", "東京は日本の首都", "x"], ["", "?!", "東京は日本の首都", "x"]);
    for (const value of Object.values(r.scores)) expect(Number.isFinite(value)).toBe(true);
    expect(r.perExample[0]!.em).toBe(100); // "" == "" after normalisation
    expect(r.perExample[1]!.em).toBe(100); // punctuation-only answers both normalise to ""
    expect(r.perExample[0]!.rouge1).toBe(0); // rouge-score: no tokens, no score
    // rouge-score's tokenizer keeps only a-z0-9, so Japanese text has no ROUGE tokens at all
    expect(r.perExample[2]!.rougeL).toBe(0);
    expect(r.perExample[2]!.chrf).toBe(100);
    expect(r.perExample[3]!.em).toBe(100);
  });

  it("checks its inputs", () => {
    expect(() => computeMetrics("em", ["a", "b"], ["a"])).toThrow(/2 predictions and 1 references/);
    expect(() => computeMetrics("em", ["a"], [[]])).toThrow(/example 0 has no reference/);
    expect(() => computeMetrics("em", ["a"], ["a"], { categories: [] })).toThrow(/one category per prediction/);
  });

  it("perplexity is exp(eval loss)", () => {
    expect(perplexity(0)).toBe(1);
    expect(perplexity(Math.log(42))).toBeCloseTo(42, 10);
    expect(perplexity(1000)).toBe(Infinity);
  });
});
