// Each token's bytes as the tokenizer's decoder writes them, computed once per tokenizer.json, and
// a trie over them, so a constraint can find every allowed token by walking the trie with its
// recognizer state (a dead prefix prunes all tokens below it) instead of trying every token.
// Decoders understood: ByteLevel (GPT-2, Qwen, Llama-3: each character of a token stands for one
// byte; a token can end inside a multi-byte character), SentencePiece style (Metaspace, or a
// Sequence with Replace "▁" -> " " and ByteFallback "<0xNN>": Llama 2, T5), and WordPiece without
// cleanup (what src/data/build-tokenizer.ts writes): a "##" token adds its text, any other token a
// space and its text, except as the very first token (no space; a "##" token would keep its
// "##"), so "##" tokens are never allowed first (notFirst). WordPiece with cleanup (spaces removed
// before punctuation, depending on the neighbours) and decoder-less WordLevel tokenizers (tokens
// joined with spaces) are refused with an error saying so.
import { readFileSync, statSync } from "node:fs";
import path from "node:path";
import { byteLevelCharacters } from "./byte-level.js";

/** A tokenizer.json the constraint cannot map to bytes. */
export class UnsupportedTokenizerError extends Error {
  readonly code = "S2S_ARGUMENT";
  constructor(file: string, detail: string) {
    super(`${file}: ${detail}`);
    this.name = "UnsupportedTokenizerError";
  }
}

export interface TokenVocabulary {
  /** Token id -> its bytes; null for tokens never allowed (special tokens, empty or unknown ones). */
  bytes: (Uint8Array | null)[];
  trie: TokenTrie;
  /** "byte-level", "sentencepiece" or "wordpiece". */
  kind: string;
  /** Tokens whose text differs when they come first (WordPiece "##" tokens): never allowed first. */
  notFirst: Int32Array;
}

/**
 * The trie, flattened: node 0 is the root; a node's children are
 * childIndex[childStart[n] .. childStart[n + 1]) with their bytes in childByte; the tokens that
 * end at node n are tokenIds[tokenStart[n] .. tokenStart[n + 1]).
 */
export interface TokenTrie {
  childStart: Int32Array;
  childByte: Uint8Array;
  childIndex: Int32Array;
  tokenStart: Int32Array;
  tokenIds: Int32Array;
  nodes: number;
}

/** GPT-2's bytes_to_unicode, inverted: the character standing for each byte -> the byte. */
function byteLevelTable(): Map<string, number> {
  return new Map(byteLevelCharacters().map((c, b) => [c, b]));
}

type Json = Record<string, unknown>;

function decoderKind(decoder: Json | null | undefined): "byte-level" | "sentencepiece" | string {
  if (!decoder) return "none";
  const type = decoder.type as string;
  if (type === "ByteLevel") return "byte-level";
  if (type === "Metaspace") return "sentencepiece";
  if (type === "WordPiece") return decoder.cleanup === false ? "wordpiece" : "WordPiece with cleanup (spaces before punctuation removed depending on the neighbours)";
  if (type === "Sequence") {
    const parts = (decoder.decoders as Json[] | undefined) ?? [];
    if (parts.some((d) => d.type === "ByteLevel")) return "byte-level";
    const replacesMeta = parts.some((d) => d.type === "Replace" && JSON.stringify(d.pattern).includes("▁"));
    if (replacesMeta || parts.some((d) => d.type === "Metaspace")) return "sentencepiece";
    return `Sequence(${parts.map((d) => d.type).join(", ")})`;
  }
  return type;
}

/** Token id -> token string, from model.vocab (object or Unigram's [piece, score] list) and added_tokens. */
function vocabEntries(json: Json, file: string): { pieces: Map<number, string>; special: Set<number> } {
  const model = json.model as Json | undefined;
  const pieces = new Map<number, string>();
  const vocab = model?.vocab;
  if (Array.isArray(vocab)) vocab.forEach((e, i) => pieces.set(i, String((e as unknown[])[0])));
  else if (vocab && typeof vocab === "object") for (const [k, v] of Object.entries(vocab)) pieces.set(v as number, k);
  else throw new UnsupportedTokenizerError(file, "model.vocab: expected an object or a list");
  const special = new Set<number>();
  for (const a of (json.added_tokens as Json[] | undefined) ?? []) {
    pieces.set(a.id as number, a.content as string);
    if (a.special) special.add(a.id as number);
  }
  return { pieces, special };
}

const utf8 = new TextEncoder();

