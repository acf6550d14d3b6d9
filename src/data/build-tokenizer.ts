// Builds a small WordPiece tokenizer from a corpus, as the files transformers and
// @huggingface/tokenizers read (tokenizer.json + tokenizer_config.json): for models trained from
// scratch on a narrow task, where a downloaded 32k vocabulary would be mostly dead weight.
//
// The scheme: split on whitespace; a word seen at least `minFrequency` times is one token; any
// other word is spelled with single characters ("4312" -> "4", "##3", "##1", "##2"), so every
// text made of the corpus' characters round-trips through encode/decode (up to runs of
// whitespace, which become one space). A character never seen becomes <unk>. Special tokens come
// first in T5's order: <pad> 0, </s> 1, <unk> 2; encoding a text appends </s>, as T5's does.

export interface BuildTokenizerOptions {
  /** A word needs this many occurrences to become one token (default 2). */
  minFrequency?: number;
  /** Words that contain a digit are always spelled digit by digit (default true). */
  splitDigits?: boolean;
  /** At most this many whole-word tokens, the most frequent first (default unlimited). */
  maxWords?: number;
  /** Append </s> when encoding with special tokens, as T5's tokenizer does (default true). */
  appendEos?: boolean;
  /** tokenizer_config.json's model_max_length (default 512). */
  modelMaxLength?: number;
  /** More special tokens after the three (e.g. a chat format's "<|im_start|>"), matched whole
   *  before whitespace splitting. */
  extraSpecialTokens?: string[];
  /** tokenizer_config.json's chat_template (Jinja). */
  chatTemplate?: string;
}

export interface BuiltTokenizer {
  /** tokenizer.json */
  tokenizer: Record<string, unknown>;
  /** tokenizer_config.json */
  tokenizerConfig: Record<string, unknown>;
  vocabSize: number;
  padTokenId: number;
  eosTokenId: number;
  unkTokenId: number;
}

export const SPECIAL_TOKENS = { pad: "<pad>", eos: "</s>", unk: "<unk>" } as const;
const CONTINUATION = "##";

export function buildWordPieceTokenizer(texts: Iterable<string>, options: BuildTokenizerOptions = {}): BuiltTokenizer {
  const minFrequency = options.minFrequency ?? 2;
  const splitDigits = options.splitDigits ?? true;
  const counts = new Map<string, number>();
  const chars = new Set<string>();
  for (const text of texts) {
    for (const word of text.split(/\s+/u)) {
      if (word === "") continue;
      counts.set(word, (counts.get(word) ?? 0) + 1);
      for (const ch of word) chars.add(ch);
    }
  }
  // Sorted by code point so the vocabulary does not depend on the corpus order.
  const byCodePoint = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  const alphabet = [...chars].sort(byCodePoint);
  let words = [...counts.entries()]
    .filter(([w, n]) => n >= minFrequency && [...w].length > 1 && !(splitDigits && /\p{Nd}/u.test(w)))
    .sort(([a, na], [b, nb]) => nb - na || byCodePoint(a, b))
    .map(([w]) => w);
  if (options.maxWords !== undefined) words = words.slice(0, options.maxWords);

  const vocab: Record<string, number> = {};
  const add = (token: string) => {
    if (!(token in vocab)) vocab[token] = Object.keys(vocab).length;
  };
  add(SPECIAL_TOKENS.pad);
  add(SPECIAL_TOKENS.eos);
  add(SPECIAL_TOKENS.unk);
  const extra = options.extraSpecialTokens ?? [];
  for (const t of extra) add(t);
  for (const ch of alphabet) add(ch);
  for (const ch of alphabet) add(CONTINUATION + ch);
  for (const w of words) add(w);

  const special = (content: string) => ({
    id: vocab[content], content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
  });
  const eos = { SpecialToken: { id: SPECIAL_TOKENS.eos, type_id: 0 } };
  const appendEos = options.appendEos ?? true;
  const tokenizer = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [SPECIAL_TOKENS.pad, SPECIAL_TOKENS.eos, SPECIAL_TOKENS.unk, ...extra].map(special),
    normalizer: null,
    pre_tokenizer: { type: "WhitespaceSplit" },
    post_processor: appendEos
      ? {
          type: "TemplateProcessing",
          single: [{ Sequence: { id: "A", type_id: 0 } }, eos],
          pair: [{ Sequence: { id: "A", type_id: 0 } }, eos, { Sequence: { id: "B", type_id: 0 } }, eos],
          special_tokens: { [SPECIAL_TOKENS.eos]: { id: SPECIAL_TOKENS.eos, ids: [vocab[SPECIAL_TOKENS.eos]], tokens: [SPECIAL_TOKENS.eos] } },
        }
      : null,
    decoder: { type: "WordPiece", prefix: CONTINUATION, cleanup: false },
    model: {
      type: "WordPiece",
      unk_token: SPECIAL_TOKENS.unk,
      continuing_subword_prefix: CONTINUATION,
      max_input_chars_per_word: 100,
      vocab,
    },
  };
  const tokenizerConfig = {
    tokenizer_class: "PreTrainedTokenizerFast",
    model_max_length: options.modelMaxLength ?? 512,
    pad_token: SPECIAL_TOKENS.pad,
    eos_token: SPECIAL_TOKENS.eos,
    unk_token: SPECIAL_TOKENS.unk,
    clean_up_tokenization_spaces: false,
    ...(options.chatTemplate !== undefined ? { chat_template: options.chatTemplate } : {}),
  };
  return {
    tokenizer,
    tokenizerConfig,
    vocabSize: Object.keys(vocab).length,
    padTokenId: 0,
    eosTokenId: 1,
    unkTokenId: 2,
  };
}
