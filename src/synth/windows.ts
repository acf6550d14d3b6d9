// Splitting a document into windows of at most `size` tokens where consecutive windows share
// `overlap` tokens (so a relation that straddles a boundary is whole in one of them). Tokens come
// from the model's tokenizer when one is given, otherwise from a word splitter.
import type { Tokenizer } from "../models/tokenizer.js";

/** A document cut into tokens, able to give back the text of any token range. */
export interface TokenizedText {
  count: number;
  slice(start: number, end: number): string;
}

export interface WindowTokenizer {
  readonly name: string;
  tokenize(text: string): TokenizedText;
}

export interface TokenSpan {
  start: number;
  end: number;
}

/**
 * Windows [start, end) over n tokens: the first starts at 0, each next one `size - overlap`
 * later, and the last one ends at n. n ≤ size gives one window; n = 0 gives none.
 */
export function windowSpans(n: number, size: number, overlap: number): TokenSpan[] {
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`window size: expected an integer >= 1, got ${size}`);
  if (!Number.isInteger(overlap) || overlap < 0 || overlap >= size) {
    throw new RangeError(`window overlap: expected an integer in [0, ${size - 1}] (less than the window size ${size}), got ${overlap}`);
  }
  const spans: TokenSpan[] = [];
  if (n === 0) return spans;
  const stride = size - overlap;
  for (let start = 0; ; start += stride) {
    const end = Math.min(start + size, n);
    spans.push({ start, end });
    if (end === n) break;
  }
  return spans;
}

export interface TextWindow extends TokenSpan {
  index: number;
  text: string;
}

export function textWindows(text: string, tokenizer: WindowTokenizer, size: number, overlap: number): TextWindow[] {
  const tokens = tokenizer.tokenize(text);
  return windowSpans(tokens.count, size, overlap).map((s, index) => ({ index, ...s, text: tokens.slice(s.start, s.end) }));
}

/** The model's tokenizer (no special tokens); a window's text is the decoding of its ids. */
export function hfWindowTokenizer(tokenizer: Tokenizer, name: string): WindowTokenizer {
  return {
    name,
    tokenize(text) {
      const ids = tokenizer.encode(text, { add_special_tokens: false }).ids;
      return { count: ids.length, slice: (start, end) => tokenizer.decode(ids.slice(start, end), { skip_special_tokens: true }) };
    },
  };
}

/** Words with their trailing whitespace; joining a range gives back the exact original text. */
export const wordWindowTokenizer: WindowTokenizer = {
  name: "words",
  tokenize(text) {
    const pieces = text.match(/\s*\S+\s*/gu) ?? [];
    return { count: pieces.length, slice: (start, end) => pieces.slice(start, end).join("").trim() };
  },
};