/** The bytes of every token (see TokenVocabulary.bytes). */
export function tokenBytes(json: Json, file: string): { bytes: (Uint8Array | null)[]; kind: string; notFirst: Int32Array } {
  const kind = decoderKind(json.decoder as Json | null);
  if (kind !== "byte-level" && kind !== "sentencepiece" && kind !== "wordpiece") {
    throw new UnsupportedTokenizerError(file,
      `constrained decoding needs a byte-level (GPT-2 style), SentencePiece-style (Metaspace / ByteFallback) or WordPiece (cleanup false) decoder, ` +
      `got ${kind === "none" ? "no decoder (tokens are joined with spaces)" : kind}: a token's text must not depend on its neighbours`);
  }
  const prefix = kind === "wordpiece" ? String((json.decoder as Json).prefix ?? "##") : "";
  const notFirst: number[] = [];
  const { pieces, special } = vocabEntries(json, file);
  const added = new Set(((json.added_tokens as Json[] | undefined) ?? []).map((a) => a.id as number));
  const size = Math.max(-1, ...pieces.keys()) + 1;
  const bytes: (Uint8Array | null)[] = new Array(size).fill(null);
  const table = kind === "byte-level" ? byteLevelTable() : undefined;
  for (const [id, piece] of pieces) {
    if (special.has(id)) continue;
    let b: Uint8Array | null;
    if (added.has(id)) {
      b = utf8.encode(piece); // added tokens are written as they are
      if (kind === "wordpiece") b = utf8.encode(` ${piece}`);
    } else if (kind === "wordpiece") {
      const continues = prefix !== "" && piece.startsWith(prefix);
      if (continues) notFirst.push(id);
      b = utf8.encode(continues ? piece.slice(prefix.length) : ` ${piece}`);
    } else if (table) {
      const out: number[] = [];
      for (const ch of piece) {
        const v = table.get(ch);
        if (v === undefined) { out.length = 0; break; }
        out.push(v);
      }
      b = out.length > 0 ? Uint8Array.from(out) : null;
    } else {
      const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(piece); // ByteFallback
      b = m ? Uint8Array.of(parseInt(m[1]!, 16)) : utf8.encode(piece.replace(/▁/g, " "));
    }
    bytes[id] = b && b.length > 0 ? b : null;
  }
  return { bytes, kind, notFirst: Int32Array.from(notFirst) };
}

/** The trie over the tokens' bytes (tokens without bytes are left out). */
export function buildTrie(bytes: readonly (Uint8Array | null)[]): TokenTrie {
  // Build with maps, then flatten into typed arrays (compact and fast to walk).
  const children: Map<number, number>[] = [new Map()];
  const ends: number[][] = [[]];
  bytes.forEach((b, id) => {
    if (!b) return;
    let n = 0;
    for (const byte of b) {
      let c = children[n]!.get(byte);
      if (c === undefined) {
        c = children.length;
        children.push(new Map());
        ends.push([]);
        children[n]!.set(byte, c);
      }
      n = c;
    }
    ends[n]!.push(id);
  });
  const nodes = children.length;
  const childStart = new Int32Array(nodes + 1), tokenStart = new Int32Array(nodes + 1);
  let edges = 0, tokens = 0;
  for (let n = 0; n < nodes; n++) {
    childStart[n] = edges;
    tokenStart[n] = tokens;
    edges += children[n]!.size;
    tokens += ends[n]!.length;
  }
  childStart[nodes] = edges;
  tokenStart[nodes] = tokens;
  const childByte = new Uint8Array(edges), childIndex = new Int32Array(edges), tokenIds = new Int32Array(tokens);
  for (let n = 0; n < nodes; n++) {
    let e = childStart[n]!;
    for (const [byte, c] of [...children[n]!].sort((a, b) => a[0] - b[0])) {
      childByte[e] = byte;
      childIndex[e++] = c;
    }
    tokenIds.set(ends[n]!, tokenStart[n]!);
  }
  return { childStart, childByte, childIndex, tokenStart, tokenIds, nodes };
}

const cache = new Map<string, { mtimeMs: number; size: number; vocabulary: TokenVocabulary }>();

/** The vocabulary of a model folder's tokenizer.json, computed once per file version. */
export function loadTokenVocabulary(modelDir: string): TokenVocabulary {
  const file = path.join(modelDir, "tokenizer.json");
  const st = statSync(file);
  const hit = cache.get(file);
  if (hit && hit.mtimeMs === st.mtimeMs && hit.size === st.size) return hit.vocabulary;
  const json = JSON.parse(readFileSync(file, "utf8")) as Json;
  const { bytes, kind, notFirst } = tokenBytes(json, file);
  const vocabulary = { bytes, trie: buildTrie(bytes), kind, notFirst };
  cache.set(file, { mtimeMs: st.mtimeMs, size: st.size, vocabulary });
  return vocabulary;
}
