// Fixture models with a byte-level BPE tokenizer.json whose 96 tokens are JSON pieces: a copy of
// a tiny fixture folder (random weights, so the model's choices are garbage, which is what tests
// of a constraint want) with its WordLevel tokenizer swapped for this one. The tokens include
// multi-byte characters split across tokens (é, 日, 😀 in pieces), a lone continuation byte, an
// invalid byte (0xff), whitespace and escapes, so the recognizer's UTF-8 and escape handling is
// exercised through real token ids. Every letter the shared schemas' and synth's relation schema's
// keys and enums need is also a
// one-letter token: real byte-level vocabularies hold all 256 bytes, so any viable text can be
// spelled; a vocabulary that cannot spell it leaves the constraint without a token (an error).
import { cpSync, mkdtempSync, writeFileSync } from "node:fs";
import { buildWordPieceTokenizer } from "../src/data/build-tokenizer.js";
import os from "node:os";
import path from "node:path";
import { byteLevelCharacters } from "../src/constrain/byte-level.js";

const fixtures = path.resolve(import.meta.dirname, "fixtures/models");

/** The pieces, as raw bytes (strings are UTF-8 encoded; arrays are byte lists). */
export const PIECES: Array<string | number[]> = [
  "{", "}", "[", "]", "\"", ":", ",", "{\"", "\"}", "\":", "\",", "\":\"", "\"]", "[\"", "},{", "}]", "]}", ",\"",
  "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "12", "3.5", "-", ".", "e", "E", "+",
  "true", "false", "null", "nu", "ll",
  "a", "b", "c", "d", "g", "h", "i", "k", "m", "n", "o", "p", "t", "f", "l", "s", "u", "r", "w", "x", "y", "_",
  "name", "age", "tags", "id", "kind", "red", "green", "blue", "\"red\"", "hello", " world", " ", "\n", "\t",
  "\\", "\\n", "\\u", "00e9", "\\\"",
  "é", [0xc3], [0xa9], "日", [0xe6, 0x97], [0xa5], "😀", [0xf0, 0x9f], [0x98, 0x80], [0xff], [0x80],
];

/** A tokenizer.json over PIECES at ids 0.., the special token `eos` text at the ids in `special`. */
export function byteLevelTokenizer(vocabSize: number, special: Record<number, string>, pieces: Array<string | number[]> = PIECES): unknown {
  const table = byteLevelCharacters();
  const enc = new TextEncoder();
  const vocab: Record<string, number> = {};
  let id = 0;
  for (const p of pieces) {
    while (special[id] !== undefined) id++;
    const bytes = typeof p === "string" ? [...enc.encode(p)] : p;
    vocab[bytes.map((b) => table[b]).join("")] = id++;
  }
  if (id > vocabSize) throw new Error(`PIECES need ${id} ids, the model has ${vocabSize}`);
  for (const [i, content] of Object.entries(special)) vocab[content] = Number(i);
  // Fill the rest with inert pieces the schema never allows (control bytes).
  for (let k = 1; id < vocabSize; id++, k++) {
    while (special[id] !== undefined) id++;
    if (id >= vocabSize) break;
    vocab[`${table[1]}`.repeat(k)] = id;
  }
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: Object.entries(special).map(([i, content]) => ({
      id: Number(i), content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
    })),
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges: [] },
  };
}

/** A temporary copy of fixture `name` with a byte-level tokenizer over `pieces` (default: the JSON pieces). */
export function jsonTokenizerModel(name: "gpt2" | "llama-gqa" | "qwen2", pieces: Array<string | number[]> = PIECES): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), `s2s-constrain-${name}-`));
  cpSync(path.join(fixtures, name), dir, { recursive: true });
  const special: Record<number, string> = name === "gpt2"
    ? { 95: "<|endoftext|>" }
    : name === "llama-gqa" ? { 0: "<unk>", 1: "<s>", 2: "</s>" } : { 93: "<|endoftext|>", 94: "<|im_start|>", 95: "<|im_end|>" };
  writeFileSync(path.join(dir, "tokenizer.json"), JSON.stringify(byteLevelTokenizer(96, special, pieces)));
  return dir;
}

/** Schemas the constraint tests share: nested objects, arrays, enums, anyOf / oneOf, nullable, $ref, extras. */
export const SCHEMAS: Record<string, Record<string, unknown>> = {
  person: {
    type: "object",
    properties: { name: { type: "string", maxLength: 12 }, age: { type: "integer" }, tags: { type: "array", items: { type: "string" }, maxItems: 3 } },
    required: ["name", "age"],
    additionalProperties: false,
  },
  nested: {
    type: "object",
    properties: {
      id: { type: "number" },
      kind: { enum: ["red", "green", "blue", 12, null, true] },
      child: { type: "object", properties: { x: { type: ["string", "null"] }, y: { type: "boolean" } }, required: ["x", "y"] },
    },
    required: ["id", "kind", "child"],
  },
  union: { anyOf: [{ type: "array", items: { $ref: "#/$defs/pt" }, minItems: 1, maxItems: 2 }, { type: "null" }, { const: "x" }], $defs: { pt: { type: "object", properties: { a: { type: "integer" }, b: { type: "number" } }, required: ["a"] } } },
  anyObject: { type: "object" },
  strings: { type: "object", properties: { s: { type: "string", minLength: 2, maxLength: 4 }, e: { type: "string", enum: ["red", "green"] } }, required: ["s", "e"] },
  numbers: { type: "array", items: { oneOf: [{ type: "integer" }, { type: "string", maxLength: 3 }] }, maxItems: 4 },
  free: { type: "object", properties: { a: { type: "string" } }, required: ["a"], additionalProperties: { type: "integer" } },
};

/**
 * A temporary copy of the T5 fixture `name` with a WordPiece tokenizer as
 * src/data/build-tokenizer.ts builds for models trained from scratch (decoder WordPiece, cleanup
 * false; <pad> 0, </s> 1, <unk> 2 as the fixture's config), from a corpus of compact JSON whose
 * words ({"name":"x"}) are spelled with "##" pieces. Returns the folder and the vocabulary.
 */
export function wordPieceModel(name: "t5-relu-tied" | "t5-gated"): { dir: string; vocab: Record<string, number> } {
  const corpus = [
    '{"name":"ann","age":31,"tags":["a","b"]} {"name":"bo","age":-2.5e3} true false null',
    '{"id":7,"kind":"red"} {"id":8,"kind":"green"} [1,2,3] {"x":null,"y":true} \\n \\u00e9 é',
  ];
  const built = buildWordPieceTokenizer(corpus, { minFrequency: 2, maxWords: 4 });
  if (built.vocabSize > 96) throw new Error(`the WordPiece vocabulary has ${built.vocabSize} tokens, the fixture 96`);
  const dir = mkdtempSync(path.join(os.tmpdir(), `s2s-constrain-${name}-`));
  cpSync(path.join(fixtures, name), dir, { recursive: true });
  writeFileSync(path.join(dir, "tokenizer.json"), JSON.stringify(built.tokenizer));
  writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify(built.tokenizerConfig));
  return { dir, vocab: (built.tokenizer.model as { vocab: Record<string, number> }).vocab };
}
