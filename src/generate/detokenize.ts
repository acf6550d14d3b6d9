// Incremental detokenization for streaming: the text each new token adds, decoding only a short
// window (the previous token onwards) so a long stream costs O(n), and holding back a token that
// ends inside a multi-byte character (the decoder's U+FFFD) until the next one completes it.
// The window keeps tokenizers that drop or add a leading space per token (SentencePiece, BPE)
// correct: a token's text is the difference between the window decoded with and without it.
import type { Tokenizer } from "../models/tokenizer.js";

export class StreamDetokenizer {
  private readonly tokens: number[] = [];
  private prefixOffset = 0;
  private readOffset = 0;

  constructor(private readonly tokenizer: Tokenizer | undefined, private readonly skipSpecialTokens: boolean) {}

  /** Appends a token; returns the text it completes ("" while a character is incomplete). */
  push(tokenId: number): string {
    this.tokens.push(tokenId);
    if (!this.tokenizer) return "";
    const prefix = decodeTokens(this.tokenizer, this.tokens.slice(this.prefixOffset, this.readOffset), this.skipSpecialTokens);
    const full = decodeTokens(this.tokenizer, this.tokens.slice(this.prefixOffset), this.skipSpecialTokens);
    if (full.length > prefix.length && !full.endsWith("\uFFFD")) {
      const text = full.slice(prefix.length);
      this.prefixOffset = this.readOffset;
      this.readOffset = this.tokens.length;
      return text;
    }
    return "";
  }
}

/** tokenizer.decode, with "" for no tokens (the library refuses an empty list). */
export function decodeTokens(tokenizer: Tokenizer, ids: number[], skipSpecialTokens: boolean): string {
  return ids.length === 0 ? "" : tokenizer.decode(ids, { skip_special_tokens: skipSpecialTokens });
}
