// Token windows with overlap: the arithmetic, and windows cut by a real tokenizer.json (a
// byte-level BPE written here, so decoding is lossless and any text can be tokenized).
import { describe, expect, it } from "vitest";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { windowSpans, textWindows, hfWindowTokenizer, wordWindowTokenizer } from "../src/synth/windows.js";
import { loadTokenizer } from "../src/models/tokenizer.js";
import { byteLevelCharacters } from "../src/constrain/byte-level.js";

function byteLevelTokenizerDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), "s2s-tok-"));
  const vocab: Record<string, number> = {};
  byteLevelCharacters().forEach((c) => (vocab[c] = Object.keys(vocab).length));
  const merges = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a", "e r", "a n", "Ġ s", "o n", "Ġ l"];
  for (const m of merges) vocab[m.replace(" ", "")] = Object.keys(vocab).length;
  const tokenizer = {
    version: "1.0", truncation: null, padding: null, added_tokens: [], normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: "", end_of_word_suffix: "", fuse_unk: false,
      byte_fallback: false, vocab, merges },
  };
  writeFileSync(path.join(dir, "tokenizer.json"), JSON.stringify(tokenizer));
  writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify({ clean_up_tokenization_spaces: false }));
  return dir;
}

describe("windowSpans", () => {
  it("covers the edge cases", () => {
    expect(windowSpans(0, 4, 1)).toEqual([]);
    expect(windowSpans(3, 4, 1)).toEqual([{ start: 0, end: 3 }]);
    expect(windowSpans(4, 4, 1)).toEqual([{ start: 0, end: 4 }]);
    expect(windowSpans(10, 4, 1)).toEqual([{ start: 0, end: 4 }, { start: 3, end: 7 }, { start: 6, end: 10 }]);
    expect(windowSpans(11, 4, 1)).toEqual([{ start: 0, end: 4 }, { start: 3, end: 7 }, { start: 6, end: 10 }, { start: 9, end: 11 }]);
    expect(windowSpans(8, 4, 0)).toEqual([{ start: 0, end: 4 }, { start: 4, end: 8 }]);
    // The example: 1,024-token windows with 200 of overlap over 3,000 tokens.
    expect(windowSpans(3000, 1024, 200)).toEqual([
      { start: 0, end: 1024 }, { start: 824, end: 1848 }, { start: 1648, end: 2672 }, { start: 2472, end: 3000 }]);
  });

  it("holds its invariants over many sizes", () => {
    for (let n = 1; n < 60; n++) {
      for (let size = 1; size < 12; size++) {
        for (let overlap = 0; overlap < size; overlap++) {
          const spans = windowSpans(n, size, overlap);
          expect(spans[0]!.start).toBe(0);
          expect(spans.at(-1)!.end).toBe(n);
          const expectedCount = n <= size ? 1 : Math.ceil((n - overlap) / (size - overlap));
          expect(spans.length).toBe(expectedCount);
          for (let i = 0; i < spans.length; i++) {
            const s = spans[i]!;
            expect(s.end - s.start).toBeLessThanOrEqual(size);
            if (i + 1 < spans.length) {
              expect(s.end - s.start).toBe(size);
              expect(spans[i + 1]!.start).toBe(s.end - overlap);  // consecutive windows share `overlap` tokens
            }
          }
        }
      }
    }
  });

  it("refuses an overlap as large as the window, and empty windows", () => {
    expect(() => windowSpans(10, 4, 4)).toThrow(/overlap: expected an integer in \[0, 3\]/);
    expect(() => windowSpans(10, 0, 0)).toThrow(/window size/);
    expect(() => windowSpans(10, 4, -1)).toThrow(/overlap/);
  });
});

describe("textWindows", () => {
  const text = Array.from({ length: 40 }, (_, i) =>
    `In ${1800 + i} the survey of lake ${i} ran along the river, and the settlers ${i % 3 ? "stayed" : "left"}.`).join(" ");

  it("cuts by the model's tokenizer: each window is the decoding of its token range", () => {
    const tokenizer = loadTokenizer(byteLevelTokenizerDir());
    const ids = tokenizer.encode(text, { add_special_tokens: false }).ids;
    expect(tokenizer.decode(ids)).toBe(text);  // byte-level: lossless
    const windows = textWindows(text, hfWindowTokenizer(tokenizer, "bpe"), 128, 32);
    expect(windows.length).toBe(Math.ceil((ids.length - 32) / (128 - 32)));
    for (const w of windows) {
      expect(w.text).toBe(tokenizer.decode(ids.slice(w.start, w.end)));
      expect(w.end - w.start).toBeLessThanOrEqual(128);
    }
    // Without the overlaps, the windows put back together are the document.
    const rebuilt = windows.map((w, i) => tokenizer.decode(ids.slice(w.start, windows[i + 1]?.start ?? w.end))).join("");
    expect(rebuilt).toBe(text);
    // The overlap is the same tokens at the end of one window and the start of the next.
    expect(tokenizer.decode(ids.slice(windows[1]!.start, windows[0]!.end))).toBe(tokenizer.decode(ids.slice(96, 128)));
  });

  it("cuts by words when no tokenizer is given, keeping the exact text", () => {
    const windows = textWindows(text, wordWindowTokenizer, 50, 10);
    const words = text.split(" ");
    expect(windows.length).toBe(Math.ceil((words.length - 10) / 40));
    expect(windows[0]!.text).toBe(words.slice(0, 50).join(" "));
    expect(windows[1]!.text).toBe(words.slice(40, 90).join(" "));
    expect(windows.at(-1)!.text.endsWith("left.") || windows.at(-1)!.text.endsWith("stayed.")).toBe(true);
  });
});
