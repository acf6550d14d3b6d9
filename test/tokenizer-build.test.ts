// The WordPiece tokenizer the project builds (src/data/build-tokenizer.ts): it loads in
// @huggingface/tokenizers from a folder, round-trips the corpus, spells unseen words, and does
// not depend on the corpus order.
import { describe, expect, it } from "vitest";
import path from "node:path";
import { buildWordPieceTokenizer, loadTokenizer } from "../src/index.js";
import { tempDir, writeFiles } from "./data-helpers.js";

const corpus = [
  "four thousand three hundred twelve", "4312", "three hundred", "300", "twelve", "12",
  "hello, world", "hello again world", "x-ray vision",
];

function folder(built: ReturnType<typeof buildWordPieceTokenizer>): string {
  const dir = tempDir("s2s-tok-");
  writeFiles(dir, {
    "tokenizer.json": JSON.stringify(built.tokenizer),
    "tokenizer_config.json": JSON.stringify(built.tokenizerConfig),
  });
  return dir;
}

describe("buildWordPieceTokenizer", () => {
  const built = buildWordPieceTokenizer(corpus, { minFrequency: 1 });
  const tok = loadTokenizer(folder(built));

  it("puts <pad>, </s>, <unk> first and appends </s> like T5", () => {
    expect([built.padTokenId, built.eosTokenId, built.unkTokenId]).toEqual([0, 1, 2]);
    expect(["<pad>", "</s>", "<unk>"].map((t) => tok.token_to_id(t))).toEqual([0, 1, 2]);
    const ids = tok.encode("three hundred").ids;
    expect(ids.at(-1)).toBe(1);
    expect(tok.encode("three hundred", { add_special_tokens: false }).ids).toEqual(ids.slice(0, -1));
    expect(tok.get_vocab().size).toBe(built.vocabSize);
  });

  it("round-trips every corpus text and unseen words made of known characters", () => {
    for (const text of [...corpus, "world hello", "three thousand", "2024", "dlrow", "vision, again"]) {
      const ids: number[] = tok.encode(text).ids;
      expect(ids.every((id) => Number.isInteger(id) && id !== built.unkTokenId)).toBe(true);
      expect(tok.decode(ids, { skip_special_tokens: true })).toBe(text);
    }
  });

  it("frequent words are one token; digits are always spelled one by one", () => {
    expect(tok.encode("four thousand", { add_special_tokens: false }).tokens).toEqual(["four", "thousand"]);
    expect(tok.encode("4312", { add_special_tokens: false }).tokens).toEqual(["4", "##3", "##1", "##2"]);
    const words = buildWordPieceTokenizer(["4312 4312"], { minFrequency: 1, splitDigits: false });
    expect(Object.keys(words.tokenizer.model as object)).toContain("vocab");
    expect((words.tokenizer.model as { vocab: Record<string, number> }).vocab["4312"]).toBeDefined();
  });

  it("minFrequency and maxWords bound the word list; a character never seen is <unk>", () => {
    const rare = buildWordPieceTokenizer(corpus, { minFrequency: 2 });
    const vocab = (rare.tokenizer.model as { vocab: Record<string, number> }).vocab;
    expect(vocab["world"]).toBeDefined();    // twice in the corpus
    expect(vocab["twelve"]).toBeDefined();
    expect(vocab["hello"]).toBeUndefined();  // once ("hello," is another word)
    expect(vocab["vision"]).toBeUndefined(); // once: spelled
    const capped = buildWordPieceTokenizer(corpus, { minFrequency: 1, maxWords: 2 });
    expect(capped.vocabSize).toBeLessThan(built.vocabSize);
    expect(tok.encode("hello ∑ 9", { add_special_tokens: false }).tokens).toEqual(["hello", "<unk>", "<unk>"]);
  });

  it("does not depend on the order of the corpus", () => {
    const again = buildWordPieceTokenizer([...corpus].reverse(), { minFrequency: 1 });
    expect(JSON.stringify(again.tokenizer)).toBe(JSON.stringify(built.tokenizer));
  });
});
