// BLEU and chrF against sacreBLEU's own published test cases (github.com/mjpost/sacrebleu, v2.6.0).
// Each block names the file the cases come from; expected values and tolerances are theirs.
// sacreBLEU lists references as streams (references[k][i] = k-th reference of segment i); our API
// takes one list per hypothesis, hence `perSegment`.
import { describe, expect, it } from "vitest";
import { bleuFromStatistics, corpusBleu, sentenceBleu, type BleuOptions } from "../src/metrics/bleu.js";
import { corpusChrf, sentenceChrf, type ChrfOptions } from "../src/metrics/chrf.js";

function perSegment(streams: string[][]): string[][] {
  return streams[0]!.map((_, i) => streams.map((s) => s[i]!));
}

// sacrebleu.raw_corpus_bleu: no tokenisation, floor smoothing, effective order.
function rawCorpusBleu(hyps: string[], refStreams: string[][], smoothValue?: number) {
  return corpusBleu(hyps, perSegment(refStreams), { tokenize: "none", smoothMethod: "floor", smoothValue, effectiveOrder: true });
}

describe("BLEU: sacrebleu test/test_bleu.py", () => {
  const EPSILON = 1e-8;
  const refs = [
    ["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
    ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."],
  ];
  const hyps = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."];

  it.each([
    [["this is a test", "another test"], [["ref1", "ref2"]], 0.0],
    [["this is a test"], [["this is a test"]], 1.0],
    [["this is a fest"], [["this is a test"]], 0.223606797749979],
  ])("test_raw_bleu %j", (h, r, expected) => {
    expect(Math.abs(rawCorpusBleu(h, r, 0.01).score / 100 - expected)).toBeLessThan(EPSILON);
  });

  it.each<[string[], BleuOptions, number]>([
    [hyps, {}, 48.530827],
    [["", "", ""], {}, 0.0],
    [hyps, { tokenize: "none" }, 49.1919566],
    [hyps, { tokenize: "13a" }, 48.530827],
    [hyps, { tokenize: "intl" }, 43.91623493],
    [hyps, { smoothMethod: "none" }, 48.530827],
  ])("test_corpus_bleu %j %j", (h, options, expected) => {
    expect(Math.abs(corpusBleu(h, perSegment(refs), options).score - expected)).toBeLessThan(EPSILON);
  });

  it.each([
    [["test"], [["a test"]], 0.3678794411714425],
    [["a test"], [["a test"]], 1.0],
    [["a little test"], [["a test"]], 0.03218297948685433],
  ])("test_effective_order %j", (h, r, expected) => {
    expect(Math.abs(rawCorpusBleu(h, r, 0.01).score / 100 - expected)).toBeLessThan(EPSILON);
  });

  it("test_statistics", () => {
    const result = rawCorpusBleu(["am I am a character sequence"], [["I am a symbol string sequence a a"]], 0.01);
    expect(result.counts).toEqual([4, 2, 1, 0]);
    expect(result.totals).toEqual([6, 5, 4, 3]);
  });

  it("test_scoring", () => {
    const score = bleuFromStatistics([9, 7, 5, 3], [10, 8, 6, 4], 11, 11).score / 100;
    expect(Math.abs(score - 0.8375922397)).toBeLessThan(EPSILON);
  });

  it("test_offset", () => {
    const h = ["am I am a character sequence"];
    const r = [["I am a symbol string sequence a a"]];
    expect(Math.abs(rawCorpusBleu(h, r, 0.0).score / 100 - 0)).toBeLessThan(EPSILON);
    // floor smoothing's default value (0.1)
    expect(Math.abs(rawCorpusBleu(h, r, undefined).score / 100 - 0.1555722182)).toBeLessThan(EPSILON);
    expect(Math.abs(rawCorpusBleu(h, r, 0.1).score / 100 - 0.1555722182)).toBeLessThan(EPSILON);
  });

  it.each<[number[], number[], number, number, number]>([
    [[0, 0, 0, 0], [4, 4, 2, 1], 0, 1, 0.0],
    [[0, 0, 0, 0], [10, 11, 12, 0], 14, 10, 0.0],
    [[0, 0, 0, 0], [0, 0, 0, 0], 0, 0, 0.0],
    [[6, 5, 4, 0], [6, 5, 4, 3], 6, 6, 0.0],
    [[0, 0, 0, 0], [0, 0, 0, 0], 0, 0, 0.1],
    [[0, 0, 0, 0], [0, 0, 0, 0], 1, 5, 0.01],
  ])("test_degenerate_statistics %j %j sys=%d ref=%d offset=%d", (correct, total, sysLen, refLen, offset) => {
    const score = bleuFromStatistics(correct, total, sysLen, refLen, { smoothMethod: "floor", smoothValue: offset }).score / 100;
    expect(score).toBe(0.0);
  });

  it.each([
    [1, "77.65"],
    [2, "60.50"],
    [3, "53.93"],
    [4, "48.53"],
    [5, "46.14"],
    [6, "43.28"],
  ])("test_max_ngram_order %d", (order, expected) => {
    expect(corpusBleu(hyps, perSegment(refs), { maxNgramOrder: order }).score.toFixed(2)).toBe(expected);
  });
});

describe("sentence BLEU: sacrebleu test/test_sentence_bleu.py", () => {
  const EPSILON = 1e-3;
  // Example from sacreBLEU issue #98 (Romanian with both cedilla and comma-below letters).
  const REF = "producţia de zahăr brut se exprimă în zahăr alb;";
  const SYS = "Producția de zahăr primă va fi exprimată în ceea ce privește zahărul alb;";

  it.each<[BleuOptions["smoothMethod"], number | undefined, boolean, BleuOptions["tokenize"], number]>([
    ["exp", undefined, false, "13a", 8.493],
    ["none", undefined, false, "13a", 0.0],
    ["floor", undefined, false, "13a", 4.51688],
    ["floor", 0.1, false, "13a", 4.51688],
    ["floor", 0.5, false, "13a", 10.1],
    ["add-k", undefined, false, "13a", 14.882],
    ["add-k", 1, false, "13a", 14.882],
    ["add-k", 2, false, "13a", 21.389],
    ["exp", undefined, false, "none", 7.347],
    ["exp", undefined, false, "intl", 8.493],
    ["exp", undefined, false, "char", 40.8759],
    ["exp", undefined, true, "char", 42.0267],
  ])("test_api_sentence_bleu smooth=%s value=%s lowercase=%s tok=%s", (smoothMethod, smoothValue, lowercase, tokenize, expected) => {
    const score = sentenceBleu(SYS, [REF], { smoothMethod, smoothValue, lowercase, tokenize, effectiveOrder: true }).score;
    expect(Math.abs(score - expected)).toBeLessThan(EPSILON);
  });

  // Example from sacreBLEU issue #141: no matching unigram at all.
  it.each<[BleuOptions["smoothMethod"], number | undefined]>([
    ["exp", undefined],
    ["none", undefined],
    ["floor", undefined],
    ["floor", 0.1],
    ["add-k", undefined],
    ["add-k", 1],
  ])("test_api_sentence_bleu_zero smooth=%s value=%s", (smoothMethod, smoothValue) => {
    expect(sentenceBleu("this is a cat", ["okay thanks"], { smoothMethod, smoothValue }).score).toBe(0);
  });
});

describe("chrF: sacrebleu test/test_chrf.py", () => {
  const EPSILON = 1e-4;
  const corpus = (h: string[], r: string[], options: ChrfOptions) => corpusChrf(h, r.map((x) => [x]), options);

  it.each([
    ["Co nás nejvíc trápí, protože lékaři si vybírají, kdo bude žít a kdo zemře.",
      ["Nejvíce smutní jsme z toho, že musíme rozhodovat o tom, kdo bude žít a kdo zemře."], 39.14078509],
    ["Nebo prostě nemají vybavení, které by jim pomohlo, uvedli lékaři.",
      ["A někdy nemáme ani potřebný materiál, abychom jim pomohli, popsali lékaři."], 31.22557079],
    ["Lapali po dechu, jejich životy skončily dřív, než skutečně začaly.",
      ["Lapali po dechu a pak jejich život skončil - dřív, než skutečně mohl začít, připomněli."], 57.15704367],
  ])("test_chrf_sentence_level %#", (hyp, refs, expected) => {
    expect(Math.abs(sentenceChrf(hyp, refs, { epsSmoothing: true }) - expected)).toBeLessThan(EPSILON);
  });

  it.each([
    [["abcdefg"], ["hijklmnop"], 0.0],
    [["a"], ["b"], 0.0],
    [[""], ["b"], 0.0],
    [[""], ["ref"], 0.0],
    [[""], ["reference"], 0.0],
    [["aa"], ["ab"], 8.3333],
    [["a", "b"], ["a", "c"], 8.3333],
    [["a"], ["a"], 16.6667],
    [["a b c"], ["a b c"], 50.0],
    [["a b c"], ["abc"], 50.0],
    [[" risk assessment must be made of those who are qualified and expertise in the sector - these are the scientists ."],
      ["risk assessment has to be undertaken by those who are qualified and expert in that area - that is the scientists ."], 63.36173],
    [[" Die    Beziehung zwischen  Obama und Netanjahu ist nicht gerade  freundlich. "],
      ["Das Verhältnis zwischen Obama und Netanyahu ist nicht gerade freundschaftlich."], 64.1302698],
    [["Niemand hat die Absicht, eine Mauer zu errichten"], ["Niemand hat die Absicht, eine Mauer zu errichten"], 100.0],
  ])("test_chrf (eps smoothing) %j", (h, r, expected) => {
    expect(Math.abs(corpus(h, r, { charOrder: 6, wordOrder: 0, beta: 3, epsSmoothing: true }) - expected)).toBeLessThan(EPSILON);
  });

  it.each([
    [["a"], ["a"], 100.0],
    [[""], ["reference"], 0.0],
    [["a b c"], ["a b c"], 100.0],
    [["a b c"], ["abc"], 100.0],
    [[""], ["c"], 0.0],
    [["a", "b"], ["a", "c"], 50.0],
    [["aa"], ["ab"], 25.0],
  ])("test_chrf_eff_order %j", (h, r, expected) => {
    expect(Math.abs(corpus(h, r, { charOrder: 6, wordOrder: 0, beta: 3, epsSmoothing: false }) - expected)).toBeLessThan(EPSILON);
  });

  it.each([
    [["Die Beziehung zwischen Obama und Netanjahu ist nicht gerade freundlich."],
      ["Das Verhältnis zwischen Obama und Netanyahu ist nicht gerade freundschaftlich."], 67.3481606],
    [["risk assessment must be made of those who are qualified and expertise in the sector - these are the scientists ."],
      ["risk assessment has to be undertaken by those who are qualified and expert in that area - that is the scientists ."], 65.2414427],
  ])("test_chrf_keep_whitespace %#", (h, r, expected) => {
    expect(Math.abs(corpus(h, r, { charOrder: 6, wordOrder: 0, beta: 3, whitespace: true }) - expected)).toBeLessThan(EPSILON);
  });
});
