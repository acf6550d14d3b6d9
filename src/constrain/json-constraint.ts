// The logits mask of one constrained generate call: per row, the recognizer state of the text
// generated so far; every step, the tokens whose bytes keep that text a viable prefix of a value
// of the schema (found by walking the token trie with the state) keep their scores, the others
// get -inf, and the end-of-sequence tokens are allowed only when the text is complete. This runs
// as transformers runs a constraint's logits processor: after the other processors (repetition
// penalty, bad words, min length), before temperature / top-k / top-p.
import { advance, advanceBytes, canEnd, classifyInString, initialState, stringClass, type RecognizerState } from "./json-recognizer.js";
import type { SchemaNode } from "./json-schema.js";
import type { TokenVocabulary } from "./token-vocabulary.js";

/** Raised when the other processors left no token the schema allows (a bad combination of options). */
export class ConstraintConflictError extends Error {
  readonly code = "S2S_ARGUMENT";
  constructor(message: string) {
    super(message);
    this.name = "ConstraintConflictError";
  }
}

export class JsonConstraint {
  private readonly states: RecognizerState[] = [];
  private calls = 0;
  private allowed = new Uint8Array(0);

  constructor(
    private readonly root: SchemaNode,
    private readonly vocabulary: TokenVocabulary,
    private readonly eosTokenIds: readonly number[],
  ) {}

  /** The recognizer state of row r (for tests and diagnostics). */
  state(r: number): RecognizerState | undefined {
    return this.states[r];
  }

  /** native generate's maskLogits: scores (R*V) changed in place; last[r] the token row r appended last step (-1: none). */
  readonly mask = (scores: Float32Array, last: Int32Array): void => {
    const R = last.length, V = scores.length / R;
    const first = this.calls++ === 0;
    for (let r = 0; r < R; r++) {
      if (first) this.states[r] = initialState(this.root);
      else if (last[r]! < 0) continue; // the row has finished
      else this.states[r] = this.consume(this.states[r]!, last[r]!);
      const { any, live } = this.maskRow(this.states[r]!, scores.subarray(r * V, (r + 1) * V), first);
      if (!any) {
        throw new ConstraintConflictError(
          "constrained decoding: no token of the vocabulary continues the output as the JSON schema requires " +
          "(the vocabulary cannot spell the next bytes; byte-level and byte-fallback vocabularies always can)");
      }
      if (!live) {
        throw new ConstraintConflictError(
          "constrained decoding: every token the JSON schema allows at this step was banned by another option " +
          "(minNewTokens / minLength banning the end of sequence, badWordsIds, noRepeatNgramSize or repetitionPenalty); " +
          "drop that option or loosen it");
      }
    }
  };

  /**
   * One row's scores masked for `state` (first: the first generated token, where the
   * vocabulary's notFirst tokens are left out): any = some token is allowed, live = one with a
   * finite score.
   */
  maskRow(state: RecognizerState, row: Float32Array, first = false): { any: boolean; live: boolean } {
    const V = row.length;
    if (this.allowed.length !== V) this.allowed = new Uint8Array(V);
    const allowed = this.allowed;
    this.allowedTokens(state, allowed);
    if (first) for (const id of this.vocabulary.notFirst) if (id < V) allowed[id] = 0;
    let live = false, any = false;
    for (let v = 0; v < V; v++) {
      if (!allowed[v]) row[v] = -Infinity;
      else {
        any = true;
        if (row[v]! > -Infinity) live = true;
      }
    }
    return { any, live };
  }

  /** The state after token `id` (it was allowed, so it cannot fail unless the native side misbehaved). */
  private consume(state: RecognizerState, id: number): RecognizerState {
    const bytes = this.vocabulary.bytes[id];
    const next = bytes ? advanceBytes(state, bytes) : [];
    if (next.length === 0 && !this.eosTokenIds.includes(id)) {
      throw new Error(`constrained decoding: token ${id} was generated although the schema did not allow it (internal error)`);
    }
    return next;
  }

  /** allowed[v] = 1 for every token allowed after `state` (EOS included when the value is complete). */
  allowedTokens(state: RecognizerState, allowed: Uint8Array): void {
    allowed.fill(0);
    const inString = stringClass(state);
    if (inString) this.allowedInString(state, inString, allowed);
    else this.walkTrie(state, allowed);
    const end = state.length > 0 && canEnd(state) ? 1 : 0;
    for (const e of this.eosTokenIds) if (e < allowed.length) allowed[e] = end;
  }

  /** Inside a string: the class's precomputed tokens that fit maxLength, and the closing ones that the real state takes. */
  private allowedInString(state: RecognizerState, at: { key: string; len: number; max: number }, allowed: Uint8Array): void {
    const c = stringClassTokens(this.vocabulary, at.key);
    const V = allowed.length, room = at.max - at.len;
    const { inside, chars, closing } = c;
    for (let i = 0; i < inside.length; i++) {
      if (chars[i]! <= room && inside[i]! < V) allowed[inside[i]!] = 1;
    }
    for (let i = 0; i < closing.length; i++) {
      const id = closing[i]!;
      if (id < V && advanceBytes(state, this.vocabulary.bytes[id]!).length > 0) allowed[id] = 1;
    }
  }

  /** Every other state: depth-first over the token trie, entering a node only when the bytes to it are allowed. */
  private walkTrie(state: RecognizerState, allowed: Uint8Array): void {
    const { childStart, childByte, childIndex, tokenStart, tokenIds } = this.vocabulary.trie;
    const V = allowed.length;
    // Depth-first over the trie; a node is entered only when the bytes to it are allowed.
    const walk = (node: number, s: RecognizerState): void => {
      for (let e = childStart[node]!, end = childStart[node + 1]!; e < end; e++) {
        const next = advance(s, childByte[e]!);
        if (next.length === 0) continue;
        const child = childIndex[e]!;
        for (let t = tokenStart[child]!, te = tokenStart[child + 1]!; t < te; t++) {
          const id = tokenIds[t]!;
          if (id < V) allowed[id] = 1;
        }
        if (childStart[child + 1]! > childStart[child]!) walk(child, next);
      }
    };
    if (state.length > 0) walk(0, state);
  }
}

interface StringClassTokens {
  /** Tokens that stay inside the string, and the characters each adds. */
  inside: Int32Array;
  chars: Float64Array;
  /** Tokens that close the string somewhere in their bytes. */
  closing: Int32Array;
}

const stringClasses = new WeakMap<TokenVocabulary, Map<string, StringClassTokens>>();

/** The tokens of a string class (json-recognizer.ts: classifyInString), computed once per vocabulary and class. */
function stringClassTokens(vocabulary: TokenVocabulary, key: string): StringClassTokens {
  let classes = stringClasses.get(vocabulary);
  if (!classes) stringClasses.set(vocabulary, (classes = new Map()));
  let c = classes.get(key);
  if (c) return c;
  const inside: number[] = [], chars: number[] = [], closing: number[] = [];
  vocabulary.bytes.forEach((b, id) => {
    if (!b) return;
    const r = classifyInString(key, b);
    if (r.kind === "inside") {
      inside.push(id);
      chars.push(r.chars);
    } else if (r.kind === "closes") closing.push(id);
  });
  c = { inside: Int32Array.from(inside), chars: Float64Array.from(chars), closing: Int32Array.from(closing) };
  classes.set(key, c);
  return c;
}
