// ROUGE against rouge-score's own published test cases: google-research/google-research
// rouge/rouge_scorer_test.py (commit da0c44e0b13f46c6483b01608c3e7ba014655858), whose "ground
// truth" values come from runs of the original ROUGE-1.5.5 Perl script. The data files under
// test/fixtures/metrics/rouge/ are byte copies of rouge/testdata/{target,prediction}.txt and
// rouge/testdata/pyrouge_files/{target,prediction}_multi.0.txt from the same repository.
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import path from "node:path";
import { lcsIndices, lcsTable, rougeScore, rougeScoreMulti, rougeTokenize, summaryLevelLcs, unionLcs } from "../src/metrics/rouge.js";

const DATA = path.resolve(import.meta.dirname, "fixtures/metrics/rouge");
const read = (name: string) => readFileSync(path.join(DATA, name), "utf8");
// Python's f.readlines(): lines keep their "\n".
const readLines = (name: string) => read(name).split(/(?<=\n)/);

// absltest's assertAlmostEqual(a, b, places): round(a - b, places) == 0
function almostEqual(actual: number, expected: number, places = 7) {
  expect(Math.abs(actual - expected), `${actual} vs ${expected}`).toBeLessThan(0.5 * 10 ** -places);
}

describe("rouge-score rouge/rouge_scorer_test.py", () => {
  const targets = readLines("target.txt");
  const predictions = readLines("prediction.txt");

  it.each(["rougen", "rouge0", "rouge10"])("testInvalidRougeTypes %s", (type) => {
    expect(() => rougeScore([type], "testing one two", "testing")).toThrow(/invalid rouge type/);
  });

  it.each(["rouge1", "rouge9", "rougeL", "rougeLsum"])("testValidRougeTypes %s", (type) => {
    expect(Object.keys(rougeScore([type], "testing one two", "testing"))).toEqual([type]);
  });

  it("testRouge1", () => {
    const r = rougeScore(["rouge1"], "testing one two", "testing").rouge1!;
    almostEqual(r.precision, 1);
    almostEqual(r.recall, 1 / 3);
    almostEqual(r.fmeasure, 1 / 2);
  });

  it.each(["rouge1", "rouge2", "rougeL", "rougeLsum"])("testRougeEmpty %s", (type) => {
    const r = rougeScore([type], "testing one two", "")[type]!;
    almostEqual(r.precision, 0);
    almostEqual(r.recall, 0);
    almostEqual(r.fmeasure, 0);
  });

  it("testRouge2", () => {
    const r = rougeScore(["rouge2"], "testing one two", "testing one").rouge2!;
    almostEqual(r.precision, 1);
    almostEqual(r.recall, 1 / 2);
    almostEqual(r.fmeasure, 2 / 3);
  });

  it.each([
    ["testRougeLConsecutive", "testing one"],
    ["testRougeLNonConsecutive", "testing two"],
  ])("%s", (_, prediction) => {
    const r = rougeScore(["rougeL"], "testing one two", prediction).rougeL!;
    almostEqual(r.precision, 1);
    almostEqual(r.recall, 2 / 3);
    almostEqual(r.fmeasure, 4 / 5);
  });

  it("testMultipleRougeTypes", () => {
    const result = rougeScore(["rouge1", "rougeL"], "testing one two", "testing one");
    expect(Object.keys(result).sort()).toEqual(["rouge1", "rougeL"]);
    for (const type of ["rouge1", "rougeL"]) {
      almostEqual(result[type]!.precision, 1);
      almostEqual(result[type]!.recall, 2 / 3);
      almostEqual(result[type]!.fmeasure, 4 / 5);
    }
  });

  // [test name, type, use_stemmer, [recall, precision, fmeasure] for lines 0 and 1]
  it.each<[string, string, boolean, number[], number[]]>([
    ["testRouge1AgainstRouge155", "rouge1", false, [0.40741, 0.6875, 0.51163], [0.40476, 0.65385, 0.5]],
    ["testRouge1AgainstRouge155WithStemming", "rouge1", true, [0.40741, 0.6875, 0.51163], [0.42857, 0.69231, 0.52941]],
    ["testRouge2AgainstRouge155", "rouge2", false, [0.30769, 0.53333, 0.39024], [0.29268, 0.48, 0.36364]],
    ["testRouge2AgainstRouge155WithStemming", "rouge2", true, [0.30769, 0.53333, 0.39024], [0.29268, 0.48, 0.36364]],
    ["testRougeLAgainstRouge155", "rougeL", false, [0.40741, 0.6875, 0.51163], [0.40476, 0.65385, 0.5]],
  ])("%s", (_, type, useStemmer, line0, line1) => {
    [line0, line1].forEach(([recall, precision, f], i) => {
      const r = rougeScore([type], targets[i]!, predictions[i]!, { useStemmer })[type]!;
      almostEqual(r.recall, recall!, 5);
      almostEqual(r.precision, precision!, 5);
      almostEqual(r.fmeasure, f!, 5);
    });
  });

  it("testRougeLSumAgainstRouge155WithStemming", () => {
    const r = rougeScore(["rougeLsum"], read("target_multi.0.txt"), read("prediction_multi.0.txt"), { useStemmer: true }).rougeLsum!;
    almostEqual(r.recall, 0.36538, 5);
    almostEqual(r.precision, 0.66667, 5);
    almostEqual(r.fmeasure, 0.47205, 5);
  });

  it("testLcsTable", () => {
    const ref = [1, 2, 3, 4, 5];
    const c1 = [2, 5, 3, 4];
    expect(lcsTable(ref, c1)[ref.length]![c1.length]).toBe(3);
    expect(lcsIndices(ref, c1)).toEqual([1, 2, 3]);
    expect(lcsIndices(ref, c1).map((i) => ref[i])).toEqual([2, 3, 4]);
    const c2 = [8, 9];
    expect(lcsTable(ref, c2)[ref.length]![c2.length]).toBe(0);
    expect(lcsIndices(ref, c2)).toEqual([]);
  });

  it("testUnionLcs", () => {
    // Example of section 3.2 of the ROUGE paper (W04-1013).
    const ref = [1, 2, 3, 4, 5];
    const c1 = [1, 2, 6, 7, 8];
    const c2 = [1, 3, 8, 9, 5];
    expect(unionLcs(ref, [c1, c2]).map((i) => ref[i])).toEqual([1, 2, 3, 5]);
    expect(unionLcs(ref, [c2, c1]).map((i) => ref[i])).toEqual([1, 2, 3, 5]);
  });

  it("testSummaryLevelLcs", () => {
    const refs = [["1", "2", "3", "4", "5"]];
    const cans = [["1", "2", "6", "7", "8"], ["1", "3", "8", "9", "5"]];
    const score = summaryLevelLcs(refs, cans);
    expect(score.recall).toBe(0.8);
    expect(score.precision).toBe(0.4);
    almostEqual(score.fmeasure, 0.5333, 3);
    // The tokenizer may drop every token, leaving an empty candidate.
    expect(summaryLevelLcs([["reference"]], [[]]).recall).toBe(0);
  });

  it("testRougeLsum", () => {
    let r = rougeScore(["rougeLsum"], "w1 w2 w3 w4 w5", "w1 w2 w6 w7 w8\nw1 w3 w8 w9 w5").rougeLsum!;
    almostEqual(r.recall, 0.8);
    almostEqual(r.precision, 0.4);
    almostEqual(r.fmeasure, 0.5333, 3);
    for (const [target, prediction] of [["w1 w2 w3 w4 w5", ""], ["", "w1"], ["w1 w2 w3 w4 w5", "/"]]) {
      r = rougeScore(["rougeLsum"], target!, prediction!).rougeLsum!;
      almostEqual(r.fmeasure, 0, 3);
      almostEqual(r.recall, 0, 3);
      almostEqual(r.precision, 0, 3);
    }
  });
});

describe("rouge-score rouge/tokenize_test.py and rouge/tokenizers_test.py", () => {
  it("test_give_me_a_name (tokenize_test.py)", () => {
    expect(rougeTokenize("one Two three")).toEqual(["one", "two", "three"]);
    expect(rougeTokenize("one\n Two \nthree")).toEqual(["one", "two", "three"]);
  });

  it("test_default_tokenizer_no_stemmer_init / with_stemmer_init (tokenizers_test.py)", () => {
    expect(rougeTokenize("this is a test", false)).toEqual(["this", "is", "a", "test"]);
    expect(rougeTokenize("the friends had a meeting", true)).toEqual(["the", "friend", "had", "a", "meet"]);
  });
});

describe("rouge-score score_multi", () => {
  it("takes the target with the best F-measure per type", () => {
    const best = rougeScoreMulti(["rouge1", "rouge2"], ["a b c d", "a b x y", "c d"], "a b c");
    expect(best.rouge1).toEqual(rougeScore(["rouge1"], "a b c d", "a b c").rouge1);
    expect(best.rouge2).toEqual(rougeScore(["rouge2"], "a b c d", "a b c").rouge2);
  });
});
